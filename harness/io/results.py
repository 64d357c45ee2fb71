"""Cell result files: atomic JSON writes, trusted loads, provenance (machine, git, packages).

A load is trusted when the file is JSON, matches its schema and content digest, and is
signed and listed by its folder (:class:`~harness.io.signing.FolderTrust`, passed in by
the caller: a run trusts its own key, a board the keys it lists)."""

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
from harness.io.schema import cell_result_schema, replica_agreement_schema
from harness.io.signing import FolderTrust


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


def read_result(path: Path, trust: FolderTrust) -> dict[str, Any]:
    """A trusted cell result, or :class:`ResultFileError` saying what is wrong with the file
    and which field: not JSON (truncated or corrupt), outside the schema, edited since
    it was written (its content digest does not match), or not signed and listed by the
    folder (``trust``). FileNotFoundError passes through.
    """
    return check_result(parse_result(path), path, trust)


def parse_result(path: Path) -> Any:
    """A result file's JSON, or :class:`ResultFileError` when it is not JSON."""
    try:
        return json.loads(Path(path).read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultFileError(f"result file {path} is not valid JSON (truncated or corrupt: "
                              f"{exc})", path) from None


def check_result(obj: Any, path: Path, trust: FolderTrust) -> dict[str, Any]:
    """``obj`` (read from ``path``) if it matches the schema, its content digest and its
    folder's signatures (``trust``), else :class:`ResultFileError` naming the field or
    the signature problem."""
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
    problem = trust.problem(obj, path)
    if problem:
        raise ResultFileError(f"result file {path} is not trusted: {problem}", path,
                              ("signature",))
    return obj


def previous_result(path: Path, trust: FolderTrust
                    ) -> tuple[dict[str, Any] | None, str | None]:
    """A cell's earlier result if its file is intact and trusted, else (None, why not) -
    edited, truncated, invalid, unsigned or unlisted - or (None, None) when there is none."""
    try:
        return read_result(path, trust), None
    except FileNotFoundError:
        return None, None
    except ResultFileError as exc:
        return None, str(exc)


def load_result(path: Path, trust: FolderTrust) -> dict[str, Any] | None:
    """A trusted result, or None: missing, or (with a warning that says why and names the
    field) corrupt, invalid, edited or untrusted; ``harness run`` then runs the cell again."""
    result, problem = previous_result(path, trust)
    if problem:
        warnings.warn(f"{problem}; the cell will be run again", stacklevel=2)
    return result


def load_replica_file(path: Path, trust: FolderTrust) -> dict[str, Any] | None:
    """A valid, trusted replica-agreement file, or None (with a warning when it is corrupt,
    invalid or not signed and listed by its folder)."""

    def validate(obj: Any) -> None:
        jsonschema.validate(obj, replica_agreement_schema())
        problem = trust.problem(obj, path)
        if problem:
            raise jsonschema.ValidationError(f"not trusted: {problem}")

    return load_valid_json(path, validate, "replica agreement",
                           "it is ignored (and computed again by the next harness run)")


def load_replica_files(out: Path, trust: FolderTrust) -> list[dict[str, Any]]:
    """Every valid, trusted replica file under ``out/replicas`` (none when absent)."""
    return [c for p in sorted((Path(out) / "replicas").glob("*.json"))
            if (c := load_replica_file(p, trust)) is not None]
