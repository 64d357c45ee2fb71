"""Changepoint benchmark: speed and exit-estimation quality of the built-in detectors.

Run: ``.venv/bin/python benchmarks/changepoint.py [--quick] [--out PATH]``.

Speed (same sorted standardised log latencies of a 4-exit heavy-tailed trace): ``bayes``
(binned + refined, K given / inferred), ``bayes`` exact (one bin per value, n <= 2,000),
the reference ``bayesian_changepoint_detection`` (``pip install bayesian-changepoint``;
n = 1,000 only, same Normal-Gamma prior, cuts = the K-1 highest changepoint
probabilities), ruptures Dynp and Pelt on all points (l2, jump=1; Dynp only at
n = 1,000, Pelt up to 5,000). Quality: accuracy of every detector vs the Bayes-optimal bound.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import ruptures as rpt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attacks.exit_estimation import (
    BUILTIN_ESTIMATORS,
    bayes_segmentation,
    prepare_latencies,
    staircase_exits,
    synthetic_latencies,
)
from attacks.exit_estimation.base import peak_cuts
from attacks.exit_estimation.normal_gamma import NormalGammaPrior
from benchmarks._common import print_table, write_json
from harness.metrics.leakage import bayes_exit_accuracy

COST = (0.15, 0.45, 0.76, 1.0)
K = 4
REFERENCE_PRIOR = NormalGammaPrior(alpha0=1.0, beta0=1.0, kappa0=1.0, mu0=0.0)


def _timed(fn, repeats: int = 1):
    best, out = np.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def _reference(z: np.ndarray) -> tuple[np.ndarray, float] | None:
    try:
        import torch
        from bayesian_changepoint_detection import const_prior, offline_changepoint_detection
        from bayesian_changepoint_detection.offline_likelihoods import StudentT
    except ImportError:
        return None
    data = torch.tensor(z, dtype=torch.float64)
    lik = StudentT(alpha0=1.0, beta0=1.0, kappa0=1.0, mu0=0.0)
    prior = partial(const_prior, p=1.0 / (len(z) + 1))
    (_, _, pcp), dt = _timed(lambda: offline_changepoint_detection(data, prior, lik))
    prob = torch.exp(pcp).sum(0).numpy()  # prob[t]: a changepoint right after index t
    return peak_cuts(prob, K - 1, 5) + 1, dt


def speed(sizes: list[int], seed: int) -> list[dict]:
    rows = []
    for n in sizes:
        rng = np.random.default_rng([seed, n])
        exits = staircase_exits(K, n, rng)
        lat = synthetic_latencies(exits, COST, rng, noise=0.05, tail_prob=0.02)
        z = prepare_latencies(lat, "log", 0.005).fitted
        row: dict = {"n": n}
        fast, row["bayes_s"] = _timed(
            lambda z=z: bayes_segmentation(z, K, membership=False), repeats=3)
        _, row["bayes_posterior_s"] = _timed(lambda z=z: bayes_segmentation(z, K), repeats=3)
        _, row["bayes_infer_k_s"] = _timed(lambda z=z: bayes_segmentation(z, None), repeats=3)
        if n <= 2000:
            exact, row["bayes_exact_s"] = _timed(
                lambda z=z: bayes_segmentation(z, K, max_bins=len(z), membership=False))
            row["binned_vs_exact_max_cut_shift"] = int(np.abs(fast.cuts - exact.cuts).max())
        if n <= 1000:
            ref = _reference(z)
            if ref is None:
                row["reference_note"] = "bayesian-changepoint not installed"
            else:
                same_prior = bayes_segmentation(z, K, prior=REFERENCE_PRIOR, max_bins=len(z),
                                                membership=False)
                _, ours = _timed(lambda z=z: bayes_segmentation(
                    z, K, prior=REFERENCE_PRIOR, membership=False), repeats=3)
                row["reference_s"] = ref[1]
                row["speedup_vs_reference"] = ref[1] / ours
                row["reference_max_cut_shift"] = int(np.abs(ref[0] - same_prior.cuts).max())
            dyn, row["ruptures_dynp_s"] = _timed(lambda z=z: rpt.Dynp(
                model="l2", min_size=2, jump=1).fit(z.reshape(-1, 1)).predict(n_bkps=K - 1))
            row["dynp_vs_bayes_max_cut_shift"] = int(np.abs(np.asarray(dyn[:-1]) - fast.cuts).max())
        if n <= 5000:  # about a minute at 5,000 points here; quadratic beyond
            pen = 3.0 * np.log(len(z)) * z.var()
            pelt, row["ruptures_pelt_s"] = _timed(lambda z=z, pen=pen: rpt.Pelt(
                model="l2", min_size=2, jump=1).fit(z.reshape(-1, 1)).predict(pen=pen))
            row["pelt_segments"] = len(pelt)
        rows.append(row)
    return rows


def quality(n: int, seeds: list[int], scenarios: list[tuple[float, float]]) -> list[dict]:
    rows = []
    detectors = [cls for cls in BUILTIN_ESTIMATORS if not cls.reference]
    for noise, tail in scenarios:
        acc: dict[str, list[float]] = {}
        for seed in seeds:
            rng = np.random.default_rng([seed, int(noise * 1000), int(tail * 1000)])
            exits = staircase_exits(K, n, rng)
            lat = synthetic_latencies(exits, COST, rng, noise=noise, tail_prob=tail)
            acc.setdefault("bayes_optimal", []).append(bayes_exit_accuracy(lat, exits))
            for cls in detectors:
                for given in (True, False):
                    key = cls.name if given else f"{cls.name}?"
                    est = cls().estimate(lat, K if given else None, rng)
                    hit = np.mean(est.exits == exits) if est.num_exits == K else np.nan
                    acc.setdefault(key, []).append(float(np.mean(est.exits == exits)))
                    acc.setdefault(f"{key}#k_ok", []).append(float(not np.isnan(hit)))
        row = {"noise": noise, "tail_prob": tail}
        row.update({k: float(np.mean(v)) for k, v in acc.items()})
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one seed")
    parser.add_argument("--out", default="benchmarks/results/changepoint.json")
    args = parser.parse_args()
    sizes = [1000, 5000] if args.quick else [1000, 5000, 20000]
    seeds = [0] if args.quick else [0, 1, 2]
    scenarios = [(0.02, 0.0), (0.05, 0.0), (0.05, 0.02), (0.1, 0.02), (0.15, 0.05)]
    speed_rows = speed(sizes, seed=0)
    quality_rows = quality(2000, seeds, scenarios)
    print("== speed (seconds; 4 exits, noise 0.05, 2% of queries slowed 2-8x) ==")
    print_table(speed_rows, ["n", "bayes_s", "bayes_posterior_s", "bayes_infer_k_s",
                             "bayes_exact_s", "binned_vs_exact_max_cut_shift", "reference_s",
                             "speedup_vs_reference", "reference_max_cut_shift",
                             "ruptures_dynp_s", "dynp_vs_bayes_max_cut_shift",
                             "ruptures_pelt_s", "pelt_segments"])
    print("\n== exit-estimation accuracy (n=2000, K=4 given; '?' = K inferred) ==")
    names = [c.name for c in BUILTIN_ESTIMATORS if not c.reference]
    print_table(quality_rows, ["noise", "tail_prob", "bayes_optimal",
                               *[x for nm in names for x in (nm, f"{nm}?")]])
    print("\n== fraction of runs with K inferred correctly ==")
    print_table(quality_rows, ["noise", "tail_prob", *[f"{nm}?#k_ok" for nm in names]])
    path = write_json(args.out, {"speed": speed_rows, "quality": quality_rows,
                                 "sizes": sizes, "seeds": seeds, "cost_fraction": COST})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
