"""Why a component class written for protocol 1 does not fit protocol 2, and how to port it.

The registry refuses such a class at registration (naming the plugin) and the
conformance kit's defense checks report the same text; both call :func:`protocol_problems`.
"""

from __future__ import annotations

import inspect

from harness.protocol import Victim
from harness.stages import STAGES, Defense


def _positional(method: object) -> list[str]:
    params = list(inspect.signature(method).parameters.values())
    return [p.name for p in params[1:]
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]


def protocol_problems(cls: type) -> list[str]:
    """Why ``cls`` does not fit the stage signatures of protocol 2 and later (empty when it
    does), each with how to port it."""
    problems = []
    if issubclass(cls, Defense):
        for stage in STAGES:
            method = getattr(cls, stage)
            if method is getattr(Defense, stage):
                continue
            args = _positional(method)
            if len(args) != 1:
                problems.append(
                    f"stage {stage!r} takes ({', '.join(args)}), the protocol-1 signature; "
                    "since protocol 2 every stage takes one StageBatch: write "
                    f"`def {stage}(self, batch)` and read batch.inputs, batch.exits, "
                    "batch.per_exit_probs, batch.outputs, batch.latency_s, batch.rng and "
                    "batch.server (harness.stages)")
    if issubclass(cls, Victim):
        args = _positional(cls.prepare)
        if len(args) != 2:
            problems.append(
                f"prepare takes ({', '.join(args)}), the protocol-1 signature; since protocol "
                "2 it is `def prepare(self, data, ctx)` with ctx.cache_dir, "
                "ctx.device, ctx.policy(name) and ctx.new_network(...) (harness.protocol."
                "VictimContext)")
    return problems
