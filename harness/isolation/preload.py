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


def _import_plugins() -> None:
    from harness.plugins.manager import make_plugin_manager
    from harness.plugins.registry import Registry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            Registry.from_manager(make_plugin_manager(load_entrypoints=False))
        except Exception:
            return


_import_plugins()
