"""Knockoff's adaptive sampling: rewards always finite and normalised, the bandit learns."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from attacks.knockoff_bandit import (
    BanditState,
    RewardScale,
    as_distributions,
    raw_rewards,
    used_rewards,
)

C = 5
any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)
special_rows = st.sampled_from([
    np.eye(C)[0], np.full(C, 1.0 / C), np.zeros(C), np.eye(C)[3] * 1e-300,
    np.array([np.nan] * C), np.array([np.inf, 0, 0, 0, 0]), np.array([-1.0, 2, 0, 0, 0]),
    np.array([1e308, 1e308, 0, 0, 0])])


@st.composite
def answers(draw):
    n = draw(st.integers(1, 12))
    rows = [draw(st.one_of(special_rows, hnp.arrays(np.float64, C, elements=any_float)))
            for _ in range(n)]
    return np.stack(rows)


@settings(max_examples=150, deadline=None)
@given(answers(), answers(), st.sampled_from(["probs", "label"]), st.integers(0, 2**31 - 1))
def test_rewards_are_finite_and_in_unit_range(victim_raw, sub_raw, output, seed):
    n = min(len(victim_raw), len(sub_raw))
    if output == "label":
        outputs = np.random.default_rng(seed).integers(0, C, n)
    else:
        outputs = victim_raw[:n]
    victim = as_distributions(outputs, C)
    substitute = as_distributions(sub_raw[:n], C)
    assert np.isfinite(victim).all() and np.allclose(victim.sum(1), 1.0)
    kinds = used_rewards("all", output)
    mean = victim.mean(axis=0)
    raw = raw_rewards(victim, substitute, mean, kinds)
    assert raw.shape == (n, len(kinds)) and np.isfinite(raw).all()
    scale = RewardScale.empty(len(kinds))
    state = BanditState.initial(3)
    for i, r in enumerate(raw):
        scale = scale.observe(r)
        value = scale.normalise(r)
        assert np.isfinite(value) and 0.0 <= value <= 1.0
        state = state.update(i % 3, value, alpha=0.5)
    assert np.isfinite(state.preferences).all() and np.isfinite(state.baseline)
    assert np.isclose(state.policy().sum(), 1.0)


def test_reward_values_follow_the_paper():
    victim = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [0.0, 1.0, 0.0]])
    sub = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.5, 0.5, 0.0]])
    mean = np.array([0.5, 0.5, 0.0])
    raw = raw_rewards(victim, sub, mean, ("certainty", "diversity", "loss"))
    assert raw[:, 0] == pytest.approx([0.5, 0.0, 1.0])  # top-1 minus top-2
    assert raw[:, 1] == pytest.approx([0.2 + 0.1, 1 / 3, 0.5])  # mass above the mean
    assert raw[0, 2] == pytest.approx(-(victim[0] * np.log(sub[0])).sum())
    assert raw[2, 2] == pytest.approx(-np.log(0.5))


def test_label_outputs_use_only_the_rewards_labels_allow():
    assert used_rewards("all", "probs") == ("certainty", "diversity", "loss")
    assert used_rewards("all", "label") == ("diversity", "loss")
    assert used_rewards("loss", "label") == ("loss",)
    with pytest.raises(ValueError, match="needs output=probs"):
        used_rewards("certainty", "label")
    assert as_distributions(np.array([2, 0]), 3).tolist() == [[0, 0, 1], [1, 0, 0]]


def test_gradient_bandit_moves_toward_the_rewarded_action():
    state = BanditState.initial(4)
    g = np.random.default_rng(0)
    for _ in range(300):
        a = int(g.choice(4, p=state.policy()))
        state = state.update(a, 1.0 if a == 2 else 0.0, alpha=0.3)
    assert state.policy().argmax() == 2 and state.policy()[2] > 0.7
    assert 0.0 < state.baseline < 1.0 and state.steps == 300


def test_normalisation_is_running_min_max():
    scale = RewardScale.empty(2).observe(np.array([1.0, 5.0]))
    assert scale.normalise(np.array([1.0, 5.0])) == 0.0  # empty ranges
    scale = scale.observe(np.array([3.0, 5.0]))
    assert scale.normalise(np.array([3.0, 5.0])) == pytest.approx(0.5)  # (1 + 0) / 2
