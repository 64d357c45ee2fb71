"""The uniform defense stages: what each stage sees, what the server refuses, protocol 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

import harness
from harness.errors import ComponentFailure, PluginError
from harness.plugins.manager import HarnessPluginWarning, make_plugin_manager
from harness.plugins.registry import Registry
from harness.run.config import parse_overrides
from harness.run.runner import run_grid
from harness.stages import PROTOCOL_VERSION, Defense, StageBatch
from harness.testing import tiny_endpoint


class Recorder(Defense):
    """Keeps every batch it is shown."""

    name = "recorder"

    def __init__(self):
        pass

    def reset(self):
        self.seen = []

    def admit(self, batch):
        self.seen.append(("admit", batch))
        return np.arange(len(batch)) % 3 != 2

    def choose_exits(self, batch):
        self.seen.append(("choose_exits", batch))
        return batch.exits

    def perturb_outputs(self, batch):
        self.seen.append(("perturb_outputs", batch))
        return batch.outputs

    def shape_latency(self, batch):
        self.seen.append(("shape_latency", batch))
        return batch.latency_s


def test_each_stage_sees_one_read_only_batch_filled_so_far(tiny_victim):
    defense = Recorder()
    defense.reset()
    endpoint = tiny_endpoint(tiny_victim, defense, client_id="alice")
    x = tiny_victim.data.attacker.x[:9]
    endpoint.respond(x)
    stages = dict(defense.seen)
    assert list(stages) == ["admit", "choose_exits", "perturb_outputs", "shape_latency"]
    admit = stages["admit"]
    assert isinstance(admit, StageBatch) and admit.client_id == "alice" and len(admit) == 9
    assert admit.exits is None and admit.outputs is None and admit.latency_s is None
    choose = stages["choose_exits"]
    assert len(choose) == 6  # only admitted queries go on
    np.testing.assert_array_equal(choose.exits, choose.policy_exits)
    assert len(choose.per_exit_probs) == 3 and choose.outputs is None
    perturb, shape = stages["perturb_outputs"], stages["shape_latency"]
    assert perturb.outputs.shape == (6, 10) and np.all(perturb.latency_s > 0)
    np.testing.assert_allclose(shape.outputs.sum(axis=1), 1.0)
    for batch in stages.values():
        for array in (batch.inputs, batch.exits, batch.outputs, batch.latency_s):
            if array is not None:
                assert not array.flags.writeable
    info = admit.server
    assert info.num_exits == 3 and info.num_classes == 10 and info.timing == "analytic"
    assert info.output == "probs" and info.strategy == tiny_victim.strategy
    medians = [info.latency_quantile(k, 0.5) for k in range(3)]
    assert medians == sorted(medians) and info.full_latency(0.5) == medians[-1]
    assert info.latency_quantile(2, 0.99) > info.latency_quantile(2, 0.5)


class Bad(Defense):
    """Misbehaves in the way ``mode`` says."""

    name = "bad"

    def __init__(self, mode="off_simplex"):
        self.mode = mode

    def admit(self, batch):
        return np.ones(len(batch) + (self.mode == "short_mask"), dtype=bool)

    def choose_exits(self, batch):
        if self.mode == "exit_out_of_range":
            return batch.exits + 5
        if self.mode == "fractional_exit":
            return batch.exits + 0.5
        return batch.exits

    def perturb_outputs(self, batch):
        if self.mode == "off_simplex":
            return batch.outputs * 2
        if self.mode == "negative":
            out = batch.outputs.copy()
            out[:, 0] -= 0.5
            out[:, 1] += 0.5
            return out
        if self.mode == "mutates_in_place":
            batch.outputs[:] = 0.1
        return batch.outputs

    def shape_latency(self, batch):
        if self.mode == "nan_latency":
            return np.full(len(batch), np.nan)
        if self.mode == "inf_latency":
            return np.full(len(batch), np.inf)
        if self.mode == "shorter":
            return batch.latency_s / 2
        return batch.latency_s


@pytest.mark.parametrize(("mode", "stage", "message"), [
    ("short_mask", "admit", "returned shape"),
    ("exit_out_of_range", "choose_exits", "integer exits in 0..2"),
    ("fractional_exit", "choose_exits", "integer exits"),
    ("off_simplex", "perturb_outputs", "probability simplex"),
    ("negative", "perturb_outputs", "probability simplex"),
    ("mutates_in_place", "perturb_outputs", "read-only"),
    ("nan_latency", "shape_latency", "finite latency"),
    ("inf_latency", "shape_latency", "finite latency"),
    ("shorter", "shape_latency", "never shorter"),
])
def test_the_server_refuses_malformed_answers_naming_the_defense(tiny_victim, mode, stage,
                                                                   message):
    endpoint = tiny_endpoint(tiny_victim, Bad(mode=mode), defense_label="defense 'bad'")
    with pytest.raises(ComponentFailure, match=rf"defense 'bad': stage '{stage}' .*{message}"):
        endpoint.respond(tiny_victim.data.attacker.x[:5])
    assert endpoint.failure is not None


class OldSignature(Defense):
    name = "old_signature"

    def __init__(self):
        pass

    def shape_latency(self, latency_s, exits, rng):
        return latency_s


class OldPlugin:
    @harness.hookimpl
    def harness_register_defenses(self, register):
        register(OldSignature)


def test_a_protocol_1_defense_is_refused_at_registration_with_a_porting_message():
    with pytest.warns(HarnessPluginWarning,
                      match=rf"older protocol \(this harness speaks protocol {PROTOCOL_VERSION}\)"
                            r".*stage 'shape_latency' takes \(latency_s, exits, rng\).*since "
                            r"protocol 2 .*def shape_latency\(self, batch\)"):
        registry = Registry.from_manager(make_plugin_manager(extra_plugins=(OldPlugin(),)))
    assert "old_signature" not in registry.names("defense")
    with pytest.raises(PluginError, match="def shape_latency\\(self, batch\\)"):
        Registry.from_manager(make_plugin_manager(strict=True, extra_plugins=(OldPlugin(),)))


def test_a_protocol_1_victim_is_refused_with_a_porting_message():
    from harness.protocol import Victim

    class OldVictim(Victim):
        name = "old_victim"
        dataset = "digits"

        def __init__(self):
            pass

        def prepare(self, data, cache_dir, device):
            raise AssertionError("never called")

    class Plugin:
        @harness.hookimpl
        def harness_register_victims(self, register):
            register(OldVictim)

    with pytest.raises(PluginError, match=r"prepare takes \(data, cache_dir, device\).*"
                                          r"def prepare\(self, data, ctx\)"):
        Registry.from_manager(make_plugin_manager(strict=True, extra_plugins=(Plugin(),)))


class PhaseSpy(Defense):
    """Slows answers only in the first phase it sees (it counts resets); records client ids."""

    name = "phase_spy"
    resets_seen: list[int] = []  # noqa: RUF012 - shared on purpose, to observe instances
    clients_seen: list[tuple[str, int]] = []  # noqa: RUF012
    instances_seen: list[int] = []  # noqa: RUF012

    def __init__(self):
        pass

    def reset(self):
        self.resets = getattr(self, "resets", 0) + 1
        PhaseSpy.resets_seen.append(self.resets)
        self.instance = len(PhaseSpy.resets_seen)  # 1: the attack's stream; 2: the draws

    def admit(self, batch):
        PhaseSpy.clients_seen.append((batch.client_id, len(batch.inputs)))
        PhaseSpy.instances_seen.append(self.instance)
        return np.ones(len(batch.inputs), dtype=bool)

    def shape_latency(self, batch):
        if self.resets == 1:  # "the attack phase"
            return batch.latency_s + 1e-3
        return batch.latency_s


class SpyPlugin:
    @harness.hookimpl
    def harness_register_defenses(self, register):
        register(PhaseSpy)


@pytest.mark.integration
def test_benign_clients_share_the_attacks_defense_so_it_cannot_tell_when_it_is_measured(
        tiny_plugin, tmp_path):
    PhaseSpy.resets_seen.clear()
    PhaseSpy.clients_seen.clear()
    PhaseSpy.instances_seen.clear()
    spec = parse_overrides(["victims=tiny_victim", "attacks=tiny_attack", "defenses=phase_spy",
                            "attack.tiny_attack.queries=20", "budget=40",
                            "isolation=none", "replicas=0",  # the spy counts in this process
                            f"out={tmp_path}", f"cache_dir={tmp_path / 'cache'}"])
    summary = run_grid(spec, make_plugin_manager(extra_plugins=(SpyPlugin(),)),
                       show_progress=False)
    result = json.loads(summary.result_paths[0].read_text())
    assert result["status"] == "ok" and result["protocol_version"] == PROTOCOL_VERSION
    # one defended stream for the attacker and the benign clients; a second, fresh one
    # answers the capacity's draws (a defense that told them apart could only lower the
    # capacity's Monte Carlo figure, never its cross-validated one)
    assert PhaseSpy.resets_seen == [1, 1]
    seen = list(zip(PhaseSpy.clients_seen, PhaseSpy.instances_seen, strict=True))
    drawn = {client for client, i in seen if i == 2}
    PhaseSpy.clients_seen[:] = [client for client, i in seen if i == 1]
    assert result["metrics"]["latency_overhead_p50"] > 1.0  # the padding shows in the cost
    ids = [cid for cid, _ in PhaseSpy.clients_seen]
    shaped = sorted({cid for cid, n in PhaseSpy.clients_seen if n == 20})
    # the attacker and the benign mirror of its traffic: same batch sizes, random ids
    assert len(shaped) == 2 and all(cid.startswith("client-") for cid in shaped)
    assert [n for cid, n in PhaseSpy.clients_seen if cid == shaped[0]] == [
        n for cid, n in PhaseSpy.clients_seen if cid == shaped[1]]
    assert len(set(ids)) == 6  # four benign clients, the mirror and the attacker
    assert {cid for cid, _ in drawn} <= set(shaped)  # the draws come as the attacker
    first_attack = min(ids.index(cid) for cid in shaped)
    assert 0 < first_attack < len(ids) - 1  # benign traffic before and after the attack
