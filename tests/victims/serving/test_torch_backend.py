from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.errors import ConfigError, InvalidQueryError
from victims.serving import TorchBackend


@pytest.fixture(scope="module")
def served(victim, tmp_path_factory):
    return TorchBackend(warmup=0).load(victim, "cpu", tmp_path_factory.mktemp("cache"))


def test_per_sample_serving_matches_batched_path(victim, served):
    x = victim.data.test.x
    per_exit = served.exit_probs(x)
    want = victim.strategy.exits(per_exit)
    assert len(set(want.tolist())) == 3, "fixture thresholds should spread the exits"
    trace = served.serve(x, strategy=victim.strategy)
    np.testing.assert_array_equal(trace.exits, want)
    rows = np.stack([per_exit[k][i] for i, k in enumerate(want)])
    np.testing.assert_allclose(trace.probs, rows, atol=1e-5)
    assert trace.latency_s.shape == (len(x),)
    assert np.all(np.isfinite(trace.latency_s)) and np.all(trace.latency_s > 0)


def test_forced_exits_stop_there(victim, served):
    x = victim.data.test.x[:12]
    forced = np.arange(12) % 3
    trace = served.serve(x, exits=forced)
    np.testing.assert_array_equal(trace.exits, forced)
    per_exit = served.exit_probs(x)
    np.testing.assert_allclose(trace.probs, [per_exit[k][i] for i, k in enumerate(forced)],
                               atol=1e-5)


def _count_calls(modules):
    counts = [0] * len(modules)
    handles = []
    for k, m in enumerate(modules):
        def hook(_m, _inp, _out, k=k):
            counts[k] += 1
        handles.append(m.register_forward_hook(hook))
    return counts, handles


def test_true_early_exit_never_runs_later_blocks(victim, served):
    x = victim.data.test.x
    first = int(np.flatnonzero(victim.strategy.exits(served.exit_probs(x)) == 0)[0])
    blocks, handles = _count_calls(served.net.blocks)
    heads, more = _count_calls(served.net.heads)
    try:
        trace = served.serve(x[first:first + 1], strategy=victim.strategy)
        assert trace.exits.tolist() == [0]
        assert blocks == [1, 0, 0] and heads == [1, 0, 0]
        served.serve(x[:1], exits=np.array([1]), repeats=2)
        assert blocks == [3, 2, 0] and heads == [3, 2, 0]
    finally:
        for h in handles + more:
            h.remove()


def test_warmup_runs_every_exit_untimed(victim, tmp_path):
    served = TorchBackend(warmup=2).load(victim, "cpu", tmp_path)
    blocks, handles = _count_calls(served.net.blocks)
    try:
        served.serve(victim.data.test.x[:3], exits=np.zeros(3, dtype=np.int64))
    finally:
        for h in handles:
            h.remove()
    assert blocks == [2 + 3, 2, 2]


@pytest.mark.parametrize(("aggregate", "expected_s"), [("min", 2e-6), ("median", 5e-6)])
def test_repeats_are_aggregated_and_warmup_is_not_timed(victim, tmp_path, monkeypatch,
                                                         aggregate, expected_s):
    served = TorchBackend(aggregate=aggregate, warmup=1).load(victim, "cpu", tmp_path)
    real = served._serve_one
    durations_ns = iter([10**9] + [5000, 2000, 9000] * 4)  # the warm-up request comes first
    stops = []

    def scripted(x1, strategy, stop):
        _, k, p = real(x1, strategy, stop)
        stops.append(stop)
        return next(durations_ns), k, p

    monkeypatch.setattr(served, "_serve_one", scripted)
    trace = served.serve(victim.data.test.x[:4], strategy=victim.strategy, repeats=3)
    np.testing.assert_allclose(trace.latency_s, expected_s)
    assert len(stops) == 1 + 4 * 3 and stops[0] == victim.model.num_exits - 1


def test_serving_restores_threads_and_leaves_victim_alone(victim, served):
    before = torch.get_num_threads()
    served.serve(victim.data.test.x[:2], strategy=victim.strategy)
    served.exit_probs(victim.data.test.x[:2])
    assert torch.get_num_threads() == before
    assert served.net is not victim.model
    assert served.cost_fraction == victim.model.cost_fraction
    assert served.num_exits == 3 and served.num_classes == 10


@pytest.mark.parametrize(("kwargs", "match"), [
    ({}, "give a strategy"),
    ({"exits": np.array([0, 3])}, r"\[0, 2\]"),
    ({"exits": np.array([0])}, "shape"),
    ({"exits": np.array([0.0, 1.0])}, "integer"),
    ({"exits": np.array([0, 1]), "repeats": 0}, "repeats"),
])
def test_bad_serve_arguments_are_clear_errors(victim, served, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        served.serve(victim.data.test.x[:2], **kwargs)


def test_bad_inputs_are_clear_errors(served):
    with pytest.raises(InvalidQueryError, match=r"expected \(n, 1, 8, 8\)"):
        served.exit_probs(np.zeros((2, 8, 8), dtype=np.float32))
    with pytest.raises(InvalidQueryError, match="dtype"):
        served.exit_probs(np.zeros((2, 1, 8, 8), dtype=np.int64))


@pytest.mark.parametrize(("params", "match"), [
    ({"aggregate": "mean"}, "aggregate"), ({"warmup": -1}, "warmup"),
    ({"batch_size": 0}, "batch_size"), ({"num_threads": 0}, "num_threads"),
])
def test_bad_backend_params_are_clear_errors(victim, tmp_path, params, match):
    with pytest.raises(ConfigError, match=match):
        TorchBackend(**params).load(victim, "cpu", tmp_path)


def test_empty_batch(victim, served):
    x = victim.data.test.x[:0]
    assert [p.shape for p in served.exit_probs(x)] == [(0, 10)] * 3
    assert served.serve(x, strategy=victim.strategy).exits.shape == (0,)


def test_channels_last_serving_matches(victim, served, tmp_path):
    nhwc = TorchBackend(warmup=0, channels_last=True).load(victim, "cpu", tmp_path)
    x = victim.data.test.x
    a, b = nhwc.serve(x, strategy=victim.strategy), served.serve(x, strategy=victim.strategy)
    np.testing.assert_array_equal(a.exits, b.exits)
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)
