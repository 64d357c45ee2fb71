"""Per-cell scores (docs/design.md section 6), as plain functions of arrays.

Strategy-stealing success compares the substitute (with its stolen strategy) against
the *undefended* victim on the held-out test split. Defense cost compares benign test
traffic through the defended and the undefended endpoint.
"""

from __future__ import annotations

import numpy as np


def exit_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of samples whose exits agree."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"exit arrays must be non-empty and of equal shape, got {a.shape}, {b.shape}")
    return float((a == b).mean())


def cohen_kappa(a: np.ndarray, b: np.ndarray, num_exits: int) -> float:
    """Chance-corrected agreement: (p_o - p_e) / (1 - p_e); 1.0 when both are constant and equal."""
    p_o = exit_agreement(a, b)
    pa = np.bincount(np.asarray(a), minlength=num_exits) / len(a)
    pb = np.bincount(np.asarray(b), minlength=num_exits) / len(b)
    p_e = float((pa * pb).sum())
    if p_e >= 1.0 - 1e-12:
        return 1.0 if p_o >= 1.0 - 1e-12 else 0.0
    return (p_o - p_e) / (1.0 - p_e)


def exit_histogram(exits: np.ndarray, num_exits: int) -> np.ndarray:
    return np.bincount(np.asarray(exits), minlength=num_exits) / max(len(exits), 1)


def exit_distribution_tv(a: np.ndarray, b: np.ndarray, num_exits: int) -> float:
    """Total variation distance between the two exit histograms."""
    return float(0.5 * np.abs(exit_histogram(a, num_exits) - exit_histogram(b, num_exits)).sum())


def mean_cost(exits: np.ndarray, cost_fraction: tuple[float, ...] | np.ndarray) -> float:
    return float(np.asarray(cost_fraction, dtype=np.float64)[np.asarray(exits)].mean())


def strategy_scores(*, victim_exits: np.ndarray, victim_labels: np.ndarray,
                    victim_cost: tuple[float, ...], sub_exits: np.ndarray,
                    sub_labels: np.ndarray, sub_cost: tuple[float, ...],
                    y_true: np.ndarray) -> dict[str, float]:
    """Strategy-stealing success on the test split (the number of exits may differ)."""
    num_exits = max(len(victim_cost), len(sub_cost))
    cost_ratio = mean_cost(sub_exits, sub_cost) / mean_cost(victim_exits, victim_cost)
    return {
        "exit_agreement": exit_agreement(sub_exits, victim_exits),
        "exit_kappa": cohen_kappa(sub_exits, victim_exits, num_exits),
        "fidelity": float((sub_labels == victim_labels).mean()),
        "accuracy": float((sub_labels == y_true).mean()),
        "victim_accuracy": float((victim_labels == y_true).mean()),
        "cost_ratio": cost_ratio,
        "efficiency_gap": abs(cost_ratio - 1.0),
        "exit_distribution_tv": exit_distribution_tv(sub_exits, victim_exits, num_exits),
    }


def final_exit_scores(*, victim_exits: np.ndarray, victim_labels: np.ndarray,
                      victim_cost: tuple[float, ...], final_labels: np.ndarray) -> dict[str, float]:
    """The substitute answered by its final exit only (no strategy): its fidelity, and the
    efficiency gap of always running the full network against the victim's strategy. Beside
    the stolen strategy's scores this shows what early exit gains or loses the attacker."""
    ratio = 1.0 / mean_cost(victim_exits, victim_cost)
    return {"final_exit_fidelity": float((final_labels == victim_labels).mean()),
            "final_exit_efficiency_gap": abs(ratio - 1.0)}


def exit_confusion(victim_exits: np.ndarray, sub_exits: np.ndarray, agree: np.ndarray,
                   num_exits: int) -> dict[str, list[list[int]]]:
    """Counts of test inputs by (victim exit, stolen exit): all of them and those where the
    labels agree. Exit agreement is the first matrix's trace over its sum, fidelity the
    second's sum over the first's: both are functions of the counts, so a leaderboard can
    bootstrap them over test samples without the samples."""
    index = np.asarray(victim_exits) * num_exits + np.asarray(sub_exits)
    size = num_exits * num_exits
    counts = np.bincount(index, minlength=size).reshape(num_exits, num_exits)
    agreeing = np.bincount(index[np.asarray(agree, dtype=bool)],
                           minlength=size).reshape(num_exits, num_exits)
    return {"counts": counts.tolist(), "label_agree": agreeing.tolist()}


