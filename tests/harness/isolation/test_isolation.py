"""Isolation pieces: the wire format, stolen models as data, the tripwire, benign plans,
``transport=http`` end to end, and the keys that configure them."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from harness.cell.benign import BenignPlan
from harness.cell.stolen import StolenModelError, StolenRecord, encode_stolen, rebuild_stolen
from harness.errors import ConfigError
from harness.isolation.tripwire import Tripwire
from harness.isolation.wire import Message, WireError, decode, encode
from harness.plugins.manager import make_plugin_manager
from harness.plugins.registry import load_registry
from harness.plugins.toolbox import Toolbox
from harness.protocol import StolenModel
from harness.run.config import parse_overrides
from harness.run.runner import run_grid
from harness.strategy import OutputStrategy

ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=5))


@given(arrays=st.dictionaries(st.text(min_size=1, max_size=8), ARRAYS, max_size=4),
       meta=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3))
def test_wire_messages_round_trip(arrays, meta):
    back = decode(encode(Message("kind", meta, arrays)))
    assert back.kind == "kind" and back.meta == meta and set(back.arrays) == set(arrays)
    for name, array in arrays.items():
        assert back.arrays[name].dtype == array.dtype
        np.testing.assert_array_equal(back.arrays[name], array)


def test_wire_refuses_pickles_objects_garbage_and_unexpected_kinds():
    with pytest.raises(WireError, match="numeric"):
        encode(Message("x", {}, {"a": np.array([object()])}))
    with pytest.raises(WireError, match="bad magic"):
        decode(pickle.dumps({"a": 1}))
    blob = encode(Message("query", {}, {"x": np.zeros(4, np.float32)}))
    with pytest.raises(WireError, match="truncated"):
        decode(blob[:-3])
    with pytest.raises(WireError, match="trailing"):
        decode(blob + b"\0")
    with pytest.raises(WireError, match="unexpected message kind"):
        decode(blob, expected=("stolen",))


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def _stolen(registry, **changes):
    net = Toolbox(registry).new_network("small_cnn", (1, 8, 8), 10, 3, seed=1, width=4)
    stolen = StolenModel(net, OutputStrategy(registry.policy("max_prob"), (0.5, 0.6)),
                         np.array([0, 1, 2]), {"note": "ok"})
    message = encode_stolen(stolen)
    for key, value in changes.items():
        message.arrays[key] = value
    return stolen, message


def test_a_stolen_model_comes_back_identical(registry):
    stolen, record = _stolen(registry)
    wire = decode(encode(Message("stolen", record.meta, record.arrays)))
    back = rebuild_stolen(StolenRecord(wire.meta, wire.arrays), registry, input_shape=(1, 8, 8),
                          num_classes=10)
    x = torch.rand(5, 1, 8, 8)
    for a, b in zip(stolen.model.eval()(x), back.model(x), strict=True):
        torch.testing.assert_close(a, b)
    assert back.strategy.to_json() == stolen.strategy.to_json()
    assert back.diagnostics == {"note": "ok"}
    np.testing.assert_array_equal(back.estimated_exits, [0, 1, 2])


def test_bad_stolen_models_are_refused_with_the_reason(registry):
    _, message = _stolen(registry)
    name = next(k for k in message.arrays if k.endswith("weight"))
    cases = {
        "NaN": {name: np.full_like(message.arrays[name], np.nan)},
        "shape": {name: np.zeros(3, np.float32)},
        "unexpected": {"state/extra.weight": np.zeros(2, np.float32)},
    }
    for match, change in cases.items():
        _, bad = _stolen(registry, **change)
        with pytest.raises(StolenModelError, match=match):
            rebuild_stolen(bad, registry, input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(StolenModelError, match="inputs"):
        rebuild_stolen(message, registry, input_shape=(3, 8, 8), num_classes=10)
    plain = torch.nn.Module()
    with pytest.raises(StolenModelError, match="MultiExitNet"):
        encode_stolen(StolenModel(plain, None))  # type: ignore[arg-type]


def test_a_network_not_built_through_the_registry_is_refused_with_the_fix(registry):
    stolen, _ = _stolen(registry)
    del stolen.model.harness_recipe
    with pytest.raises(StolenModelError, match=r"ctx\.new_network"):
        encode_stolen(stolen)


def test_the_tripwire_sees_a_rewrite_even_with_the_same_content_and_restores_it(tmp_path):
    result = tmp_path / "out" / "cells" / "a.json"
    result.parent.mkdir(parents=True)
    result.write_text(json.dumps({"status": "ok", "metrics": {"exit_agreement": 0.5}}))
    failed = result.with_name("b.json")
    failed.write_text(json.dumps({"status": "failed"}))
    weights = tmp_path / "cache" / "weights" / "k.pt"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights")
    wire = Tripwire.arm(tmp_path / "out", tmp_path / "cache")
    assert wire.changed() == ([], [])
    original = result.read_bytes()
    result.write_text(json.dumps({"status": "ok", "metrics": {"exit_agreement": 1.0}}))
    weights.write_bytes(b"weights")  # same bytes, still a rewrite
    failed.write_text("{}")  # failed results may be re-run: not guarded
    results, cache = wire.changed()
    assert results == [result] and cache == [weights]
    wire.repair(results, cache)
    assert result.read_bytes() == original and not weights.exists()
    # a result the run itself writes again (--force, an untrusted file) is the driver's
    # write, not tampering: left out, so it is neither flagged nor reverted
    wire = Tripwire.arm(tmp_path / "out", tmp_path / "cache", frozenset({str(result)}))
    result.write_text(json.dumps({"status": "ok", "metrics": {"exit_agreement": 0.5}}))
    assert wire.changed() == ([], [])


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 400), seed=st.integers(0, 2**32 - 1))
def test_benign_plans_partition_the_test_split_among_random_clients(n, seed):
    plan = BenignPlan.draw(n, np.random.default_rng(seed), batches=7)
    order = np.concatenate(plan.chunks) if plan.chunks else np.zeros(0, int)
    assert sorted(order.tolist()) == list(range(n))
    assert sorted(plan.mirror_order.tolist()) == list(range(n))
    assert all(1 <= len(c) <= 16 for c in plan.chunks)
    assert len(set(plan.client_ids)) <= 4
    assert len({plan.attacker_id, plan.mirror_id, *plan.client_ids}) == len(
        set(plan.client_ids)) + 2
    assert all(cid.startswith("client-") for cid in (*plan.client_ids, plan.attacker_id,
                                                      plan.mirror_id))
    assert len(plan.mirror_first) == 7


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 120), seed=st.integers(0, 2**32 - 1),
       sizes=st.lists(st.integers(1, 300), min_size=1, max_size=12))
def test_the_mirror_client_copies_the_attackers_traffic_shape(n, seed, sizes):
    from harness.cell.benign import InterleavedEndpoint
    from harness.serving.endpoint import EndpointResponse

    sent: list[tuple[str, int]] = []

    def respond(x, cid):
        sent.append((cid, len(x)))
        k = len(x)
        return EndpointResponse(probs=np.ones((k, 3)) / 3, exits=np.zeros(k, np.int64),
                                latency_s=np.ones(k), cost_fraction=np.ones(k),
                                admitted=np.ones(k, bool), depth=np.zeros(k, np.int64))

    plan = BenignPlan.draw(n, np.random.default_rng(seed), batches=len(sizes))
    stream = InterleavedEndpoint(attack=respond, benign=respond, plan=plan,
                                 test_x=np.zeros((n, 2)), budget=sum(sizes))
    for size in sizes:
        stream.respond(np.zeros((size, 2)))
    traffic = stream.finish()
    attacker = [k for cid, k in sent if cid == plan.attacker_id]
    mirror = [k for cid, k in sent if cid == plan.mirror_id]
    assert attacker == mirror == sizes  # same batch sizes, same volume
    where = [i for i, (cid, _) in enumerate(sent) if cid == plan.attacker_id]
    for i, first in zip(where, plan.mirror_first, strict=False):  # right beside each batch
        assert sent[i - 1 if first else i + 1][0] == plan.mirror_id
    rows = traffic.rows
    assert len(rows) == len(traffic.response.exits) == n + sum(sizes)
    assert np.bincount(rows, minlength=n).min() >= 1  # every test input, chunks included


def test_transport_http_needs_isolation():
    with pytest.raises(ConfigError, match="transport=http needs isolation=process"):
        parse_overrides(["transport=http", "isolation=none"])
    with pytest.raises(ConfigError, match="inproc"):
        parse_overrides(["transport=grpc"])


@pytest.mark.integration
def test_a_cell_over_http_gives_every_score(tmp_path):
    spec = parse_overrides(["victims=digits_cnn", "victim.digits_cnn.epochs=1",
                            "victim.digits_cnn.width=8", "attacks=exit_steal", "defenses=none",
                            "attack.exit_steal.epochs=2", "budget=40", "transport=http",
                            f"out={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}",
                            "replicas=0"])
    summary = run_grid(spec, make_plugin_manager(), show_progress=False)
    result = json.loads(summary.result_paths[0].read_text())
    assert result["status"] == "ok", result["error"]
    assert result["cell"]["transport"] == "http"
    assert result["diagnostics"]["isolation"]["transport"] == "http"
    metrics = result["metrics"]
    assert metrics["queries_used"] == 40
    for name in ("exit_agreement", "fidelity", "exit_estimation_accuracy",
                 "benign_accuracy_drop", "latency_overhead_p50", "bayes_exit_accuracy"):
        assert metrics[name] is not None, name


def test_network_jitter_is_a_checked_recorded_key():
    spec = parse_overrides(["timing.network=lan"])
    assert spec.settings.network == "lan"
    with pytest.raises(ConfigError, match="lan"):
        parse_overrides(["timing.network=satellite"])
    with pytest.raises(ConfigError, match="isolation=process"):
        parse_overrides(["timing.network=wan", "isolation=none"])


class _Ended:
    def __init__(self, exitcode):
        self.exitcode = exitcode


@pytest.mark.parametrize(("exitcode", "blamed"), [
    (-9, None), (-15, None), (-1, None),  # killed from outside the cell
    (-11, "defense:pad"), (-24, "defense:pad"), (-6, "defense:pad"), (1, "defense:pad"),
])
def test_a_dead_server_is_blamed_on_the_defense_only_when_its_code_can_have_ended_it(
        exitcode, blamed):
    from harness.isolation.server_worker import RemoteServer

    server = object.__new__(RemoteServer)
    server._process = _Ended(exitcode)
    server.defense_label, server.defense_component = "defense 'pad'", "defense:pad"
    failure = server.died("exited")
    assert failure.component == blamed
    assert ("not blamed" in str(failure)) == (blamed is None)


def test_an_out_folder_holding_the_python_installation_is_refused_before_work(tmp_path):
    import harness

    package_root = Path(harness.__file__).resolve().parents[1]
    spec = parse_overrides(["victims=digits_cnn", "attacks=knockoff", "defenses=none",
                            f"out={package_root}", f"cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(ConfigError, match=r"out=.* holds .*plugin workers import from"):
        run_grid(spec, make_plugin_manager(), show_progress=False)
    assert not (tmp_path / "cache").exists()
