"""CIFAR/SVHN victims: registered, skipped without data, trainable on tiny real-format files."""

from __future__ import annotations

import pytest

from harness.errors import ConfigError
from harness.plugins.registry import load_registry
from harness.plugins.toolbox import Toolbox
from harness.protocol import VictimContext
from harness.run.config import parse_overrides
from harness.run.grid import available_victims
from harness.testing import check_component
from tests.victims.datasets.fake_files import write_cifar
from victims.datasets.torchvision_sets import CIFAR10Dataset
from victims.zoo_cifar import CIFAR_VICTIMS


@pytest.fixture(scope="module")
def registry():
    return load_registry(load_entrypoints=False)


def test_every_dataset_architecture_pair_is_registered(registry):
    names = set(registry.names("victim"))
    for dataset in ("cifar10", "cifar100", "svhn"):
        for arch in ("vgg16_bn", "resnet56", "mobilenet", "wide_resnet"):
            assert f"{dataset}_{arch}" in names
    for cls in CIFAR_VICTIMS:
        check_component(cls)


def test_victims_all_runs_only_victims_with_data(registry, tmp_path):
    write_cifar(tmp_path)
    spec = parse_overrides(["victims=all", f"data_root={tmp_path}"])
    keep, skipped = available_victims(spec, registry)
    assert {"digits_cnn", "cifar10_resnet56", "cifar10_vgg16_bn"} <= set(keep)
    assert "svhn_resnet56" in skipped and "cifar100_mobilenet" in skipped
    assert "missing" in skipped["svhn_resnet56"]
    none = available_victims(parse_overrides(["victims=all"]), registry)
    assert all(not n.startswith("cifar") for n in none[0])


def test_tiny_cifar_victim_trains_and_calibrates(tmp_path):
    registry = load_registry(load_entrypoints=False)
    write_cifar(tmp_path / "data")
    data = CIFAR10Dataset(check_md5=False).load(tmp_path / "data")
    cls = next(c for c in CIFAR_VICTIMS if c.name == "cifar10_resnet56")
    victim = cls(num_exits=3, arch_params={"depth": 8, "width": 4}, epochs=1, batch_size=16)
    trained = victim.prepare(data, VictimContext(tmp_path / "cache", "cpu", Toolbox(registry)))
    assert trained.model.num_exits == 3 and trained.family == "resnet56"
    assert len(trained.strategy.thresholds) == 2
    again = cls(num_exits=3, arch_params={"depth": 8, "width": 4}, epochs=1, batch_size=16)
    ctx = VictimContext(tmp_path / "cache", "cpu", Toolbox(registry))
    assert again.prepare(data, ctx).weights_hash == trained.weights_hash
    bad = cls(arch_params={"nonsense": 1}, epochs=1)
    with pytest.raises(ConfigError, match=r"cifar10_resnet56.*arch_params.*nonsense"):
        bad.validate(registry)
    with pytest.raises(ConfigError, match=r"resnet56.*nonsense"):
        bad.prepare(data, VictimContext(tmp_path / "cache", "cpu", Toolbox(registry)))
