"""What ``leaderboard verify`` found, cell by cell: the frozen report types and their text.

:class:`VerifyReport` keeps apart the cells that reproduced (:class:`Verified`, exactly
or within tolerance), every field that did not (:class:`Mismatch`), the cells whose
config hash changed (:class:`Stale`, counted apart: code, versions or protocol moved)
and those that could not be re-run here (:class:`Unverifiable`, with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MISSING = "<missing>"
"""How a report shows a field present on one side only."""


@dataclass(frozen=True)
class Mismatch:
    """One field of one cell that the re-run did not reproduce."""

    path: Path
    config_hash: str
    field: str
    expected: Any
    got: Any
    tolerance: str

    def __str__(self) -> str:
        return (f"{self.path}: {self.field}: committed {self.expected!r}, re-run {self.got!r} "
                f"(tolerance {self.tolerance}; cell {self.config_hash[:12]})")


@dataclass(frozen=True)
class Verified:
    """A cell whose re-run reproduced it; ``regime`` says how closely it had to."""

    path: Path
    config_hash: str
    regime: str
    why: str
    seconds: float


@dataclass(frozen=True)
class Stale:
    """A cell whose config hash no longer matches today's code, versions or protocol.

    ``rerun``: whether it was re-run anyway (``rerun_stale=True``); ``mismatches`` then
    holds what differed (empty: it still reproduces).
    """

    path: Path
    stored_hash: str
    current_hash: str
    why: str = ""
    rerun: bool = False
    mismatches: tuple[Mismatch, ...] = ()


@dataclass(frozen=True)
class Unverifiable:
    """A cell that cannot be re-run here, and why (``failed``: recorded as failed, so it
    carries no number to contradict)."""

    path: Path
    reason: str
    failed: bool = False


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of one verification. ``ok``: no mismatch and nothing stale."""

    verified: tuple[Verified, ...]
    mismatches: tuple[Mismatch, ...]
    stale: tuple[Stale, ...]
    cannot_verify: tuple[Unverifiable, ...]
    wall_s: float
    ok_cells: int
    """The ok cells found (before sampling)."""
    sampled: int
    """The ok cells chosen for verification."""
    rerun_seconds: tuple[float, ...] = field(default=())
    """The wall time of every re-run (verified, mismatching and re-run stale cells)."""
    signing_keys: tuple[str, ...] = field(default=())
    """Fingerprints of the keys the cells' signatures were checked against."""

    @property
    def ok(self) -> bool:
        """No mismatch, nothing stale, and every cell with numbers verified: a cell that
        cannot be re-run here (unknown component, missing profile, unloadable, another
        secret) could be a forgery, so it fails the check (recorded failures do not)."""
        return (not self.mismatches and not self.stale
                and all(u.failed for u in self.cannot_verify))

    @property
    def mismatched_cells(self) -> tuple[Path, ...]:
        return tuple(dict.fromkeys(m.path for m in self.mismatches))

    def format_report(self) -> str:
        """Text naming every mismatch with its cell and field, then stale and unverifiable."""
        exact = sum(v.regime == "exact" for v in self.verified)
        per_cell = (f"; {np.median(self.rerun_seconds):.1f} s median per re-run cell"
                    if self.rerun_seconds else "")
        lines = [f"verify: {self.sampled} of {self.ok_cells} ok cells checked in "
                 f"{self.wall_s:.1f} s{per_cell}",
                 f"  verified: {len(self.verified)} ({exact} exact, "
                 f"{len(self.verified) - exact} within tolerance)",
                 f"  mismatching: {len(self.mismatched_cells)} cells, "
                 f"{len(self.mismatches)} fields",
                 f"  stale (code, versions or protocol changed; counted apart): {len(self.stale)}",
                 f"  cannot verify: {len(self.cannot_verify)}"]
        if self.signing_keys:
            lines.append(f"  signatures checked against key {', '.join(self.signing_keys)} "
                         "(compare with the fingerprints published with the board)")
        if self.mismatches:
            lines.append("mismatches:")
            lines += [f"  {m}" for m in self.mismatches]
        if self.stale:
            lines.append("stale cells (config hash differs from the committed one):")
            for s in self.stale:
                tail = ("" if not s.rerun else
                        "; re-run: reproduces" if not s.mismatches else
                        f"; re-run: {len(s.mismatches)} fields differ")
                lines.append(f"  {s.path}: committed {s.stored_hash[:12]}, now "
                             f"{s.current_hash[:12]}{tail}")
                if s.why:
                    lines.append(f"    changed: {s.why}")
                lines += [f"    {m.field}: committed {m.expected!r}, re-run {m.got!r} "
                          f"(tolerance {m.tolerance})" for m in s.mismatches]
        if self.cannot_verify:
            lines.append("cannot verify:")
            lines += [f"  {u.path}: {u.reason}" for u in self.cannot_verify]
        if not self.ok:
            lines.append("verify: FAILED")
        else:
            lines.append("verify: OK" if self.verified else
                         "verify: OK, but no cell was re-run (nothing contradicted, nothing shown)")
        return "\n".join(lines)
