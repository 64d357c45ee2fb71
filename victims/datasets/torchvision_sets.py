"""Dataset sources read from a local ``data_root`` by torchvision (never downloaded).

CIFAR-10, CIFAR-100, SVHN, MNIST and Fashion-MNIST are read with
``torchvision.datasets.X(root=data_root, ..., download=False)`` and returned as float32
``(n, C, H, W)`` inputs in [0, 1] with int64 labels. The official training split is
divided (stratified, fixed by ``split_seed``) into victim train / victim validation /
attacker pool in the ratio 4 : 1 : 3 (the digits source's 40/10/30 without its test
share); the official test split is the test split. ``max_train`` / ``max_test``
subsample the official splits (stratified, deterministic) before that, for speed.

Integrity: torchvision checks CIFAR and SVHN files against hard-coded MD5 sums of the
official releases. The sources run that same check themselves when ``check_md5`` is
True (the default), so a mismatch becomes a :class:`DatasetError` naming the file,
and then read through subclasses whose only change is that torchvision does not hash
the files a second time. ``check_md5=False`` accepts re-packaged or reduced copies in
the official format (the test suite's tiny files, a sub-sampled mirror); the files are
still validated (format, shapes, label range) while being read. torchvision does not
checksum the raw MNIST files, so the MNIST sources have no ``check_md5``.
"""

from __future__ import annotations

import pickle
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from torchvision import datasets as tvd
from torchvision.datasets.mnist import read_image_file, read_label_file
from torchvision.datasets.utils import check_md5

from harness.errors import ConfigError, DatasetError
from harness.params import Interval
from harness.protocol import DatasetSource, DatasetSplits, Split
from victims.datasets.splits import DEFAULT_FRACTIONS, stratified_splits

TRAIN_FRACTIONS: tuple[float, float, float] = tuple(  # type: ignore[assignment]
    f / sum(DEFAULT_FRACTIONS[:3]) for f in DEFAULT_FRACTIONS[:3])
"""Victim train, victim validation, attacker pool shares of the official training split."""

_NO_DOWNLOAD = "nothing is downloaded at run time: copy the files there yourself"


