"""Cell result files: atomic JSON writes, trusted loads, provenance (machine, git, packages)."""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema

from harness.errors import OutputDirError
from harness.report.schema import cell_result_schema


def check_out_dir(out: Path, key: str = "out") -> Path:
    """Create ``out`` (a folder) or explain why it cannot be used (``key`` names the setting)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"{key}={out} is a file; give a folder path")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-", delete=True)
        probe.close()
    except OSError as exc:
        raise OutputDirError(f"{key}={out} cannot be created or written "
                             f"({exc.strerror or exc}); choose a writable folder") from None
    return out


def validate_result(obj: Any) -> None:
    jsonschema.validate(obj, cell_result_schema())


def load_valid_json(path: Path, validate: Callable[[Any], None], what: str,
                    consequence: str) -> Any | None:
    """``path``'s JSON if ``validate`` accepts it; None if the file is missing, or (with a
    warning naming ``what`` and ``consequence``) when it is corrupt or invalid."""
    try:
        obj = json.loads(Path(path).read_text())
        validate(obj)
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError, jsonschema.ValidationError) as exc:
        reason = getattr(exc, "message", None) or str(exc)
        warnings.warn(f"{what} file {path} is corrupt or invalid ({reason[:200]}); "
                      f"{consequence}", stacklevel=3)
        return None
    return obj


def load_result(path: Path) -> dict[str, Any] | None:
    """A valid result dict, or None (with a warning) for a corrupt or invalid file."""
    return load_valid_json(path, validate_result, "result", "the cell will be run again")


