"""Built-in dataset sources (add one import and one tuple entry per source)."""

from __future__ import annotations

from harness.protocol import DatasetSource
from victims.datasets.digits import DigitsDataset
from victims.datasets.torchvision_sets import TORCHVISION_DATASETS

BUILTIN_DATASETS: tuple[type[DatasetSource], ...] = (DigitsDataset, *TORCHVISION_DATASETS)

__all__ = ["BUILTIN_DATASETS", "DigitsDataset"]
