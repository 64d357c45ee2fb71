from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import ConfigError
from harness.run.config import parse_name_list, parse_overrides, parse_value


def test_defaults_and_lists():
    spec = parse_overrides([])
    assert spec.victims == ("digits_cnn",) and spec.attacks == ("all",) and spec.seeds == (0,)
    spec = parse_overrides(["attacks=[a,b]", "defenses=x,y", "seeds=0,1,2", "budget=10"])
    assert spec.attacks == ("a", "b") and spec.defenses == ("x", "y")
    assert spec.seeds == (0, 1, 2) and spec.settings.budget == 10


def test_component_params_parsed_as_json_and_scoped():
    spec = parse_overrides(["attack.knockoff.epochs=3", "attack.knockoff.architecture=vgg16_bn",
                            "victim.digits_cnn.thresholds=[0.9,0.8,0.7]", "timing.sigma=0.1"])
    assert spec.params_for("attack", "knockoff") == {"epochs": 3, "architecture": "vgg16_bn"}
    assert spec.params_for("victim", "digits_cnn") == {"thresholds": [0.9, 0.8, 0.7]}
    assert spec.params_for("attack", "other") == {}
    assert spec.settings.timing_params == {"sigma": 0.1, "deployment": "dedicated"}


@pytest.mark.parametrize("override, message", [
    (["foo=1"], "unknown key 'foo'; valid keys"),
    (["budget=0"], "budget='0' is invalid; allowed: an integer in [1, 1000000]"),
    (["budget=-3"], "budget='-3' is invalid; allowed: an integer in [1, 1000000]"),
    (["budget=ten"], "budget='ten' is invalid; allowed: an integer"),
    (["budget=1e3"], "budget='1e3' is invalid; allowed: an integer"),
    (["seeds=0,a"], "seeds='0,a' is invalid; allowed: a list of 1+ items, each an integer in "
                    "[0, 4294967295]"),
    (["seeds=0,0"], "distinct"),
    (["attacks=[a,b"], "unbalanced brackets"),
    (["attacks=a,,b"], "empty name"),
    (["attacks=all,a"], "'all' cannot be combined"),
    (["output=logits"], "output='logits' is invalid; allowed: one of 'probs', 'label'"),
    (["timing=fast"], "allowed: one of 'realistic', 'analytic', 'replay', 'live'"),
    (["jobs=0"], "jobs='0' is invalid; allowed: an integer in [1, 512]"),
    (["executor=threads"], "allowed: one of 'serial', 'process', 'ray'"),
    (["attack.knockoff=3"], "unknown key"),
    (["attack.knockoff.thresholds=[0.9,"], "not valid JSON"),
    (["no_equals_sign"], "is not KEY=VALUE"),
    (["timing=replay"], "needs profile=PATH"),
    (["timeout=-1", "executor=process"], "timeout='-1' is invalid; allowed: a finite number in "
                                         "(0, inf) or null"),
    (["timeout=inf"], "timeout='inf' is invalid"),
    (["timing.network=satellite"], "timing.network='satellite' is invalid; allowed: one of"),
])
def test_bad_overrides_have_specific_errors(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_overrides(override)


def test_timeout_none_and_numbers():
    assert parse_overrides(["timeout=none"]).timeout is None
    assert parse_overrides(["timeout=2"]).timeout == 2.0
    assert parse_overrides(["timeout=0.5"]).timeout == 0.5


def test_toml_config_and_precedence(tmp_path: Path):
    cfg = tmp_path / "grid.toml"
    cfg.write_text('attacks = ["knockoff"]\nseeds = [0, 1]\nbudget = 100\n'
                   '[attack.knockoff]\nepochs = 2\n')
    spec = parse_overrides(["budget=50"], cfg)
    assert spec.attacks == ("knockoff",) and spec.seeds == (0, 1) and spec.settings.budget == 50
    assert spec.params_for("attack", "knockoff") == {"epochs": 2}
    bad = tmp_path / "bad.toml"
    bad.write_text("attacks = [")
    with pytest.raises(ConfigError, match="invalid TOML"):
        parse_overrides([], bad)
    with pytest.raises(ConfigError, match="file not found"):
        parse_overrides([], tmp_path / "missing.toml")


names = st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), min_size=1, max_size=5,
                 unique=True).filter(lambda xs: "all" not in xs)


@given(names, st.booleans())
def test_name_list_round_trip(items, bracketed):
    text = ",".join(items)
    assert parse_name_list("attacks", f"[{text}]" if bracketed else text) == tuple(items)


@given(st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                 st.booleans(), st.lists(st.integers(), max_size=4)))
def test_parse_value_json(value):
    import json

    assert parse_value(json.dumps(value)) == value


def test_every_realistic_cell_records_its_deployment_and_the_default_is_named():
    default = parse_overrides([]).settings
    explicit = parse_overrides(["timing.deployment=dedicated"]).settings
    assert default.to_json()["timing"]["params"] == {"deployment": "dedicated"}
    assert default == explicit  # the same cells, the same config hashes
    shared = parse_overrides(["timing.deployment=shared"]).settings
    assert shared.to_json()["timing"]["params"] == {"deployment": "shared"}
    assert parse_overrides(["timing=analytic"]).settings.timing_params == {}


def test_a_bad_deployment_is_one_line_that_lists_the_choices(tmp_path, capsys):
    from harness.cli.main import main

    assert main(["run", "timing.deployment=gpu", f"out={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "timing.deployment='gpu'" in err
    assert "'dedicated'" in err and "'shared'" in err
    assert not (tmp_path / "out").exists()
