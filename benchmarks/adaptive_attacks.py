"""Adaptive exit_steal variants against the defenses they target, beside plain exit_steal.

Per pair (variant, defense setting), ``exit_steal`` and the variant run on ``digits_cnn``
over the given seeds at the default budget and timing (``realistic``; one jitter pair
also under ``analytic``, where the delay is the only large timing noise) through the
real grid runner.
Reported per pair: each attack's exit agreement (mean and min over seeds), the mean
paired difference ``variant - exit_steal``, on how many seeds the variant was ahead,
and both attacks' exit estimation accuracy (estimated vs served exits of their own
queries). The variant "beats" plain when the mean paired difference is positive;
``--undefended`` adds every variant against ``none`` (what the adaptation costs when
there is nothing to adapt to). Cells are cached under ``--out`` (a re-run reuses them,
so the committed ``summary.json`` is one full run's table; ``--only`` runs add their rows
to it). One cell took 40-60 s on this 2-core machine; the full run is 90 cells.

Usage: ``python benchmarks/adaptive_attacks.py [--seeds 0,1,2] [--only timeguard,...]
[--jobs 1] [--undefended]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, write_json
from harness.plugins.manager import make_plugin_manager
from harness.run.config import parse_overrides
from harness.run.runner import run_grid

PLAIN = "exit_steal"
PAIRS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    # (label, variant, defense, defense overrides); pairs sharing a label share cells
    ("jitter_uniform", "exit_steal_repeat", "jitter", ()),
    ("jitter_uniform", "exit_steal_perturb", "jitter", ()),
    ("jitter_exponential", "exit_steal_repeat", "jitter",
     ("defense.jitter.distribution=exponential",)),
    ("jitter_exponential", "exit_steal_perturb", "jitter",
     ("defense.jitter.distribution=exponential",)),
    ("jitter_uniform_analytic", "exit_steal_repeat", "jitter", ("timing=analytic",)),
    ("timeguard", "exit_steal_perturb", "timeguard", ()),
    ("timeguard", "exit_steal_repeat", "timeguard", ()),
    ("exit_noise", "exit_steal_noisy", "exit_noise", ()),
    ("exit_noise_p0.3", "exit_steal_noisy", "exit_noise", ("defense.exit_noise.p=0.3",)),
    ("confidence_noise", "exit_steal_noisy", "confidence_noise", ()),
    ("label_only", "exit_steal_labels", "label_only", ()),
    ("rounding", "exit_steal_labels", "rounding", ()),
    ("reverse_sigmoid", "exit_steal_labels", "reverse_sigmoid", ()),
    ("gaussian_noise", "exit_steal_labels", "gaussian_noise", ()),
)
VARIANTS = tuple(dict.fromkeys(p[1] for p in PAIRS))
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "adaptive_attacks"


def run_pair(label: str, attacks: list[str], defense: str, extra: tuple[str, ...], seeds: str,
             jobs: int, out: Path) -> list[dict[str, Any]]:
    keys = ["victims=digits_cnn", f"defenses={defense}", f"attacks={','.join(attacks)}",
            f"seeds={seeds}", f"out={out / label}", *extra]
    if jobs > 1:
        keys += ["executor=process", f"jobs={jobs}"]
    summary = run_grid(parse_overrides(keys), make_plugin_manager(), show_progress=False)
    return [json.loads(p.read_text()) for p in summary.result_paths if p.exists()]


def per_seed(results: list[dict[str, Any]], attack: str, metric: str) -> dict[int, float]:
    return {r["seed"]: r["metrics"][metric] for r in results
            if r["status"] == "ok" and r["components"]["attack"]["name"] == attack
            and metric in r["metrics"]}


def _mean(values: dict[int, float]) -> float | None:
    return float(np.mean(list(values.values()))) if values else None


def _min(values: dict[int, float]) -> float | None:
    return float(min(values.values())) if values else None


def summarise(label: str, variant: str, defense: str, results: list[dict[str, Any]]
              ) -> dict[str, Any]:
    plain = per_seed(results, PLAIN, "exit_agreement")
    adapt = per_seed(results, variant, "exit_agreement")
    seeds = sorted(set(plain) & set(adapt))
    diffs = [adapt[s] - plain[s] for s in seeds]
    return {
        "pair": label, "defense": defense, "variant": variant, "seeds": len(seeds),
        "plain_mean": _mean(plain), "plain_min": _min(plain),
        "variant_mean": _mean(adapt), "variant_min": _min(adapt),
        "diff_mean": float(np.mean(diffs)) if diffs else None,
        "variant_ahead": f"{sum(d > 0 for d in diffs)}/{len(diffs)}",
        "beats_plain": bool(diffs and np.mean(diffs) > 0),
        "plain_est_acc": _mean(per_seed(results, PLAIN, "exit_estimation_accuracy")),
        "variant_est_acc": _mean(per_seed(results, variant, "exit_estimation_accuracy")),
        "per_seed": {PLAIN: plain, variant: adapt},
        "failed": sum(r["status"] != "ok" for r in results),
    }


def merged(out: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` over those of an earlier summary in ``out`` (``--only`` runs add up)."""
    path = out / "summary.json"
    old = json.loads(path.read_text())["rows"] if path.exists() else []
    key = {(r["pair"], r["variant"]): r for r in old}
    key.update({(r["pair"], r["variant"]): r for r in rows})
    order = [p[0] for p in PAIRS] + ["none"]
    return sorted(key.values(), key=lambda r: (order.index(r["pair"]) if r["pair"] in order
                                               else len(order), r["variant"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--only", default=None, help="comma-separated pair labels")
    parser.add_argument("--undefended", action="store_true",
                        help="also run every variant against defense none")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    for label, variant, defense, extra in PAIRS:
        if args.only and label not in args.only.split(","):
            continue
        results = run_pair(label, [PLAIN, variant], defense, extra, args.seeds, args.jobs,
                           args.out)
        rows.append(summarise(label, variant, defense, results))
        print(f"{label}: done ({time.perf_counter() - started:.0f}s)", flush=True)
    if args.undefended:
        results = run_pair("none", [PLAIN, *VARIANTS], "none", (), args.seeds, args.jobs,
                           args.out)
        rows += [summarise("none", v, "none", results) for v in VARIANTS]
    print_table(rows, ["pair", "variant", "seeds", "plain_mean", "plain_min", "variant_mean",
                       "variant_min", "diff_mean", "variant_ahead", "plain_est_acc",
                       "variant_est_acc", "failed"])
    path = write_json(args.out / "summary.json", {
        "victim": "digits_cnn", "seeds": args.seeds, "rows": merged(args.out, rows),
        "last_run_wall_s": round(time.perf_counter() - started)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
