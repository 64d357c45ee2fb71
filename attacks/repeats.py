"""Repeated queries: combining an input's repeats, perturbed repeats, and their copies.

``exit_steal`` may query every input ``repeats`` times in a row. The repeats' latencies
are combined per input (``min``: delays and scheduler hiccups only ever add time;
``median``), which gives one estimated exit per input. Exact repeats are redundant as
training data; perturbed repeats (the input plus small uniform noise, clipped to the
input range) are queries of their own, so each admitted copy can be a training row.
"""

from __future__ import annotations

import numpy as np

from attacks.substitute import Transcript

COMBINE = ("min", "median")


def combine_repeats(raw: Transcript, inputs: np.ndarray, repeats: int,
                    combine: str) -> tuple[Transcript, np.ndarray]:
    """One row per input from ``repeats`` consecutive queries of it; returns (rows, kept).

    ``kept`` marks inputs with at least one admitted repeat (the returned rows are the
    kept inputs only, all admitted).
    """
    n = len(inputs)
    adm = raw.admitted.reshape(n, repeats)
    kept = adm.any(axis=1)
    lat = np.where(adm, raw.latency_s.reshape(n, repeats), np.nan)[kept]
    reducer = np.nanmin if combine == "min" else np.nanmedian
    latency = reducer(lat, axis=1)
    outs = raw.outputs.reshape(n, repeats, *raw.outputs.shape[1:])[kept]
    adm_k = adm[kept]
    if outs.ndim == 3:  # probabilities: average the admitted repeats
        w = adm_k[:, :, None].astype(np.float64)
        outputs = (np.nan_to_num(outs) * w).sum(axis=1) / w.sum(axis=1)
    else:  # labels: the first admitted repeat
        outputs = outs[np.arange(len(outs)), np.argmax(adm_k, axis=1)]
    rows = Transcript(inputs[kept], outputs, latency, np.ones(int(kept.sum()), dtype=bool))
    return rows, kept


def admitted_copies(raw: Transcript, kept: np.ndarray, repeats: int
                    ) -> tuple[Transcript, np.ndarray]:
    """Every admitted query as its own row, and the index of its input among the kept."""
    ok = raw.admitted
    owner = (np.cumsum(kept) - 1).repeat(repeats)[ok]
    rows = Transcript(raw.x[ok], raw.outputs[ok], raw.latency_s[ok], np.ones(int(ok.sum()), bool))
    return rows, owner


def perturbed_repeats(inputs: np.ndarray, repeats: int, scale: float,
                      input_range: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """Each input ``repeats`` times in a row; repeats after the first get uniform noise.

    The noise is in ``[-scale, scale]`` times the range width, clipped to the range.
    """
    lo, hi = (float(v) for v in input_range)
    out = np.repeat(inputs, repeats, axis=0)
    later = np.arange(len(out)) % repeats > 0
    noise = rng.uniform(-scale, scale, size=(int(later.sum()), *inputs.shape[1:])) * (hi - lo)
    out[later] = np.clip(out[later] + noise, lo, hi).astype(out.dtype)
    return out
