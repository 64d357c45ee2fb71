"""Bad input found by trying the CLI as a new user would: one line, exit code 2, no work done.

Every case must fail before any cell runs or anything is trained, with a message that
names what was wrong and what is allowed; nothing is written to ``out=`` or the cache.
"""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.serving.devices import cuda_available


def _run_fails(capsys, args, message, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    code = main(["run", f"out={out}", f"cache_dir={cache}", "attacks=knockoff", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), err
    assert message in lines[0], lines[0]
    assert not (cache / "weights").exists()  # nothing trained
    assert not (out / "cells").exists()  # no cell ran
    return lines[0]


@pytest.mark.parametrize(("args", "message"), [
    (["timing.sigma=NaN"], "not allowed: parameters must be finite numbers"),
    (["timing.sigma=Infinity"], "not allowed: parameters must be finite numbers"),
    (["timing.sigma=-inf"], "not allowed: parameters must be finite numbers"),
    (["timing.sigma=abc", "timing=analytic"], "timing=analytic: parameter sigma='abc' is invalid"),
    (["timing.sigma=9", "timing=analytic"], "allowed: a finite number in [0, 5]"),
    (["timing.jitter=0.1"], "unknown timing parameter(s) ['jitter'] for timing=realistic; valid: "
                            "timing.base_s"),
    (["timing.sigma=0.1"], "unknown timing parameter(s) ['sigma'] for timing=realistic"),
    (["timing.spread=-1"], "timing=realistic: parameter spread=-1 is invalid"),
    (["timing.sigma=0.1", "timing=live"], "timing.sigma is a parameter of the modelled timings"),
    (["attack.knockoff.epochs=abc"], "attack 'knockoff': parameter epochs='abc' is invalid"),
    (["attack.knockoff.epochs=2.5"], "epochs=2.5 is invalid; allowed: an integer in [0, 100000]"),
    (["attack.knockoff.threshold=[0.9"], "looks like a list or object but is not valid JSON"),
    (["attack.knockoff.architecture=resnet"], "registered architecture names: mobilenet"),
    (["attack.knockoff.widht=8"], "has no parameter(s) ['widht']"),
    (["budget=99999999999999999999999"], "allowed: an integer in [1, 1000000]"),
    (["budget=1e3"], "budget='1e3' is invalid; allowed: an integer"),
    (["seeds=18446744073709551616"], "each an integer in [0, 4294967295]"),
    (["seeds=-1"], "seeds='-1' is invalid"),
    (["timeout=nan", "executor=process"], "timeout='nan' is invalid; allowed: a finite number"),
    (["timeout=inf", "executor=process"], "timeout='inf' is invalid; allowed: a finite number"),
    (["ray.address=auto"], "is a setting of executor=ray"),
    (["jobs=0", "executor=process"], "jobs='0' is invalid; allowed: an integer in [1, 512]"),
    (["victim.digits_cnn.thresholds=[0.5]"], "got 1 thresholds for a 4-exit network"),
    (["victim.digits_cnn.thresholds=[0.5,0.6,1.5]"], "outside the 'max_prob' policy's range"),
    (["victim.digits_cnn.policy=softmax"], "registered exit_policy names: entropy, max_prob"),
    (["victim.digits_cnn.train_seed=-1"], "train_seed=-1 is invalid"),
    (["victims=cifar10_resnet56"], "dataset 'cifar10' needs a local data_root"),
    (["defense.none.p=abc"], "defense 'none' has no parameter(s) ['p']"),
    (["backend=tensorrt"], "unknown backend 'tensorrt'; available: onnx, torch"),
])
def test_bad_run_values_stop_before_any_work(capsys, tmp_path, args, message):
    _run_fails(capsys, args, message, tmp_path)


@pytest.mark.skipif(cuda_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused_before_any_work(capsys, tmp_path):
    _run_fails(capsys, ["device=cuda"], "device='cuda' was requested but no CUDA device", tmp_path)


@pytest.mark.parametrize("typo", ["--forc", "--quie", "--conf=x.toml"])
def test_abbreviated_options_are_refused_not_completed(capsys, tmp_path, typo):
    with pytest.raises(SystemExit) as info:
        main(["run", typo, f"out={tmp_path / 'out'}"])
    assert info.value.code == 2
    assert f"unrecognized arguments: {typo}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        main(["leaderboard", "build", "--o", str(tmp_path / "b"), str(tmp_path)])
    assert not (tmp_path / "b").exists()


def test_named_victim_with_missing_data_root(capsys, tmp_path):
    _run_fails(capsys, ["victims=cifar10_resnet56", f"data_root={tmp_path / 'nowhere'}"],
               "is not a directory", tmp_path)


def test_bad_paths_stop_before_any_work(capsys, tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for key in ("out", "cache_dir"):
        code = main(["run", "attacks=knockoff", f"{key}={a_file}"])
        assert code == 2 and f"{key}={a_file} is a file" in capsys.readouterr().err
    code = main(["run", "attacks=knockoff", f"out={a_file / 'sub'}"])
    assert code == 2 and "cannot be created or written" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["binary", "directory", "missing", "bad_toml"])
def test_bad_config_files(capsys, tmp_path, kind):
    path = tmp_path / "grid.toml"
    if kind == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "directory":
        path.mkdir()
    elif kind == "bad_toml":
        path.write_text("budget = [1,\n")
    code = main(["run", "--config", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("harness: error: --config"), err
    expected = {"binary": "is not a text file", "directory": "is a directory",
                "missing": "file not found", "bad_toml": "invalid TOML"}[kind]
    assert expected in err


def test_toml_values_are_checked_like_the_command_line(capsys, tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text("[timing]\nsigma = nan\n")
    assert main(["run", "--config", str(path)]) == 2
    assert "not a finite number" in capsys.readouterr().err


def test_keys_after_an_option_are_parsed(capsys, tmp_path):
    code = main(["run", f"out={tmp_path}", "--quiet", "budget=0"])
    assert code == 2
    assert "budget='0' is invalid; allowed: an integer in [1, 1000000]" in (
        capsys.readouterr().err)
    with pytest.raises(SystemExit) as info:  # argparse's usage error
        main(["run", f"out={tmp_path}", "--quiet", "--bogus"])
    assert info.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_leaderboard_paths(capsys, tmp_path):
    a_file = tmp_path / "file.json"
    a_file.write_text("{}")
    assert main(["leaderboard", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["leaderboard", str(tmp_path / "reslts")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "reslts").exists()  # a typo no longer creates an empty board
    assert main(["leaderboard", str(tmp_path)]) == 2
    assert "holds no cells/ folder" in capsys.readouterr().err
    (tmp_path / "cells").mkdir()
    (tmp_path / "leaderboard.json").mkdir()  # cannot be replaced by a file
    assert main(["leaderboard", str(tmp_path)]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_calibrate_out_is_checked_before_measuring(capsys, tmp_path):
    cache = tmp_path / "cache"
    assert main(["calibrate", f"out={tmp_path}", f"cache_dir={cache}"]) == 2
    assert "is a directory; give a file path" in capsys.readouterr().err
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["calibrate", f"out={a_file / 'p.json'}", f"cache_dir={cache}"]) == 2
    assert f"the folder of out={a_file} is a file" in capsys.readouterr().err
    assert main(["calibrate", "samples=99999999999", f"cache_dir={cache}"]) == 2
    assert "samples='99999999999' must be an integer in 1..100,000" in capsys.readouterr().err
    assert not cache.exists()  # nothing trained or measured


def test_list_shows_parameters_defaults_and_constraints(capsys):
    assert main(["list", "attacks"]) == 0
    out = capsys.readouterr().out
    assert "knockoff" in out
    assert 'epochs = 30' in out and "an integer in [0, 100000]" in out
    assert 'estimator = null' in out and "a registered exit_estimator name" in out
    assert main(["list", "architectures"]) == 0
    assert "small_cnn" in capsys.readouterr().out


def test_plugins_json_lists_the_builtin_policy_plugin(capsys):
    assert main(["plugins", "--json"]) == 0
    infos = {i["name"]: i for i in json.loads(capsys.readouterr().out)}
    assert infos["harness.plugins.builtins"]["hooks"] == ["harness_register_exit_policies"]
    assert "harness_register_architectures" in infos["victims.plugin"]["hooks"]
