"""Tiny versions of the four CIFAR multi-exit architectures build and behave as served.

Cost-fraction tolerance: exits are cut between whole units (a conv layer or a residual
block), so exit ``k``'s cost fraction can miss its target ``k / num_exits`` by at most
half of the largest unit's share of the cost, plus the share of the internal heads
(which the placement does not count). The test computes that bound from the network.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from harness.errors import ConfigError, UnknownComponentError
from harness.model import MultiExitNet
from harness.plugins.registry import load_registry
from harness.plugins.toolbox import Toolbox
from victims.architectures import CIFAR_ARCHITECTURES

CLASSES = {cls.name: cls for cls in CIFAR_ARCHITECTURES}

TINY = {
    "vgg16_bn": {"width_mult": 1 / 16},
    "resnet56": {"depth": 20, "width": 4},
    "mobilenet": {"width_mult": 1 / 16},
    "wide_resnet": {"depth": 14, "widen": 1},
}
SHAPES = [(3, 16, 16), (1, 28, 28)]


def build(name: str, shape, num_classes: int, num_exits: int, *, seed: int = 0, mean=None,
          std=None, **params) -> MultiExitNet:
    """The registered component ``name`` built with ``params``; ``mean``/``std`` are its
    normalisation (either alone is refused, as the architecture says)."""
    normalization = None if mean is None and std is None else (mean, std)
    return CLASSES[name](**params).build(shape, num_classes, num_exits, seed=seed,
                                         normalization=normalization)


def _build(name: str, shape=(3, 16, 16), num_exits: int = 4, **extra) -> MultiExitNet:
    return build(name, shape, 5, num_exits, **TINY[name], **extra)


def _flops(module: torch.nn.Module, h: torch.Tensor) -> tuple[int, torch.Tensor]:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = module(h)
    return int(counter.get_total_flops()), out


def test_registry_has_the_four_sdn_architectures_and_they_build_like_their_classes():
    registry = load_registry(load_entrypoints=False)
    assert set(CLASSES) | {"small_cnn"} == set(registry.names("architecture"))
    tools = Toolbox(registry)
    with pytest.raises(UnknownComponentError, match="available: mobilenet, resnet56"):
        tools.new_network("vgg19", (3, 16, 16), 5, 4, seed=0)
    for name in CLASSES:
        via_registry = tools.new_network(name, (3, 16, 16), 5, 4, seed=2, **TINY[name])
        direct = _build(name, seed=2)
        a, b = via_registry.state_dict(), direct.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match=r"depth must be 2 \+ 6n"):
        tools.new_network("resnet56", (3, 16, 16), 5, 4, seed=0, depth=21)
    with pytest.raises(ConfigError, match=r"has no parameter\(s\) \['depht'\]"):
        tools.new_network("resnet56", (3, 16, 16), 5, 4, seed=0, depht=20)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", sorted(TINY))
def test_forward_and_run_until_agree(name, shape):
    net = _build(name, shape).eval()
    x = torch.rand(3, *shape)
    with torch.no_grad():
        outs = net(x)
        assert len(outs) == net.num_exits == 4
        for k, out in enumerate(outs):
            assert out.shape == (3, 5)
            assert torch.isfinite(out).all()
            torch.testing.assert_close(net.run_until(x, k), out)


@pytest.mark.parametrize("name", sorted(TINY))
def test_exit_costs_increase_at_roughly_even_fractions(name):
    net = _build(name).eval()
    cost = net.exit_cost
    assert all(b > a for a, b in itertools.pairwise(cost))
    # recompute unit and head FLOPs to bound how far a cut can miss its target
    h = torch.zeros(1, *net.input_shape)
    unit_flops, head_flops = [], 0
    for k, (block, head) in enumerate(zip(net.blocks, net.heads, strict=True)):
        for unit in block:
            f, h = _flops(unit, h)
            unit_flops.append(f)
        if k < net.num_exits - 1:
            head_flops += _flops(head, h)[0]
    total = cost[-1]
    tolerance = max(unit_flops) / total / 2 + head_flops / total + 1e-9
    for k, frac in enumerate(net.cost_fraction[:-1]):
        assert abs(frac - (k + 1) / net.num_exits) <= tolerance, (k, frac, tolerance)


def test_explicit_exit_fractions_are_followed():
    net = build("resnet56", (3, 8, 8), 3, 3, depth=26, width=2, exit_fractions=(0.2, 0.5))
    frac = net.cost_fraction
    assert frac[0] == pytest.approx(0.2, abs=0.05)
    assert frac[1] == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("name", sorted(TINY))
def test_build_is_deterministic_per_seed_and_leaves_global_rng(name):
    state = torch.get_rng_state()
    a = _build(name, seed=3).state_dict()
    b = _build(name, seed=3).state_dict()
    c = _build(name, seed=4).state_dict()
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_normalisation_is_the_first_op_of_block_zero():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    net = _build("mobilenet", mean=mean, std=std).eval()
    plain = _build("mobilenet").eval()
    assert type(net.blocks[0][0]).__name__ == "Normalize"
    x = torch.rand(2, 3, 16, 16)
    shifted = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(net(x)[-1], plain(shifted)[-1])


@pytest.mark.parametrize("name", sorted(TINY))
def test_training_step_reaches_every_exit(name):
    net = _build(name).train()
    loss = sum(torch.nn.functional.cross_entropy(o, torch.arange(4) % 5)
               for o in net(torch.rand(4, 3, 16, 16)))
    loss.backward()
    for head in net.heads:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


@pytest.mark.parametrize(("name", "kwargs", "message"), [
    ("resnet56", {"depth": 21}, r"depth must be 2 \+ 6n"),
    ("wide_resnet", {"depth": 30}, r"depth must be 2 \+ 6n"),
    ("vgg16_bn", {"width_mult": 0.0}, "width_mult must be > 0"),
    ("mobilenet", {"num_exits": 1}, "num_exits must be >= 2"),
    ("resnet56", {"num_exits": 30, "depth": 8}, "cannot place 30 exits"),
    ("vgg16_bn", {"exit_fractions": (0.5,)}, "needs num_exits - 1 = 3"),
    ("vgg16_bn", {"exit_fractions": (0.5, 0.4, 0.9)}, "strictly increasing"),
    ("mobilenet", {"mean": (0.5,), "std": (0.2,)}, "one value per input channel"),
    ("mobilenet", {"mean": (0.5, 0.5, 0.5)}, "both mean and std"),
])
def test_bad_arguments_are_explained(name, kwargs, message):
    params = {"num_exits": 4, **kwargs}
    with pytest.raises(ConfigError, match=message):
        build(name, (3, 16, 16), 5, **params)
