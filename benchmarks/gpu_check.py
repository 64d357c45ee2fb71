"""One short GPU check (< 5 minutes): a CIFAR-shaped multi-exit victim served live.

Builds a 3x32x32 4-exit CNN, trains it a few steps on random data (so the weights are
not at initialisation), and serves it with the torch and onnx backends on ``--device``
(default cuda), printing the same table as ``serving_latency.py``. Smoke-test on a CPU:

    python benchmarks/gpu_check.py --device cpu --samples-per-exit 20 --train-steps 3
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving_latency import (
    ROOT,
    build_net,
    make_victim,
    parser,
    random_splits,
    run,
)

from harness.model import MultiExitNet
from harness.serving.devices import resolve_device

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gpu_check.json"


def train_briefly(net: MultiExitNet, device: str, steps: int, seed: int,
                  batch: int = 64) -> MultiExitNet:
    """A few Adam steps on random inputs/labels (summed loss of every exit)."""
    gen = torch.Generator().manual_seed(seed)
    net = net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(steps):
        x = torch.rand((batch, *net.input_shape), generator=gen).to(device)
        y = torch.randint(0, net.num_classes, (batch,), generator=gen).to(device)
        opt.zero_grad(set_to_none=True)
        loss = sum(loss_fn(out, y) for out in net(x))
        loss.backward()
        opt.step()
    return net.to("cpu").eval()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__.splitlines()[0], DEFAULT_OUT)
    p.set_defaults(device="cuda", samples_per_exit=200)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--train-steps", type=int, default=30)
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    if device == "cuda":
        print(f"GPU: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    net = train_briefly(build_net((3, 32, 32), 10, 4, args.width), device, args.train_steps,
                        args.seed)
    data = random_splits((3, 32, 32), 10, 256, args.seed)
    return run(make_victim("cifar_shaped_cnn", net, data), args)


if __name__ == "__main__":
    main()
