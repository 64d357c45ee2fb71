"""Cell result files: atomic JSON writes, trusted loads, provenance (machine, git, packages)."""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema

from harness.errors import OutputDirError, ResultFileError
from harness.io.integrity import seal_problems
from harness.io.schema import cell_result_schema, replica_ceiling_schema


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


def _field_path(exc: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in exc.absolute_path) or "(top level)"


def read_result(path: Path) -> dict[str, Any]:
    """A trusted cell result, or :class:`ResultFileError` saying what is wrong with the file
    and which field: not JSON (truncated or corrupt), outside the schema, or edited since
    it was written (its content digest does not match). FileNotFoundError passes through.
    """
    return check_result(parse_result(path), path)


def parse_result(path: Path) -> Any:
    """A result file's JSON, or :class:`ResultFileError` when it is not JSON."""
    try:
        return json.loads(Path(path).read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultFileError(f"result file {path} is not valid JSON (truncated or corrupt: "
                              f"{exc})", path) from None


def check_result(obj: Any, path: Path) -> dict[str, Any]:
    """``obj`` (read from ``path``) if it matches the schema and its content digest, else
    :class:`ResultFileError` naming the field."""
    try:
        validate_result(obj)
    except jsonschema.ValidationError as exc:
        where = _field_path(exc)
        raise ResultFileError(f"result file {path} does not match the result schema at field "
                              f"{where}: {exc.message[:200]}", path, (where,)) from None
    problems = seal_problems(obj)
    if problems:
        fields = tuple(p.split()[1] for p in problems if p.startswith("field "))
        raise ResultFileError(f"result file {path} was changed after it was written: "
                              + "; ".join(problems), path, fields)
    return obj


def previous_result(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A cell's earlier result if its file is intact, else (None, why not) - edited,
    truncated or invalid - or (None, None) when there is none."""
    try:
        return read_result(path), None
    except FileNotFoundError:
        return None, None
    except ResultFileError as exc:
        return None, str(exc)


def load_result(path: Path) -> dict[str, Any] | None:
    """A trusted result, or None: missing, or (with a warning that says why and names the
    field) corrupt, invalid or edited; ``harness run`` then runs the cell again."""
    result, problem = previous_result(path)
    if problem:
        warnings.warn(f"{problem}; the cell will be run again", stacklevel=2)
    return result


def load_ceiling(path: Path) -> dict[str, Any] | None:
    """A valid replica-ceiling file, or None (with a warning when it is corrupt)."""
    return load_valid_json(path, lambda obj: jsonschema.validate(obj, replica_ceiling_schema()),
                           "replica ceiling",
                           "it is ignored (and computed again by the next harness run)")


def load_ceilings(out: Path) -> list[dict[str, Any]]:
    """Every valid ceiling file under ``out/replicas`` (none when the folder is absent)."""
    return [c for p in sorted((Path(out) / "replicas").glob("*.json"))
            if (c := load_ceiling(p)) is not None]
