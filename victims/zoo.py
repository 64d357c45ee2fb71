"""The built-in victim zoo: small multi-exit CNNs on the embedded digits dataset.

``digits_cnn`` (SDN ``max_prob`` policy) and ``digits_cnn_entropy`` (BranchyNet
``entropy`` policy) share one architecture and training recipe, so with equal
parameters they share cached weights; only the selected thresholds differ.
:class:`TrainedCNNVictim` holds the training and weight cache, :class:`SmallCNNVictim`
adds the validation-split threshold selection; :mod:`victims.zoo_stress` builds the
stress-test victims on the same base.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from harness.errors import CacheError, ConfigError
from harness.model import MultiExitNet
from harness.nn.training import predict_exit_probs, train_multi_exit
from harness.params import ComponentName, Interval, ListOf
from harness.protocol import DatasetSplits, TrainedVictim, Victim, VictimContext
from harness.strategy import ExitPolicy, OutputStrategy
from victims import cache
from victims.thresholds import select_thresholds

if TYPE_CHECKING:
    from harness.plugins.registry import Registry

logger = logging.getLogger(__name__)

CODE_VERSION = "small_cnn-train-v1"
"""Bump when architecture or training code changes, to invalidate cached weights."""


MAX_SEED = 2**32 - 1


def split_fingerprint(x: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 of a split's shapes, dtypes and contents."""
    digest = hashlib.sha256()
    for arr in (np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, np.int64)):
        digest.update(f"{arr.dtype}|{arr.shape}|".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


TRAINING_CONSTRAINTS: dict[str, list[Any]] = {
    "num_exits": [Interval("int", 2, 64)],
    "width": [Interval("int", 1, 4096)],
    "epochs": [Interval("int", 1, 100_000)],
    "lr": [Interval("real", 0, 1, closed="neither")],
    "batch_size": [Interval("int", 1, 1_000_000)],
    "train_seed": [Interval("int", 0, MAX_SEED)],
    "train_threads": [Interval("int", 1, 1024)],
    "policy": [ComponentName("exit_policy"), None],
}
"""Constraints of the parameters every trained small-CNN victim has (network, training, policy)."""


class TrainedCNNVictim(Victim):
    """Base of the trained victims: build, train (or load cached weights), then a strategy.

    Subclasses declare their parameters (at least those of :data:`TRAINING_CONSTRAINTS`)
    and implement :meth:`select_strategy`; :meth:`fixed_strategy` may give one before any
    training (a user's override). ``train_threads`` pins torch's CPU threads during
    training: CPU weights depend on the thread count, so fixing it keeps victims
    identical across machines. The weight-cache key holds only what determines the
    weights (:meth:`weights_config`), never the victim's name or its strategy knobs, so
    victims that differ only in how they pick thresholds share cached weights.
    """

    family: ClassVar[str] = "small_cnn"
    default_policy: ClassVar[str] = "max_prob"
    num_exits: int
    width: int
    epochs: int
    lr: float
    batch_size: int
    train_seed: int
    train_threads: int
    policy: str | None

    def policy_name(self) -> str:
        return self.policy or self.default_policy

    def fixed_strategy(self, policy: ExitPolicy, num_classes: int) -> OutputStrategy | None:
        """A strategy known before training (validated), or None to select one after."""
        return None

    def select_strategy(self, model: MultiExitNet, data: DatasetSplits, policy: ExitPolicy,
                        device: str) -> OutputStrategy:
        """The output strategy of the trained ``model`` (deterministic)."""
        raise NotImplementedError(f"victim {self.name!r} must implement select_strategy")

    def details(self) -> dict[str, Any]:
        """What a cell records about this victim beyond its thresholds (JSON; default none)."""
        return {}

    def weights_config(self, data: DatasetSplits, device: str) -> dict[str, Any]:
        """Everything that determines the trained weights (the cache key's input)."""
        return {
            "family": self.family, "dataset": data.name,
            "train_data": split_fingerprint(data.train.x, data.train.y),
            "input_shape": list(data.input_shape), "num_classes": data.num_classes,
            "num_exits": self.num_exits, "epochs": self.epochs,
            "lr": self.lr, "batch_size": self.batch_size, "train_seed": self.train_seed,
            "train_threads": self.train_threads, "device_type": torch.device(device).type,
            **self.architecture_config(), **self.training_config(),
        }

    def architecture_config(self) -> dict[str, Any]:
        """The architecture's knobs as they enter the weight-cache key."""
        return {"width": self.width}

    def training_config(self) -> dict[str, Any]:
        """Extra training knobs as they enter the weight-cache key (none by default)."""
        return {}

    def exit_weights(self) -> tuple[float, ...] | None:
        """Per-exit loss weights for training (None = SDN weights, see harness.nn.training)."""
        return None

    def build(self, data: DatasetSplits, ctx: VictimContext) -> MultiExitNet:
        return ctx.new_network(self.family, data.input_shape, data.num_classes, self.num_exits,
                               ctx.salted_seed(self.train_seed), width=self.width)

    def _load_cached(self, model: MultiExitNet, cache_dir: Path, key: str) -> bool:
        try:
            state = cache.load_weights(cache_dir, key)
            if state is None:
                return False
            model.load_state_dict(state)
        except (CacheError, RuntimeError) as exc:
            logger.warning("victim %r: discarding unusable cached weights %s (%s); retraining",
                           self.name, key[:12], exc)
            cache.discard(cache_dir, key)
            return False
        return True

    def trained_model(self, data: DatasetSplits, ctx: VictimContext) -> MultiExitNet:
        """The network with its cached weights, or trained now and cached (eval mode)."""
        cache_dir, device = Path(ctx.cache_dir), ctx.device
        config = self.weights_config(data, device)
        if ctx.salt:  # secret mode trains other weights; the cache key says so (not the salt)
            config["salted"] = hashlib.sha256(ctx.salt.encode()).hexdigest()[:16]
        key = cache.config_key(config, CODE_VERSION)
        model = self.build(data, ctx)
        if not self._load_cached(model, cache_dir, key):
            model = self.build(data, ctx)
            history = train_multi_exit(model, data.train, epochs=self.epochs, lr=self.lr,
                                       batch_size=self.batch_size,
                                       seed=ctx.salted_seed(self.train_seed),
                                       device=device, num_threads=self.train_threads,
                                       exit_weights=self.exit_weights())
            cache.save_weights(cache_dir, key, model.state_dict(),
                               {"victim": self.name, "config": config,
                                "train_seconds": history.seconds,
                                "final_loss": history.epoch_losses[-1]})
        return model.to(device).eval()

    def prepare(self, data: DatasetSplits, ctx: VictimContext) -> TrainedVictim:
        """Train or load the network, then select (or take) the strategy."""
        self.validate()
        policy = ctx.policy(self.policy_name())
        strategy = self.fixed_strategy(policy, data.num_classes)
        model = self.trained_model(data, ctx)
        if strategy is None:
            strategy = self.select_strategy(model, data, policy, ctx.device)
        return TrainedVictim(name=self.name, model=model, strategy=strategy, data=data,
                             family=self.family,
                             weights_hash=cache.state_dict_hash(model.state_dict()),
                             details=self.details())


class SmallCNNVictim(TrainedCNNVictim):
    """Base of the small-CNN victims with the validation-split threshold selection.

    ``thresholds`` (one per non-final exit) and ``policy`` (a policy name) override the
    selected thresholds; ``max_accuracy_drop`` and ``max_exit_share`` tune the selection
    (see :mod:`victims.thresholds`).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **TRAINING_CONSTRAINTS,
        "thresholds": [ListOf(Interval("real", None, None), min_len=1), None],
        "max_accuracy_drop": [Interval("real", 0, 1)],
        "max_exit_share": [Interval("real", 0, 1)],
    }

    def __init__(self, num_exits: int = 4, width: int = 32, epochs: int = 20, lr: float = 3e-3,
                 batch_size: int = 64, train_seed: int = 0, train_threads: int = 1,
                 thresholds: list[float] | None = None, policy: str | None = None,
                 max_accuracy_drop: float = 0.01, max_exit_share: float = 0.4) -> None:
        self.num_exits = num_exits
        self.width = width
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
        """Constraints, then the thresholds against the exits and the policy's range."""
        super().validate(registry)
        if self.thresholds is None:
            return
        owner = f"victim {self.name!r}"
        if len(self.thresholds) != self.num_exits - 1:
            raise ConfigError(f"{owner}: got {len(self.thresholds)} thresholds for a "
                              f"{self.num_exits}-exit network; give exactly {self.num_exits - 1} "
                              "(one per non-final exit)")
        if registry is None:
            return
        num_classes = registry.get("dataset", self.dataset).cls.num_classes
        if num_classes:
            OutputStrategy(registry.policy(self.policy_name()), tuple(self.thresholds)).validate(
                self.num_exits, num_classes, owner=owner)

    def override_strategy(self, policy: ExitPolicy, num_classes: int) -> OutputStrategy | None:
        """The strategy given by ``thresholds``, validated; None when they are selected."""
        if self.thresholds is None:
            return None
        strategy = OutputStrategy(policy, tuple(self.thresholds))
        strategy.validate(self.num_exits, num_classes, owner=f"victim {self.name!r}")
        return strategy

    def fixed_strategy(self, policy: ExitPolicy, num_classes: int) -> OutputStrategy | None:
        return self.override_strategy(policy, num_classes)

    def select_strategy(self, model: MultiExitNet, data: DatasetSplits, policy: ExitPolicy,
                        device: str) -> OutputStrategy:
        """Greedy per-exit selection on the validation split (:mod:`victims.thresholds`)."""
        val_probs = predict_exit_probs(model, data.val.x, device)
        return OutputStrategy(policy, select_thresholds(
            val_probs, data.val.y, policy, max_accuracy_drop=self.max_accuracy_drop,
            max_exit_share=self.max_exit_share))


class DigitsCNN(SmallCNNVictim):
    """4-exit small CNN on digits, SDN ``max_prob`` policy."""

    name = "digits_cnn"
    dataset = "digits"
    default_policy = "max_prob"


class DigitsCNNEntropy(SmallCNNVictim):
    """4-exit small CNN on digits, BranchyNet ``entropy`` policy."""

    name = "digits_cnn_entropy"
    dataset = "digits"
    default_policy = "entropy"


BUILTIN_VICTIMS: tuple[type[Victim], ...] = (DigitsCNN, DigitsCNNEntropy)
