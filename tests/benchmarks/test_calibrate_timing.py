"""The timing calibration, checked on the committed dedicated corpus.

The shipped ``dedicated`` deployment must be what ``benchmarks/calibrate_timing.py``
fits from its committed fitting traces, and it must predict the Bayes exit accuracy of
the committed held-out traces (``digits_cnn`` itself among them) as the closing figures
of its calibration say. A constant edited by hand, or a corpus re-recorded without
re-fitting, fails here.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import calibrate_timing as cal
from benchmarks.latency_corpus import load_corpus
from harness.plugins.registry import load_registry
from harness.plugins.toolbox import Toolbox
from harness.timing.deployments import DEPLOYMENTS


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[dict]]:
    tools = Toolbox(load_registry())
    fitting = [t for t in load_corpus(("dedicated",)) if t.get("quiet", True)]
    held = load_corpus(("dedicated_heldout",))
    assert len(fitting) >= 20 and len(held) >= 12, "the committed dedicated corpus is missing"
    return {"fit": cal.prepare(fitting, tools),
            "heldout": cal.prepare(held, tools)}


def test_the_shipped_dedicated_deployment_is_what_its_fitting_traces_give(corpus):
    shipped = DEPLOYMENTS["dedicated"]
    reference = next(t for t in corpus["heldout"] if t["name"] == cal.REFERENCE_TRACE)
    neighbours = (round(shipped.spread - 0.1, 2), shipped.spread, round(shipped.spread + 0.1, 2))
    fitted = cal.fit(corpus["fit"], reference, spreads=neighbours)
    assert fitted["spread"] == shipped.spread
    assert fitted["base_s"] == pytest.approx(shipped.base_s, rel=2e-3)
    assert fitted["full_s"] == pytest.approx(shipped.full_s, rel=2e-3)
    assert fitted["deviation"] == pytest.approx(shipped.deviation, abs=1e-4)
    np.testing.assert_allclose(fitted["shape"], shipped.shape, atol=1e-4)


def test_held_out_traces_are_predicted_as_the_calibration_reports(corpus):
    rows = cal.check(DEPLOYMENTS["dedicated"], corpus["heldout"], "heldout")
    summary = cal.summary(rows)
    assert summary["traces"] == len(corpus["heldout"])
    assert summary["mean_abs_error"] <= 0.03  # the target; the worst case is reported
    digits = [r for r in rows if r["mix"] == "victim"]
    assert len(digits) == 4  # digits_cnn on torch and ONNX, 1 and 2 threads
    for row in digits:  # never below the live channel by more than noise: attacker-favourable
        assert -0.01 <= row["error"] <= 0.05, row


def test_the_shared_deployment_is_the_noisier_channel_on_the_same_traces(corpus):
    dedicated = cal.check(DEPLOYMENTS["dedicated"], corpus["heldout"], "heldout")
    shared = cal.check(DEPLOYMENTS["shared"], corpus["heldout"], "heldout")
    assert np.mean([r["model_bound"] for r in shared]) < np.mean(
        [r["model_bound"] for r in dedicated]) - 0.1
