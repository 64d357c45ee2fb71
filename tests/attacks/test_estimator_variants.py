"""The unsupervised estimators' agreement check: computed, reported, never fatal."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attacks.estimator_variants import DISAGREEMENT, VARIANTS, compare_variants
from attacks.exit_steal import ExitStealAttack
from attacks.exit_steal_variants import ExitStealReference
from harness.errors import ConfigError
from tests.attacks.conftest import FAST


class _Fixed:
    """A stand-in estimator that answers a fixed exit array (or raises)."""

    def __init__(self, exits=None, error=None):
        self.exits, self.error = exits, error


def _run(estimator: _Fixed) -> np.ndarray:
    if estimator.error is not None:
        raise estimator.error
    return estimator.exits


def test_agreement_is_the_share_of_equal_exits_and_disagreement_names_the_far_ones():
    main = np.array([0, 0, 1, 1, 2, 2, 2, 2, 1, 0])
    answers = {"kde": main.copy(), "bocpd": np.where(np.arange(10) < 2, 2, main),
               "ruptures": np.where(np.arange(10) < 1, 2, main)}
    notes = compare_variants(_run, lambda n: _Fixed(answers[n]), main, "bayes")
    assert notes["estimator_variants"] == {"kde": 1.0, "bocpd": 0.8, "ruptures": 0.9}
    assert notes["estimator_disagreement"] == ["bocpd"]  # 0.2 > 0.1; 0.1 is not more
    assert "bayes" not in notes["estimator_variants"]  # the main one is not compared
    assert DISAGREEMENT == 0.1 and set(VARIANTS) >= {"bayes", "kde", "bocpd", "ruptures"}


def test_a_failing_variant_is_reported_and_the_others_still_run():
    main = np.array([0, 1, 1, 0])
    made = {"kde": _Fixed(error=np.linalg.LinAlgError("singular")), "bocpd": _Fixed(main),
            "bayes": _Fixed(1 - main)}
    notes = compare_variants(_run, made.__getitem__, main, "ruptures")
    assert notes["estimator_variants_failed"] == {"kde": "LinAlgError: singular"}
    assert notes["estimator_variants"] == {"bocpd": 1.0, "bayes": 0.0}
    assert notes["estimator_disagreement"] == ["bayes"]


def test_a_harness_error_is_not_swallowed():
    with pytest.raises(ConfigError):
        compare_variants(_run, lambda n: _Fixed(error=ConfigError("refused")), np.zeros(3),
                         "bayes")


def test_the_attack_reports_its_variants_and_the_reference_does_not(make_tiny_oracle,
                                                                     trained_tiny_victim):
    oracle, ctx = make_tiny_oracle(120, "probs")
    stolen = ExitStealAttack(**FAST).steal(oracle, trained_tiny_victim.data.attacker.x.copy(),
                                           ctx)
    d = stolen.diagnostics
    assert set(d["estimator_variants"]) == set(VARIANTS) - {"bayes"}
    assert all(0.0 <= a <= 1.0 for a in d["estimator_variants"].values())
    assert set(d["estimator_disagreement"]) <= set(d["estimator_variants"])
    json.dumps(d)
    reference, ref_ctx = make_tiny_oracle(120, "probs", truth=True)
    ref = ExitStealReference(**FAST).steal(reference, trained_tiny_victim.data.attacker.x.copy(),
                                           ref_ctx)
    assert "estimator_variants" not in ref.diagnostics  # true exits: nothing to compare
