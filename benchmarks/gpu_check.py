"""The one prepared GPU check (well under 5 minutes): live serving on CUDA and a live attack cell.

Run it once on a lent GPU machine and everything needed comes back in one go (a printed
table and one JSON file)::

    python benchmarks/gpu_check.py --device cuda --json $OUT/gpu_check.json

(about 70 s on a 2-core CPU with ``--device cpu``; a quicker smoke test:
``--device cpu --samples-per-exit 20 --budget 100 --attack-epochs 2``).

Sections of the JSON (each has ``status``: ``ok``, ``skipped`` with ``reason``, or ``error``):

* ``environment``: Python, torch (and its CUDA), the GPU, onnxruntime and its providers,
  project modules that do not import.
* ``torch_serving``: a CIFAR-shaped (3x32x32) 4-exit CNN, trained a few steps on random
  data (no data set is downloaded), served by the torch backend with true per-sample
  early exit; per exit the median/p90 latency and the Bayes-optimal exit accuracy. The
  torch backend times live serving with ``perf_counter_ns`` after ``torch.cuda.synchronize``
  (victims/serving/staged.py), not with CUDA events, so this script brackets each request
  itself: with ``torch.cuda.Event(enable_timing=True)`` pairs (then ``synchronize``) on
  cuda, with ``perf_counter_ns`` on cpu. The table names the timer; the backend's own
  figure is kept beside it (``backend_*``) for comparison.
* ``onnx_serving``: the same with ONNX Runtime; on cuda only through its
  ``CUDAExecutionProvider`` (onnxruntime-gpu). Without that provider, or when a CUDA
  session falls back to the CPU, the section is ``skipped`` with the reason (not an error).
* ``latency_trace``: the serving sections' latencies written as a plan of the latency
  corpus (``<plan>.npz`` and ``<plan>.json`` beside the JSON report, or in
  ``--trace-dir``; plan ``gpu`` on cuda), each serving section measured under a load
  monitor (steal time, other processes' CPU): copy them to ``benchmarks/corpus/`` and a
  ``gpu`` deployment can be calibrated the first time a device is lent. Nothing depends
  on them.
* ``attack_cell``: one cell through the real harness (``run_grid``, isolated worker
  processes): victim ``digits_cnn`` (1x8x8, trains in seconds, cached in ``--cache-dir``),
  attack ``exit_steal``, no defense, ``timing=live`` on ``--device``; its metrics
  (``bayes_exit_accuracy``, ``query_bayes_exit_accuracy``, ``exit_estimation_accuracy``,
  agreement) and the per-exit median/p90 latency of the served ``digits_cnn`` (forced
  exits, same timer as above).

Exit code: 0 when every section is ok or skipped; 1 when a section failed (the JSON says
which and why); 2 when ``--device cuda`` is asked but torch sees no CUDA device.

Installing (also printed by ``--print-install``; nothing is downloaded at run time):

INSTALL
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import print_table, write_json  # noqa: E402
from benchmarks.exit_timing import make_timer, monitored, time_exits, write_traces  # noqa: E402
from benchmarks.serving_latency import build_net, make_victim, random_splits  # noqa: E402
from harness.model import MultiExitNet  # noqa: E402
from harness.protocol import TrainedVictim  # noqa: E402
from harness.serving.devices import cuda_available  # noqa: E402

DEFAULT_JSON = ROOT / "benchmarks" / "results" / "gpu_check.json"

INSTALL = """\
A. A machine with PyPI (a fresh venv with the project's pins; run from the repo root):
     python3 -m venv .venv-gpu && . .venv-gpu/bin/activate
     pip install torch==2.14.1 torchvision==0.29.1   # the pin of pyproject.toml; the default
                                  # Linux wheel is the CUDA build, which also runs on CPU
     pip install -e .
     pip install onnxruntime-gpu  # optional, for the ONNX CUDA part (1.31 is built for CUDA 13)
   onnxruntime and onnxruntime-gpu both install the module `onnxruntime`; with both, the
   one installed last owns the files. For the CUDA part keep only the GPU build:
     pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu
   (it serves on CPU too; `pip check` then complains that `onnxruntime` is missing, which
   is harmless). To go back: pip uninstall -y onnxruntime-gpu && pip install onnxruntime
   Run:  python benchmarks/gpu_check.py --device cuda --json $OUT/gpu_check.json

B. The lent GPU machine (no network there; its python3 holds torch 2.11+cu130, numpy,
   scipy, scikit-learn, onnx, onnxruntime (CPU only), pluggy, hypothesis): keep its torch
   (a CUDA torch wheel is far over the 64 MiB that travels with a call; the JSON records
   the torch version used). The project's other dependencies travel as wheels for CPython
   3.12 (about 2.5 MB together). Here, once, in the repo root:
     echo /.whl/ >> .git/info/exclude
     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \\
       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \\
       --platform manylinux2014_x86_64 -d .whl ruptures jsonschema \\
       jsonschema-specifications referencing rpds-py starlette uvicorn httptools
   Then one `run` call with carry [".whl"], timeout_s 420:
     python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \\
       .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 && \\
       python3 benchmarks/gpu_check.py --device cuda --json $OUT/gpu_check.json
   No `pip install -e .` is needed there (the script puts the repo on sys.path and the
   built-in plugins load as modules); if wanted, `pip install --no-deps
   --no-build-isolation -e .` (--no-deps: the torch pin must not replace the image's).
   onnxruntime-gpu cannot travel (its wheel is about 255 MB), so there the ONNX CUDA
   part reports `skipped` unless the image gains the GPU build.
"""

__doc__ = (__doc__ or "").replace("INSTALL", "\n".join("    " + line if line else ""
                                                       for line in INSTALL.splitlines()))

PROJECT_MODULES = ("numpy", "scipy", "sklearn", "onnx", "onnxruntime", "ruptures", "pluggy",
                   "jsonschema", "hypothesis", "starlette", "uvicorn", "httptools")
"""Import names of the project's dependencies (pyproject.toml) besides torch."""


def train_briefly(net: MultiExitNet, device: str, steps: int, seed: int,
                  batch: int = 64) -> MultiExitNet:
    """A few Adam steps on random inputs/labels (summed loss of every exit), so the
    weights are not at initialisation; returns the net on cpu in eval mode."""
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


def cifar_victim(args: argparse.Namespace, device: str) -> TrainedVictim:
    net = build_net((3, 32, 32), 10, 4, args.width)
    net = train_briefly(net, device, args.train_steps, args.seed)
    return make_victim("cifar_shaped_cnn", net, random_splits((3, 32, 32), 10, 256, args.seed))


def torch_serving(victim: TrainedVictim, args: argparse.Namespace, device: str,
                  cache: Path) -> dict[str, Any]:
    from victims.serving import TorchBackend

    served = TorchBackend(num_threads=args.threads, warmup=0).load(victim, device, cache)
    out = monitored(lambda: time_exits(served, np.asarray(victim.data.test.x),
                                       args.samples_per_exit, make_timer(device)))
    return {"status": "ok", "backend": "torch", "device": served.device, **out}


def onnx_serving(victim: TrainedVictim, args: argparse.Namespace, device: str,
                 cache: Path) -> dict[str, Any]:
    """ONNX Runtime serving; on cuda only through its CUDA provider, else a skip."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return {"status": "skipped", "reason": f"onnxruntime does not import ({exc})"}
    providers = list(ort.get_available_providers())
    if device == "cuda":
        if "CUDAExecutionProvider" not in providers:
            return {"status": "skipped", "providers_available": providers,
                    "reason": f"onnxruntime {ort.__version__} has no CUDAExecutionProvider "
                              f"(available: {providers}); install onnxruntime-gpu "
                              "(see --print-install)"}
        if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels torch uses
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    ort.preload_dlls()
                except Exception:  # onnxruntime raises untyped errors; the check below decides
                    pass
    from victims.serving import OnnxBackend

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        served = OnnxBackend(intra_op_num_threads=args.threads, warmup=0).load(
            victim, device, cache)
    used = list(served.providers)
    if device == "cuda" and (served.device != "cuda" or "CUDAExecutionProvider" not in used):
        return {"status": "skipped", "providers_available": providers, "providers_used": used,
                "reason": "the CUDAExecutionProvider is listed but the sessions fell back to "
                          f"{used} (its CUDA/cuDNN libraries did not load: onnxruntime-gpu "
                          "must match the machine's CUDA major version)"}
    out = monitored(lambda: time_exits(served, np.asarray(victim.data.test.x),
                                       args.samples_per_exit, make_timer(device)))
    note = None
    if device == "cuda":
        note = ("the CUDA events sit on torch's stream, not onnxruntime's: they bracket the "
                "request, which returns only after its outputs are synchronised to the host")
    return {"status": "ok", "backend": "onnx", "device": served.device,
            "onnxruntime": ort.__version__, "providers_used": used, "timer_note": note, **out}


def run_one_cell(overrides: list[str], pm: Any) -> dict[str, Any]:
    """Run a one-cell grid; return its result JSON, or ``{"status": "error", ...}``."""
    from harness.run.config import parse_overrides
    from harness.run.runner import run_grid

    try:
        summary = run_grid(parse_overrides(overrides), pm, show_progress=False)
        return json.loads(Path(summary.result_paths[0]).read_text())
    except Exception as exc:
        traceback.print_exc()
        return {"status": "error", "error": {"message": f"{type(exc).__name__}: {exc}"}}


def attack_cell(args: argparse.Namespace, device: str, cache: Path,
                scratch: Path) -> dict[str, Any]:
    """One live-timing exit_steal cell on digits_cnn through ``run_grid``; its figures.

    Should the cell fail under the default ``isolation=process`` (say, CUDA in worker
    processes), it is run once more with ``isolation=none`` so that one GPU run still
    yields the attack's figures; the section then stays ``error`` and says both.
    """
    from harness.cell.server import prepare_registered_victim
    from harness.cell.spec import CellEnvironment
    from harness.io.secret import victim_salt
    from harness.plugins.manager import make_plugin_manager
    from harness.plugins.registry import Registry
    from victims.serving import TorchBackend

    overrides = ["victims=digits_cnn", "attacks=exit_steal", "defenses=none",
                 f"seeds={args.seed}", f"budget={args.budget}", "timing=live", "backend=torch",
                 f"device={device}", f"out={scratch / 'cell'}", f"cache_dir={cache}",
                 "secret=public",  # the served victim below is rebuilt unsalted
                 f"attack.exit_steal.epochs={args.attack_epochs}",
                 f"attack.exit_steal.finetune_epochs={args.attack_finetune_epochs}", *args.set]
    pm = make_plugin_manager()
    result = run_one_cell(overrides, pm)
    failure = None
    if result["status"] != "ok":
        failure = f"the cell failed: {result.get('error', {}).get('message', result)}"
        if any(o.startswith("isolation=") for o in args.set):
            return {"status": "error", "overrides": overrides, "reason": failure}
        overrides = [*overrides, "isolation=none", f"out={scratch / 'cell-none'}"]
        print(f"[gpu_check] attack cell: {failure}; running it again with isolation=none",
              flush=True)
        result = run_one_cell(overrides, pm)
        if result["status"] != "ok":
            return {"status": "error", "overrides": overrides, "reason": failure
                    + f"; with isolation=none too: {result.get('error', {}).get('message')}"}
    metrics, diag = result["metrics"], result.get("diagnostics", {})
    # the served victim again (same cache, same salt: the cell's weights), forced exits
    registry = Registry.from_manager(pm)
    env = CellEnvironment(cache_dir=cache, data_root=None, victim_salt=victim_salt())
    victim = prepare_registered_victim(registry, "digits_cnn", {}, env, device)
    served = TorchBackend(num_threads=args.threads, warmup=0).load(victim, device, cache)
    served_lat = time_exits(served, np.asarray(victim.data.test.x), args.samples_per_exit,
                            make_timer(device))
    keys = ("bayes_exit_accuracy", "query_bayes_exit_accuracy", "exit_estimation_accuracy",
            "exit_agreement", "fidelity", "cost_ratio", "queries_used", "leakage_bits")
    quantiles = diag.get("server_latency_quantiles_s") or []
    isolation = (diag.get("isolation") or {}).get("mode", "process")
    out = {"status": "ok" if failure is None else "error", "overrides": overrides,
           "isolation": isolation, "isolation_details": diag.get("isolation"),
           "victim": "digits_cnn", "attack": "exit_steal",
           "device": device, "timing": "live", "budget": args.budget,
           **{k: metrics.get(k) for k in keys}, "metrics": metrics,
           "victim_exit_histogram": diag.get("victim_exit_histogram"),
           "served_victim": {"status": "ok", "backend": "torch", "device": served.device,
                             "same_weights_as_cell": (victim.weights_hash
                                                      == diag.get("victim_weights_hash")),
                             **served_lat},
           "cell_server_median_p95_us": [[q[3] * 1e6, q[5] * 1e6] for q in quantiles]}
    if failure is not None:
        out["reason"] = f"isolation=process: {failure} (figures from isolation=none)"
    return out


# -- driver ----------------------------------------------------------------------------
def environment(requested: str) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cuda_available": cuda_available(), "device_requested": requested,
        "missing_modules": [m for m in PROJECT_MODULES if importlib.util.find_spec(m) is None],
    }
    if env["cuda_available"]:
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cudnn"] = torch.backends.cudnn.version()
    try:
        import onnxruntime as ort

        env["onnxruntime"] = ort.__version__
        env["onnxruntime_providers"] = list(ort.get_available_providers())
    except ImportError:
        env["onnxruntime"] = None
    return env


def run_section(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one section; an exception becomes ``status: error`` (the other sections go on)."""
    t0 = time.perf_counter()
    try:
        out = fn()
    except Exception as exc:
        traceback.print_exc()
        out = {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
    out["seconds"] = round(time.perf_counter() - t0, 2)
    print(f"[gpu_check] {name}: {out['status']} ({out['seconds']} s)"
          + (f" - {out['reason']}" if "reason" in out else ""), flush=True)
    return out


def print_report(result: dict[str, Any]) -> None:
    env = result["environment"]
    print(f"\npython {env['python']}  torch {env['torch']} (cuda {env['torch_cuda']})  "
          f"gpu {env.get('gpu', '-')}  onnxruntime {env.get('onnxruntime')} "
          f"{env.get('onnxruntime_providers', '')}")
    if env["missing_modules"]:
        print(f"modules that do not import: {env['missing_modules']}")
    rows = []
    cell = result["attack_cell"]
    sections = [("torch_serving", result["torch_serving"]), ("onnx_serving", result["onnx_serving"])]
    if "served_victim" in cell:
        sections.append(("digits_cnn (cell victim)", cell["served_victim"]))
    for name, sec in sections:
        if sec.get("status", "ok") != "ok":
            rows.append({"section": name, "device": sec["status"], "timer": sec.get("reason")})
            continue
        for e in sec["per_exit"]:
            rows.append({"section": name, "device": sec["device"], "timer": sec["timer"],
                         "exit": e["exit"], "median_us": e["median_us"], "p90_us": e["p90_us"],
                         "backend_median_us": e["backend_median_us"],
                         "bayes_exit_acc": sec["bayes_exit_accuracy"] if e["exit"] == 0 else None})
    print()
    print_table(rows, ("section", "device", "timer", "exit", "median_us", "p90_us",
                       "backend_median_us", "bayes_exit_acc"))
    print()
    if "served_victim" in cell:
        print_table([{k: cell[k] for k in ("victim", "attack", "device", "isolation", "budget",
                                             "bayes_exit_accuracy", "query_bayes_exit_accuracy",
                                             "exit_estimation_accuracy", "exit_agreement")}],
                    ("victim", "attack", "device", "isolation", "budget", "bayes_exit_accuracy",
                     "query_bayes_exit_accuracy", "exit_estimation_accuracy", "exit_agreement"))
    if cell.get("status") != "ok":
        print(f"attack cell: {cell.get('status')} - {cell.get('reason')}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--json", default=str(DEFAULT_JSON), help="where the JSON report goes")
    p.add_argument("--print-install", action="store_true",
                   help="print what to install and how, then exit")
    p.add_argument("--samples-per-exit", type=int, default=200)
    p.add_argument("--width", type=int, default=32, help="channels of the CIFAR-shaped CNN")
    p.add_argument("--train-steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--budget", type=int, default=500, help="the attack cell's query budget")
    p.add_argument("--attack-epochs", type=int, default=60)
    p.add_argument("--attack-finetune-epochs", type=int, default=20)
    p.add_argument("--cache-dir", default=None,
                   help="victim and ONNX cache (default: a temporary folder)")
    p.add_argument("--trace-plan", default=None,
                   help="corpus plan name of the latency traces (default: gpu on cuda, "
                        "cpu_check on cpu)")
    p.add_argument("--trace-dir", default=None,
                   help="where the traces go (default: the folder of --json)")
    p.add_argument("--skip-onnx", action="store_true")
    p.add_argument("--skip-cell", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra overrides for the attack cell (harness run keys)")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.print_install:
        print(INSTALL)
        return 0
    start = time.perf_counter()
    device = args.device
    result: dict[str, Any] = {"environment": environment(device),
                              "settings": {k: v for k, v in vars(args).items()
                                           if k not in ("json", "print_install")}}
    if device == "cuda" and not cuda_available():
        message = (f"--device cuda was asked but torch {torch.__version__} sees no CUDA device "
                   "(torch.cuda.is_available() is False): run it on the GPU machine, or use "
                   "--device cpu for a smoke test")
        result["error"] = message
        write_json(args.json, result)
        print(f"gpu_check: {message}", file=sys.stderr)
        return 2
    skip = {"status": "skipped", "reason": "skipped by a command-line flag"}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        scratch = Path(tmp)
        cache = Path(args.cache_dir) if args.cache_dir else scratch / "cache"
        victim = cifar_victim(args, device)
        result["victim"] = {"name": victim.name, "input_shape": list(victim.model.input_shape),
                            "num_exits": victim.model.num_exits,
                            "cost_fraction": list(victim.model.cost_fraction)}
        result["torch_serving"] = run_section(
            "torch serving", lambda: torch_serving(victim, args, device, cache))
        result["onnx_serving"] = dict(skip) if args.skip_onnx else run_section(
            "onnx serving", lambda: onnx_serving(victim, args, device, cache))
        result["latency_trace"] = run_section("latency trace", lambda: write_traces(
            result, victim, args, device,
            Path(args.trace_dir) if args.trace_dir else Path(args.json).parent))
        result["attack_cell"] = dict(skip) if args.skip_cell else run_section(
            "attack cell", lambda: attack_cell(args, device, cache, scratch))
    result["wall_s"] = round(time.perf_counter() - start, 2)
    path = write_json(args.json, result)
    print_report(result)
    failed = [k for k in ("torch_serving", "onnx_serving", "latency_trace", "attack_cell")
              if result[k]["status"] == "error"]
    print(f"\nwrote {path} in {result['wall_s']} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
