"""How closely a re-run cell must reproduce its committed metrics (``leaderboard verify``).

Three regimes, chosen per cell by :func:`regime_of`:

``exact``
    Every metric must be equal (``==``; ``None == None``). Applies when the timing is
    ``analytic``, ``replay`` **or** ``realistic``, the cell ran on CPU and runs on CPU
    here, the transport is ``inproc``, and the machine class matches (the result's
    ``machine.processor`` and ``machine.cpu_count`` equal :func:`machine_info`'s here).
    ``realistic`` belongs here: its latencies are drawn from seeded streams like
    ``analytic``'s, training is seeded and single-threaded, so a same-machine re-run is
    bit-identical (``tests/core/test_verify.py`` re-runs trained ``realistic`` and
    ``analytic`` cells and demands ``==``).
``cross_machine``
    Modelled timing (``analytic``/``replay``/``realistic``) on another processor or
    core count, or on a GPU. The timing itself is machine-independent, but CPU (and
    GPU) training is not bit-reproducible across processors: float reductions run in
    another order, a few test inputs cross a threshold, and so on. Tolerances, with
    ``allowed = max(abs, rel * max(|expected|, |got|))``:

    - rates in [0, 1] (``exit_agreement``, ``fidelity``, ``accuracy``,
      ``exit_estimation_accuracy``, ``bayes_exit_accuracy``, ``benign_accuracy_drop``,
      ``speedup_retained``, ...) and ``exit_kappa``: 0.05 absolute (about 18 of the 359
      digits test inputs);
    - ``leakage_bits*``: 0.1 bits absolute;
    - cost and latency ratios (``cost_ratio``, ``compute_overhead``,
      ``latency_overhead_p50/p99``): 10% relative, at least 0.02 absolute (overheads
      of an undefended cell are 0);
    - ``efficiency_gap`` and ``final_exit_efficiency_gap`` (``|cost_ratio - 1|``):
      0.1 absolute, what 10% of a cost ratio near 1 allows;
    - ``queries_used``, ``queries_refused``: exact (budgets are spent deterministically);
    - any other metric (a plugin's own): 0.05 absolute or 10% relative.
``live``
    ``timing=live`` or ``transport=http``: the attack sees latencies measured on this
    machine, under its load, so everything the side channel feeds moves. Rates 0.15
    absolute (``victim_accuracy``, which no latency touches, 0.05), ``leakage_bits*``
    0.3 bits, latency metrics (``latency_overhead_*``, ``speedup_retained``) 50%
    relative (at least 0.05), cost ratios 20% relative (at least 0.05), efficiency gaps
    0.2, query counts 5% relative, other metrics 0.15 absolute or 50% relative. These
    are stated bounds for a quiet machine, not calibrated against many live re-runs;
    a loaded machine can exceed them, and verify then says so cell by cell.
``fresh_secret`` (and ``fresh_secret_live`` with live timing)
    The cell ran under a secret verify does not hold (another folder's
    ``.harness-secret``, a named secret it was not given), so it is re-run under a fresh
    random secret: another victim draw (training seed, split), other server streams.
    The tolerances are measured, not chosen: ``benchmarks/fresh_secret_spread.py`` ran
    the ``make run`` grid (digits victim; ``exit_steal`` and ``knockoff``; ``none``,
    ``pad_constant``, ``exit_noise``, ``rounding``; seed 0) under 5 secrets, and each
    tolerance is the larger of 4.5 times the largest per-cell standard deviation and
    the largest difference seen (``FRESH_SECRET`` below; never tighter than
    ``cross_machine``, or than ``live`` for live cells). The victim itself changes, so
    they are wide where the victim's exit mix drives the metric: ``exit_agreement``
    0.60, ``cost_ratio`` 2.14, ``latency_overhead_p50`` 3.54; and tight where it does
    not: ``fidelity`` 0.06, ``accuracy`` 0.07. A fresh-secret verify therefore catches
    a forged fidelity or accuracy, and only gross forgeries of the exit metrics; a
    bit-exact check needs the secret. ``queries_used`` and ``queries_refused`` did not
    move in the measured grid (no defense there refuses); they get 5% relative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.io.provenance import machine_info

EXACT_TIMINGS = frozenset({"analytic", "replay", "realistic"})
"""Timing modes whose latencies are seeded draws (no measurement): exact on one machine."""

REGIMES = ("exact", "cross_machine", "live", "fresh_secret", "fresh_secret_live")


@dataclass(frozen=True)
class Tolerance:
    """``|expected - got| <= max(abs, rel * max(|expected|, |got|))``; both 0: exact."""

    abs: float = 0.0
    rel: float = 0.0

    @property
    def exact(self) -> bool:
        return self.abs == 0.0 and self.rel == 0.0

    def allows(self, expected: Any, got: Any) -> bool:
        """Whether ``got`` reproduces ``expected`` (``None`` only matches ``None``)."""
        if expected is None or got is None:
            return expected is None and got is None
        if self.exact:
            return bool(expected == got)
        a, b = float(expected), float(got)
        if not (math.isfinite(a) and math.isfinite(b)):
            return a == b
        return abs(a - b) <= max(self.abs, self.rel * max(abs(a), abs(b))) + 1e-12

    def __str__(self) -> str:
        if self.exact:
            return "exact"
        parts = ([f"abs {self.abs:g}"] if self.abs else []) + (
            [f"rel {self.rel:.0%}"] if self.rel else [])
        return " or ".join(parts)


EXACT = Tolerance()

_RATES = ("exit_agreement", "fidelity", "accuracy", "victim_accuracy",
          "exit_estimation_accuracy", "exit_distribution_tv", "exit_kappa",
          "final_exit_fidelity", "bayes_exit_accuracy", "bayes_exit_accuracy_intended",
          "chance_exit_accuracy", "chance_exit_accuracy_intended", "query_bayes_exit_accuracy",
          "benign_accuracy_drop", "benign_refusal_rate", "speedup_retained")
_BITS = ("leakage_bits", "leakage_bits_intended")
_COST_RATIOS = ("cost_ratio", "compute_overhead")
_LATENCY_RATIOS = ("latency_overhead_p50", "latency_overhead_p99")
_GAPS = ("efficiency_gap", "final_exit_efficiency_gap")
_COUNTS = ("queries_used", "queries_refused")


def _table(**groups: tuple[tuple[str, ...], Tolerance]) -> dict[str, Tolerance]:
    return {name: tol for names, tol in groups.values() for name in names}


CROSS_MACHINE: Mapping[str, Tolerance] = _table(
    rates=(_RATES, Tolerance(abs=0.05)), bits=(_BITS, Tolerance(abs=0.1)),
    costs=(_COST_RATIOS + _LATENCY_RATIOS, Tolerance(abs=0.02, rel=0.10)),
    gaps=(_GAPS, Tolerance(abs=0.1)), counts=(_COUNTS, EXACT))
CROSS_MACHINE_DEFAULT = Tolerance(abs=0.05, rel=0.10)

LIVE: Mapping[str, Tolerance] = _table(
    rates=(_RATES, Tolerance(abs=0.15)), victim=(("victim_accuracy",), Tolerance(abs=0.05)),
    bits=(_BITS, Tolerance(abs=0.3)),
    latency=((*_LATENCY_RATIOS, "speedup_retained"), Tolerance(abs=0.05, rel=0.5)),
    costs=(_COST_RATIOS, Tolerance(abs=0.05, rel=0.2)), gaps=(_GAPS, Tolerance(abs=0.2)),
    counts=(_COUNTS, Tolerance(rel=0.05)))
LIVE_DEFAULT = Tolerance(abs=0.15, rel=0.5)


FRESH_SECRET: Mapping[str, Tolerance] = {
    **{name: Tolerance(abs=value) for name, value in (
        ("accuracy", 0.07), ("victim_accuracy", 0.03), ("fidelity", 0.06),
        ("final_exit_fidelity", 0.10), ("benign_accuracy_drop", 0.01),
        ("benign_refusal_rate", 0.0), ("exit_agreement", 0.60),
        ("exit_distribution_tv", 0.60), ("exit_kappa", 0.21),
        ("exit_estimation_accuracy", 0.55), ("bayes_exit_accuracy", 0.33),
        ("bayes_exit_accuracy_intended", 0.33), ("chance_exit_accuracy", 0.33),
        ("chance_exit_accuracy_intended", 0.33), ("query_bayes_exit_accuracy", 0.40),
        ("speedup_retained", 0.63), ("leakage_bits", 0.31), ("leakage_bits_intended", 0.36),
        ("cost_ratio", 2.14), ("efficiency_gap", 1.13), ("final_exit_efficiency_gap", 0.54),
        ("compute_overhead", 0.06), ("latency_overhead_p50", 3.54),
        ("latency_overhead_p99", 1.35))},
    **{name: Tolerance(rel=0.05) for name in _COUNTS}}
"""Measured by ``benchmarks/fresh_secret_spread.py`` (module docstring)."""
FRESH_SECRET_DEFAULT = Tolerance(abs=0.6, rel=0.5)


def loosest(a: Tolerance, b: Tolerance) -> Tolerance:
    """What allows whatever either allows (an exact one gives way to the other)."""
    return Tolerance(abs=max(a.abs, b.abs), rel=max(a.rel, b.rel))


def with_fresh_secret(regime: str) -> str:
    """The regime of a cell re-run under a fresh secret instead of its own."""
    return "fresh_secret_live" if regime == "live" else "fresh_secret"


def tolerance_for(metric: str, regime: str) -> Tolerance:
    """The tolerance of ``metric`` in ``regime`` (one of :data:`REGIMES`)."""
    if regime in ("fresh_secret", "fresh_secret_live"):
        other = tolerance_for(metric, "live" if regime == "fresh_secret_live" else
                              "cross_machine")
        return loosest(FRESH_SECRET.get(metric, FRESH_SECRET_DEFAULT), other)
    if regime == "exact":
        return EXACT
    if regime == "cross_machine":
        return CROSS_MACHINE.get(metric, CROSS_MACHINE_DEFAULT)
    if regime == "live":
        return LIVE.get(metric, LIVE_DEFAULT)
    raise ValueError(f"unknown verification regime {regime!r}; one of {', '.join(REGIMES)}")


@dataclass(frozen=True)
class MachineClass:
    """What makes CPU training bit-reproducible between two machines: processor and cores."""

    processor: str
    cpu_count: int

    @classmethod
    def here(cls) -> MachineClass:
        info = machine_info("cpu")
        return cls(info.processor, info.cpu_count)

    @classmethod
    def of_result(cls, result: Mapping[str, Any]) -> MachineClass | None:
        machine = result.get("machine") or {}
        try:
            return cls(str(machine["processor"]), int(machine["cpu_count"]))
        except (KeyError, TypeError, ValueError):
            return None

    def __str__(self) -> str:
        return f"{self.processor} x{self.cpu_count}"


def regime_of(timing: str, transport: str, stored_device: str, device_here: str,
              stored_machine: MachineClass | None, here: MachineClass) -> tuple[str, str]:
    """(regime, why) for a cell; see the module docstring."""
    if timing not in EXACT_TIMINGS or transport == "http":
        what = f"timing={timing}" if timing not in EXACT_TIMINGS else "transport=http"
        return "live", f"{what}: the attack sees measured latencies"
    if stored_device != "cpu" or device_here != "cpu":
        return "cross_machine", (f"device {stored_device} then, {device_here} now: GPU "
                                 "training is not bit-reproducible")
    if stored_machine != here:
        return "cross_machine", (f"ran on {stored_machine or 'an unrecorded machine'}, "
                                 f"re-run on {here}")
    return "exact", f"timing={timing} on the same machine class ({here})"
