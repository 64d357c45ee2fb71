from __future__ import annotations

import numpy as np
import pytest

from harness.errors import BudgetExhaustedError, ComponentFailure, InvalidQueryError, QueryError
from harness.protocol import ServedModel
from harness.serving.endpoint import Endpoint
from harness.serving.oracle import Oracle
from harness.stages import QUANTILE_LEVELS, Defense, ServerInfo
from harness.strategy import MaxProbPolicy, OutputStrategy
from harness.timing.models import AnalyticTiming

SHAPE = (1, 2, 2)


class FakeServed(ServedModel):
    """Exit k is confident when the input's mean pixel is <= (k + 1) / 3."""

    num_exits = 3
    cost_fraction = (0.25, 0.5, 1.0)

    def exit_probs(self, x):
        m = x.reshape(len(x), -1).mean(1)
        out = []
        for k in range(3):
            conf = np.where(m <= (k + 1) / 3, 0.95, 0.4)
            probs = np.stack([conf, 1 - conf], axis=1)
            out.append(probs)
        return out

    def serve(self, x, strategy=None, exits=None, repeats=1):
        raise AssertionError("not used in analytic timing")


class Refuser(Defense):
    name = "refuse_dark"

    def admit(self, batch):
        return batch.inputs.reshape(len(batch), -1).mean(1) > 0.1


class Shortener(Defense):
    name = "shortener"

    def shape_latency(self, batch):
        return batch.latency_s * 0.5


STRATEGY = OutputStrategy(MaxProbPolicy(), (0.9, 0.9))
INFO = ServerInfo(num_exits=3, num_classes=2, cost_fraction=(0.25, 0.5, 1.0),
                  latency_quantiles=((1e-4,) * 7, (2e-4,) * 7, (3e-4,) * 7),
                  quantile_levels=QUANTILE_LEVELS, timing="analytic", output="probs",
                  strategy=STRATEGY)


def make_oracle(budget=10, output="probs", defense=None, truth=False):
    endpoint = Endpoint(FakeServed(), STRATEGY, defense or Defense(), AnalyticTiming(),
                        np.random.default_rng(0), np.random.default_rng(1), server=INFO,
                        defense_label="defense 'test'")
    return Oracle(endpoint, budget, output, SHAPE, (0.0, 1.0), allow_truth=truth)


def batch(values):
    return np.stack([np.full(SHAPE, v, dtype=np.float32) for v in values])


def test_query_returns_probs_latency_and_logs_true_exits():
    oracle = make_oracle()
    res = oracle.query(batch([0.3, 0.6, 0.9]))
    assert res.outputs.shape == (3, 2) and res.latency_s.shape == (3,)
    assert res.admitted.all() and oracle.queries_used == 3
    assert oracle.served_exits().tolist() == [0, 1, 2]
    with pytest.raises(QueryError, match="reference attacks only"):
        oracle.true_exits_for_reference()
    assert make_oracle(truth=True).true_exits_for_reference().size == 0


def test_label_output():
    res = make_oracle(output="label").query(batch([0.3, 0.9]))
    assert res.outputs.dtype == np.int64 and res.outputs.shape == (2,)


@pytest.mark.parametrize("bad, message", [
    ([[0.5]], "numpy array or torch tensor"),
    (np.zeros((2, 1, 2, 2), dtype=np.int64), "dtype int64 is not allowed"),
    (np.zeros((1, 2, 2), dtype=np.float32), r"shape \(1, 2, 2\) does not match"),
    (np.zeros((0, 1, 2, 2), dtype=np.float32), "empty query batch"),
    (np.full((1, 1, 2, 2), np.nan, dtype=np.float32), "NaN or inf"),
    (np.full((1, 1, 2, 2), np.inf, dtype=np.float32), "NaN or inf"),
    (np.full((1, 1, 2, 2), 2.0, dtype=np.float32), "outside the input range"),
])
def test_invalid_queries_refused_and_not_charged(bad, message):
    oracle = make_oracle()
    with pytest.raises(InvalidQueryError, match=message):
        oracle.query(bad)
    assert oracle.queries_used == 0


def test_budget_enforced_whole_batch_refused():
    oracle = make_oracle(budget=4)
    oracle.query(batch([0.5, 0.5, 0.5]))
    with pytest.raises(BudgetExhaustedError, match="3 of 4 used, 1 left"):
        oracle.query(batch([0.5, 0.5]))
    assert oracle.queries_used == 3
    oracle.query(batch([0.5]))
    assert oracle.budget_left == 0


def test_torch_tensor_accepted():
    import torch

    res = make_oracle().query(torch.full((2, *SHAPE), 0.5))
    assert res.outputs.shape == (2, 2)


def test_monitor_refusals_reported_and_charged():
    oracle = make_oracle(defense=Refuser())
    res = oracle.query(batch([0.0, 0.5]))
    assert res.admitted.tolist() == [False, True]
    assert np.isnan(res.outputs[0]).all() and np.isnan(res.latency_s[0])
    assert oracle.queries_used == 2 and oracle.refused_count == 1
    assert oracle.served_exits().tolist() == [-1, 1]
    labels = make_oracle(output="label", defense=Refuser()).query(batch([0.0, 0.5])).outputs
    assert labels[0] == -1


def test_defense_may_not_shorten_latency():
    with pytest.raises(ComponentFailure, match=r"defense 'test'.*shape_latency"):
        make_oracle(defense=Shortener()).query(batch([0.5]))


def test_same_seed_same_latencies():
    a = make_oracle().query(batch([0.3, 0.6, 0.9])).latency_s
    b = make_oracle().query(batch([0.3, 0.6, 0.9])).latency_s
    assert np.array_equal(a, b)
