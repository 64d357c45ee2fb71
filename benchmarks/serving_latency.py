"""Live per-exit serving latency of the torch and onnx backends on this machine.

For each backend: per-exit latency (median, p5, p95) of true per-sample early exit,
recorded with :func:`harness.timing.recording.record_profile`; the ONNX/torch ratio of medians;
queries per second of the batched path; and the Bayes-optimal exit accuracy of the live
latencies (how well timing alone separates the exits). Weights need not be trained for
timing; the default is the registered ``digits_cnn`` (``--victim untrained``: a digits-sized
4-exit CNN of ``--width``, untrained).

    python benchmarks/serving_latency.py [--samples-per-exit 300] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import write_json  # noqa: E402
from harness.metrics.leakage import bayes_exit_accuracy  # noqa: E402
from harness.model import MultiExitNet  # noqa: E402
from harness.protocol import DatasetSplits, Split, TrainedVictim  # noqa: E402
from harness.serving.devices import resolve_device  # noqa: E402
from harness.strategy import MaxProbPolicy, OutputStrategy  # noqa: E402
from harness.timing.recording import record_profile  # noqa: E402
from victims.cache import state_dict_hash  # noqa: E402
from victims.serving import OnnxBackend, TorchBackend  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "serving_latency.json"


def build_net(input_shape: tuple[int, ...], num_classes: int, num_exits: int,
              width: int) -> MultiExitNet:
    """The project's small CNN when available, else an equivalent local one."""
    try:
        from victims.architectures.small_cnn import SmallCNN
    except ImportError:
        blocks, heads, c_in = [], [], input_shape[0]
        for k in range(num_exits):
            layers = [nn.Conv2d(c_in, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                      nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            if k < num_exits - 1 and k < 2:
                layers.append(nn.MaxPool2d(2))
            blocks.append(nn.Sequential(*layers))
            heads.append(nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                       nn.Linear(width * 4, num_classes)))
            c_in = width
        return MultiExitNet(blocks, heads, input_shape, num_classes).eval()
    return SmallCNN(width=width).build(input_shape, num_classes, num_exits).eval()


def digits_splits(seed: int) -> DatasetSplits:
    """The embedded digits splits, or random 8x8 inputs if they cannot be loaded."""
    try:
        from victims.datasets.digits import DigitsDataset

        return DigitsDataset(split_seed=seed).load()
    except ImportError:
        return random_splits((1, 8, 8), 10, 400, seed)


def random_splits(shape: tuple[int, ...], num_classes: int, n: int, seed: int) -> DatasetSplits:
    rng = np.random.default_rng(seed)

    def split(m: int) -> Split:
        return Split(rng.uniform(0, 1, (m, *shape)).astype(np.float32),
                     rng.integers(0, num_classes, m).astype(np.int64))

    return DatasetSplits("random", shape, num_classes, (0.0, 1.0), split(n), split(n // 4),
                         split(n // 4), split(n))


def make_victim(name: str, net: MultiExitNet, data: DatasetSplits) -> TrainedVictim:
    strategy = OutputStrategy(MaxProbPolicy(), (0.9,) * (net.num_exits - 1))
    return TrainedVictim(name, net, strategy, data, "small_cnn", state_dict_hash(net.state_dict()))


def batched_qps(served: Any, x: np.ndarray, rounds: int = 3) -> float:
    served.exit_probs(x[:64])
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        served.exit_probs(x)
        best = min(best, time.perf_counter() - t0)
    return len(x) / best


def measure(victim: TrainedVictim, backend: str, device: str, samples_per_exit: int,
            repeats: int, threads: int, cache_dir: Path, seed: int,
            qps_inputs: int) -> dict[str, Any]:
    """Calibrate one backend live; return its row of the report."""
    if backend in ("torch", "torch_cl"):
        served = TorchBackend(num_threads=threads, channels_last=backend == "torch_cl").load(
            victim, device, cache_dir)
    else:
        served = OnnxBackend(intra_op_num_threads=threads).load(victim, device, cache_dir)
    load_before = os.getloadavg()[0]
    profile = record_profile(served, victim, samples_per_exit=samples_per_exit, repeats=repeats,
                            seed=seed)
    lat = np.concatenate([np.asarray(s) for s in profile.samples])
    true = np.repeat(np.arange(profile.num_exits), [len(s) for s in profile.samples])
    pool = np.asarray(victim.data.test.x)
    x = pool[np.arange(qps_inputs) % len(pool)]
    quant = profile.quantiles((0.05, 0.5, 0.95))
    return {
        "backend": backend, "device": profile.device,
        "providers": list(getattr(served, "providers", ())),
        "median_us": [q[1] * 1e6 for q in quant], "p5_us": [q[0] * 1e6 for q in quant],
        "p95_us": [q[2] * 1e6 for q in quant],
        "batched_qps": batched_qps(served, x),
        "bayes_exit_accuracy": bayes_exit_accuracy(lat, true),
        "load_average_1min": [load_before, os.getloadavg()[0]],
        "profile_hash": profile.hash, "profile": profile,
    }


def report(victim: TrainedVictim, rows: list[dict[str, Any]], settings: dict[str, Any]) -> dict:
    out = {"victim": {"name": victim.name, "input_shape": list(victim.model.input_shape),
                      "num_exits": victim.model.num_exits, "weights_hash": victim.weights_hash,
                      "cost_fraction": list(victim.model.cost_fraction)},
           "settings": settings, "machine": None, "backends": {}}
    for row in rows:
        profile = row.pop("profile")
        out["machine"] = json.loads(json.dumps(profile.to_json()["machine"]))
        out["backends"][row["backend"]] = row
    if "torch" in out["backends"] and "onnx" in out["backends"]:
        t, o = out["backends"]["torch"]["median_us"], out["backends"]["onnx"]["median_us"]
        out["onnx_over_torch_median"] = [b / a for a, b in zip(t, o, strict=True)]
    return out


def format_table(result: dict[str, Any]) -> str:
    k = result["victim"]["num_exits"]
    lines = [f"victim {result['victim']['name']} {tuple(result['victim']['input_shape'])}, "
             f"{k} exits, cost fraction "
             + " ".join(f"{c:.2f}" for c in result["victim"]["cost_fraction"]),
             f"{'backend':8} {'device':6} {'exit':>4} {'median_us':>10} {'p5_us':>9} "
             f"{'p95_us':>9} {'onnx/torch':>10}"]
    ratio = result.get("onnx_over_torch_median")
    for name, row in result["backends"].items():
        for e in range(k):
            r = f"{ratio[e]:10.2f}" if ratio and name == "onnx" else f"{'':10}"
            lines.append(f"{name:8} {row['device']:6} {e:4d} {row['median_us'][e]:10.1f} "
                         f"{row['p5_us'][e]:9.1f} {row['p95_us'][e]:9.1f} {r}")
    lines.append(f"{'backend':8} {'batched_qps':>12} {'bayes_exit_acc':>15} {'load_avg':>10}")
    for name, row in result["backends"].items():
        load = "/".join(f"{v:.1f}" for v in row["load_average_1min"])
        lines.append(f"{name:8} {row['batched_qps']:12.0f} {row['bayes_exit_accuracy']:15.3f} "
                     f"{load:>10}")
    return "\n".join(lines)


def run(victim: TrainedVictim, args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "cache_dir")}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache_dir) if args.cache_dir else Path(tmp)
        rows = [measure(victim, b, device, args.samples_per_exit, args.repeats, args.threads,
                        cache, args.seed, args.qps_inputs) for b in args.backends.split(",")]
    result = report(victim, rows, settings)
    write_json(args.out, result)
    print(format_table(result))
    print(f"wrote {args.out}")
    return result


def parser(description: str, out: Path) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--backends", default="torch,torch_cl,onnx",
                   help="comma-separated: torch, torch_cl (channels_last), onnx")
    p.add_argument("--samples-per-exit", type=int, default=300)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--qps-inputs", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None, help="ONNX export cache (default: temporary)")
    p.add_argument("--out", default=str(out))
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__.splitlines()[0], DEFAULT_OUT)
    p.add_argument("--victim", default="digits_cnn",
                   help="a registered victim (trained or loaded from the cache), or 'untrained'")
    p.add_argument("--exits", type=int, default=4, help="with --victim untrained")
    p.add_argument("--width", type=int, default=64, help="with --victim untrained")
    args = p.parse_args(argv)
    if args.victim != "untrained":
        return run(registered_victim(args.victim), args)
    net = build_net((1, 8, 8), 10, args.exits, args.width)
    return run(make_victim("digits_small_cnn", net, digits_splits(args.seed)), args)


def registered_victim(name: str) -> TrainedVictim:
    """The registered victim, prepared exactly as a harness run would (cached weights)."""
    from harness.cell.server import prepare_registered_victim
    from harness.cell.spec import CellEnvironment
    from harness.plugins.registry import load_registry
    from harness.run.config import default_cache_dir

    registry = load_registry()
    env = CellEnvironment(cache_dir=default_cache_dir(), data_root=None)
    return prepare_registered_victim(registry, name, {}, env, "cpu")


if __name__ == "__main__":
    main()
