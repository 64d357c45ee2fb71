"""The small multi-exit CNN: shapes, staged execution, costs, deterministic init."""

from __future__ import annotations

import itertools

import pytest
import torch

from harness.model import MultiExitNet
from harness.nn.blocks import Normalize
from victims.architectures.small_cnn import SmallCNN, stage_plan

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


def build_small_cnn(input_shape, num_classes, num_exits=4, width=32, seed=0, mean=None,
                    std=None, **params):
    """The registered component's build, with the knobs as keywords."""
    normalization = None if mean is None and std is None else (mean, std)
    return SmallCNN(width=width, **params).build(input_shape, num_classes, num_exits, seed=seed,
                                                 normalization=normalization)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("num_exits", [2, 4])
def test_forward_returns_every_exit(shape, num_exits):
    net = build_small_cnn(shape, 7, num_exits=num_exits, width=4).eval()
    assert isinstance(net, MultiExitNet) and net.num_exits == num_exits
    outs = net(torch.rand(3, *shape, generator=torch.Generator().manual_seed(0)))
    assert len(outs) == num_exits
    assert all(o.shape == (3, 7) for o in outs)


@pytest.mark.parametrize("shape", SHAPES)
def test_run_until_matches_forward(shape):
    net = build_small_cnn(shape, 10, num_exits=4, width=4).eval()
    x = torch.rand(5, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outs = net(x)
        for k in range(net.num_exits):
            assert torch.equal(net.run_until(x, k), outs[k])


@pytest.mark.parametrize("shape", SHAPES)
def test_exit_cost_strictly_increasing(shape):
    net = build_small_cnn(shape, 10, num_exits=4, width=8)
    cost = net.exit_cost
    assert all(b > a for a, b in itertools.pairwise(cost))
    fractions = net.cost_fraction
    assert fractions[-1] == 1.0
    # every stage adds a conv block: no exit is almost free compared to the previous one
    steps = [b - a for a, b in zip((0.0, *fractions), fractions, strict=False)]
    assert min(steps) > 0.1


def test_stage_plan_keeps_feature_maps_at_least_2x2():
    for shape in SHAPES:
        side = shape[1]
        for _, _, pool in stage_plan(shape, 6, 8):
            side = side // 2 if pool else side
            assert side >= 2


def test_init_is_deterministic_and_leaves_global_rng_alone():
    before = torch.get_rng_state()
    a = build_small_cnn((1, 8, 8), 10, width=4, seed=5)
    b = build_small_cnn((1, 8, 8), 10, width=4, seed=5)
    c = build_small_cnn((1, 8, 8), 10, width=4, seed=6)
    assert torch.equal(torch.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_normalisation_lives_in_the_first_block():
    net = build_small_cnn((3, 32, 32), 10, width=4, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    assert isinstance(net.blocks[0][0], Normalize)
    assert not any(isinstance(m, Normalize) for b in net.blocks[1:] for m in b.modules())


@pytest.mark.parametrize("kwargs", [
    {"input_shape": (8, 8)}, {"num_exits": 1}, {"width": 0}, {"mean": (0.5,)},
])
def test_bad_arguments_raise(kwargs):
    args = {"input_shape": (1, 8, 8), "num_classes": 10} | kwargs
    with pytest.raises(ValueError):
        build_small_cnn(**args)
