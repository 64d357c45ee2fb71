"""Ed25519 signatures of result files, and signed per-run manifests of what a run wrote.

Each results folder has one signing key, made on its first run: the private half in
``<out>/.harness-signing-key`` (mode 0600; no worker can read ``out=``), the public half
in ``<out>/signing-keys.json``. Every cell and replica-agreement file the runner writes
carries a ``signature`` over the canonical JSON of everything else in the file. Each run
also keeps a manifest, ``<out>/manifests/<run id>.json``: the relative path and body
digest of every file it wrote, signed, rewritten atomically after each file.

A file is trusted (:meth:`FolderTrust.problem`) when it is signed by a key the folder
lists and a validly signed manifest lists its path with its digest. ``harness run``
runs an untrusted cell again; ``leaderboard build`` and ``verify`` refuse it. A built
board copies the runs' manifests and lists their public keys, so anyone holding the
board can check it without a private key; who may sign is the public keys' fingerprints
(printed by ``verify`` and on the page), which a reader compares with the ones published
with the board.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from harness.errors import ConfigError
from harness.io.atomic import create_private_once, write_json_atomic
from harness.io.integrity import SIGNATURE, canonical_bytes

ALGORITHM = "ed25519"
PRIVATE_KEY_FILE = ".harness-signing-key"
KEYS_FILE = "signing-keys.json"
MANIFESTS = "manifests"
MANIFEST_FORMAT = "harness-run-manifest/1"


def body_digest(obj: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``obj`` without its signature."""
    return hashlib.sha256(canonical_bytes(_body(obj))).hexdigest()


def _body(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != SIGNATURE}


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(raw_public: bytes) -> str:
    """A public key's fingerprint: the first 16 hex digits of its sha256."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


@dataclass(frozen=True)
class PublicKey:
    """A key that may sign a folder's files."""

    raw: bytes

    @property
    def id(self) -> str:
        return key_id(self.raw)

    def to_json(self) -> dict[str, str]:
        return {"algorithm": ALGORITHM, "id": self.id, "public_key": self.raw.hex()}

    def verifies(self, obj: dict[str, Any]) -> bool:
        """Whether ``obj``'s signature is this key's, over the rest of ``obj``."""
        sig = obj.get(SIGNATURE)
        try:
            value = bytes.fromhex(sig["value"])
            Ed25519PublicKey.from_public_bytes(self.raw).verify(value, canonical_bytes(_body(obj)))
        except (InvalidSignature, KeyError, TypeError, ValueError):
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    """A results folder's private key (the evaluator's only)."""

    private: Ed25519PrivateKey

    @property
    def public(self) -> PublicKey:
        return PublicKey(_raw_public(self.private.public_key()))

    def sign(self, obj: dict[str, Any]) -> dict[str, Any]:
        """``obj`` with its signature (any old one replaced)."""
        body = _body(obj)
        value = self.private.sign(canonical_bytes(body)).hex()
        return {**body, SIGNATURE: {"algorithm": ALGORITHM, "key": self.public.id, "value": value}}

    @classmethod
    def of_folder(cls, out: Path) -> SigningKey:
        """The folder's key: read, or made once (mode 0600, never replaced: two runners
        racing on one folder agree on the first one written). Also (re)writes the public
        half in ``signing-keys.json`` when it does not list it."""
        path = Path(out) / PRIVATE_KEY_FILE
        if not path.exists():
            create_private_once(path, Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path} holds no usable signing key ({exc}); move it away to have "
                              "a new one made (the folder's finished cells then run again)"
                              ) from None
        if not isinstance(private, Ed25519PrivateKey):
            raise ConfigError(f"{path} holds a {type(private).__name__}, not an Ed25519 key; "
                              "move it away to have a new one made")
        key = cls(private)
        listed = read_public_keys(Path(out))
        if key.public not in listed:
            write_public_keys(Path(out), [*listed, key.public])
        return key


def read_public_keys(folder: Path) -> list[PublicKey]:
    """The keys ``folder``'s ``signing-keys.json`` lists ([] when absent or unreadable)."""
    try:
        entries = json.loads((Path(folder) / KEYS_FILE).read_text())["keys"]
        return [PublicKey(bytes.fromhex(e["public_key"])) for e in entries
                if e.get("algorithm") == ALGORITHM and len(e["public_key"]) == 64]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def write_public_keys(folder: Path, keys: list[PublicKey]) -> None:
    unique = list(dict.fromkeys(keys))
    write_json_atomic(Path(folder) / KEYS_FILE, {"keys": [k.to_json() for k in unique]})


