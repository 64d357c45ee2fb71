"""Latency profiles: per-exit latencies recorded live, stored as JSON, referenced by hash.

A :class:`LatencyProfile` is what ``harness calibrate`` writes and ``timing=replay``
draws from. It names the victim (and its weights hash), the backend and device, and the
machine it was measured on. Its :attr:`LatencyProfile.hash` is the sha256 of its
canonical JSON, so a result can cite exactly the profile it replayed.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import CacheError, ConfigError
from harness.io.atomic import write_json_atomic
from harness.io.provenance import MachineInfo

PROFILE_VERSION = 1


@dataclass(frozen=True)
class LatencyProfile:
    """Per-exit latency samples (seconds) of one victim served by one backend on one device."""

    victim: str
    weights_hash: str
    backend: str
    device: str
    samples: tuple[tuple[float, ...], ...]
    machine: MachineInfo
    created_at: str
    repeats: int = 1

    def __post_init__(self) -> None:
        samples = tuple(tuple(float(v) for v in exit_samples) for exit_samples in self.samples)
        object.__setattr__(self, "samples", samples)
        for k, exit_samples in enumerate(samples):
            bad = [v for v in exit_samples if not (math.isfinite(v) and v > 0)]
            if bad:
                raise ConfigError(
                    f"latency profile of {self.victim!r}: exit {k} has {len(bad)} latencies "
                    f"that are not finite and > 0 (e.g. {bad[0]}); record it again")

    @property
    def num_exits(self) -> int:
        return len(self.samples)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["samples"] = [list(s) for s in self.samples]
        return {"version": PROFILE_VERSION, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "profile") -> LatencyProfile:
        """Rebuild a profile; a malformed document is a :class:`CacheError`."""
        if not isinstance(data, dict) or data.get("version") != PROFILE_VERSION:
            found = data.get("version") if isinstance(data, dict) else type(data).__name__
            raise CacheError(f"{source}: not a version-{PROFILE_VERSION} latency profile "
                             f"(found version {found!r}); record it again with harness calibrate")
        try:
            fields = {k: v for k, v in data.items() if k != "version"}
            fields["machine"] = MachineInfo(**fields["machine"])
            fields["samples"] = tuple(tuple(s) for s in fields["samples"])
            return cls(**fields)
        except (KeyError, TypeError, ValueError) as exc:
            raise CacheError(f"{source}: malformed latency profile ({type(exc).__name__}: "
                             f"{exc}); record it again with harness calibrate") from exc

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON (sorted keys, no whitespace)."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"),
                          allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def save(self, path: str | Path) -> Path:
        """Write the profile atomically as JSON; return the path."""
        return write_json_atomic(path, self.to_json(), indent=1)

    @classmethod
    def load(cls, path: str | Path) -> LatencyProfile:
        """Read a profile written by :meth:`save`; a missing or corrupt file is a CacheError."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise CacheError(f"latency profile {path} does not exist; record one with "
                             "harness calibrate, or fix the path") from exc
        except (OSError, ValueError) as exc:
            raise CacheError(f"latency profile {path} is unreadable or not JSON ({exc}); "
                             "record it again with harness calibrate") from exc
        return cls.from_json(data, source=f"latency profile {path}")

    def validate_for(self, victim_name: str, num_exits: int,
                     weights_hash: str | None = None) -> None:
        """Raise a :class:`ConfigError` unless this profile fits the given victim."""
        if self.victim != victim_name:
            raise ConfigError(
                f"latency profile {self.hash[:12]} was recorded for victim {self.victim!r}, "
                f"not {victim_name!r}; calibrate {victim_name!r} and replay its own profile")
        if weights_hash is not None and self.weights_hash != weights_hash:
            raise ConfigError(
                f"latency profile {self.hash[:12]} of victim {victim_name!r} was recorded on "
                f"weights {self.weights_hash[:12]}, but the victim now has weights "
                f"{weights_hash[:12]}; calibrate again")
        empty = [k for k, s in enumerate(self.samples) if not s]
        if self.num_exits != num_exits or empty:
            raise ConfigError(
                f"latency profile {self.hash[:12]} of victim {victim_name!r} has samples for "
                f"{self.num_exits} exits ({'empty: ' + str(empty) if empty else 'none empty'}) "
                f"but the victim has {num_exits} exits; every exit needs recorded latencies "
                "- calibrate again with samples_per_exit >= 1")

    def quantiles(self, q: tuple[float, ...] = (0.05, 0.5, 0.95)) -> list[list[float]]:
        """Per-exit latency quantiles (seconds)."""
        return [np.quantile(np.asarray(s), q).tolist() if s else [math.nan] * len(q)
                for s in self.samples]


def now_utc() -> str:
    """ISO-8601 UTC timestamp for ``created_at``."""
    return datetime.now(UTC).isoformat(timespec="seconds")
