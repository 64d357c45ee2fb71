"""The embedded default dataset: scikit-learn's 8x8 handwritten digits (no download)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.params import Interval
from harness.protocol import DatasetSource, DatasetSplits
from victims.datasets.splits import build_dataset_splits


class DigitsDataset(DatasetSource):
    """scikit-learn ``load_digits``: 1,797 images, inputs (n, 1, 8, 8) in [0, 1], 10 classes.

    Splits are stratified 40% victim train / 10% victim validation / 30% attacker
    pool / 20% test, fixed by ``split_seed``.
    """

    name = "digits"
    num_classes: ClassVar[int] = 10
    input_shape: ClassVar[tuple[int, ...]] = (1, 8, 8)
    input_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "split_seed": [Interval("int", 0, 2**32 - 1)]}

    def __init__(self, split_seed: int = 0) -> None:
        self.split_seed = split_seed

    def load(self, data_root: Path | None = None) -> DatasetSplits:
        """Load and split; ``data_root`` is ignored (the data ship with scikit-learn)."""
        from sklearn.datasets import load_digits

        self.validate()
        bunch = load_digits()
        x = (np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None, :, :]
        y = np.asarray(bunch.target, dtype=np.int64)
        rng = np.random.default_rng(self.split_seed)
        return build_dataset_splits(self.name, x, y, num_classes=self.num_classes,
                                    input_range=self.input_range, rng=rng)
