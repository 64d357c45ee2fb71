"""The shared multi-exit model interface of victims and substitutes.

A :class:`MultiExitNet` is an ordered list of stages; stage ``k`` is backbone block
``k`` followed by exit head ``k``. ``forward`` returns the logits of every exit (for
training and batched analysis); :meth:`MultiExitNet.run_until` computes only up to
exit ``k``, which is what per-sample early-exit serving relies on. ``exit_cost`` is
measured with :mod:`torch.utils.flop_counter`, not guessed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


class MultiExitNet(nn.Module):
    """Backbone blocks + exit heads; ``input_shape`` excludes the batch dimension."""

    def __init__(self, blocks: Sequence[nn.Module], heads: Sequence[nn.Module],
                 input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        if len(blocks) != len(heads) or len(blocks) < 2:
            raise ValueError("a multi-exit network needs as many heads as blocks, and >= 2 exits")
        self.blocks = nn.ModuleList(blocks)
        self.heads = nn.ModuleList(heads)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = int(num_classes)
        self._exit_cost: tuple[float, ...] | None = None

    @property
    def num_exits(self) -> int:
        return len(self.heads)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        h = x
        for block, head in zip(self.blocks, self.heads, strict=True):
            h = block(h)
            outs.append(head(h))
        return outs

    def run_block(self, k: int, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance the hidden state through block ``k``; return (state, logits of exit k)."""
        h = self.blocks[k](h)
        return h, self.heads[k](h)

    def run_until(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Logits of exit ``k``, computing nothing beyond block ``k``."""
        h = x
        for j in range(k + 1):
            h = self.blocks[j](h)
        return self.heads[k](h)

    @property
    def exit_cost(self) -> tuple[float, ...]:
        """Cumulative FLOPs (per sample) a served sample spends to answer at each exit.

        Includes the heads of the earlier exits, which early-exit serving evaluates to
        decide not to stop there.
        """
        if self._exit_cost is None:
            self._exit_cost = measure_exit_cost(self)
        return self._exit_cost

    @property
    def cost_fraction(self) -> tuple[float, ...]:
        cost = self.exit_cost
        return tuple(c / cost[-1] for c in cost)


def exit_probabilities(model: MultiExitNet, x: np.ndarray, device: str = "cpu",
                       batch_size: int = 512, dtype: torch.dtype = torch.float64) -> list[np.ndarray]:
    """Softmax of every exit, K arrays (n, classes), computed in ``dtype`` batch by batch.

    float64 is what the serving backends return and what the harness scores with:
    float32 softmax rounds confident rows to 1.0, and victims' thresholds sit near 1.
    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.to(device).eval()
    parts: list[list[np.ndarray]] = [[] for _ in range(model.num_exits)]
    try:
        with torch.inference_mode():
            for start in range(0, len(x), batch_size):
                xb = torch.as_tensor(np.ascontiguousarray(x[start:start + batch_size],
                                                          dtype=np.float32)).to(device)
                for k, logits in enumerate(model(xb)):
                    parts[k].append(torch.softmax(logits.to(dtype), dim=1).cpu().numpy())
    finally:
        model.train(was_training)
    empty = np.zeros((0, model.num_classes), dtype=torch.empty(0, dtype=dtype).numpy().dtype)
    return [np.concatenate(p) if p else empty for p in parts]


def _flops(fn, *args) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn(*args)
    return int(counter.get_total_flops())


def measure_exit_cost(net: MultiExitNet) -> tuple[float, ...]:
    """Cumulative FLOPs per exit for one sample: blocks 0..k plus heads 0..k."""
    was_training = net.training
    net.eval()
    try:
        param = next(net.parameters())
        h = torch.zeros((1, *net.input_shape), dtype=param.dtype, device=param.device)
        total = 0
        costs = []
        for k in range(net.num_exits):
            block_flops = _flops(net.blocks[k], h)
            with torch.no_grad():
                h = net.blocks[k](h)
            head_flops = _flops(net.heads[k], h)
            total += block_flops + head_flops
            costs.append(float(total))
    finally:
        net.train(was_training)
    if costs[-1] <= 0:
        raise ValueError("the flop counter measured 0 FLOPs for the full network")
    return tuple(costs)


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of a model's state dict (names, shapes and values)."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(value.detach().cpu().numpy()).tobytes())
    return digest.hexdigest()
