"""Fixtures for harness core tests: a real third-party plugin installed into a temp dir."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
from pathlib import Path

import pytest

from harness.testing.pytester import write_plugin

TINY_PLUGIN = textwrap.dedent('''
    """A tiny third-party plugin used by the tests (installed through an entry point)."""
    import numpy as np

    import harness
    from harness.params import Interval
    from harness.protocol import Attack, StolenModel, Victim
    from harness.stages import Defense
    from harness.strategy import OutputStrategy
    from harness.testing import tiny_victim


    class TinyVictim(Victim):
        """The kit's untrained 3-exit victim on digits: fast, deterministic, exits spread."""

        name = "tiny_victim"
        dataset = "digits"
        family = "small_cnn"
        _parameter_constraints = {"width": [Interval("int", 1, 64)]}

        def __init__(self, width=4):
            self.width = width

        def prepare(self, data, ctx):
            return tiny_victim(data, width=self.width, name=self.name)


    class TinyAttack(Attack):
        """Queries a few pool inputs and returns an untrained copy with fixed thresholds."""

        name = "tiny_attack"
        _parameter_constraints = {"queries": [Interval("int", 1, 10_000)]}

        def __init__(self, queries=20):
            self.queries = queries

        def steal(self, oracle, attacker_data, ctx):
            rng = ctx.rng(0)
            x = attacker_data[rng.permutation(len(attacker_data))[: self.queries]]
            res = oracle.query(x)
            model = ctx.new_network(3, ctx.seed, width=4)
            est = (np.argsort(np.argsort(res.latency_s)) * 3 // len(x)).astype(np.int64)
            return StolenModel(model, OutputStrategy(ctx.policy("max_prob"), (0.1005, 0.1008)),
                               estimated_exits=est,
                               diagnostics={"mean_latency": float(res.latency_s[res.admitted].mean())
                                            if res.admitted.any() else None})


    class BoomAttack(Attack):
        """Always raises (to test failure isolation)."""

        name = "boom"

        def __init__(self):
            pass

        def steal(self, oracle, attacker_data, ctx):
            raise RuntimeError("kaboom")


    class SlowDefense(Defense):
        """Pads every latency by a constant."""

        name = "pad_tiny"

        _parameter_constraints = {"pad_s": [Interval("real", 0, 1)]}

        def __init__(self, pad_s=1e-3):
            self.pad_s = pad_s

        def shape_latency(self, batch):
            return batch.latency_s + self.pad_s


    class RefuseAll(Defense):
        """Refuses every query (the worst-cost defense)."""

        name = "refuse_all"

        def __init__(self):
            pass

        def admit(self, batch):
            return np.zeros(len(batch), dtype=bool)


    @harness.hookimpl
    def harness_register_victims(register):
        register(TinyVictim)


    @harness.hookimpl
    def harness_register_attacks(register):
        register(TinyAttack)
        register(BoomAttack)


    @harness.hookimpl
    def harness_register_defenses(register):
        register(SlowDefense)
        register(RefuseAll)
''')


def install_plugin(root: Path, dist: str, module: str, source: str, ep_name: str,
                   version: str = "0.1.0") -> None:
    """Write ``module.py`` and a ``.dist-info`` with an entry point of group ``harness``."""
    write_plugin(root, module, source, dist=dist, version=version, entry_point=ep_name)


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A directory on sys.path (and PYTHONPATH, for spawned workers) for fake plugins."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    old = [p for p in (sys.path, ) if p]
    monkeypatch.setenv("PYTHONPATH", str(root) + (":" + str(Path.cwd())))
    importlib.invalidate_caches()
    yield root
    del old


def trust(monkeypatch, *names: str) -> None:
    """Name plugins trusted (HARNESS_TRUSTED_PLUGINS): the evaluator imports them itself,
    where an untrusted plugin would only be imported by a confined plugin host."""
    current = [n for n in os.environ.get("HARNESS_TRUSTED_PLUGINS", "").split(",") if n]
    monkeypatch.setenv("HARNESS_TRUSTED_PLUGINS", ",".join([*current, *names]))


@pytest.fixture
def tiny_plugin(plugin_dir, monkeypatch):
    """The tiny test plugin (a victim among others: trusted, as victims must be)."""
    trust(monkeypatch, "tiny")
    install_plugin(plugin_dir, "tiny-harness-plugin", "tiny_harness_plugin", TINY_PLUGIN, "tiny")
    yield "tiny"
    sys.modules.pop("tiny_harness_plugin", None)


EXEC_PLUGIN = textwrap.dedent('''
    """Attacks for the executor tests: one that naps (and logs each run), one that hangs.

    With EXEC_TEST_SLOW_IMPORT_S set, importing this plugin in an executor's worker (not
    the test's own process, EXEC_TEST_DRIVER_PID, nor a cell's isolation workers) sleeps
    first: a worker whose start-up is slow.
    """
    import multiprocessing
    import os
    import time

    import numpy as np

    import harness
    from harness.params import Interval
    from harness.protocol import Attack, StolenModel
    from harness.strategy import OutputStrategy

    _DELAY = float(os.environ.get("EXEC_TEST_SLOW_IMPORT_S", "0"))
    _ISOLATION_WORKER = multiprocessing.current_process().name.startswith("ForkServerProcess")
    if (_DELAY and str(os.getpid()) != os.environ.get("EXEC_TEST_DRIVER_PID")
            and not _ISOLATION_WORKER):  # slow executor workers, not the cell's own workers
        time.sleep(_DELAY)


    def _log(seed):
        log = os.environ.get("EXEC_TEST_LOG")
        if log:
            with open(log, "a") as fh:
                fh.write(f"{seed} {os.getpid()}\\n")


    class NapAttack(Attack):
        """Logs "seed pid" to $EXEC_TEST_LOG, sleeps, then behaves like tiny_attack."""

        name = "nap"
        _parameter_constraints = {"seconds": [Interval("real", 0, 60)]}

        def __init__(self, seconds=0.5):
            self.seconds = seconds

        def steal(self, oracle, attacker_data, ctx):
            _log(ctx.seed)
            time.sleep(self.seconds)
            x = attacker_data[ctx.rng(0).permutation(len(attacker_data))[:20]]
            res = oracle.query(x)
            model = ctx.new_network(3, ctx.seed, width=4)
            est = (np.argsort(np.argsort(res.latency_s)) * 3 // len(x)).astype(np.int64)
            return StolenModel(model, OutputStrategy(ctx.policy("max_prob"), (0.1005, 0.1008)),
                               estimated_exits=est, diagnostics={})


    class HangAttack(Attack):
        """Never returns (a cell only timeout= can stop)."""

        name = "hang"

        def __init__(self):
            pass

        def steal(self, oracle, attacker_data, ctx):
            _log(ctx.seed)
            while True:
                time.sleep(1)


    @harness.hookimpl
    def harness_register_attacks(register):
        register(NapAttack)
        register(HangAttack)
''')


@pytest.fixture
def exec_plugin(tiny_plugin, plugin_dir, monkeypatch):
    """The tiny plugin plus the executor tests' ``nap`` and ``hang`` attacks (trusted)."""
    trust(monkeypatch, "exec")
    install_plugin(plugin_dir, "exec-test-plugin", "exec_test_plugin", EXEC_PLUGIN, "exec")
    yield "exec"
    sys.modules.pop("exec_test_plugin", None)
