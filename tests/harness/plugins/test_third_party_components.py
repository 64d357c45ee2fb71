"""A third-party package with its own architecture, exit policy and exit estimator.

It is installed through the ``harness`` entry point, like a user's package, and run
through the real command line: its victim trains a network of its own family, the
built-in attacks build substitutes of that family with no ``architecture=`` override,
``exit_steal`` uses the package's estimator and policy by name, and bad parameters of
the package's components stop the run before any work.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.cli import main
from harness.plugins.manager import make_plugin_manager
from harness.plugins.registry import Registry, load_registry
from harness.testing import check_component
from tests.harness.conftest import install_plugin, trust

ROOT = Path(__file__).resolve().parents[3]

MLP_PLUGIN = textwrap.dedent('''
    """mlp-exits: a multi-exit MLP family, a margin exit policy and a gap estimator."""
    import numpy as np
    import torch
    from torch import nn

    import harness
    from harness.model import MultiExitNet
    from harness.nn.training import predict_exit_probs, train_multi_exit
    from harness.params import Interval, ListOf
    from harness.protocol import Architecture, ExitEstimate, ExitEstimator, TrainedVictim, Victim
    from harness.strategy import ExitPolicy, OutputStrategy


    class TinyMLP(Architecture):
        """Flatten, then Linear-ReLU blocks with one linear exit head each."""

        name = "tiny_mlp"
        _parameter_constraints = {"hidden": [Interval("int", 1, 1024)]}

        def __init__(self, hidden=32):
            self.hidden = hidden

        def build(self, input_shape, num_classes, num_exits, *, seed=0, normalization=None):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                width = int(np.prod(input_shape))
                blocks, heads = [], []
                for k in range(num_exits):
                    first = [nn.Flatten(), nn.Linear(width, self.hidden)]
                    blocks.append(nn.Sequential(*(first if k == 0 else
                                                  [nn.Linear(self.hidden, self.hidden)]),
                                                nn.ReLU()))
                    heads.append(nn.Linear(self.hidden, num_classes))
            return MultiExitNet(blocks, heads, tuple(input_shape), num_classes)


    def _logit(m):
        return np.log(m) - np.log1p(-m)


    class MarginPolicy(ExitPolicy):
        """Exit when the top-two probability margin reaches the threshold."""

        name = "margin"

        def score(self, probs):
            top2 = np.sort(np.asarray(probs, dtype=np.float64), axis=1)[:, -2:]
            return top2[:, 1] - top2[:, 0]

        def threshold_range(self, num_classes):
            return (0.0, 1.0)

        def confidence_logit(self, logits):
            top2 = torch.softmax(logits, dim=1).topk(2, dim=1).values
            m = (top2[:, 0] - top2[:, 1]).clamp(1e-6, 1 - 1e-6)
            return torch.log(m) - torch.log1p(-m)

        def confidence_logit_np(self, probs):
            return _logit(np.clip(self.score(probs), 1e-6, 1 - 1e-6))

        def threshold_logit(self, tau):
            return float(_logit(min(max(float(tau), 1e-6), 1 - 1e-6)))


    class LargestGaps(ExitEstimator):
        """Cut the sorted log latencies at their K - 1 widest gaps."""

        name = "largest_gaps"
        _parameter_constraints = {"default_exits": [Interval("int", 1, 64)]}

        def __init__(self, default_exits=3):
            self.default_exits = default_exits

        def estimate(self, latency_s, num_exits, rng):
            lat = np.asarray(latency_s, dtype=np.float64)
            y = np.sort(np.log(lat))
            k = min(num_exits or self.default_exits, len(np.unique(y)))
            cut = np.sort(np.argsort(-np.diff(y), kind="stable")[: k - 1])
            bounds = np.exp(0.5 * (y[cut] + y[cut + 1]))
            exits = np.searchsorted(bounds, lat, side="right").astype(np.int64)
            return ExitEstimate(bounds, exits, k)


    class MlpDigits(Victim):
        """A 3-exit MLP on digits with the margin policy (thresholds by validation quantiles)."""

        name = "mlp_digits"
        dataset = "digits"
        family = "tiny_mlp"
        _parameter_constraints = {"hidden": [Interval("int", 1, 1024)],
                                  "epochs": [Interval("int", 1, 1000)],
                                  "shares": [ListOf(Interval("real", 0, 1), min_len=2, max_len=2)]}

        def __init__(self, hidden=32, epochs=15, shares=(0.4, 0.5)):
            self.hidden = hidden
            self.epochs = epochs
            self.shares = shares

        def prepare(self, data, ctx):
            model = ctx.new_network(self.family, data.input_shape, data.num_classes, 3, 0,
                                    hidden=self.hidden)
            train_multi_exit(model, data.train, epochs=self.epochs, lr=3e-3, batch_size=64,
                             seed=0, num_threads=1)
            policy = ctx.policy("margin")
            probs = predict_exit_probs(model, data.val.x)
            left = np.ones(len(data.val.x), dtype=bool)
            thresholds = []
            for k, share in enumerate(self.shares):
                score = policy.score(probs[k])
                tau = float(np.quantile(score[left], 1 - share))
                thresholds.append(tau)
                left &= score < tau
            return TrainedVictim(self.name, model.eval(), OutputStrategy(policy, thresholds),
                                 data, self.family, "mlp-digits-v1")


    @harness.hookimpl
    def harness_register_architectures(register):
        register(TinyMLP)


    @harness.hookimpl
    def harness_register_exit_policies(register):
        register(MarginPolicy)


    @harness.hookimpl
    def harness_register_exit_estimators(register):
        register(LargestGaps)


    @harness.hookimpl
    def harness_register_victims(register):
        register(MlpDigits)
''')


@pytest.fixture
def mlp_plugin(plugin_dir, monkeypatch):
    """A third-party victim family, policy and estimator: trusted, as victims must be."""
    trust(monkeypatch, "mlp-exits")
    install_plugin(plugin_dir, "mlp-exits", "mlp_exits", MLP_PLUGIN, "mlp")
    yield plugin_dir
    sys.modules.pop("mlp_exits", None)


def _harness(args: list[str], plugin_root: Path, cwd: Path,
             trusted: str = "mlp-exits") -> subprocess.CompletedProcess:
    """``harness ARGS`` in a subprocess; ``trusted``: HARNESS_TRUSTED_PLUGINS (the plugin's
    victim is served before the server worker is confined, so it must be trusted)."""
    env = {**os.environ, "PYTHONPATH": f"{plugin_root}{os.pathsep}{ROOT}",
           "HARNESS_TRUSTED_PLUGINS": trusted}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)


def test_components_register_and_conform(mlp_plugin):
    registry = load_registry()
    for kind, name in (("architecture", "tiny_mlp"), ("exit_policy", "margin"),
                       ("exit_estimator", "largest_gaps"), ("victim", "mlp_digits")):
        assert registry.get(kind, name).distribution == "mlp-exits"
    for kind, name in (("architecture", "tiny_mlp"), ("exit_estimator", "largest_gaps")):
        check_component(registry.get(kind, name).cls, registry=registry)
    assert registry.policy("margin").trainable()


@pytest.mark.integration
def test_harness_run_uses_the_plugin_family_policy_and_estimator(mlp_plugin, tmp_path):
    out = tmp_path / "results"
    res = _harness(["run", "victims=mlp_digits", "attacks=exit_steal,knockoff", "defenses=none",
                    "budget=150", f"out={out}", f"cache_dir={tmp_path / 'cache'}",
                    "attack.exit_steal.estimator=largest_gaps", "attack.exit_steal.policy=margin",
                    "attack.exit_steal.epochs=3", "attack.exit_steal.finetune_epochs=2",
                    "attack.knockoff.epochs=2", "replicas=0", "--quiet"], mlp_plugin, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    results = {json.loads(p.read_text())["components"]["attack"]["name"]: json.loads(p.read_text())
               for p in out.glob("cells/**/*.json")}
    assert set(results) == {"exit_steal", "knockoff"}
    for result in results.values():
        assert result["status"] == "ok"
        assert result["components"]["victim"]["distribution"] == "mlp-exits"
        assert result["diagnostics"]["attack"]["substitute_architecture"] == "tiny_mlp"
    steal = results["exit_steal"]
    assert steal["diagnostics"]["attack"]["estimator"] == "largest_gaps"
    assert steal["diagnostics"]["stolen_strategy"]["policy"] == "margin"
    assert steal["diagnostics"]["victim_policy"] == "margin"
    assert 0.0 <= steal["metrics"]["exit_agreement"] <= 1.0


def test_an_untrusted_victim_plugin_is_left_out_saying_how_to_trust_it(mlp_plugin, tmp_path):
    out = tmp_path / "results"
    res = _harness(["run", "victims=mlp_digits", "attacks=knockoff", "defenses=none",
                    "budget=50", f"out={out}", f"cache_dir={tmp_path / 'cache'}",
                    "attack.knockoff.epochs=1", "replicas=0", "--quiet"], mlp_plugin, tmp_path,
                   trusted="")
    assert res.returncode != 0
    assert "registers victim 'mlp_digits', which runs in the evaluator" in res.stderr
    assert "HARNESS_TRUSTED_PLUGINS" in res.stderr
    assert "unknown victim 'mlp_digits'" in res.stderr
    assert not out.exists() or not list(out.glob("cells/**/*.json"))


@pytest.mark.parametrize(("override", "message"), [
    ("attack.exit_steal.estimator_params={\"default_exits\":0}",
     r"default_exits=0 is invalid; allowed: an integer in \[1, 64\]"),
    ("attack.exit_steal.architecture_params={\"hidden\":\"wide\"}",
     r"hidden='wide' is invalid"),
    ("victim.mlp_digits.shares=[0.5]", r"victim 'mlp_digits': parameter shares=\[0.5\] is invalid"),
    ("attack.exit_steal.policy=marginal", r"registered exit_policy names: entropy, margin, max_prob"),
])
def test_bad_plugin_parameters_stop_before_any_work(mlp_plugin, tmp_path, capsys, override,
                                                    message):
    """The command line, in this process (the plugin is on the path through its entry point)."""
    code = main(["run", "victims=mlp_digits", "attacks=exit_steal", "defenses=none",
                 f"out={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}",
                 "attack.exit_steal.architecture=tiny_mlp",
                 "attack.exit_steal.estimator=largest_gaps", override])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("harness: error:")]
    assert len(lines) == 1
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_a_victim_family_that_is_no_registered_architecture_is_warned_about(tiny_plugin):
    import harness
    from harness.run.config import parse_overrides
    from harness.run.grid import expand_grid

    class Orphan:
        @harness.hookimpl
        def harness_register_victims(self, register):
            base = load_registry().get("victim", "tiny_victim").cls
            register(type("OrphanVictim", (base,), {"name": "orphan", "family": "lstm_exits"}))

    registry = Registry.from_manager(make_plugin_manager(extra_plugins=(Orphan(),)))
    spec = parse_overrides(["victims=orphan", "attacks=tiny_attack", "defenses=none"])
    with pytest.warns(UserWarning, match=r"'orphan'.*family 'lstm_exits'.*architecture=\.\.\."):
        expand_grid(spec, registry)
