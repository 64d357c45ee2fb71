"""Imported once by the fork server so that workers start in milliseconds.

Building a registry of the built-in plugins imports their modules and what they import
(torch, scikit-learn, ruptures, ONNX Runtime, ...). Third-party plugins are imported
by each worker itself, from the evaluator's current path (they may be installed after
the fork server started). The fork server holds modules only: no
victim, no dataset, no result. Plugin warnings are left to the evaluator, which
builds its own registry and reports them.
"""

from __future__ import annotations

import warnings

from harness.plugins.registry import load_registry


def _import_plugins() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            load_registry(load_entrypoints=False)
        except Exception:
            return


_import_plugins()
