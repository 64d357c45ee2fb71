"""Digits dataset source and the stratified split helper."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.protocol import DatasetSource
from victims.datasets import BUILTIN_DATASETS, DigitsDataset
from victims.datasets.splits import DEFAULT_FRACTIONS, stratified_splits

SPLITS = ("train", "val", "attacker", "test")


@pytest.fixture(scope="module")
def digits():
    return DigitsDataset().load(None)


def test_builtin_datasets_are_registered_sources():
    assert DigitsDataset in BUILTIN_DATASETS
    assert all(issubclass(cls, DatasetSource) and cls.name for cls in BUILTIN_DATASETS)
    assert DigitsDataset(split_seed=3).get_params() == {"split_seed": 3}


def test_digits_shapes_dtypes_and_range(digits):
    assert digits.name == "digits"
    assert digits.input_shape == (1, 8, 8)
    assert digits.num_classes == 10
    assert digits.input_range == (0.0, 1.0)
    total = 0
    for name in SPLITS:
        split = getattr(digits, name)
        assert split.x.dtype == np.float32 and split.y.dtype == np.int64
        assert split.x.shape[1:] == (1, 8, 8)
        assert split.x.min() >= 0.0 and split.x.max() <= 1.0
        assert set(np.unique(split.y)) == set(range(10))
        total += len(split)
    assert total == 1797


def test_digits_split_sizes_and_stratification(digits):
    all_y = np.concatenate([getattr(digits, s).y for s in SPLITS])
    class_counts = np.bincount(all_y)
    for name, frac in zip(SPLITS, DEFAULT_FRACTIONS, strict=True):
        split = getattr(digits, name)
        assert abs(len(split) - frac * 1797) <= 1
        assert np.all(np.abs(np.bincount(split.y, minlength=10) - frac * class_counts) <= 2)


def test_digits_splits_are_disjoint(digits):
    rows = [(*x.ravel().tolist(), int(y)) for s in SPLITS
            for x, y in zip(getattr(digits, s).x, getattr(digits, s).y, strict=True)]
    # digits holds a few exact duplicate images; compare multisets against the source
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    source = [(*img.ravel().tolist(), int(t)) for img, t in zip(images, bunch.target, strict=True)]
    assert sorted(rows) == sorted(source)


def test_digits_deterministic_per_seed(digits):
    again = DigitsDataset(split_seed=0).load(None)
    other = DigitsDataset(split_seed=1).load(None)
    for name in SPLITS:
        assert np.array_equal(getattr(digits, name).x, getattr(again, name).x)
        assert np.array_equal(getattr(digits, name).y, getattr(again, name).y)
    assert not np.array_equal(digits.test.y, other.test.y)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 60), min_size=1, max_size=8),
    weights=st.lists(st.integers(1, 10), min_size=2, max_size=5),
    seed=st.integers(0, 2**32 - 1),
)
def test_stratified_splits_invariants(counts, weights, seed):
    y = np.repeat(np.arange(len(counts)), counts)
    n = len(y)
    fractions = np.asarray(weights, dtype=float) / sum(weights)
    sizes = np.diff(np.concatenate([[0], np.rint(np.cumsum(fractions) * n)]))
    if np.any(sizes <= 0):
        with pytest.raises(ValueError, match="too few"):
            stratified_splits(y, y, fractions, np.random.default_rng(seed))
        return
    parts = stratified_splits(y, y, fractions, np.random.default_rng(seed))
    again = stratified_splits(y, y, fractions, np.random.default_rng(seed))
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    joined = np.concatenate(parts)
    assert np.array_equal(np.sort(joined), np.arange(n))  # disjoint and covering
    assert [len(p) for p in parts] == sizes.astype(int).tolist()
    k = len(counts)
    for c, n_c in enumerate(counts):
        bound = 2 * (1 + n_c * (k + 0.5) / n)
        for frac, part in zip(fractions, parts, strict=True):
            assert abs(np.sum(y[part] == c) - frac * n_c) <= bound


@pytest.mark.parametrize("fractions", [(0.5, 0.6), (0.5, -0.1, 0.6), (), (1.0, float("nan"))])
def test_stratified_splits_rejects_bad_fractions(fractions):
    y = np.arange(20) % 2
    with pytest.raises(ValueError, match="fractions"):
        stratified_splits(y, y, fractions, np.random.default_rng(0))


def test_stratified_splits_rejects_length_mismatch():
    with pytest.raises(ValueError, match="samples"):
        stratified_splits(np.zeros(3), np.zeros(4), (0.5, 0.5), np.random.default_rng(0))
