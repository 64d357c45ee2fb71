"""CIFAR-10/100 and SVHN victims on SDN's four CIFAR architectures.

Each registered victim is ``<dataset>_<architecture>`` (e.g. ``cifar10_resnet56``): the
multi-exit network of the registered architecture of that name with SDN's default seven exits,
input normalisation by the training split's per-channel mean/std, SDN-weighted training
and the same threshold selection as the digits victims. They run only when their
dataset is under ``data_root`` (``victims=all`` skips the others and says so). Training
full-size networks on a CPU takes hours: use ``device=cuda``, or
``victim.NAME.arch_params={"width_mult": 0.25}`` style knobs for trials.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from harness.components import check_nested
from harness.model import MultiExitNet
from harness.protocol import DatasetSplits, Victim, VictimContext
from victims.architectures import CIFAR_ARCHITECTURES
from victims.zoo import SmallCNNVictim

if TYPE_CHECKING:
    from harness.plugins.registry import Registry

CIFAR_DATASETS = ("cifar10", "cifar100", "svhn")


class CifarArchVictim(SmallCNNVictim):
    """A CIFAR-architecture multi-exit victim; ``arch_params`` are the architecture's parameters."""

    family: ClassVar[str] = ""
    default_policy: ClassVar[str] = "max_prob"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **{k: v for k, v in SmallCNNVictim._parameter_constraints.items() if k != "width"},
        "arch_params": [dict, None],
    }

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

    def validate(self, registry: Registry | None = None) -> None:
        """Also checks ``arch_params`` against the architecture's own constraints."""
        super().validate(registry)
        if registry is not None:
            check_nested(f"victim {self.name!r}", registry, "architecture", self.family,
                         self.arch_params, "arch_params")

    def architecture_config(self) -> dict[str, Any]:
        return {"arch_params": dict(sorted((self.arch_params or {}).items()))}

    def build(self, data: DatasetSplits, ctx: VictimContext) -> MultiExitNet:
        x = np.asarray(data.train.x, dtype=np.float64)
        mean = tuple(x.mean(axis=(0, 2, 3)).tolist())
        std = tuple(np.maximum(x.std(axis=(0, 2, 3)), 1e-3).tolist())
        return ctx.new_network(self.family, data.input_shape, data.num_classes, self.num_exits,
                               self.train_seed, normalization=(mean, std),
                               **(self.arch_params or {}))


def _make(dataset: str, arch: str) -> type[Victim]:
    name = f"{dataset}_{arch}"
    doc = f"SDN-style {arch} with 7 exits on {dataset} (needs data_root), ``max_prob`` policy."
    return type(f"{dataset.capitalize()}{arch.title().replace('_', '')}Victim",
                (CifarArchVictim,),
                {"name": name, "dataset": dataset, "family": arch, "__doc__": doc,
                 "__module__": __name__})


CIFAR_VICTIMS: tuple[type[Victim], ...] = tuple(
    _make(dataset, arch.name) for dataset in CIFAR_DATASETS
    for arch in sorted(CIFAR_ARCHITECTURES, key=lambda a: a.name))
