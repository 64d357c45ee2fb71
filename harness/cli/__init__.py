"""The ``harness`` command line: :mod:`.main` parses and dispatches, :mod:`.commands` acts."""

from __future__ import annotations

from harness.cli.main import main

__all__ = ["main"]
