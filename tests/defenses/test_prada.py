"""PRADA: per-client distance streams, Shapiro-Wilk flagging, refusals, reset and report."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from defenses.prada import Prada, _nearest, normality
from harness.errors import ConfigError
from tests.defenses.batches import query_batch


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """scikit-learn's digits scaled as the project's ``digits`` dataset, (n, 1, 8, 8)."""
    from sklearn.datasets import load_digits

    return (load_digits().images.astype(np.float32) / 16.0)[:, None]


def synthetic(digits: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """JBDA-like queries: a few natural seeds and sign steps of 0.1 away from them."""
    rng = np.random.default_rng(seed)
    found = digits[rng.choice(len(digits), 5, replace=False)]
    while len(found) < n:
        found = np.concatenate([found, np.clip(
            found + 0.1 * np.sign(rng.standard_normal(found.shape)), 0, 1)])
    return found[:n].astype(np.float32)


def send(defense: Prada, x: np.ndarray, client_id: str, seed: int = 0) -> np.ndarray:
    """Send ``x`` in chunks of 1-16 (as the benign clients do); the admission mask."""
    rng = np.random.default_rng(seed)
    masks, i = [], 0
    while i < len(x):
        size = int(rng.integers(1, 17))
        masks.append(defense.admit(query_batch(x[i:i + size], client_id)))
        i += size
    return np.concatenate(masks)


def fresh(**params) -> Prada:
    defense = Prada(**params)
    defense.reset()
    return defense


def test_natural_digits_are_never_refused(digits):
    defense = fresh()
    x = digits[np.random.default_rng(1).permutation(len(digits))[:120]]
    assert send(defense, x, "benign").all()
    assert defense.report() == {"clients_seen": 1, "flagged_clients": 0, "refused_queries": 0}


def test_synthetic_stream_is_flagged_then_refused(digits):
    defense = fresh(min_queries=30)
    admitted = send(defense, synthetic(digits, 200), "attacker")
    first_refused = int(np.argmin(admitted))
    assert 30 <= first_refused < 200  # the first test runs on query 31 (30 distances)
    assert not admitted[first_refused:].any()
    later = defense.admit(query_batch(digits[:5], "attacker"))  # natural, but flagged
    assert not later.any()
    assert defense.report() == {"clients_seen": 1, "flagged_clients": 1,
                                "refused_queries": 200 - first_refused + 5}


def test_one_batch_is_processed_query_by_query(digits):
    defense = fresh(min_queries=30)
    admitted = defense.admit(query_batch(synthetic(digits, 100), "attacker"))
    assert admitted[:30].all() and not admitted[-1]
    assert np.all(np.diff(admitted.astype(int)) <= 0)  # a prefix is answered, the rest refused


def test_a_repeated_input_counts_as_not_normal(digits):
    defense = fresh(min_queries=10)
    assert not defense.admit(query_batch(np.repeat(digits[:1], 20, axis=0), "r"))[-1]
    assert normality(np.zeros(10)) == 0.0


def test_clients_are_isolated(digits):
    defense = fresh()
    natural = digits[np.random.default_rng(2).permutation(len(digits))[:100]]
    attack = synthetic(digits, 100)
    benign = []
    for i in range(0, 100, 10):
        defense.admit(query_batch(attack[i:i + 10], "attacker"))
        benign.append(defense.admit(query_batch(natural[i:i + 10], "benign")))
    assert np.concatenate(benign).all()
    report = defense.report()
    assert report["clients_seen"] == 2 and report["flagged_clients"] == 1


def test_reset_forgets_every_client(digits):
    defense = fresh()
    send(defense, synthetic(digits, 100), "attacker")
    assert defense.report()["flagged_clients"] == 1
    defense.reset()
    assert defense.report() == {"clients_seen": 0, "flagged_clients": 0, "refused_queries": 0}
    assert defense.admit(query_batch(digits[:20], "attacker")).all()


def test_check_every_tests_only_at_its_checkpoints(digits):
    natural = digits[np.random.default_rng(3).permutation(len(digits))[:40]]
    x = np.concatenate([natural, np.repeat(digits[:1], 60, axis=0)])  # then one input, repeated
    every = fresh(min_queries=30).admit(query_batch(x, "c"))
    sparse = fresh(min_queries=30, check_every=25).admit(query_batch(x, "c"))
    assert 40 <= int(np.argmin(every)) < 55
    assert int(np.argmin(sparse)) == 55  # the query giving distance 55, the next checkpoint


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.just(3)),
                  elements=st.integers(0, 3).map(float)),
       hnp.arrays(np.float64, st.tuples(st.integers(0, 6), st.just(3)),
                  elements=st.integers(0, 3).map(float)))
def test_nearest_finds_the_closest_earlier_query(x, stored):
    nearest = _nearest(x, stored)
    earlier = [np.concatenate([stored, x[:i]]) for i in range(len(x))]
    for i, cands in enumerate(earlier):
        if not len(cands):
            assert nearest[i] == -1
            continue
        found = cands[nearest[i]]
        assert np.isclose(np.linalg.norm(x[i] - found),
                          np.linalg.norm(cands - x[i], axis=1).min())


def test_the_history_keeps_the_latest_queries(digits):
    defense = fresh(min_queries=3, max_history=4, delta=0.01)
    x = digits[:10].reshape(10, -1).astype(np.float64)
    defense.admit(query_batch(digits[:3], "c"))
    defense.admit(query_batch(digits[3:10], "c"))  # more than fits: the last 4 stay
    client = defense._clients["c"]
    assert sorted(map(tuple, client.stored())) == sorted(map(tuple, x[6:]))
    assert client.measured == 9


def test_max_history_below_min_queries_is_refused():
    with pytest.raises(ConfigError, match=r"prada.*max_history"):
        Prada(min_queries=30, max_history=10).validate()
