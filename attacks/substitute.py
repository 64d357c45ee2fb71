"""Shared pieces of stealing attacks: querying the pool and distilling substitutes.

Substitute networks come from ``ctx.new_network`` (a registered architecture, by default
the victim's family; when the threat model hides the family, :data:`DEFAULT_ARCHITECTURE`);
this module queries, and builds the distillation loss that it hands to the shared
trainer (:mod:`attacks.trainer`).

Distillation (the *performance loss*) is the SDN-weighted sum over exits of the soft
cross-entropy ``-sum_c p_victim(c) log softmax(z_k)(c)`` toward the victim's returned
probabilities, or plain cross-entropy on the returned labels when ``output=label``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from attacks.trainer import TrainRecipe, TrainReport, train_substitute
from harness.model import MultiExitNet
from harness.nn.training import sdn_exit_weights
from harness.protocol import AttackContext, OracleHandle

DEFAULT_ARCHITECTURE = "small_cnn"
"""The substitute family an attacker picks when the threat model hides the victim's
(``threat.architecture=hidden``) and the attack's ``architecture`` is not set: a generic
small CNN, the attacker's own choice rather than knowledge of the victim."""


def substitute_architecture(architecture: str | None, ctx: AttackContext) -> str:
    """The family to build: the attack's ``architecture``, else the victim's (when granted),
    else (family hidden) :data:`DEFAULT_ARCHITECTURE`."""
    if architecture:
        return architecture
    return DEFAULT_ARCHITECTURE if ctx.victim_family is None else ctx.victim_family


@dataclass(frozen=True)
class Transcript:
    """The admitted queries an attack made: inputs, outputs and latencies, in query order."""

    x: np.ndarray
    outputs: np.ndarray
    latency_s: np.ndarray
    admitted: np.ndarray


def victim_labels(outputs: np.ndarray) -> np.ndarray:
    """Labels of returned outputs (probabilities or labels)."""
    return outputs.argmax(axis=1) if outputs.ndim == 2 else outputs.astype(np.int64)


def concat_transcripts(parts: Sequence[Transcript]) -> Transcript:
    """Transcripts of successive rounds as one, in query order."""
    return Transcript(*(np.concatenate([getattr(t, f) for t in parts])
                        for f in ("x", "outputs", "latency_s", "admitted")))


def draw_pool_indices(n: int, pool_size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` pool indices without replacement, cycling through fresh permutations if n > pool."""
    idx = rng.permutation(pool_size)
    while len(idx) < n:
        idx = np.concatenate([idx, rng.permutation(pool_size)])
    return idx[:n]


def query_pool(oracle: OracleHandle, pool: np.ndarray, n: int, rng: np.random.Generator,
               batch_size: int = 256) -> Transcript:
    """Query ``n`` pool inputs drawn without replacement (repeating only if n > pool)."""
    n = min(n, oracle.budget_left)
    if n <= 0:
        raise ValueError("no query budget left")
    return query_inputs(oracle, pool[draw_pool_indices(n, len(pool), rng)], batch_size)


def query_inputs(oracle: OracleHandle, x: np.ndarray, batch_size: int = 256) -> Transcript:
    """Query the inputs ``x`` in order (batched); the caller keeps within the budget."""
    outs, lats, adm = [], [], []
    for start in range(0, len(x), batch_size):
        res = oracle.query(x[start:start + batch_size])
        outs.append(res.outputs)
        lats.append(res.latency_s)
        adm.append(res.admitted)
    return Transcript(x, np.concatenate(outs), np.concatenate(lats), np.concatenate(adm))


def performance_loss(output: str, weights: Sequence[float]) -> Callable[..., torch.Tensor]:
    """Distillation toward probabilities, or cross-entropy on labels."""
    w = tuple(weights)

    def loss(exit_logits: list[torch.Tensor], target: torch.Tensor, *_: torch.Tensor):
        if output == "label":
            return sum(wk * F.cross_entropy(z, target) for wk, z in zip(w, exit_logits, strict=True))
        return sum(wk * -(target * F.log_softmax(z, dim=1)).sum(1).mean()
                   for wk, z in zip(w, exit_logits, strict=True))

    return loss


def distill(model: MultiExitNet, transcript: Transcript, output: str, recipe: TrainRecipe, *,
            extra_targets: Sequence[torch.Tensor] = (),
            extra_loss: Callable[..., torch.Tensor] | None = None) -> TrainReport:
    """Train ``model`` on the admitted queries with the performance loss (+ ``extra_loss``)
    through the shared trainer (:mod:`attacks.trainer`)."""
    ok = transcript.admitted
    x = torch.as_tensor(np.ascontiguousarray(transcript.x[ok], dtype=np.float32))
    if output == "label":
        target = torch.as_tensor(np.asarray(transcript.outputs)[ok].astype(np.int64))
    else:
        target = torch.as_tensor(np.asarray(transcript.outputs)[ok].astype(np.float32))
    perf = performance_loss(output, sdn_exit_weights(model.num_exits))
    extras = [t[torch.as_tensor(ok)] if len(t) == len(ok) else t for t in extra_targets]

    def loss(exit_logits, tgt, *rest):
        value = perf(exit_logits, tgt)
        return value + extra_loss(exit_logits, *rest) if extra_loss is not None else value

    return train_substitute(model, [x, target, *extras], loss, recipe)
