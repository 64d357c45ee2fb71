"""SDN-style exit placement: cut a backbone into blocks and attach exit heads.

A backbone is written as a flat sequence of *units* (a conv layer, a residual block,
...). :func:`profile_units` runs one zero sample through the units and measures each
unit's FLOPs with :mod:`torch.utils.flop_counter` and its output shape.
:func:`place_exits` cuts the sequence after the units whose cumulative cost is closest
to the target fractions of the full network's cost (even fractions ``k / num_exits`` by
default, or e.g. :data:`SDN_FRACTIONS`). :func:`assemble` groups the units into
``nn.Sequential`` blocks and attaches an :class:`InternalClassifier` to every cut and the
architecture's own classifier to the end, giving a :class:`harness.model.MultiExitNet`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from harness.errors import ConfigError
from harness.model import MultiExitNet
from harness.nn.blocks import InternalClassifier, Normalize, init_weights
from harness.params import Interval, ListOf

SDN_FRACTIONS: tuple[float, ...] = (0.15, 0.30, 0.45, 0.60, 0.75, 0.90)
"""Internal-classifier positions of Kaya et al.'s Shallow-Deep Networks (7 exits)."""
EXIT_FRACTIONS = [ListOf(Interval("real", 0, 1, closed="neither"), min_len=1), None]
"""Constraint of an architecture's ``exit_fractions`` parameter (None: even fractions)."""
HEAD_POOL = [Interval("int", 1, 64)]
"""Constraint of an architecture's ``head_pool`` parameter (an exit head's pooled side)."""


def check_common(input_shape: Sequence[int], num_classes: int, num_exits: int,
                 arch: str) -> tuple[int, int, int]:
    """Validate the arguments every builder shares; return ``(channels, height, width)``."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"{arch}: input_shape must be (channels, height, width) with positive "
                          f"sizes, got {tuple(input_shape)}")
    if num_classes < 2:
        raise ConfigError(f"{arch}: num_classes must be >= 2, got {num_classes}")
    if num_exits < 2:
        raise ConfigError(f"{arch}: num_exits must be >= 2 (the final exit counts), "
                          f"got {num_exits}")
    return shape[0], shape[1], shape[2]


def profile_units(units: Sequence[nn.Module], input_shape: Sequence[int],
                  ) -> tuple[list[int], list[tuple[int, ...]]]:
    """FLOPs of each unit and its output shape (batch dim excluded), for one sample."""
    flops, shapes = [], []
    h = torch.zeros((1, *input_shape))
    with torch.no_grad():
        for unit in units:
            was_training = unit.training
            unit.eval()
            counter = FlopCounterMode(display=False)
            with counter:
                h = unit(h)
            unit.train(was_training)
            flops.append(int(counter.get_total_flops()))
            shapes.append(tuple(h.shape[1:]))
    return flops, shapes


def place_exits(unit_flops: Sequence[float], num_exits: int,
                fractions: Sequence[float] | None = None, tail_flops: float = 0.0,
                ) -> tuple[int, ...]:
    """Cut positions (exclusive unit indices) for ``num_exits`` exits; the last is the end.

    Internal exit ``k`` goes after the unit whose cumulative cost is closest to
    ``fractions[k]`` of the whole network (units + ``tail_flops``, the final
    classifier); cuts are strictly increasing and every block keeps >= 1 unit.
    """
    n = len(unit_flops)
    targets = (tuple(k / num_exits for k in range(1, num_exits)) if fractions is None
               else tuple(float(f) for f in fractions))
    if len(targets) != num_exits - 1:
        raise ConfigError(f"exit_fractions needs num_exits - 1 = {num_exits - 1} values (one per "
                          f"internal exit), got {len(targets)}")
    if any(not 0 < t < 1 for t in targets) or any(a >= b for a, b in itertools.pairwise(targets)):
        raise ConfigError(f"exit_fractions must be strictly increasing values in (0, 1), "
                          f"got {list(targets)}")
    if num_exits > n:
        raise ConfigError(f"cannot place {num_exits} exits in a backbone of {n} units; "
                          f"use num_exits <= {n} or a deeper network")
    total = float(sum(unit_flops)) + float(tail_flops)
    cumulative = [sum(unit_flops[: i + 1]) / total for i in range(n)]
    cuts: list[int] = []
    for k, target in enumerate(targets):
        low = cuts[-1] + 1 if cuts else 1           # block k gets >= 1 unit
        high = n - (num_exits - 1 - k)              # leave >= 1 unit per later block
        best = min(range(low, high + 1), key=lambda c: (abs(cumulative[c - 1] - target), c))
        cuts.append(best)
    cuts.append(n)
    return tuple(cuts)


def assemble(units: Sequence[nn.Module], final_head: Callable[[tuple[int, ...]], nn.Module],
             input_shape: Sequence[int], num_classes: int, num_exits: int, *,
             exit_fractions: Sequence[float] | None = None, head_pool: int = 4,
             mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
             ) -> MultiExitNet:
    """Cut ``units`` into blocks at even cost fractions, attach the exit heads, initialise.

    ``final_head(shape)`` builds the architecture's own classifier for the last unit's
    output shape. ``mean``/``std`` prepend input normalisation to block 0.
    """
    shape = tuple(int(s) for s in input_shape)
    if (mean is None) != (std is None):
        raise ConfigError("give both mean and std for input normalisation, or neither")
    if mean is not None and std is not None and not (len(mean) == len(std) == shape[0]):
        raise ConfigError(f"mean and std need one value per input channel ({shape[0]}), "
                          f"got {len(mean)} and {len(std)}")
    flops, shapes = profile_units(units, shape)
    last = final_head(shapes[-1])
    tail_flops, _ = profile_units([last], shapes[-1])
    cuts = place_exits(flops, num_exits, exit_fractions, tail_flops=tail_flops[0])
    blocks, heads = [], []
    start = 0
    for k, stop in enumerate(cuts):
        layers = list(units[start:stop])
        if k == 0 and mean is not None and std is not None:
            layers.insert(0, Normalize(mean, std))
        blocks.append(nn.Sequential(*layers))
        if k == len(cuts) - 1:
            heads.append(last)
        else:
            c, hgt, wid = shapes[stop - 1]
            heads.append(InternalClassifier(c, (hgt, wid), num_classes, head_pool))
        start = stop
    net = MultiExitNet(blocks, heads, shape, num_classes)
    init_weights(net)
    return net
