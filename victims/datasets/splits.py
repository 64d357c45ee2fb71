"""Deterministic, disjoint, stratified splits shared by the dataset sources.

:func:`stratified_splits` uses *systematic stratified sampling*: inside each class the
samples are shuffled and spread evenly over ``[0, 1)``; all samples are then ordered by
that position and cut at the cumulative fractions. Every split therefore gets its exact
total size (up to rounding) and, per class, within a couple of samples of its share.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.protocol import DatasetSplits, Split

DEFAULT_FRACTIONS: tuple[float, float, float, float] = (0.4, 0.1, 0.3, 0.2)
"""Victim train, victim validation, attacker pool, test."""


def stratified_splits(x: np.ndarray, y: np.ndarray, fractions: Sequence[float],
                      rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Index arrays of disjoint stratified splits covering all ``len(y)`` samples.

    ``x`` is only checked for length (the split depends on the labels alone). Each
    returned array is in random order, so a prefix of a split is a random subset.
    Raises :class:`ValueError` for bad fractions or when a split would be empty.
    """
    y = np.asarray(y)
    n = len(y)
    if len(x) != n:
        raise ValueError(f"x has {len(x)} samples but y has {n}")
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or len(fr) == 0 or not np.all(np.isfinite(fr)) or np.any(fr <= 0):
        raise ValueError(f"split fractions must be positive finite numbers, got {list(fractions)}")
    if not np.isclose(fr.sum(), 1.0, atol=1e-6):
        raise ValueError(f"split fractions must sum to 1, got {fr.sum():.6g}")
    cuts = np.rint(np.cumsum(fr) * n).astype(np.int64)
    cuts[-1] = n
    sizes = np.diff(np.concatenate([[0], cuts]))
    if np.any(sizes <= 0):
        raise ValueError(f"{n} samples are too few for split fractions {list(fractions)}")
    position = np.empty(n, dtype=np.float64)
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        order = rng.permutation(len(members))
        offset = rng.random()
        position[members[order]] = (np.arange(len(members)) + offset) / len(members)
    tie_break = rng.random(n)
    ranked = np.lexsort((tie_break, position))
    parts = np.split(ranked, cuts[:-1])
    return tuple(rng.permutation(part) for part in parts)


def build_dataset_splits(name: str, x: np.ndarray, y: np.ndarray, *, num_classes: int,
                         input_range: tuple[float, float], rng: np.random.Generator,
                         fractions: Sequence[float] = DEFAULT_FRACTIONS) -> DatasetSplits:
    """Split ``(x, y)`` into train/val/attacker/test (in this order of ``fractions``)."""
    if len(fractions) != 4:
        raise ValueError("need four fractions: train, val, attacker, test")
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.ascontiguousarray(y, dtype=np.int64)
    parts = stratified_splits(x, y, fractions, rng)
    train, val, attacker, test = (Split(x[idx], y[idx]) for idx in parts)
    return DatasetSplits(
        name=name,
        input_shape=tuple(int(s) for s in x.shape[1:]),
        num_classes=int(num_classes),
        input_range=(float(input_range[0]), float(input_range[1])),
        train=train,
        val=val,
        attacker=attacker,
        test=test,
    )
