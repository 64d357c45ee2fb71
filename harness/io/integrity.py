"""Content digests of result files: an edited, truncated or copied cell is caught.

A result is sealed when it is written: ``content_digest`` holds the sha256 of the
canonical JSON (sorted keys, compact) of everything else in the file, plus short
digests of each top-level field and of each metric, so a check can name the field that
changed. ``harness run`` recomputes a cell whose seal does not match and says which
field was edited; ``harness leaderboard`` refuses it. This detects edits, truncation and
corruption, not a forger who recomputes the digests: that is the evaluator's signature
(:mod:`harness.io.signing`), made over the sealed file.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

SEAL = "content_digest"
SIGNATURE = "signature"
OUTSIDE = (SEAL, SIGNATURE)
"""Fields the digest does not cover: itself, and the signature made over the sealed file."""
ALGORITHM = "sha256/canonical-json"
FIELD_DIGEST_CHARS = 16


def canonical_bytes(obj: Any) -> bytes:
    """The canonical JSON of ``obj`` (sorted keys, no spaces, no NaN)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _short(obj: Any) -> str:
    return hashlib.sha256(canonical_bytes(obj)).hexdigest()[:FIELD_DIGEST_CHARS]


def _field_digests(body: dict[str, Any]) -> dict[str, str]:
    fields = {key: _short(value) for key, value in body.items()}
    for name, value in (body.get("metrics") or {}).items():
        fields[f"metrics.{name}"] = _short(value)
    return fields


def seal(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with its content digest (any old one replaced)."""
    body = {k: v for k, v in result.items() if k not in OUTSIDE}
    return {**body, SEAL: {"algorithm": ALGORITHM,
                           "sha256": hashlib.sha256(canonical_bytes(body)).hexdigest(),
                           "fields": _field_digests(body)}}


def seal_problems(result: dict[str, Any]) -> list[str]:
    """What does not match the result's seal: [] when intact; else the edited fields
    (``metrics.exit_agreement``, ``diagnostics`` ...), or why the seal cannot be checked."""
    recorded = result.get(SEAL)
    if not isinstance(recorded, dict) or not isinstance(recorded.get("sha256"), str):
        return [f"no {SEAL} (the file was not written by this harness version, or the digest "
                "was removed)"]
    if recorded.get("algorithm") != ALGORITHM:
        return [f"{SEAL}.algorithm is {recorded.get('algorithm')!r}, expected {ALGORITHM!r}"]
    body = {k: v for k, v in result.items() if k not in OUTSIDE}
    if hashlib.sha256(canonical_bytes(body)).hexdigest() == recorded["sha256"]:
        return []
    old = recorded.get("fields") or {}
    new = _field_digests(body)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)
                     and not (k == "metrics" and any(n.startswith("metrics.") and old.get(n) !=
                                                     new.get(n) for n in set(old) | set(new))))
    return [f"field {k} was edited" if k in old and k in new else
            f"field {k} was {'added' if k in new else 'removed'}" for k in changed] or [
        f"{SEAL}.sha256 does not match the content"]
