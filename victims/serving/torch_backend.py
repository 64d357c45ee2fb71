"""The ``torch`` serving backend: eager PyTorch, true per-sample early exit.

The served network is a private copy of the victim's model (in eval mode, on the
serving device), so serving never moves or mutates the victim. Computation runs under
``torch.inference_mode`` with ``num_threads`` intra-op threads (1 by default, for
stable latency); the previous thread count is restored when each call returns.
``channels_last`` stores 4-D activations NHWC, which is several times faster on CPU
for convolutions on tiny feature maps (e.g. 3x3 convs with 256 channels on 2x2 maps).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from harness.model import MultiExitNet
from harness.params import Interval
from harness.protocol import ServingBackend, TrainedVictim
from harness.serving.devices import resolve_device
from victims.serving.staged import SERVING_CONSTRAINTS, StagedServedModel


class TorchServedModel(StagedServedModel):
    """A victim served by eager PyTorch; ``net`` is the served copy of its model."""

    backend = "torch"

    def __init__(self, net: MultiExitNet, device: str, num_threads: int | None,
                 channels_last: bool = False, **kwargs: Any) -> None:
        super().__init__(num_exits=net.num_exits, input_shape=net.input_shape,
                         num_classes=net.num_classes, device=device, **kwargs)
        self.net = net
        self.num_threads = num_threads
        self._torch_device = torch.device(device)
        self._format = (torch.channels_last if channels_last and len(net.input_shape) == 3
                        else torch.contiguous_format)

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        previous = torch.get_num_threads()
        if self.num_threads is not None and self.num_threads != previous:
            torch.set_num_threads(self.num_threads)
        try:
            with torch.inference_mode():
                yield
        finally:
            if torch.get_num_threads() != previous:
                torch.set_num_threads(previous)

    def _sync(self) -> None:
        if self._torch_device.type == "cuda":
            torch.cuda.synchronize(self._torch_device)

    def _input(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(self._torch_device).contiguous(memory_format=self._format)

    def _state(self, x1: np.ndarray) -> torch.Tensor:
        return self._input(x1)

    def _stage(self, k: int, h: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        h, logits = self.net.run_block(k, h)
        return h, logits.float().cpu().numpy()

    def _join(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(parts)

    def _batch_logits(self, x: np.ndarray) -> list[np.ndarray]:
        outs = self.net(self._input(x))
        return [o.float().cpu().numpy() for o in outs]


class TorchBackend(ServingBackend):
    """Serve a victim with eager PyTorch on ``cpu`` or ``cuda``.

    ``num_threads``: torch intra-op threads while serving (None keeps the current
    setting); ``warmup``: samples served untimed through every exit before timing;
    ``aggregate``: ``min`` or ``median`` of a sample's ``repeats`` timings;
    ``batch_size``: chunk size of the batched path; ``channels_last``: NHWC activations
    for image inputs (faster convolutions on CPU).
    """

    name = "torch"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **SERVING_CONSTRAINTS,
        "num_threads": [Interval("int", 1, 1024), None],
        "channels_last": [bool],
    }

    def __init__(self, num_threads: int | None = 1, warmup: int = 3,
                 aggregate: str = "median", batch_size: int = 512,
                 channels_last: bool = False) -> None:
        self.num_threads = num_threads
        self.warmup = warmup
        self.aggregate = aggregate
        self.batch_size = batch_size
        self.channels_last = channels_last

    def load(self, victim: TrainedVictim, device: str, cache_dir: Path) -> TorchServedModel:
        """Copy the victim's model to ``device`` (``cpu``, ``cuda`` or ``auto``) for serving."""
        self.validate()
        device = resolve_device(device)
        net = copy.deepcopy(victim.model).to(device).eval()
        if self.channels_last and len(net.input_shape) == 3:
            net = net.to(memory_format=torch.channels_last)
        for p in net.parameters():
            p.requires_grad_(False)
        return TorchServedModel(
            net, device, self.num_threads, bool(self.channels_last),
            cost_fraction=victim.model.cost_fraction,
            warmup=self.warmup, aggregate=self.aggregate, batch_size=self.batch_size)
