"""Summary statistics shared by the leaderboard and the replica agreement."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy import stats


def mean_ci(values: Iterable[float | None]) -> dict[str, Any]:
    """Mean and 95% Student-t interval of the finite values (no interval for one value)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"mean": None, "ci95": [None, None], "n": 0}
    arr = np.asarray(vals, dtype=np.float64)
    mean = float(arr.mean())
    if len(arr) < 2:
        return {"mean": mean, "ci95": [None, None], "n": 1}
    half = float(stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / math.sqrt(len(arr)))
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": len(arr)}


BOOTSTRAP_RESAMPLES = 2000


def bootstrap_ci(tables: list[dict[str, Any]], rng: np.random.Generator,
                 resamples: int = BOOTSTRAP_RESAMPLES) -> dict[str, list[float] | None]:
    """95% percentile-bootstrap intervals over test samples of the mean exit agreement and
    mean fidelity across seeds, from each seed's confusion tables (``exit_confusion`` in a
    cell's diagnostics: counts by (victim exit, stolen exit), and those with agreeing
    labels). Each seed's test samples are resampled with replacement (a multinomial over
    the table's cells), so the interval shows the test split's sampling noise, apart from
    the seed-to-seed noise of the t-interval. None when no seed has a table.
    """
    usable = [t for t in tables if isinstance(t, dict) and t.get("counts")]
    if not usable:
        return {"exit_agreement": None, "fidelity": None}
    agreement = np.zeros(resamples)
    fidelity = np.zeros(resamples)
    for table in usable:
        counts = np.asarray(table["counts"], dtype=np.int64)
        agree = np.asarray(table["label_agree"], dtype=np.int64)
        k = counts.shape[0]
        # cells: (i, j, labels agree) and (i, j, labels differ)
        cells = np.concatenate([agree.ravel(), (counts - agree).ravel()])
        n = int(cells.sum())
        draws = rng.multinomial(n, cells / n, size=resamples)
        same_exit = np.zeros(2 * k * k, dtype=bool)
        diag = np.arange(k) * k + np.arange(k)
        same_exit[diag] = same_exit[k * k + diag] = True
        agreement += draws[:, same_exit].sum(axis=1) / n
        fidelity += draws[:, : k * k].sum(axis=1) / n
    agreement /= len(usable)
    fidelity /= len(usable)
    return {"exit_agreement": np.percentile(agreement, [2.5, 97.5]).tolist(),
            "fidelity": np.percentile(fidelity, [2.5, 97.5]).tolist()}


def paired_difference(a: dict[int, float | None], b: dict[int, float | None]) -> dict[str, Any]:
    """Mean and 95% t-interval of ``a - b`` over the seeds both have (values by seed);
    pairing removes what the seeds share (the victim's queries, the timing noise)."""
    seeds = sorted(s for s in set(a) & set(b) if a[s] is not None and b[s] is not None)
    diff = mean_ci([a[s] - b[s] for s in seeds])
    return {**diff, "seeds": seeds}
