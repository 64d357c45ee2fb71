"""HTTP oracle vs in-process oracle: the server's own work per request and the side channel.

One ``harness serve victim=digits_cnn timing=live`` runs in a subprocess (its own
interpreter, as a real server would). This process builds the same victim in-process
(same cache, same weights) and sends the same inputs both ways:

1. Overhead: wall time of ``oracle.query`` for single inputs (median, p99) and for
   64-input batches, in-process vs ``HttpOracle`` (per_sample for single inputs,
   one request per batch for batches).
2. The server's exit-independent work per request (median), in two parts that add up:
   ``harness_us``, what the in-process oracle spends beyond the served latency (wall
   time minus the latency it measured: validation, defense stages, the exit view), and
   ``http_us``, the round trip the HTTP client measures minus the server's own time for
   the request (``server_compute_s`` of each answer: the HTTP stack of both ends,
   encoding, the loopback). The client's part of ``http_us`` is counted too, so the sum
   is an upper bound of the server's work.
3. The side channel, on the same HTTP queries: the Bayes-optimal timing-only exit
   accuracy of the client's round trips against that of the server's own time per
   request, and the ``bayes`` estimator's accuracy on each; beside them the in-process
   live latency of the same inputs, and the round trip plus ``timing.network=lan``
   jitter. True exits come from the in-process oracle's private log (live serving
   without a defense makes each input's exit a function of the input).

Both processes run torch with one intra-op thread (``OMP_NUM_THREADS=1``, the torch
backend's serving default). Record it on a quiet machine (nothing else heavy running);
the load monitor's figures are stored with the results.

    python benchmarks/http_oracle.py [--queries 600] [--batches 30] [--out PATH]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import print_table, write_json  # noqa: E402
from harness.cli.serve import build_server, serve_target  # noqa: E402
from harness.metrics.leakage import bayes_exit_accuracy  # noqa: E402
from harness.plugins.registry import Registry  # noqa: E402
from harness.plugins.toolbox import Toolbox  # noqa: E402
from harness.serving.http.client import HttpOracle  # noqa: E402
from harness.testing.fixtures import default_registry  # noqa: E402
from harness.timing.load_monitor import LoadMonitor  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "http_oracle.json"
BUDGET = 1_000_000
KEYS = ["victim=digits_cnn", "defense=none", "timing=live", f"budget={BUDGET}"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "serve", *KEYS,
                             "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"harness serve failed: {proc.stderr.read()}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("harness serve did not start")


def wall_times(query, batches: list[np.ndarray]) -> np.ndarray:
    """Wall time of each ``query(batch)`` call, in seconds."""
    out = []
    for x in batches:
        start = time.perf_counter()
        query(x)
        out.append(time.perf_counter() - start)
    return np.array(out)


def summary(name: str, seconds: np.ndarray, per: int) -> dict[str, Any]:
    return {"path": name, "inputs_per_call": per, "calls": len(seconds),
            "median_us": float(np.median(seconds) * 1e6),
            "p99_us": float(np.quantile(seconds, 0.99) * 1e6),
            "median_us_per_input": float(np.median(seconds) * 1e6 / per)}


def estimation(name: str, latency: np.ndarray, exits: np.ndarray, registry: Registry,
               cost_fraction: tuple[float, ...]) -> dict[str, Any]:
    est = Toolbox(registry).estimator("bayes").estimate(
        latency, 4, np.random.default_rng(0), cost_fraction=cost_fraction)
    return {"latency": name, "n": len(latency),
            "exit_estimation_accuracy": float(np.mean(est.exits == exits)),
            "bayes_exit_accuracy": float(bayes_exit_accuracy(latency, exits)),
            "median_latency_us": float(np.median(latency) * 1e6),
            "majority_exit_rate": float(np.bincount(exits).max() / len(exits))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=600)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    os.environ.setdefault("HARNESS_CACHE_DIR", str(ROOT / ".cache" / "harness"))
    os.environ["OMP_NUM_THREADS"] = "1"  # the server subprocess inherits it
    import torch

    torch.set_num_threads(1)
    registry = default_registry()
    server_here, cell = build_server(KEYS, strict=False)  # trains/loads before the subprocess
    target = serve_target(server_here, cell)
    port = free_port()
    server = start_server(port)
    try:
        with LoadMonitor(part_of_recording=(server.pid,)) as monitor:
            data_x = _attacker_pool(registry)
            rng = np.random.default_rng(0)
            x = data_x[rng.permutation(len(data_x))[: args.queries]]
            batches = [data_x[rng.permutation(len(data_x))[:64]] for _ in range(args.batches)]
            local = target.new_oracle("bench-local")
            url = f"http://127.0.0.1:{port}"
            remote = HttpOracle(url, "bench-remote")
            remote_batch = HttpOracle(url, "bench-batch", per_sample=False)
            for o in (local, remote, remote_batch):  # warm up both paths
                o.query(x[:8])
            overhead = [
                summary("in-process", wall_times(local.query, [x[i:i + 1] for i in range(len(x))]), 1),
                summary("http", wall_times(remote.query, [x[i:i + 1] for i in range(len(x))]), 1),
                summary("in-process", wall_times(local.query, batches), 64),
                summary("http", wall_times(remote_batch.query, batches), 64),
            ]
            for single, http in ((overhead[0], overhead[1]), (overhead[2], overhead[3])):
                http["overhead_median_us"] = http["median_us"] - single["median_us"]
                http["overhead_p99_us"] = http["p99_us"] - single["p99_us"]
            # The side channel: the same inputs in-process and over HTTP, one request each.
            local = target.new_oracle("bench-est-local")
            walls, local_latency = [], []
            for i in range(len(x)):
                start = time.perf_counter()
                answer = local.query(x[i:i + 1])
                walls.append(time.perf_counter() - start)
                local_latency.append(float(answer.latency_s[0]))
            exits = local.served_exits()
            http = HttpOracle(url, "bench-est-http")
            res_http = http.query(x)
            server_s = np.asarray(http.server_compute_s, dtype=np.float64)
            lan = HttpOracle(url, "bench-est-lan", network="lan", seed=0).query(x)
            cost = tuple(server_here.served.cost_fraction)  # granted: exits and family known
            local_latency = np.asarray(local_latency)
            quality = [estimation("in-process live", local_latency, exits, registry, cost),
                       estimation("server's own time per request", server_s, exits, registry,
                                  cost),
                       estimation("http client round trip", res_http.latency_s, exits, registry,
                                  cost),
                       estimation("http round trip + lan jitter", lan.latency_s, exits, registry,
                                  cost)]
            harness_us = float(np.median(np.asarray(walls) - local_latency) * 1e6)
            http_us = float(np.median(res_http.latency_s - server_s) * 1e6)
            work = {"harness_us": round(harness_us, 1), "http_us": round(http_us, 1),
                    "exit_independent_server_work_us": round(harness_us + http_us, 1),
                    "target_us": 1000.0,
                    "client_bound": quality[2]["bayes_exit_accuracy"],
                    "server_bound": quality[1]["bayes_exit_accuracy"],
                    "bound_gap": round(quality[2]["bayes_exit_accuracy"]
                                       - quality[1]["bayes_exit_accuracy"], 4),
                    "target_gap": 0.03}
    finally:
        server.terminate()
        server.wait(timeout=30)
    print_table(overhead, ["path", "inputs_per_call", "calls", "median_us", "p99_us",
                           "overhead_median_us", "overhead_p99_us"])
    print()
    print_table(quality, ["latency", "n", "exit_estimation_accuracy", "bayes_exit_accuracy",
                          "median_latency_us", "majority_exit_rate"])
    print()
    print_table([work], list(work))
    assert monitor.report is not None
    load = monitor.report.to_json()
    print(f"\nload while measuring: {load}"
          + (f" - NOT QUIET: {'; '.join(problems)}" if (problems := monitor.report.problems(
              judge_pressure=False)) else ""))
    path = write_json(args.out, {"victim": "digits_cnn", "timing": "live", "estimator": "bayes",
                                 "overhead": overhead, "exit_estimation": quality,
                                 "server_work": work, "load": load, "quiet": not problems,
                                 "cpu_count": os.cpu_count()})
    print(f"\nwritten to {path}")


def _attacker_pool(registry: Registry) -> np.ndarray:
    entry = registry.get("victim", "digits_cnn")
    return registry.get("dataset", entry.cls.dataset).cls().load(None).attacker.x


if __name__ == "__main__":
    main()
