"""The SDN exit-placement helper cuts unit sequences at the requested cost fractions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.errors import ConfigError
from harness.nn.blocks import InternalClassifier
from harness.nn.exits import SDN_FRACTIONS, place_exits, profile_units


def test_even_units_are_cut_evenly():
    assert place_exits([1.0] * 12, 4) == (3, 6, 9, 12)
    assert place_exits([1.0] * 20, 7, SDN_FRACTIONS) == (3, 6, 9, 12, 15, 18, 20)


def test_tail_cost_counts_towards_the_total():
    # 8 units of 1 + a final head of 8: half the network is the first 8 units
    assert place_exits([1.0] * 8, 2, tail_flops=8.0) == (7, 8)
    assert place_exits([1.0] * 8, 2, (0.25,), tail_flops=8.0) == (4, 8)


def test_uneven_units_follow_cumulative_cost():
    # cumulative fractions 0.1, 0.2, 0.7, 0.8, 1.0 -> closest to 1/3 is 0.2, to 2/3 is 0.7
    assert place_exits([1, 1, 5, 1, 2], 3) == (2, 3, 5)


def test_every_block_keeps_a_unit():
    # one huge unit first: all targets fall inside it, cuts still strictly increase
    cuts = place_exits([100, 1, 1, 1], 4)
    assert cuts == (1, 2, 3, 4)


@pytest.mark.parametrize(("args", "message"), [
    (([1] * 3, 4), "cannot place 4 exits in a backbone of 3 units"),
    (([1] * 6, 3, (0.5,)), "needs num_exits - 1 = 2 values"),
    (([1] * 6, 3, (0.6, 0.3)), "strictly increasing"),
    (([1] * 6, 3, (0.0, 0.3)), r"in \(0, 1\)"),
])
def test_bad_placements_raise_config_errors(args, message):
    with pytest.raises(ConfigError, match=message):
        place_exits(*args)


def test_profile_units_measures_flops_and_shapes():
    units = [nn.Conv2d(2, 4, 3, padding=1), nn.Sequential(nn.MaxPool2d(2), nn.Flatten())]
    flops, shapes = profile_units(units, (2, 6, 6))
    assert flops[0] == 2 * 4 * 2 * 9 * 36  # 2 * MACs of a 3x3 conv on 6x6
    assert flops[1] == 0
    assert shapes == [(4, 6, 6), (36,)]


@pytest.mark.parametrize("size", [(8, 8), (7, 5), (2, 2), (1, 1)])
def test_internal_classifier_pools_to_a_small_map(size):
    head = InternalClassifier(3, size, 4, pool=4)
    out = head(torch.rand(2, 3, *size))
    assert out.shape == (2, 4)
