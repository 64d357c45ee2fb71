"""Torchvision-backed dataset sources, exercised on tiny files in the official formats.

The writers below produce CIFAR python pickles (incl. ``batches.meta``/``meta``), SVHN
MATLAB files and raw MNIST IDX files exactly as torchvision reads them. Pixel
``(c, 0, 0)`` encodes ``20 * label + c`` and pixels ``(0, 0, 1..2)`` a unique sample id,
so the tests can check channel order, label alignment and split disjointness.
Tiny files cannot match torchvision's MD5 sums, so loads use ``check_md5=False``.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from harness.components import check_json_params
from harness.errors import ConfigError, DatasetError
from tests.victims.datasets.fake_files import (
    N_TEST,
    N_TRAIN,
    _idx,
    _pickle,
    write_cifar,
    write_mnist,
    write_svhn,
)
from victims.datasets.torchvision_sets import (
    TORCHVISION_DATASETS,
    CIFAR10Dataset,
    CIFAR100Dataset,
    FashionMNISTDataset,
    MNISTDataset,
    SVHNDataset,
)

WRITERS = {
    CIFAR10Dataset: write_cifar,
    CIFAR100Dataset: lambda root: write_cifar(root, hundred=True),
    SVHNDataset: write_svhn,
    MNISTDataset: write_mnist,
    FashionMNISTDataset: lambda root: write_mnist(root, "FashionMNIST"),
}


def _source(cls, **params):
    if cls in (CIFAR10Dataset, CIFAR100Dataset, SVHNDataset):
        params.setdefault("check_md5", False)
    return cls(**params)


def _ids(split) -> set[int]:
    pix = np.rint(split.x[:, 0, 0, 1:3] * 255).astype(int)
    return set((pix[:, 0] + 256 * pix[:, 1]).tolist())


@pytest.fixture(params=TORCHVISION_DATASETS, ids=lambda c: c.name)
def written(request, tmp_path):
    WRITERS[request.param](tmp_path)
    return request.param, tmp_path


def test_exports_every_source_with_a_unique_snake_case_name():
    names = [c.name for c in TORCHVISION_DATASETS]
    assert names == ["cifar10", "cifar100", "svhn", "mnist", "fashion_mnist"]
    for cls in TORCHVISION_DATASETS:
        obj = cls(split_seed=3, max_train=10)
        assert type(obj)(**check_json_params(obj)).get_params() == obj.get_params()


def test_loads_shapes_ranges_labels_and_disjoint_splits(written):
    cls, root = written
    data = _source(cls).load(root)
    parts = (data.train, data.val, data.attacker, data.test)
    assert data.name == cls.name and data.input_shape == cls.input_shape
    assert data.num_classes == cls.num_classes and data.input_range == (0.0, 1.0)
    n_train = sum(len(p) for p in parts[:3])
    assert len(data.test) == (100 if cls is CIFAR100Dataset else N_TEST)
    assert n_train == (200 if cls is CIFAR100Dataset else N_TRAIN)
    assert len(data.train) > len(data.attacker) > len(data.val) > 0
    for part in parts:
        assert part.x.dtype == np.float32 and part.y.dtype == np.int64
        assert part.x.shape[1:] == cls.input_shape
        assert part.x.min() >= 0.0 and part.x.max() <= 1.0
        for c in range(cls.input_shape[0]):  # channel order and label alignment
            np.testing.assert_array_equal(np.rint(part.x[:, c, 0, 0] * 255),
                                          (part.y * 20 + c) % 256)
    ids = [_ids(p) for p in parts]
    assert sum(len(i) for i in ids) == n_train + len(data.test)  # all distinct
    assert set().union(*ids[:3]) == set(range(n_train))


def test_splits_are_deterministic_per_seed(written):
    cls, root = written
    a, b = _source(cls, split_seed=1).load(root), _source(cls, split_seed=1).load(root)
    c = _source(cls, split_seed=2).load(root)
    for name in ("train", "val", "attacker", "test"):
        np.testing.assert_array_equal(getattr(a, name).x, getattr(b, name).x)
        np.testing.assert_array_equal(getattr(a, name).y, getattr(b, name).y)
    assert _ids(a.train) != _ids(c.train)


def test_max_train_and_max_test_subsample_stratified(tmp_path):
    write_mnist(tmp_path)
    small = _source(MNISTDataset, max_train=40, max_test=10).load(tmp_path)
    full = _source(MNISTDataset).load(tmp_path)
    assert sum(len(p) for p in (small.train, small.val, small.attacker)) == 40
    assert len(small.test) == 10 and set(small.test.y.tolist()) == set(range(10))
    assert set(small.train.y.tolist()) == set(range(10))
    again = _source(MNISTDataset, max_train=60, max_test=10).load(tmp_path)
    assert _ids(again.test) == _ids(small.test)  # test subsample independent of max_train
    assert _ids(full.test) >= _ids(small.test)


def test_missing_data_root_says_where_and_what(tmp_path):
    with pytest.raises(DatasetError, match=r"cifar-10-batches-py.*nothing is downloaded"):
        _source(CIFAR10Dataset).load(None)
    with pytest.raises(DatasetError, match=r"is not a directory.*train_32x32\.mat"):
        _source(SVHNDataset).load(tmp_path / "nowhere")


@pytest.mark.parametrize(("cls", "victim"), [
    (CIFAR10Dataset, "cifar-10-batches-py/data_batch_4"),
    (CIFAR100Dataset, "cifar-100-python/meta"),
    (SVHNDataset, "test_32x32.mat"),
    (MNISTDataset, "MNIST/raw/t10k-labels-idx1-ubyte"),
])
def test_missing_file_is_named_with_the_expected_layout(tmp_path, cls, victim):
    WRITERS[cls](tmp_path)
    (tmp_path / victim).unlink()
    with pytest.raises(DatasetError, match="missing " + victim) as info:
        _source(cls).load(tmp_path)
    assert "expected layout" in str(info.value) and "nothing is downloaded" in str(info.value)


def test_gz_only_mnist_gets_a_decompress_hint(tmp_path):
    write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    for path in raw.iterdir():
        path.rename(path.with_name(path.name + ".gz"))
    with pytest.raises(DatasetError, match="gunzip"):
        _source(MNISTDataset).load(tmp_path)


@pytest.mark.parametrize(("cls", "victim"), [
    (CIFAR10Dataset, "cifar-10-batches-py/data_batch_3"),
    (CIFAR10Dataset, "cifar-10-batches-py/batches.meta"),
    (CIFAR100Dataset, "cifar-100-python/test"),
    (SVHNDataset, "train_32x32.mat"),
    (MNISTDataset, "MNIST/raw/train-images-idx3-ubyte"),
    (FashionMNISTDataset, "FashionMNIST/raw/t10k-labels-idx1-ubyte"),
])
def test_corrupt_file_is_named(tmp_path, cls, victim):
    WRITERS[cls](tmp_path)
    (tmp_path / victim).write_bytes(b"\x00\x01 not a dataset file \xff" * 3)
    with pytest.raises(DatasetError, match=str(tmp_path / victim)):
        _source(cls).load(tmp_path)


def test_mismatched_image_and_label_counts_are_reported(tmp_path):
    write_mnist(tmp_path)
    _idx(tmp_path / "MNIST/raw/train-labels-idx1-ubyte", np.zeros(7, dtype=np.uint8))
    with pytest.raises(DatasetError, match="80 images but 7 labels"):
        _source(MNISTDataset).load(tmp_path)


def test_out_of_range_labels_are_reported(tmp_path):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    entry = pickle.loads(path.read_bytes())
    entry["labels"][0] = 42
    _pickle(path, entry)
    with pytest.raises(DatasetError, match=r"labels in \[0, 42\], expected 0\.\.9"):
        _source(CIFAR10Dataset).load(tmp_path)


@pytest.mark.parametrize("cls", [CIFAR10Dataset, SVHNDataset])
def test_md5_check_rejects_files_not_from_the_official_release(tmp_path, cls):
    WRITERS[cls](tmp_path)
    with pytest.raises(DatasetError, match=r"MD5 sum of the official release.*check_md5=False"):
        cls().load(tmp_path)


@pytest.mark.parametrize(("params", "message"), [
    ({"max_train": 0}, r"max_train=0 is invalid; allowed: an integer in \[1, inf\) or null"),
    ({"max_test": 2.5}, "max_test=2.5 is invalid"),
    ({"split_seed": "a"}, "split_seed='a' is invalid"),
    ({"max_train": 2}, "cannot split 2 training samples"),
])
def test_bad_parameters_raise_config_errors(tmp_path, params, message):
    write_mnist(tmp_path)
    with pytest.raises(ConfigError, match=message):
        _source(MNISTDataset, **params).load(tmp_path)
