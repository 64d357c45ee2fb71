"""Exit estimation on the stress victims' own query traces (no training of substitutes).

For each victim of ``attack_victims.py`` and each seed, the default budget of attacker
pool queries goes through the victim's real server under the default (realistic) timing;
every registered estimator then estimates the exits of those queries with the number of
exits given. Reported per estimator: mean accuracy, mean gap to the trace's Bayes bound,
and how often it found the number of *occupied* exits (exits the queries really used) -
with ``K`` given, an estimator still decides which exits are empty.

Usage: ``python benchmarks/estimation_victims.py [--seeds 0,1,2,3,4] [--draws 10]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, write_json
from benchmarks.attack_victims import victims
from harness.cell.server import Server, Stream
from harness.cell.spec import CellEnvironment
from harness.metrics.leakage import bayes_exit_accuracy
from harness.plugins.registry import load_registry
from harness.run.config import default_cache_dir, parse_overrides
from harness.run.grid import expand_grid
from harness.serving.oracle import Oracle

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "estimation_victims.json"


def query_trace(server: Server, budget: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    data = server.victim.data
    oracle = Oracle(server.endpoint(Stream.ATTACK_DEFENSE, Stream.ATTACK_TIMING,
                                    client_id="attacker"), budget, "probs", data.input_shape,
                    data.input_range)
    pool = data.attacker.x
    oracle.query(pool[np.random.default_rng([seed, 0]).permutation(len(pool))[:budget]])
    return oracle.served_latencies(), oracle.served_exits()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--budget", type=int, default=500)
    args = parser.parse_args()
    registry = load_registry()
    env = CellEnvironment(cache_dir=default_cache_dir(), data_root=None)
    estimators = [e for e in registry.entries("exit_estimator") if not e.cls.reference]
    stats: dict[str, dict[str, list[float]]] = {e.name: {"acc": [], "gap": [], "occ": []}
                                                for e in estimators}
    for label, name, extra in victims(args.draws):
        spec = parse_overrides([f"victims={name}", "attacks=knockoff", "defenses=none",
                                f"seeds={args.seeds}", *extra])
        for cell in expand_grid(spec, registry):
            server = Server.build(cell, registry, env, "cpu")
            lat, exits = query_trace(server, args.budget, cell.seed)
            k = server.served.num_exits
            bound = bayes_exit_accuracy(lat, exits)
            occupied = len(np.unique(exits))
            for e in estimators:
                est = e.cls().estimate(lat, k, np.random.default_rng(0),
                                       cost_fraction=tuple(server.served.cost_fraction))
                acc = float(np.mean(est.exits == exits))
                stats[e.name]["acc"].append(acc)
                stats[e.name]["gap"].append(bound - acc)
                stats[e.name]["occ"].append(float(len(np.unique(est.exits)) == occupied))
        print(f"{label}: done", flush=True)
    rows = [{"estimator": n, "mean_accuracy": float(np.mean(s["acc"])),
             "mean_gap": float(np.mean(s["gap"])), "worst_gap": float(np.max(s["gap"])),
             "occupied_right": float(np.mean(s["occ"])), "traces": len(s["acc"])}
            for n, s in stats.items()]
    print_table(rows, ["estimator", "traces", "mean_accuracy", "mean_gap", "worst_gap",
                       "occupied_right"])
    print(f"wrote {write_json(DEFAULT_OUT, {'rows': rows, 'seeds': args.seeds})}")


if __name__ == "__main__":
    main()
