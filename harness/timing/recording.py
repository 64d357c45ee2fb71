"""Latency-profile recording (``harness calibrate``): per-exit latencies of a served victim.

Every exit is measured on real test inputs, each forced to answer at that exit. The
requests of all exits are interleaved in one seeded random order, so slow periods of
the machine (other processes, frequency changes) hit every exit alike instead of
biasing whichever exit was measured then. The victim's strategy is evaluated on the
way, as in normal serving, so the profile includes its cost.
"""

from __future__ import annotations

import numpy as np

from harness.errors import ConfigError
from harness.io.provenance import machine_info
from harness.protocol import ServedModel, TrainedVictim
from harness.timing.profiles import LatencyProfile, now_utc


def calibration_schedule(num_inputs: int, num_exits: int, samples_per_exit: int,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(input index, forced exit) per request, interleaved in random order."""
    exits = np.repeat(np.arange(num_exits, dtype=np.int64), samples_per_exit)
    total = len(exits)
    if num_inputs >= total:
        inputs = rng.permutation(num_inputs)[:total]
    else:
        inputs = rng.integers(0, num_inputs, size=total)
    order = rng.permutation(total)
    return inputs[order], exits[order]


def record_profile(served: ServedModel, victim: TrainedVictim, samples_per_exit: int = 200,
              repeats: int = 1, seed: int = 0, backend: str | None = None,
              device: str | None = None) -> LatencyProfile:
    """Serve ``samples_per_exit`` test inputs forced to each exit; return the profile.

    ``backend``/``device`` default to the served model's ``backend``/``device``
    attributes (the built-in backends set both).
    """
    if not isinstance(samples_per_exit, int) or samples_per_exit < 1:
        raise ConfigError(f"calibrate: samples_per_exit={samples_per_exit!r} must be an "
                          "integer >= 1 (latencies recorded per exit)")
    pool = np.asarray(victim.data.test.x)
    if len(pool) == 0:
        raise ConfigError(f"calibrate: victim {victim.name!r} has an empty test split; "
                          "calibration serves real test inputs, so give a dataset with test data")
    if served.num_exits != victim.model.num_exits:
        raise ConfigError(f"calibrate: the served model has {served.num_exits} exits but victim "
                          f"{victim.name!r} has {victim.model.num_exits}; load this victim")
    rng = np.random.default_rng([seed, 0xCA11])
    idx, exits = calibration_schedule(len(pool), served.num_exits, samples_per_exit, rng)
    trace = served.serve(pool[idx], strategy=victim.strategy, exits=exits, repeats=repeats)
    if not np.array_equal(trace.exits, exits):
        raise ConfigError("calibrate: the served model did not answer at the forced exits; "
                          "its serve() ignores `exits`, so it cannot be calibrated")
    samples = tuple(tuple(trace.latency_s[exits == k].tolist()) for k in range(served.num_exits))
    device = device or str(getattr(served, "device", "unknown"))
    return LatencyProfile(
        victim=victim.name, weights_hash=victim.weights_hash,
        backend=backend or str(getattr(served, "backend", type(served).__name__)),
        device=device, samples=samples, machine=machine_info(device),
        created_at=now_utc(), repeats=repeats)
