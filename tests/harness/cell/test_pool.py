"""``pool=same|DATASET``: the attacker's unlabeled pool as a grid key (docs/design.md section 7).

Parsed and checked before any work (unknown names list the datasets, a shape or range
mismatch names both), recorded in the cell's threat settings and config hash, handed to
the attack (in both isolation modes), and kept apart in the leaderboard.
"""

from __future__ import annotations

import hashlib
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from harness.board.leaderboard import aggregate, load_results
from harness.board.tables import format_table
from harness.cell.pool import attacker_pool, check_pool
from harness.cell.spec import ThreatModel
from harness.cli.attack import _pool
from harness.errors import ConfigError, DatasetError
from harness.io.signing import FolderTrust
from harness.plugins.registry import load_registry
from harness.run.config import parse_overrides
from harness.run.grid import config_hash, expand_grid
from harness.run.runner import run_grid
from tests.harness.conftest import install_plugin, trust

POOL_PLUGIN = textwrap.dedent('''
    """Datasets of random 8x8 inputs (pools for digits victims) and an attack that
    reports a fingerprint of the pool it was handed."""
    import hashlib

    import numpy as np

    import harness
    from harness.errors import DatasetError
    from harness.protocol import Attack, DatasetSource, DatasetSplits, Split, StolenModel
    from harness.strategy import OutputStrategy


    def _splits(name, shape, low, high, seed):
        rng = np.random.default_rng(seed)
        def split(n):
            x = rng.uniform(low, high, size=(n, *shape)).astype(np.float32)
            return Split(x, rng.integers(0, 10, n).astype(np.int64))
        return DatasetSplits(name=name, input_shape=shape, num_classes=10,
                             input_range=(low, high), train=split(40), val=split(10),
                             attacker=split(60), test=split(20))


    class NoisePool(DatasetSource):
        """Uniform 8x8 noise in [0, 1] (declares its shape and range)."""
        name = "noise_pool"
        num_classes = 10
        input_shape = (1, 8, 8)
        input_range = (0.0, 1.0)

        def __init__(self):
            pass

        def load(self, data_root):
            return _splits(self.name, (1, 8, 8), 0.0, 1.0, 7)


    class WidePool(DatasetSource):
        """8x8 inputs in [-1, 1] (undeclared: checked by loading)."""
        name = "wide_pool"

        def __init__(self):
            pass

        def load(self, data_root):
            return _splits(self.name, (1, 8, 8), -1.0, 1.0, 8)


    class BigPool(DatasetSource):
        """10x10 inputs (undeclared)."""
        name = "big_pool"

        def __init__(self):
            pass

        def load(self, data_root):
            return _splits(self.name, (1, 10, 10), 0.0, 1.0, 9)


    class MissingPool(DatasetSource):
        """A declared 8x8 dataset whose files are never there."""
        name = "missing_pool"
        input_shape = (1, 8, 8)
        input_range = (0.0, 1.0)

        def __init__(self):
            pass

        def load(self, data_root):
            raise DatasetError(f"missing_pool needs its files under data_root={data_root}")


    class PoolProbe(Attack):
        """Queries a few pool inputs; reports the pool's fingerprint in its diagnostics."""
        name = "pool_probe"

        def __init__(self):
            pass

        def steal(self, oracle, attacker_data, ctx):
            arr = np.ascontiguousarray(attacker_data, dtype=np.float32)
            digest = hashlib.sha256(arr.tobytes()).hexdigest()[:16]
            oracle.query(attacker_data[:4])
            model = ctx.new_network(3, ctx.seed, "small_cnn", width=4)
            return StolenModel(model, OutputStrategy(ctx.policy("max_prob"), (0.5, 0.5)),
                               diagnostics={"pool_fingerprint": digest,
                                            "pool_shape": list(arr.shape)})


    @harness.hookimpl
    def harness_register_datasets(register):
        register(NoisePool)
        register(WidePool)
        register(BigPool)
        register(MissingPool)


    @harness.hookimpl
    def harness_register_attacks(register):
        register(PoolProbe)
''')