class TorchvisionDataset(DatasetSource):
    """Common loading, validation, subsampling and splitting of the torchvision sources."""

    input_shape: ClassVar[tuple[int, int, int]]
    input_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    num_classes: ClassVar[int]
    files: ClassVar[tuple[str, ...]]
    """Files the source needs, relative to ``data_root``."""

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "split_seed": [Interval("int", 0, 2**32 - 1)],
        "max_train": [Interval("int", 1, None), None],
        "max_test": [Interval("int", 1, None), None],
    }

    def __init__(self, split_seed: int = 0, max_train: int | None = None,
                 max_test: int | None = None) -> None:
        self.split_seed = split_seed
        self.max_train = max_train
        self.max_test = max_test

    # -- subclass hooks -------------------------------------------------------------
    @abstractmethod
    def _read(self, root: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images (n, C, H, W) and integer labels of one official split."""

    def _verify(self, root: Path) -> None:
        """Extra integrity checks before reading (MD5 sums where torchvision has them)."""

    # -- loading --------------------------------------------------------------------
    def load(self, data_root: Path | None) -> DatasetSplits:
        """Read, validate and split the local files; see the module docstring."""
        self.validate()
        root = self._locate(data_root)
        self._verify(root)
        x_train, y_train = self._read(root, train=True)
        x_test, y_test = self._read(root, train=False)
        train_idx = self._subsample(y_train, self.max_train, "max_train", stream=0)
        test_idx = self._subsample(y_test, self.max_test, "max_test", stream=1)
        y_pool = y_train[train_idx]
        try:
            parts = stratified_splits(y_pool, y_pool, TRAIN_FRACTIONS, self._rng(2))
        except ValueError as exc:
            raise ConfigError(f"dataset {self.name!r}: cannot split {len(y_pool)} training "
                              f"samples into victim train/val/attacker pool ({exc}); raise "
                              f"max_train") from exc
        train, val, attacker = (self._split(x_train, y_train, train_idx[p]) for p in parts)
        return DatasetSplits(
            name=self.name, input_shape=tuple(self.input_shape), num_classes=self.num_classes,
            input_range=self.input_range, train=train, val=val, attacker=attacker,
            test=self._split(x_test, y_test, test_idx))

    def expected_layout(self, root: Path | str = "<data_root>") -> str:
        """Human-readable list of the files this source reads."""
        return ", ".join(str(Path(root) / f) for f in self.files)

    def _locate(self, data_root: Path | None) -> Path:
        if data_root is None:
            raise DatasetError(
                f"dataset {self.name!r} needs a local data_root holding "
                f"{self.expected_layout()}; {_NO_DOWNLOAD} and pass data_root")
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise DatasetError(
                f"dataset {self.name!r}: data_root {str(root)!r} is not a directory; it must "
                f"hold {self.expected_layout(root)} ({_NO_DOWNLOAD})")
        missing = [f for f in self.files if not (root / f).is_file()]
        if missing:
            raise DatasetError(
                f"dataset {self.name!r}: missing {', '.join(missing)} under {str(root)!r}; "
                f"expected layout: {self.expected_layout(root)}{self._missing_hint(root)}; "
                f"{_NO_DOWNLOAD}")
        return root

    def check_available(self, data_root: Path | None) -> None:
        """Only look for the expected files (``victims=all`` skips absent datasets)."""
        self._locate(data_root)

    def _missing_hint(self, root: Path) -> str:
        return ""

    def _rng(self, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.split_seed, stream])

    def _subsample(self, y: np.ndarray, limit: int | None, key: str,
                   stream: int) -> np.ndarray:
        n = len(y)
        if limit is None or limit >= n:
            return np.arange(n)
        try:
            keep, _ = stratified_splits(y, y, (limit / n, 1 - limit / n), self._rng(stream))
        except ValueError as exc:  # pragma: no cover - limits in [1, n) always split
            raise ConfigError(f"dataset {self.name!r}: cannot subsample {key}={limit}: "
                              f"{exc}") from exc
        return np.sort(keep)

    @staticmethod
    def _split(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> Split:
        return Split(np.ascontiguousarray(x[idx], dtype=np.float32) / np.float32(255.0),
                     np.ascontiguousarray(y[idx], dtype=np.int64))

    def _validated(self, x: np.ndarray, y: np.ndarray,
                   where: str) -> tuple[np.ndarray, np.ndarray]:
        """Check images and labels read from ``where``; return (uint8 NCHW, int64)."""
        x = np.asarray(x)
        y = np.asarray(y).reshape(-1).astype(np.int64)
        if x.dtype != np.uint8 or x.shape[1:] != tuple(self.input_shape):
            raise DatasetError(f"dataset {self.name!r}: {where} holds images of dtype "
                               f"{x.dtype} and shape {x.shape[1:]}, expected uint8 "
                               f"{tuple(self.input_shape)}; the file is corrupt or not from "
                               f"the official release")
        if len(x) != len(y) or len(x) == 0:
            raise DatasetError(f"dataset {self.name!r}: {where} holds {len(x)} images but "
                               f"{len(y)} labels; the files are corrupt or truncated")
        if y.min() < 0 or y.max() >= self.num_classes:
            raise DatasetError(f"dataset {self.name!r}: {where} has labels in "
                               f"[{y.min()}, {y.max()}], expected 0..{self.num_classes - 1}; "
                               f"the file is corrupt or belongs to another dataset")
        return x, y


class _Md5Checked(TorchvisionDataset):
    """Sources whose files torchvision checksums: the check runs once, here, if asked."""

    md5: ClassVar[dict[str, str]]

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **TorchvisionDataset._parameter_constraints, "check_md5": [bool]}

    def __init__(self, split_seed: int = 0, max_train: int | None = None,
                 max_test: int | None = None, check_md5: bool = True) -> None:
        super().__init__(split_seed=split_seed, max_train=max_train, max_test=max_test)
        self.check_md5 = check_md5

    def _verify(self, root: Path) -> None:
        if not self.check_md5:
            return
        for rel, digest in self.md5.items():
            if not check_md5(root / rel, digest):
                raise DatasetError(
                    f"dataset {self.name!r}: {root / rel} does not have the MD5 sum of the "
                    f"official release ({digest}); the file is corrupt or modified. Replace "
                    f"it, or pass check_md5=False to read a re-packaged copy in the same format")


# -- CIFAR ------------------------------------------------------------------------------
class _CIFAR10Reader(tvd.CIFAR10):
    """torchvision's CIFAR-10 reader; the MD5 check already ran (or was declined)."""

    train_list: ClassVar[list[list[str | None]]] = [[n, None] for n, _ in tvd.CIFAR10.train_list]
    test_list: ClassVar[list[list[str | None]]] = [[n, None] for n, _ in tvd.CIFAR10.test_list]
    meta: ClassVar[dict[str, str | None]] = {**tvd.CIFAR10.meta, "md5": None}


class _CIFAR100Reader(tvd.CIFAR100):
    """torchvision's CIFAR-100 reader; the MD5 check already ran (or was declined)."""

    train_list: ClassVar[list[list[str | None]]] = [[n, None] for n, _ in tvd.CIFAR100.train_list]
    test_list: ClassVar[list[list[str | None]]] = [[n, None] for n, _ in tvd.CIFAR100.test_list]
    meta: ClassVar[dict[str, str | None]] = {**tvd.CIFAR100.meta, "md5": None}


def _cifar_md5(cls: type[tvd.CIFAR10]) -> dict[str, str]:
    entries = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
    return {f"{cls.base_folder}/{name}": digest for name, digest in entries}


class _CifarSource(_Md5Checked):
    input_shape = (3, 32, 32)
    reader: ClassVar[type[tvd.CIFAR10]]
    label_key: ClassVar[str]

    def _read(self, root: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
        try:
            ds = self.reader(root=str(root), train=train, download=False)
        except Exception as exc:
            raise DatasetError(f"dataset {self.name!r}: cannot read "
                               f"{self._culprit(root, train)} ({type(exc).__name__}: {exc}); "
                               f"the file is corrupt or not a CIFAR python pickle") from exc
        x = np.asarray(ds.data).transpose(0, 3, 1, 2)
        return self._validated(x, np.asarray(ds.targets), str(root / self.reader.base_folder))

    def _culprit(self, root: Path, train: bool) -> Path:
        """The first file of the split (or the meta file) that does not unpickle as CIFAR."""
        folder = root / self.reader.base_folder
        names = [n for n, _ in (self.reader.train_list if train else self.reader.test_list)]
        checks = [(folder / n, ("data", self.label_key)) for n in names]
        checks.append((folder / self.reader.meta["filename"], (self.reader.meta["key"],)))
        for path, keys in checks:
            try:
                with open(path, "rb") as fh:
                    entry = pickle.load(fh, encoding="latin1")
                if not isinstance(entry, dict) or any(k not in entry for k in keys):
                    return path
            except Exception:
                return path
        return folder


class CIFAR10Dataset(_CifarSource):
    """CIFAR-10 from ``<data_root>/cifar-10-batches-py`` (the python version)."""

    name = "cifar10"
    num_classes = 10
    reader = _CIFAR10Reader
    label_key = "labels"
    md5: ClassVar[dict[str, str]] = _cifar_md5(tvd.CIFAR10)
    files = tuple(md5)


class CIFAR100Dataset(_CifarSource):
    """CIFAR-100 (fine labels) from ``<data_root>/cifar-100-python``."""

    name = "cifar100"
    num_classes = 100
    reader = _CIFAR100Reader
    label_key = "fine_labels"
    md5: ClassVar[dict[str, str]] = _cifar_md5(tvd.CIFAR100)
    files = tuple(md5)


# -- SVHN -------------------------------------------------------------------------------
class _SVHNReader(tvd.SVHN):
    """torchvision's SVHN reader; the MD5 check already ran (or was declined)."""

    split_list: ClassVar[dict[str, list[str | None]]] = {
        k: [url, name, None] for k, (url, name, _) in tvd.SVHN.split_list.items()}


class SVHNDataset(_Md5Checked):
    """SVHN cropped digits (``train_32x32.mat``, ``test_32x32.mat`` in ``data_root``).

    The ``extra`` split is not used. Label 10 (digit 0) becomes 0, as in torchvision.
    """

    name = "svhn"
    input_shape = (3, 32, 32)
    num_classes = 10
    md5: ClassVar[dict[str, str]] = {
        name: digest for key, (_, name, digest) in tvd.SVHN.split_list.items() if key != "extra"}
    files = tuple(md5)

    def _read(self, root: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
        path = root / ("train_32x32.mat" if train else "test_32x32.mat")
        try:
            ds = _SVHNReader(root=str(root), split="train" if train else "test", download=False)
        except Exception as exc:
            raise DatasetError(f"dataset {self.name!r}: cannot read {path} "
                               f"({type(exc).__name__}: {exc}); expected a MATLAB file with "
                               f"'X' (32, 32, 3, n) uint8 and 'y' (n, 1)") from exc
        return self._validated(ds.data, ds.labels, str(path))


# -- MNIST ------------------------------------------------------------------------------
class _MnistSource(TorchvisionDataset):
    input_shape = (1, 28, 28)
    num_classes = 10
    reader: ClassVar[type[tvd.MNIST]]

    def _read(self, root: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
        prefix = "train" if train else "t10k"
        raw = root / self.reader.__name__ / "raw"
        images, labels = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"
        try:
            ds = self.reader(root=str(root), train=train, download=False)
        except Exception as exc:
            culprit = raw
            for path, read in ((images, read_image_file), (labels, read_label_file)):
                try:
                    read(str(path))
                except Exception:
                    culprit = path
                    break
            raise DatasetError(f"dataset {self.name!r}: cannot read {culprit} "
                               f"({type(exc).__name__}: {exc}); expected an uncompressed IDX "
                               f"(ubyte) file as in the official release") from exc
        x = ds.data.numpy()[:, None, :, :]
        return self._validated(x, ds.targets.numpy(), f"{images} + {labels}")

    def _missing_hint(self, root: Path) -> str:
        raw = root / self.reader.__name__ / "raw"
        if any(raw.glob("*-ubyte.gz")):
            return (f" (found .gz archives in {raw}: decompress them with gunzip; "
                    f"torchvision only unpacks them while downloading)")
        return ""


def _mnist_files(cls: type[tvd.MNIST]) -> tuple[str, ...]:
    return tuple(f"{cls.__name__}/raw/{name.removesuffix('.gz')}" for name, _ in cls.resources)


class MNISTDataset(_MnistSource):
    """MNIST from ``<data_root>/MNIST/raw/*-ubyte`` (uncompressed IDX files)."""

    name = "mnist"
    reader = tvd.MNIST
    files = _mnist_files(tvd.MNIST)


class FashionMNISTDataset(_MnistSource):
    """Fashion-MNIST from ``<data_root>/FashionMNIST/raw/*-ubyte`` (uncompressed IDX)."""

    name = "fashion_mnist"
    reader = tvd.FashionMNIST
    files = _mnist_files(tvd.FashionMNIST)


TORCHVISION_DATASETS: tuple[type[TorchvisionDataset], ...] = (
    CIFAR10Dataset, CIFAR100Dataset, SVHNDataset, MNISTDataset, FashionMNISTDataset)
