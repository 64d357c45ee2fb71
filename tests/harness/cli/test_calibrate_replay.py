"""`harness calibrate` records a live profile; `timing=replay` replays it deterministically."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.errors import ConfigError
from harness.plugins.manager import make_plugin_manager
from harness.run.config import parse_overrides
from harness.run.runner import run_grid

pytestmark = pytest.mark.integration  # runs cells, workers or subprocesses


def test_calibrate_then_replay_is_deterministic(tiny_plugin, tmp_path, capsys):
    profile = tmp_path / "profile.json"
    assert main(["calibrate", "victim=tiny_victim", "samples=5", f"out={profile}",
                 f"cache_dir={tmp_path / 'cache'}"]) == 0
    assert "replay it with" in capsys.readouterr().out
    data = json.loads(profile.read_text())
    assert data["victim"] == "tiny_victim" and len(data["samples"]) == 3

    def run(out):
        spec = parse_overrides(["victims=tiny_victim", "attacks=tiny_attack", "defenses=none",
                                "timing=replay", f"profile={profile}", f"out={tmp_path / out}",
                                "isolation=none", "replicas=0", "secret=public"])
        summary = run_grid(spec, make_plugin_manager(), show_progress=False)
        return json.loads(summary.result_paths[0].read_text())

    a, b = run("a"), run("b")
    assert a["status"] == "ok", a["error"]
    assert a["timing"]["mode"] == "replay" and a["timing"]["profile_hash"]
    assert a["metrics"] == b["metrics"]


def test_profile_of_another_victim_is_refused(tiny_plugin, tmp_path):
    profile = tmp_path / "profile.json"
    assert main(["calibrate", "victim=tiny_victim", "samples=3", f"out={profile}"]) == 0
    data = json.loads(profile.read_text())
    data["victim"] = "someone_else"
    profile.write_text(json.dumps(data))
    spec = parse_overrides(["victims=tiny_victim", "attacks=tiny_attack", "defenses=none",
                            "timing=replay", f"profile={profile}", f"out={tmp_path / 'o'}"])
    with pytest.raises(ConfigError, match="recorded for victim 'someone_else'"):
        run_grid(spec, make_plugin_manager(), show_progress=False)


def test_calibrate_rejects_unknown_keys(capsys):
    assert main(["calibrate", "bogus=1"]) == 2
    assert "unknown key 'bogus'" in capsys.readouterr().err