@pytest.fixture
def pool_plugin(tiny_plugin, plugin_dir, monkeypatch):
    trust(monkeypatch, "pool_probe")  # it provides datasets, which run in the evaluator
    install_plugin(plugin_dir, "pool-probe-plugin", "pool_probe_plugin", POOL_PLUGIN, "pool_probe")
    yield "pool_probe"
    sys.modules.pop("pool_probe_plugin", None)


@pytest.fixture
def registry(pool_plugin):
    return load_registry()


def _spec(tmp_path: Path, *extra: str):
    return parse_overrides(["victims=tiny_victim", "defenses=none", "attacks=pool_probe",
                            "replicas=0", f"out={tmp_path / 'out'}",
                            f"cache_dir={tmp_path / 'cache'}", "secret=public", *extra])


def _fingerprint(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()[:16]


# -- parsing and validation ---------------------------------------------------------------


def test_pool_key_parses_from_the_command_line_and_toml(tmp_path):
    assert parse_overrides([]).settings.threat.pool == "same"
    assert parse_overrides(["pool=svhn"]).settings.threat == ThreatModel(pool="svhn")
    cfg = tmp_path / "grid.toml"
    cfg.write_text('pool = "mnist"\n[threat]\nnum_exits = "hidden"\n')
    assert parse_overrides([], cfg).settings.threat == ThreatModel(num_exits="hidden",
                                                                   pool="mnist")
    assert parse_overrides(["pool=same"], cfg).settings.threat.pool == "same"


@pytest.mark.parametrize("raw", ["", "SVHN", "svhn/..", "two words"])
def test_malformed_pool_names_fail_at_parse_time(raw):
    with pytest.raises(ConfigError, match=r"is not a dataset name; write pool=same"):
        parse_overrides([f"pool={raw}"])


def test_unknown_pool_lists_the_valid_choices(registry, tmp_path):
    with pytest.raises(ConfigError, match=r"pool='imagenet' is not a registered dataset; "
                                          r"choose same or one of .*digits.*noise_pool"):
        expand_grid(_spec(tmp_path, "pool=imagenet"), registry)


def test_shape_mismatch_names_both_shapes_before_any_data_is_read(registry, tmp_path):
    # mnist declares (1, 28, 28); its files are absent, and the shape is still the error
    with pytest.raises(ConfigError, match=r"pool=mnist has inputs of shape \(1, 28, 28\) but "
                                          r"victim 'tiny_victim' \(dataset digits\) takes "
                                          r"\(1, 8, 8\); choose a pool dataset of shape"):
        expand_grid(_spec(tmp_path, "pool=mnist"), registry)
    with pytest.raises(ConfigError, match=r"pool=big_pool has inputs of shape \(1, 10, 10\)"):
        expand_grid(_spec(tmp_path, "pool=big_pool"), registry)


def test_range_mismatch_is_an_error(registry, tmp_path):
    with pytest.raises(ConfigError, match=r"pool=wide_pool has inputs in \[-1, 1\] but victim "
                                          r"'tiny_victim' \(dataset digits\) accepts \[0, 1\]"):
        expand_grid(_spec(tmp_path, "pool=wide_pool"), registry)


def test_absent_pool_data_is_an_error_before_work(registry, tmp_path):
    with pytest.raises(DatasetError, match="missing_pool needs its files under data_root="):
        check_pool(registry, "missing_pool", "tiny_victim", tmp_path)
    with pytest.raises(DatasetError, match="missing_pool needs its files"):
        run_grid(_spec(tmp_path, "pool=missing_pool"), show_progress=False)
    assert not (tmp_path / "out").exists()


def test_victims_all_skips_victims_the_pool_does_not_fit(registry, tmp_path):
    spec = parse_overrides(["victims=all", "attacks=pool_probe", "defenses=none",
                            "pool=noise_pool", f"out={tmp_path}"])
    cells = expand_grid(spec, registry)
    assert cells and all(c.settings.threat.pool == "noise_pool" for c in cells)
    assert all(registry.get("victim", c.victim.name).cls.dataset == "digits" for c in cells)


@pytest.mark.integration
def test_bad_pool_stops_the_cli_with_one_line(pool_plugin, tmp_path, capsys):
    from harness.cli import main

    out = tmp_path / "out"
    assert main(["run", "victims=tiny_victim", "attacks=pool_probe", "defenses=none",
                 "pool=nope", f"out={out}", f"cache_dir={tmp_path / 'c'}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "pool='nope' is not a registered dataset" in lines[0]
    assert not out.exists()


def test_attack_client_shares_the_checks(registry):
    health = {"victim": "tiny_victim", "input_shape": [1, 8, 8], "input_range": [0.0, 1.0]}
    x = _pool({"pool": "noise_pool"}, health, registry)
    assert x.shape == (60, 1, 8, 8) and x.dtype == np.float32
    digits = registry.get("dataset", "digits").cls().load(None)
    np.testing.assert_array_equal(_pool({"pool": "same"}, health, registry), digits.attacker.x)
    with pytest.raises(ConfigError, match=r"attack: pool=big_pool has inputs of shape "
                                          r"\(1, 10, 10\) but the server's victim"):
        _pool({"pool": "big_pool"}, health, registry)
    with pytest.raises(ConfigError, match=r"attack: pool='nope' is not a registered dataset"):
        _pool({"pool": "nope"}, health, registry)


# -- the cell: recorded, hashed, handed to the attack ----------------------------------------


def test_pool_enters_the_cell_json_and_its_hash(registry, tmp_path):
    (same,) = expand_grid(_spec(tmp_path), registry)
    (own,) = expand_grid(_spec(tmp_path, "pool=digits"), registry)  # the victim's own dataset
    (other,) = expand_grid(_spec(tmp_path, "pool=noise_pool"), registry)
    assert "pool" not in same.to_json()["threat"]  # cells from before the key keep their hash
    assert own == same and config_hash(own, registry) == config_hash(same, registry)
    assert other.to_json()["threat"] == {"num_exits": "granted", "architecture": "granted",
                                         "pool": "noise_pool"}
    assert config_hash(other, registry) != config_hash(same, registry)


def test_attacker_pool_is_the_other_datasets_attacker_split(registry):
    digits = registry.get("dataset", "digits").cls().load(None)
    noise = registry.get("dataset", "noise_pool").cls().load(None)
    same = attacker_pool(registry, "same", digits, None, "tiny_victim")
    other = attacker_pool(registry, "noise_pool", digits, None, "tiny_victim")
    np.testing.assert_array_equal(same, digits.attacker.x)
    np.testing.assert_array_equal(other, noise.attacker.x)
    assert not np.shares_memory(same, digits.attacker.x)


@pytest.mark.integration
@pytest.mark.parametrize("isolation", ["process", "none"])
def test_the_attack_receives_the_chosen_pool(registry, pool_plugin, tmp_path, isolation):
    digits = registry.get("dataset", "digits").cls().load(None)
    noise = registry.get("dataset", "noise_pool").cls().load(None)
    seen = {}
    for pool in ("same", "noise_pool"):
        summary = run_grid(_spec(tmp_path, f"pool={pool}", f"isolation={isolation}"),
                           show_progress=False)
        (result,) = [json.loads(Path(p).read_text()) for p in summary.result_paths]
        assert result["status"] == "ok", result["error"]
        assert result["cell"]["threat"].get("pool", "same") == pool
        seen[pool] = result["diagnostics"]["attack"]["pool_fingerprint"]
    assert seen["same"] == _fingerprint(digits.attacker.x)
    assert seen["noise_pool"] == _fingerprint(noise.attacker.x)
    if isolation == "none":
        return
    # both runs share out=: the leaderboard keeps the two pools apart
    board = aggregate(load_results(tmp_path / "out", FolderTrust.of(tmp_path / "out")), set())
    pools = sorted(row["threat"]["pool"] for row in board["groups"])
    assert pools == ["noise_pool", "same"]
    assert sorted(e["threat"]["pool"] for e in board["attack_ranking"]) == pools
    table = format_table(board)
    assert "pool_probe [pool: noise_pool]" in table
    assert sum("[pool:" in line for line in table.splitlines()) == 1
