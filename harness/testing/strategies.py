"""Hypothesis strategies for property tests of plugins (and of the conformance checks).

* :func:`query_batches` - float32 batches inside a dataset's input range, edges included;
* :func:`probability_vectors` - rows on the simplex: random, one-hot, tied top classes,
  near-uniform;
* :func:`exit_mixes` - exit indices whose mix includes empty and rare exits;
* :func:`latency_traces` - heavy-tailed per-exit latencies with their known exits;
* :func:`output_strategies` - valid :class:`~harness.strategy.OutputStrategy` of a policy.

Example::

    from hypothesis import given
    from harness.testing.strategies import query_batches

    @given(query_batches((1, 8, 8)))
    def test_my_monitor_admits_a_mask(x): ...
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from harness.strategy import ExitPolicy, OutputStrategy

SEEDS = st.integers(0, 2**32 - 1)


def query_batches(input_shape: tuple[int, ...], input_range: tuple[float, float] = (0.0, 1.0),
                  min_size: int = 1, max_size: int = 16) -> st.SearchStrategy[np.ndarray]:
    """Batches ``(n, *input_shape)`` of float32 values in ``input_range`` (edges included)."""
    lo, hi = (float(v) for v in input_range)
    values = st.one_of(st.sampled_from([lo, hi, (lo + hi) / 2]),
                       st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=32))
    return st.integers(min_size, max_size).flatmap(
        lambda n: hnp.arrays(np.float32, (n, *input_shape), elements=values))


ROW_KINDS = ("random", "one_hot", "tie", "near_uniform")


def _row(kind: str, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "one_hot":
        return np.eye(num_classes)[rng.integers(num_classes)]
    if kind == "tie":
        top = rng.choice(num_classes, size=2, replace=False)
        row = np.full(num_classes, 0.0)
        row[top] = 0.5 if num_classes == 2 else 0.4
        row[row == 0] = (1 - row.sum()) / max(num_classes - 2, 1)
        return row / row.sum()
    if kind == "near_uniform":
        row = 1.0 + 1e-6 * rng.standard_normal(num_classes)
        return row / row.sum()
    return rng.dirichlet(np.full(num_classes, 0.3))


@st.composite
def probability_vectors(draw, num_classes: int, min_rows: int = 1,
                        max_rows: int = 16) -> np.ndarray:
    """Float64 rows ``(n, num_classes)`` on the simplex, mixing the :data:`ROW_KINDS`."""
    kinds = draw(st.lists(st.sampled_from(ROW_KINDS), min_size=min_rows, max_size=max_rows))
    rng = np.random.default_rng(draw(SEEDS))
    return np.stack([_row(k, num_classes, rng) for k in kinds]).astype(np.float64)


@st.composite
def _weights(draw, num_exits: int) -> np.ndarray:
    kinds = draw(st.lists(st.sampled_from(("empty", "rare", "common")), min_size=num_exits,
                          max_size=num_exits))
    if all(k == "empty" for k in kinds):
        kinds[draw(st.integers(0, num_exits - 1))] = "common"
    share = {"empty": 0.0, "rare": draw(st.floats(0.005, 0.02)), "common": 1.0}
    w = np.array([share[k] * (draw(st.floats(0.5, 2.0)) if k == "common" else 1.0)
                  for k in kinds])
    common = w[np.array(kinds) == "common"].sum()
    rare = w[np.array(kinds) == "rare"].sum()
    if common > 0:  # rare exits keep their absolute share
        w[np.array(kinds) == "common"] *= (1 - rare) / common
    return w / w.sum()


@st.composite
def exit_mixes(draw, num_exits: int, min_size: int = 1, max_size: int = 200) -> np.ndarray:
    """int64 exits in ``0..num_exits-1``; some exits may be empty or take 0.5-2%."""
    n = draw(st.integers(min_size, max_size))
    rng = np.random.default_rng(draw(SEEDS))
    return rng.choice(num_exits, size=n, p=draw(_weights(num_exits))).astype(np.int64)


@st.composite
def latency_traces(draw, num_exits: int | None = None, min_size: int = 50,
                   max_size: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """``(latency_s, exits)``: per exit a log-normal bulk and a sparse Pareto tail.

    Exit ``k`` costs ``base + step * (k + 1)`` (microseconds); jitter sigma 1-15%;
    0-5% of queries slowed 1.5-10x (scheduler hiccups).
    """
    k = num_exits or draw(st.integers(2, 8))
    exits = draw(exit_mixes(k, min_size, max_size))
    rng = np.random.default_rng(draw(SEEDS))
    base = draw(st.floats(20e-6, 200e-6))
    step = draw(st.floats(20e-6, 300e-6))
    sigma = draw(st.floats(0.01, 0.15))
    tail = draw(st.floats(0.0, 0.05))
    clean = base + step * (exits + 1)
    slow = rng.random(len(exits)) < tail
    factor = np.where(slow, np.minimum(1.5 + rng.pareto(1.5, len(exits)), 10.0), 1.0)
    return clean * np.exp(sigma * rng.standard_normal(len(exits))) * factor, exits


@st.composite
def output_strategies(draw, policy: ExitPolicy, num_exits: int,
                      num_classes: int) -> OutputStrategy:
    """A strategy of ``policy`` with thresholds anywhere in its range (edges included)."""
    lo, hi = policy.threshold_range(num_classes)
    values = st.one_of(st.sampled_from([lo, hi]),
                       st.floats(lo, hi, allow_nan=False, allow_infinity=False))
    thresholds = draw(st.lists(values, min_size=num_exits - 1, max_size=num_exits - 1))
    return OutputStrategy(policy, tuple(thresholds))
