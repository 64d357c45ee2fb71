"""The built-in victim zoo: small multi-exit CNNs on the embedded digits dataset.

``digits_cnn`` (SDN ``max_prob`` policy) and ``digits_cnn_entropy`` (BranchyNet
``entropy`` policy) share one architecture and training recipe, so with equal
parameters they share cached weights; only the calibrated strategy differs.
"""

from __future__ import annotations

import hashlib
import logging
import numbers
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from harness.errors import CacheError, ConfigError
from harness.model import MultiExitNet
from harness.protocol import DatasetSplits, TrainedVictim, Victim
from harness.strategy import ExitPolicy, OutputStrategy
from victims import cache
from victims.architectures import build_small_cnn
from victims.calibration import calibrate_thresholds
from victims.policies import POLICIES
from victims.training import predict_exit_probs, train_multi_exit

logger = logging.getLogger(__name__)

CODE_VERSION = "small_cnn-train-v1"
"""Bump when architecture or training code changes, to invalidate cached weights."""



def split_fingerprint(x: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 of a split's shapes, dtypes and contents."""
    digest = hashlib.sha256()
    for arr in (np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, np.int64)):
        digest.update(f"{arr.dtype}|{arr.shape}|".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class SmallCNNVictim(Victim):
    """Base of the small-CNN victims: train (or load cached weights), then calibrate.

    ``train_threads`` pins torch's CPU threads during training: CPU weights depend on
    the thread count, so fixing it keeps victims identical across machines.

    ``thresholds`` (one per non-final exit) and ``policy`` (a policy name) override the
    calibrated strategy; ``max_accuracy_drop`` and ``max_exit_share`` tune calibration
    (see :mod:`victims.calibration`).
    """

    family: ClassVar[str] = "small_cnn"
    default_policy: ClassVar[str] = "max_prob"

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

    def _fail(self, message: str) -> ConfigError:
        return ConfigError(f"victim {self.name!r}: {message}")

    def check_params(self) -> None:
        """Raise :class:`ConfigError` naming this victim for invalid parameters."""
        for key, low in (("num_exits", 2), ("width", 1), ("epochs", 1), ("batch_size", 1),
                         ("train_threads", 1)):
            value = getattr(self, key)
            if not _is_int(value) or value < low:
                raise self._fail(f"{key} must be an integer >= {low}, got {value!r}")
        if not _is_int(self.train_seed):
            raise self._fail(f"train_seed must be an integer, got {self.train_seed!r}")
        if not _is_real(self.lr) or not 0 < self.lr < 1:
            raise self._fail(f"lr must be a number in (0, 1), got {self.lr!r}")
        for key in ("max_accuracy_drop", "max_exit_share"):
            value = getattr(self, key)
            if not _is_real(value) or not 0 <= value <= 1:
                raise self._fail(f"{key} must be a number in [0, 1], got {value!r}")
        if self.policy is not None and self.policy not in POLICIES:
            raise self._fail(f"unknown policy {self.policy!r}; available: {sorted(POLICIES)}")

    def exit_policy(self) -> ExitPolicy:
        return POLICIES[self.policy or self.default_policy]()

    def override_strategy(self, num_classes: int) -> OutputStrategy | None:
        """The strategy given by ``thresholds``, validated; None when calibrating."""
        if self.thresholds is None:
            return None
        values = self.thresholds
        if isinstance(values, str | bytes) or not hasattr(values, "__len__") or not all(
                _is_real(t) for t in values):
            raise self._fail(f"thresholds must be a list of numbers, got {values!r}")
        try:
            strategy = OutputStrategy(self.exit_policy(), tuple(values))
        except ConfigError as exc:
            raise self._fail(str(exc)) from exc
        strategy.validate(self.num_exits, num_classes, owner=f"victim {self.name!r}")
        return strategy

    def weights_config(self, data: DatasetSplits, device: str) -> dict[str, Any]:
        """Everything that determines the trained weights (the cache key's input)."""
        return {
            "family": self.family, "dataset": data.name,
            "train_data": split_fingerprint(data.train.x, data.train.y),
            "input_shape": list(data.input_shape), "num_classes": data.num_classes,
            "num_exits": self.num_exits, "width": self.width, "epochs": self.epochs,
            "lr": self.lr, "batch_size": self.batch_size, "train_seed": self.train_seed,
            "train_threads": self.train_threads, "device_type": torch.device(device).type,
        }

    def build(self, data: DatasetSplits) -> MultiExitNet:
        return build_small_cnn(data.input_shape, data.num_classes, self.num_exits, self.width,
                               seed=self.train_seed)

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

    def prepare(self, data: DatasetSplits, cache_dir: Path, device: str) -> TrainedVictim:
        """Train or load the network, then calibrate (or take) the output strategy."""
        self.check_params()
        strategy = self.override_strategy(data.num_classes)
        config = self.weights_config(data, device)
        key = cache.config_key(config, CODE_VERSION)
        model = self.build(data)
        if not self._load_cached(model, Path(cache_dir), key):
            model = self.build(data)
            history = train_multi_exit(model, data.train, epochs=self.epochs, lr=self.lr,
                                       batch_size=self.batch_size, seed=self.train_seed,
                                       device=device, num_threads=self.train_threads)
            cache.save_weights(Path(cache_dir), key, model.state_dict(),
                               {"victim": self.name, "config": config,
                                "train_seconds": history.seconds,
                                "final_loss": history.epoch_losses[-1]})
        model.to(device).eval()
        if strategy is None:
            policy = self.exit_policy()
            val_probs = predict_exit_probs(model, data.val.x, device)
            strategy = OutputStrategy(policy, calibrate_thresholds(
                val_probs, data.val.y, policy, max_accuracy_drop=self.max_accuracy_drop,
                max_exit_share=self.max_exit_share))
        return TrainedVictim(name=self.name, model=model, strategy=strategy, data=data,
                             family=self.family,
                             weights_hash=cache.state_dict_hash(model.state_dict()))


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
