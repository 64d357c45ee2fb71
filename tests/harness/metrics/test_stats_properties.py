"""Properties of the summary statistics the leaderboard and the replica agreement share."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.metrics.stats import bootstrap_ci, mean_ci, paired_difference

VALUES = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@given(st.lists(st.one_of(VALUES, st.none(), st.just(math.nan), st.just(math.inf)),
                max_size=12))
def test_mean_ci_summarises_the_finite_values(values):
    finite = [v for v in values if v is not None and math.isfinite(v)]
    out = mean_ci(values)
    assert out["n"] == len(finite)
    if not finite:
        assert out["mean"] is None and out["ci95"] == [None, None]
        return
    assert min(finite) - 1e-6 <= out["mean"] <= max(finite) + 1e-6
    if len(finite) == 1:
        assert out["ci95"] == [None, None]
    else:
        lo, hi = out["ci95"]
        assert lo <= out["mean"] + 1e-9 and out["mean"] <= hi + 1e-9


@given(st.lists(VALUES, min_size=2, max_size=10), st.randoms(use_true_random=False))
def test_mean_ci_does_not_depend_on_the_order(values, random):
    shuffled = list(values)
    random.shuffle(shuffled)
    a, b = mean_ci(values), mean_ci(shuffled)
    assert a["mean"] == pytest.approx(b["mean"], rel=1e-9, abs=1e-6)
    assert a["ci95"] == pytest.approx(b["ci95"], rel=1e-9, abs=1e-6)


@given(VALUES, st.integers(2, 8))
def test_identical_values_have_a_zero_width_interval(value, n):
    lo, hi = mean_ci([value] * n)["ci95"]
    assert lo == pytest.approx(value) and hi == pytest.approx(value)


@given(st.dictionaries(st.integers(0, 9), st.one_of(VALUES, st.none()), max_size=8),
       st.dictionaries(st.integers(0, 9), st.one_of(VALUES, st.none()), max_size=8))
def test_paired_differences_use_shared_seeds_and_are_antisymmetric(a, b):
    ab, ba = paired_difference(a, b), paired_difference(b, a)
    shared = sorted(s for s in set(a) & set(b) if a[s] is not None and b[s] is not None)
    assert ab["seeds"] == ba["seeds"] == shared
    if not shared:
        assert ab["mean"] is None
        return
    assert ab["mean"] == pytest.approx(-ba["mean"], abs=1e-6)
    if len(shared) > 1:
        assert ab["ci95"][0] == pytest.approx(-ba["ci95"][1], abs=1e-6)


@st.composite
def confusion_tables(draw: st.DrawFn) -> dict[str, list[list[int]]]:
    k = draw(st.integers(2, 4))
    counts = np.array(draw(st.lists(st.integers(0, 30), min_size=k * k, max_size=k * k)))
    counts[0] += 1  # at least one test sample
    agree = np.array([draw(st.integers(0, int(c))) for c in counts])
    return {"counts": counts.reshape(k, k).tolist(), "label_agree": agree.reshape(k, k).tolist()}


@settings(max_examples=60, deadline=None)
@given(st.lists(confusion_tables(), min_size=1, max_size=3), st.integers(0, 2**32 - 1))
def test_bootstrap_intervals_are_rates_and_reproducible(tables, seed):
    a = bootstrap_ci(tables, np.random.default_rng(seed), resamples=200)
    b = bootstrap_ci(tables, np.random.default_rng(seed), resamples=200)
    assert a == b
    for metric in ("exit_agreement", "fidelity"):
        lo, hi = a[metric]
        assert 0.0 <= lo <= hi <= 1.0


def test_a_perfect_copy_has_the_interval_one_one():
    table = {"counts": [[5, 0], [0, 7]], "label_agree": [[5, 0], [0, 7]]}
    out = bootstrap_ci([table], np.random.default_rng(0), resamples=100)
    assert out == {"exit_agreement": [1.0, 1.0], "fidelity": [1.0, 1.0]}
    assert bootstrap_ci([], np.random.default_rng(0)) == {"exit_agreement": None,
                                                           "fidelity": None}
