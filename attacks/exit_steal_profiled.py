"""``exit_steal_profiled``: the timing attack under Kerckhoffs's principle.

The defense's code and parameters and the timing deployment are public (a cell records
them; ``threat.defense=known``, the default). This attacker therefore serves a network of
its own behind them, ``ctx.local_server(network, strategy)``
(:mod:`harness.serving.own_server`: the victim's backend and timing, the defense built
fresh with a key of its own), and learns what each exit looks like from outside:

1. query the victim as ``exit_steal`` does (``repeats`` per input, combined the same way);
2. force each exit of its own network (a fresh network of its substitute's architecture
   with the victim's number of exits; under the modelled timings its latency follows the
   granted cost fractions, under ``live`` its own compute) on ``profile_inputs`` draws
   (with replacement) of its admitted inputs, each ``repeats`` times and combined alike,
   and fit per-exit latency templates (:func:`attacks.profiling.fit_templates`). Own
   queries cost no budget; 1,000 per exit (the default) is about what the capacity
   figure's Monte Carlo draws per cell, and 300 per exit left slack of up to 0.08 under
   ``jitter`` and ``timeguard`` (3 seeds);
3. fit the victim's exit shares by EM with the templates fixed and give each query its
   posterior arg-max (:func:`attacks.profiling.em_priors`);
4. train and search exactly as ``exit_steal`` (stages 2 and 3).

It never receives the victim, its weights, its server or its key: only the public
deployment through its context. Where no own server can be had (``timing=replay``, whose
profile only the evaluator holds; the number of exits hidden; an attack run outside a
cell) it says why in ``diagnostics.profile_unavailable`` and estimates without
templates, as ``exit_steal``. Under ``threat.defense=hidden`` its own server runs
undefended, so its templates miss what the defense does to latency; the EM shares still
adapt (``diagnostics.profile_defended`` records which).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from attacks.exit_steal import ExitStealAttack
from attacks.profiling import boundaries_of, em_priors, fit_templates
from attacks.repeats import combine_repeats
from attacks.substitute import Transcript
from harness.errors import HarnessError
from harness.params import Interval
from harness.protocol import AttackContext, ExitEstimate, OracleHandle
from harness.serving.own_server import forced_exit
from harness.strategy import OutputStrategy


def extended_init(base: Callable[..., None], **extra: Any) -> Callable[..., None]:
    """``base`` (an ``__init__``) taking the keyword parameters ``extra`` too (stored as
    attributes), in its signature, so that ``get_params`` round-trips them."""
    sig = inspect.signature(base)

    def __init__(self, **params: Any) -> None:
        own = {name: params.pop(name, default) for name, default in extra.items()}
        base(self, **params)
        for name, value in own.items():
            setattr(self, name, value)

    __init__.__signature__ = sig.replace(parameters=[  # type: ignore[attr-defined]
        *sig.parameters.values(),
        *(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
          for name, default in extra.items())])
    __init__.__doc__ = base.__doc__
    return __init__


PROFILE_STREAM = 91
"""``ctx.rng`` stream of the profile's input choice (the own server's key: stream 90)."""
UNINFORMATIVE_MARGIN = 0.05
"""Templates within this of chance on held-out profile draws are treated as uninformative."""


class ExitStealProfiled(ExitStealAttack):
    """``exit_steal`` whose exit estimate comes from templates profiled on an own server."""

    name = "exit_steal_profiled"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **ExitStealAttack._parameter_constraints,
        "profile_inputs": [Interval("int", 2, 100_000)],
        "em_steps": [Interval("int", 1, 100_000)],
    }

    __init__ = extended_init(ExitStealAttack.__init__, profile_inputs=1000, em_steps=500)

    def _profile(self, rows: Transcript, ctx: AttackContext) -> tuple[Any, dict[str, Any]]:
        """Templates from the own server (HarnessError when none can be had)."""
        k = ctx.num_exits
        if k is None:
            raise HarnessError("the number of exits is hidden: no exit to force")
        policy = ctx.policy(self.policy)
        network = self._network(ctx, k).eval()
        lo, hi = policy.threshold_range(ctx.num_classes)
        base = OutputStrategy(policy, ((hi if policy.higher_is_confident else lo),) * (k - 1))
        server = ctx.local_server(network, base, rows.x)
        rng = ctx.rng(PROFILE_STREAM)
        take = rows.x[rng.integers(0, len(rows.x), size=self.profile_inputs)]
        latencies, forced = [], []
        for exit_index in range(k):
            queries = np.repeat(take, self.repeats, axis=0)
            answer = server.query(queries, forced_exit(base, exit_index))
            raw = Transcript(queries, np.nan_to_num(answer.outputs), answer.latency_s,
                             answer.admitted)
            combined, _ = combine_repeats(raw, take, self.repeats, self.combine)
            latencies.append(combined.latency_s)
            forced.append(np.full(len(combined.latency_s), exit_index))
        templates = fit_templates(np.concatenate(latencies), np.concatenate(forced), k, rng)
        notes = {"profile_inputs": len(take), "profile_defended": server.defended,
                 "profile_model": templates.model,
                 "profile_cv_accuracy": templates.cv_accuracy,
                 "profile_per_exit": [len(s) for s in templates.samples]}
        return templates, notes

    def _estimate(self, est_name: str, rows: Transcript, kept: np.ndarray, oracle: OracleHandle,
                  ctx: AttackContext) -> tuple[ExitEstimate, dict[str, Any]]:
        try:
            templates, notes = self._profile(rows, ctx)
        except HarnessError as exc:
            estimate = self._estimate_unsupervised(est_name, rows, kept, oracle, ctx)
            return estimate, {"profile_unavailable": str(exc)[:300]}
        priors, posterior = em_priors(templates.log_density(rows.latency_s), self.em_steps)
        exits = posterior.argmax(axis=1).astype(np.int64)
        k = templates.num_exits
        notes = {**notes, "profiled": True, "em_exit_shares": [round(float(p), 6) for p in priors]}
        return ExitEstimate(boundaries_of(rows.latency_s, exits, k), exits, k, posterior), notes

    def _ties_matter(self, notes: dict[str, Any]) -> bool:
        return not notes.get("profiled", False)

    def _own_reasons(self, notes: dict[str, Any]) -> list[str]:
        """Templates that tell the exits apart no better than chance on held-out profile
        draws (a constant pad) carry nothing: EM then drifts to one exit, and fitting a
        strategy to that does worse than not trying."""
        cv, per_exit = notes.get("profile_cv_accuracy"), notes.get("profile_per_exit")
        if not notes.get("profiled") or cv is None or not per_exit:
            return []
        chance = max(per_exit) / sum(per_exit)
        if cv > chance + UNINFORMATIVE_MARGIN:
            return []
        return [f"the profiled latency templates tell the exits apart no better than chance "
                f"(held-out accuracy {cv:.3f}, chance {chance:.3f})"]

    def _made_by(self, est_name: str, notes: dict[str, Any]) -> str:
        """The templates, when profiled: then every unsupervised estimator is compared."""
        return "profiled" if notes.get("profiled") else est_name