@dataclass
class RunManifest:
    """The signed list of the files one run wrote into a folder."""

    folder: Path
    key: SigningKey
    run_id: str = field(default_factory=lambda: (
        datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)))
    files: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def path(self) -> Path:
        return self.folder / MANIFESTS / f"{self.run_id}.json"

    def write_signed(self, path: Path, obj: dict[str, Any]) -> dict[str, Any]:
        """Sign ``obj``, write it atomically to ``path`` (inside the folder), list it."""
        signed = self.key.sign(obj)
        relative = Path(path).resolve().relative_to(self.folder.resolve()).as_posix()
        write_json_atomic(path, signed)
        with self._lock:
            self.files[relative] = body_digest(signed)
            manifest = {"format": MANIFEST_FORMAT, "run_id": self.run_id,
                        "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                        "files": dict(sorted(self.files.items()))}
            write_json_atomic(self.path, self.key.sign(manifest))
        return signed


def result_folder(path: Path) -> Path:
    """The results folder holding a cell (``cells/<v>/<d>/<a>/<file>``) or replica-agreement
    (``replicas/<file>``) file."""
    parents = Path(path).resolve().parents
    if len(parents) > 1 and parents[0].name == "replicas":
        return parents[1]
    if len(parents) > 4 and parents[3].name == "cells":
        return parents[4]
    raise ValueError(f"{path} is neither under <folder>/cells/<victim>/<defense>/<attack>/ nor "
                     "under <folder>/replicas/, so no folder's signatures can vouch for it")


def trust_for(path: Path) -> FolderTrust:
    """The trust of the folder holding the cell or replica file ``path``."""
    return FolderTrust.of(result_folder(path))


def open_run_manifest(out: Path) -> RunManifest:
    """A new run's manifest in ``out`` (making the folder's key on its first run)."""
    return RunManifest(Path(out), SigningKey.of_folder(out))


@dataclass
class FolderTrust:
    """Which keys may sign a folder's files, and which files its manifests list."""

    folder: Path
    keys: dict[str, PublicKey]
    listed: dict[str, set[str]] = field(default_factory=dict)
    bad_manifests: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, folder: Path, keys: list[PublicKey] | None = None) -> FolderTrust:
        """``folder``'s trust: ``keys`` if given (a run trusts its own key only), else the
        keys its ``signing-keys.json`` lists."""
        chosen = read_public_keys(folder) if keys is None else keys
        trust = cls(Path(folder), {k.id: k for k in chosen})
        trust.reload()
        return trust

    @classmethod
    def of(cls, folder: Path) -> FolderTrust:
        """What the holder of ``folder`` trusts: a run folder (it holds the private key)
        its own key only; a board (no private key) the keys it lists."""
        private = Path(folder) / PRIVATE_KEY_FILE
        if private.exists():
            return cls.load(folder, keys=[SigningKey.of_folder(folder).public])
        return cls.load(folder)

    def reload(self) -> None:
        """Read the folder's manifests again (another runner may have written files)."""
        self.listed, self.bad_manifests = {}, []
        for path in sorted((self.folder / MANIFESTS).glob("*.json")):
            try:
                manifest = json.loads(path.read_text())
                files = manifest["files"]
                ok = manifest.get("format") == MANIFEST_FORMAT and self._signed(manifest)
            except (OSError, ValueError, KeyError, TypeError):
                ok = False
            if not ok or not isinstance(files, dict):
                self.bad_manifests.append(path.name)
                continue
            for relative, digest in files.items():
                self.listed.setdefault(str(relative), set()).add(str(digest))

    def _signed(self, obj: dict[str, Any]) -> bool:
        sig = obj.get(SIGNATURE)
        key = self.keys.get(sig.get("key")) if isinstance(sig, dict) else None
        return key is not None and key.verifies(obj)

    def problem(self, obj: dict[str, Any], path: Path) -> str | None:
        """Why the file at ``path`` (holding ``obj``) is not trusted, or None."""
        sig = obj.get(SIGNATURE)
        if not isinstance(sig, dict):
            return ("it is not signed (written by an older harness, by hand, or by something "
                    "other than this folder's evaluator)")
        if sig.get("key") not in self.keys:
            known = ", ".join(sorted(self.keys)) or f"none: {self.folder / KEYS_FILE} is missing"
            return f"it is signed by key {sig.get('key')!r}, which this folder does not trust ({known})"
        if not self.keys[sig["key"]].verifies(obj):
            return "its signature does not match its content (it was changed after signing)"
        try:
            relative = Path(path).resolve().relative_to(self.folder.resolve()).as_posix()
        except ValueError:
            return f"it lies outside {self.folder}, whose manifests are checked"
        digest = body_digest(obj)
        if digest not in self.listed.get(relative, ()):
            self.reload()  # another runner may have listed it since
        if relative not in self.listed:
            return "no signed manifest of this folder lists it (it was not written by a run here)"
        if digest not in self.listed[relative]:
            return "the manifests list another content for it (an older or foreign copy)"
        return None
