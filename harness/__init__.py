"""Evaluation harness for output-strategy stealing on multi-exit networks.

Public entry points: :func:`make_plugin_manager`, :data:`hookimpl`, the protocol
types in :mod:`harness.protocol`, and the conformance kit :mod:`harness.testing.checks`.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

PROJECT_NAME = "harness"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Decorator for plugin hook implementations (``@harness.hookimpl``)."""

__all__ = ["PROJECT_NAME", "__version__", "hookimpl"]
