"""Writers of tiny dataset files in the official on-disk formats torchvision reads.

Pixel ``(c, 0, 0)`` encodes ``20 * label + c`` and pixels ``(0, 0, 1..2)`` a unique
sample id, so tests can check channel order, label alignment and split disjointness.
Tiny files cannot match torchvision's MD5 sums, so loads use ``check_md5=False``.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import scipy.io

N_TRAIN, N_TEST = 80, 30


def _images(n: int, channels: int, side: int, num_classes: int, start: int,
            seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, C, H, W) images with encoded label/id, and balanced labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % num_classes
    x = rng.integers(0, 256, size=(n, channels, side, side), dtype=np.uint8)
    for c in range(channels):
        x[:, c, 0, 0] = (y * 20 + c) % 256
    ids = np.arange(start, start + n)
    x[:, 0, 0, 1], x[:, 0, 0, 2] = ids % 256, ids // 256
    return x, y


def _pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_cifar(root: Path, hundred: bool = False) -> None:
    classes = 100 if hundred else 10
    x_tr, y_tr = _images(N_TRAIN if not hundred else 200, 3, 32, classes, 0, 1)
    x_te, y_te = _images(N_TEST if not hundred else 100, 3, 32, classes, 10_000, 2)
    key = "fine_labels" if hundred else "labels"
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")

    def batch(x, y):
        return {"data": x.reshape(len(x), -1), key: [int(v) for v in y],
                "filenames": [f"img{i}.png" for i in range(len(x))]}
    if hundred:
        _pickle(folder / "train", {**batch(x_tr, y_tr), "coarse_labels": list(y_tr % 20)})
        _pickle(folder / "test", {**batch(x_te, y_te), "coarse_labels": list(y_te % 20)})
        _pickle(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
        return
    for i, part in enumerate(np.array_split(np.arange(len(y_tr)), 5), start=1):
        _pickle(folder / f"data_batch_{i}", batch(x_tr[part], y_tr[part]))
    _pickle(folder / "test_batch", batch(x_te, y_te))
    _pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})


def write_svhn(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, n, start in (("train", N_TRAIN, 0), ("test", N_TEST, 10_000)):
        x, y = _images(n, 3, 32, 10, start, start + 3)
        labels = np.where(y == 0, 10, y).astype(np.uint8).reshape(-1, 1)  # SVHN: 0 -> 10
        scipy.io.savemat(root / f"{name}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": labels})


def _idx(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST") -> None:
    raw = root / folder / "raw"
    for prefix, n, start in (("train", N_TRAIN, 0), ("t10k", N_TEST, 10_000)):
        x, y = _images(n, 1, 28, 10, start, start + 4)
        _idx(raw / f"{prefix}-images-idx3-ubyte", x[:, 0])
        _idx(raw / f"{prefix}-labels-idx1-ubyte", y)