def latency_histogram(latency_s: np.ndarray, exits: np.ndarray, num_exits: int,
                      bins: int = 48) -> dict[str, list] | None:
    """Observed latencies by the exit that served them, on log-spaced bins between the
    smallest and largest answered latency (None when fewer than two were answered)."""
    ok = (np.asarray(exits) >= 0) & np.isfinite(latency_s) & (np.asarray(latency_s) > 0)
    lat, ex = np.asarray(latency_s, dtype=np.float64)[ok], np.asarray(exits)[ok]
    if len(lat) < 2 or lat.min() == lat.max():
        return None
    edges = np.geomspace(lat.min(), lat.max(), bins + 1)
    counts = [np.histogram(lat[ex == k], bins=edges)[0].tolist() for k in range(num_exits)]
    return {"edges_s": edges.tolist(), "counts_by_exit": counts}


def exit_estimation_accuracy(estimated: np.ndarray | None, served: np.ndarray) -> float | None:
    """Accuracy of the attack's estimated exits on its admitted queries (None if not given)."""
    if estimated is None:
        return None
    estimated = np.asarray(estimated)
    if estimated.shape != served.shape:
        raise ValueError(f"estimated_exits has {estimated.shape[0] if estimated.ndim else 0} "
                         f"entries but the attack made {len(served)} queries; give one "
                         "estimate per query in query order")
    ok = served >= 0
    return float((estimated[ok] == served[ok]).mean()) if ok.any() else None


def _per_input_mean(inputs: np.ndarray | None):
    """``mean(values)`` where every input weighs the same, whatever its number of rows."""
    if inputs is None:
        return lambda values: float(np.mean(values))
    inputs = np.asarray(inputs, dtype=np.int64)
    counts = np.bincount(inputs)
    seen = counts > 0

    def mean(values: np.ndarray) -> float:
        sums = np.bincount(inputs, weights=np.asarray(values, dtype=np.float64),
                           minlength=len(counts))
        return float(np.mean(sums[seen] / counts[seen]))

    return mean


def defense_costs(*, labels_def: np.ndarray, labels_undef: np.ndarray, y_true: np.ndarray,
                  latency_def: np.ndarray, latency_undef: np.ndarray, latency_full: np.ndarray,
                  cost_def: np.ndarray, cost_undef: np.ndarray,
                  inputs: np.ndarray | None = None) -> dict[str, float | None]:
    """Benign-traffic cost of a defense; refused benign queries count as wrong and unserved.

    ``inputs``: which input each row answers, where an input was sent more than once; the
    accuracy and refusal costs then weigh every input the same (the mean of its rows).
    ``latency_full`` is the full network's latency per distinct input.

    Latency and compute overheads are over the queries the defense answered; the speed-up
    retained is scaled by the share answered (a refused query gets no speed-up). A defense
    that answers nothing scores the worst value of each cost: an accuracy drop equal to
    the victim's accuracy, refusal rate 1, speed-up retained 0, and the latency and
    compute overheads not applicable (None), never a flattering zero.
    """
    served = np.isfinite(latency_def)
    per_input = _per_input_mean(inputs)
    acc_def = per_input((labels_def == y_true) & served)
    acc_undef = per_input(labels_undef == y_true)
    share_served = per_input(served)
    costs: dict[str, float | None] = {
        "benign_accuracy_drop": acc_undef - acc_def,
        "benign_refusal_rate": 1.0 - share_served,
        "latency_overhead_p50": None, "latency_overhead_p99": None,
        "compute_overhead": None, "speedup_retained": 0.0,
    }
    if not served.any():
        return costs
    lat_def = latency_def[served]
    p50_u, p99_u = np.percentile(latency_undef, [50, 99])
    p50_d, p99_d = np.percentile(lat_def, [50, 99])
    full = float(np.mean(latency_full))
    speedup_undef = full / float(np.mean(latency_undef))
    speedup_def = full / float(np.mean(lat_def))
    retained = 1.0 if speedup_undef <= 1.0 else (speedup_def - 1.0) / (speedup_undef - 1.0)
    costs.update({
        "latency_overhead_p50": float(p50_d / p50_u - 1.0),
        "latency_overhead_p99": float(p99_d / p99_u - 1.0),
        "compute_overhead": float(cost_def[served].mean() / cost_undef.mean() - 1.0),
        "speedup_retained": float(retained * share_served),  # a refusal speeds up nothing
    })
    return costs
