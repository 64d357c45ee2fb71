"""A local weight cache keyed by a config hash, safe against crashes and corruption.

An entry is one file ``<cache_dir>/weights/<key>.pt``: a magic line, a JSON header
(format, key, SHA-256 and size of the payload, caller metadata) and the payload
(``torch.save`` of the state dict). It is written to a temporary file in the same
directory and moved into place with :func:`os.replace`, so readers see either the old
entry or the complete new one. :func:`load_weights` verifies everything before it
deserialises (with ``weights_only=True``) and raises :class:`CacheError` on any
mismatch: a corrupt or half-written entry is never trusted.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from harness.errors import CacheError
from harness.io.atomic import atomic_write_bytes

MAGIC = b"EXITSTEAL-WEIGHTS\n"
FORMAT_VERSION = 1


def config_key(config: Mapping[str, Any], code_version: str) -> str:
    """SHA-256 of the canonical JSON of ``config`` + torch version + ``code_version``."""
    payload = {"config": config, "torch": torch.__version__, "code_version": code_version}
    try:
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CacheError(f"cache key config is not JSON-serialisable: {exc}") from exc
    return hashlib.sha256(text.encode()).hexdigest()


def state_dict_hash(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of the tensors (order-independent)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def entry_path(cache_dir: Path, key: str) -> Path:
    if not key or not all(c in "0123456789abcdef" for c in key):
        raise CacheError(f"cache key must be a lowercase hex digest, got {key!r}")
    return Path(cache_dir) / "weights" / f"{key}.pt"


def save_weights(cache_dir: Path, key: str, state_dict: Mapping[str, torch.Tensor],
                 meta: Mapping[str, Any] | None = None) -> Path:
    """Write an entry atomically; returns its path."""
    path = entry_path(cache_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buffer)
    payload = buffer.getvalue()
    header = json.dumps({
        "format": FORMAT_VERSION, "key": key, "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(), "meta": dict(meta or {}),
    }, sort_keys=True).encode()
    return atomic_write_bytes(path, MAGIC + header + b"\n" + payload)


def read_entry(cache_dir: Path, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """``(state_dict, meta)`` of a verified entry; None when absent; CacheError if corrupt."""
    path = entry_path(cache_dir, key)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CacheError(f"cannot read weight cache entry {path}: {exc}") from exc
    if not blob.startswith(MAGIC) or b"\n" not in blob[len(MAGIC):]:
        raise CacheError(f"weight cache entry {path} has no valid header (corrupt or truncated)")
    head, payload = blob[len(MAGIC):].split(b"\n", 1)
    try:
        header = json.loads(head)
    except ValueError as exc:
        raise CacheError(f"weight cache entry {path} has an unreadable header: {exc}") from exc
    if header.get("format") != FORMAT_VERSION or header.get("key") != key:
        raise CacheError(f"weight cache entry {path} is of another format or key")
    if header.get("size") != len(payload):
        raise CacheError(f"weight cache entry {path} is truncated: payload has {len(payload)} "
                         f"bytes, header says {header.get('size')}")
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise CacheError(f"weight cache entry {path} fails its SHA-256 checksum")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # checksum passed, so this is a format problem
        raise CacheError(f"weight cache entry {path} cannot be deserialised: {exc}") from exc
    if not isinstance(state, dict):
        raise CacheError(f"weight cache entry {path} does not hold a state dict")
    return state, dict(header.get("meta", {}))


def load_weights(cache_dir: Path, key: str) -> dict[str, torch.Tensor] | None:
    """The cached state dict, None when absent; raises CacheError when corrupt."""
    entry = read_entry(cache_dir, key)
    return None if entry is None else entry[0]


def discard(cache_dir: Path, key: str) -> None:
    """Remove an entry (e.g. a corrupt one) if it exists."""
    entry_path(cache_dir, key).unlink(missing_ok=True)
