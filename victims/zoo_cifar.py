"""CIFAR-10/100 and SVHN victims on SDN's four CIFAR architectures.

Each registered victim is ``<dataset>_<architecture>`` (e.g. ``cifar10_resnet56``): the
multi-exit network of :mod:`victims.architectures.cifar` with SDN's default seven exits,
input normalisation by the training split's per-channel mean/std, SDN-weighted training
and the same threshold calibration as the digits victims. They run only when their
dataset is under ``data_root`` (``victims=all`` skips the others and says so). Training
full-size networks on a CPU takes hours: use ``device=cuda``, or ``dataset``-side
``max_train`` and ``victim.NAME.arch_params={"width_mult": 0.25}`` style knobs for trials.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from harness.model import MultiExitNet
from harness.protocol import DatasetSplits, Victim
from victims.architectures.cifar import ARCHITECTURES, get_architecture
from victims.zoo import SmallCNNVictim

CIFAR_DATASETS = ("cifar10", "cifar100", "svhn")


class CifarArchVictim(SmallCNNVictim):
    """A CIFAR-architecture multi-exit victim; ``arch_params`` go to the builder."""

    family: ClassVar[str] = ""
    default_policy: ClassVar[str] = "max_prob"

    def __init__(self, num_exits: int = 7, arch_params: dict[str, Any] | None = None,
                 epochs: int = 30, lr: float = 1e-3, batch_size: int = 128, train_seed: int = 0,
                 train_threads: int = 1, thresholds: list[float] | None = None,
                 policy: str | None = None, max_accuracy_drop: float = 0.01,
                 max_exit_share: float = 0.4) -> None:
        self.num_exits = num_exits
        self.arch_params = arch_params
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.train_seed = train_seed
        self.train_threads = train_threads
        self.thresholds = thresholds
        self.policy = policy
        self.max_accuracy_drop = max_accuracy_drop
        self.max_exit_share = max_exit_share

    @property
    def width(self) -> int:  # the base class's checks expect a width; CIFAR nets use arch_params
        return 1

    def check_params(self) -> None:
        super().check_params()
        if self.arch_params is not None and not isinstance(self.arch_params, dict):
            raise self._fail(f"arch_params must be a dict of builder knobs, got {self.arch_params!r}")

    def weights_config(self, data: DatasetSplits, device: str) -> dict[str, Any]:
        config = super().weights_config(data, device)
        config.pop("width")
        config["arch_params"] = dict(sorted((self.arch_params or {}).items()))
        return config

    def build(self, data: DatasetSplits) -> MultiExitNet:
        x = np.asarray(data.train.x, dtype=np.float64)
        mean = x.mean(axis=(0, 2, 3)).tolist()
        std = np.maximum(x.std(axis=(0, 2, 3)), 1e-3).tolist()
        builder = get_architecture(self.family)
        try:
            return builder(data.input_shape, data.num_classes, num_exits=self.num_exits,
                           mean=mean, std=std, seed=self.train_seed, **(self.arch_params or {}))
        except TypeError as exc:
            raise self._fail(f"arch_params {self.arch_params} rejected by the {self.family} "
                             f"builder ({exc})") from None


def _make(dataset: str, arch: str) -> type[Victim]:
    name = f"{dataset}_{arch}"
    doc = f"SDN-style {arch} with 7 exits on {dataset} (needs data_root), ``max_prob`` policy."
    return type(f"{dataset.capitalize()}{arch.title().replace('_', '')}Victim",
                (CifarArchVictim,),
                {"name": name, "dataset": dataset, "family": arch, "__doc__": doc,
                 "__module__": __name__})


CIFAR_VICTIMS: tuple[type[Victim], ...] = tuple(
    _make(dataset, arch) for dataset in CIFAR_DATASETS for arch in sorted(ARCHITECTURES))
