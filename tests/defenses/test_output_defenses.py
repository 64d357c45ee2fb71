"""Output-perturbation defenses: rows on the simplex, the top-1 label kept where promised."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from defenses.output import (
    GaussianNoise,
    LabelOnly,
    ReverseSigmoid,
    Rounding,
    keep_top1,
    project_to_simplex,
)
from harness.serving.endpoint import SIMPLEX_ATOL
from harness.testing import conformance_cases
from harness.testing.strategies import probability_vectors
from tests.defenses.batches import output_batch

ROWS = st.integers(2, 12).flatmap(lambda c: probability_vectors(c))


def assert_on_simplex(out: np.ndarray, shape: tuple[int, int]) -> None:
    assert out.shape == shape
    assert np.isfinite(out).all()
    assert out.min() >= -SIMPLEX_ATOL
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=SIMPLEX_ATOL)


def test_every_output_defense_and_prada_run_the_conformance_kit():
    """tests/harness/testing/test_conformance.py runs check_defense on every registered defense."""
    names = {p.id for p in conformance_cases("defense")}
    assert {"label_only", "rounding", "reverse_sigmoid", "gaussian_noise", "prada"} <= names


@given(ROWS)
def test_label_only_is_the_one_hot_top1(probs):
    out = LabelOnly().perturb_outputs(output_batch(probs))
    assert_on_simplex(out, probs.shape)
    np.testing.assert_array_equal(out, np.eye(probs.shape[1])[probs.argmax(axis=1)])


@given(ROWS, st.integers(0, 4))
def test_rounding_keeps_top1_on_a_grid(probs, decimals):
    out = Rounding(decimals=decimals).perturb_outputs(output_batch(probs))
    assert_on_simplex(out, probs.shape)
    np.testing.assert_array_equal(out.argmax(axis=1), probs.argmax(axis=1))
    scaled = out * 10.0 ** decimals
    np.testing.assert_allclose(scaled, np.round(scaled), atol=1e-6)
    others = np.ones_like(probs, dtype=bool)
    others[np.arange(len(probs)), probs.argmax(axis=1)] = False
    assert np.all(np.abs(out - probs)[others] <= 10.0 ** -decimals + 1e-12)


def test_rounding_puts_the_residual_on_the_top1():
    probs = np.array([[0.123, 0.456, 0.421]])
    np.testing.assert_allclose(Rounding(decimals=1).perturb_outputs(output_batch(probs)),
                               [[0.1, 0.5, 0.4]])
    np.testing.assert_allclose(Rounding(decimals=2).perturb_outputs(output_batch(probs)),
                               [[0.12, 0.46, 0.42]])


def test_rounding_rounds_down_where_nearest_would_lose_the_top1():
    probs = np.array([[0.16, 0.15, *[0.69 / 8] * 8]])  # nearest: others sum to 1.0
    out = Rounding(decimals=1).perturb_outputs(output_batch(probs))
    assert_on_simplex(out, probs.shape)
    assert out.argmax() == 0
    np.testing.assert_allclose(out, [[0.9, 0.1, *[0.0] * 8]])


def test_reverse_sigmoid_is_the_published_map():
    probs = np.array([[0.7, 0.2, 0.1]])
    beta, gamma = 0.8, 0.5
    z = np.log(probs / (1 - probs))
    raw = probs - beta * (1 / (1 + np.exp(-gamma * z)) - 0.5)
    out = ReverseSigmoid(beta=beta, gamma=gamma).perturb_outputs(output_batch(probs))
    np.testing.assert_allclose(out, raw / raw.sum(), rtol=1e-12)


@given(ROWS, st.floats(0.01, 5.0), st.floats(0.01, 5.0))
def test_reverse_sigmoid_keeps_top1_on_simplex(probs, beta, gamma):
    out = ReverseSigmoid(beta=beta, gamma=gamma).perturb_outputs(output_batch(probs))
    assert_on_simplex(out, probs.shape)
    np.testing.assert_array_equal(out.argmax(axis=1), probs.argmax(axis=1))


@given(ROWS, st.floats(1.0, 8.0, exclude_min=True), st.floats(0.0, 1.0))
def test_reverse_sigmoid_unenforced_keeps_top1_when_increasing(probs, gamma, share):
    beta = max(share / gamma, 1e-3)  # gamma > 1 and beta * gamma <= 1: the map increases
    out = ReverseSigmoid(beta=beta, gamma=gamma, keep_label=False).perturb_outputs(
        output_batch(probs))
    assert_on_simplex(out, probs.shape)
    top = probs.argmax(axis=1)
    rows = np.arange(len(probs))
    assert np.all(out[rows, top] >= out.max(axis=1) - 1e-12)


def test_reverse_sigmoid_unenforced_can_flip_outside_that_regime():
    probs = np.array([[0.55, 0.45]])
    flipped = ReverseSigmoid(beta=1.0, gamma=3.0, keep_label=False).perturb_outputs(
        output_batch(probs))
    assert flipped.argmax() == 1
    kept = ReverseSigmoid(beta=1.0, gamma=3.0).perturb_outputs(output_batch(probs))
    np.testing.assert_allclose(kept, flipped[:, ::-1])


@given(ROWS, st.floats(0.0, 2.0), st.integers(0, 2**16))
def test_gaussian_noise_keeps_top1_on_simplex(probs, scale, seed):
    out = GaussianNoise(scale=scale).perturb_outputs(output_batch(probs, seed))
    assert_on_simplex(out, probs.shape)
    np.testing.assert_array_equal(out.argmax(axis=1), probs.argmax(axis=1))


def test_gaussian_noise_draws_from_the_batch_rng_only():
    probs = np.random.default_rng(0).dirichlet(np.ones(10), size=50)
    a = GaussianNoise(scale=0.3, keep_label=False).perturb_outputs(output_batch(probs, 7))
    b = GaussianNoise(scale=0.3, keep_label=False).perturb_outputs(output_batch(probs, 7))
    np.testing.assert_array_equal(a, b)
    assert_on_simplex(a, probs.shape)
    assert (a.argmax(axis=1) != probs.argmax(axis=1)).any()  # unenforced: labels move
    np.testing.assert_allclose(GaussianNoise(scale=0.0).perturb_outputs(output_batch(probs)),
                               probs, atol=1e-12)


@given(st.integers(1, 8).flatmap(
    lambda c: st.lists(st.floats(-5, 5), min_size=c, max_size=c)), st.integers(0, 2**16))
def test_projection_is_the_nearest_simplex_point(row, seed):
    v = np.array([row])
    p = project_to_simplex(v)
    assert_on_simplex(p, v.shape)
    others = np.random.default_rng(seed).dirichlet(np.ones(v.shape[1]), size=64)
    assert np.linalg.norm(v - p) <= np.linalg.norm(v - others, axis=1).min() + 1e-9


@pytest.mark.parametrize("n", [0, 3])
def test_keep_top1_swaps_back_moved_rows(n):
    original = np.tile([0.1, 0.6, 0.3], (n, 1))
    perturbed = np.tile([0.5, 0.2, 0.3], (n, 1))
    np.testing.assert_array_equal(keep_top1(original, perturbed),
                                  np.tile([0.2, 0.5, 0.3], (n, 1)))


def test_reverse_sigmoid_defaults_flip_unless_enforced():
    probs = np.array([[0.4, 0.3, 0.3, *[0.0] * 7]])
    unenforced = ReverseSigmoid(keep_label=False).perturb_outputs(output_batch(probs))
    assert unenforced.argmax() >= 3
    assert ReverseSigmoid().perturb_outputs(output_batch(probs)).argmax() == 0


def test_keep_top1_breaks_a_tie_with_an_earlier_class():
    out = keep_top1(np.array([[0.45, 0.55]]), np.array([[0.5, 0.5]]))
    assert out.argmax() == 1
    assert_on_simplex(out, (1, 2))
