"""The harness's version: recorded in every result and part of every config hash."""

from __future__ import annotations

__version__ = "0.1.0"
