"""Stage checks of a defense: the protocol, shapes, ranges, determinism, purity, ``reset()``.

Each check takes ``(cls, params=None, registry=None)`` and raises
:class:`~harness.testing.checks.ConformanceError` naming the defense, the check and the
fix. They run the defense behind the kit's tiny endpoint, so the server's own
validation (simplex outputs, finite latencies never below the computation, exits in
range) applies exactly as in a cell.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings

from harness.errors import HarnessError
from harness.plugins.porting import protocol_problems
from harness.plugins.registry import Registry
from harness.serving.endpoint import EndpointResponse
from harness.stages import Defense, bind_defense, defense_report
from harness.testing.checks import ConformanceError, _fail, check_component
from harness.testing.fixtures import default_registry, tiny_endpoint, tiny_victim
from harness.testing.strategies import query_batches

BATCH_SIZES = (1, 7)
PROPERTY_EXAMPLES = 25


def _fresh(cls: type[Defense], params: dict[str, Any] | None,
           registry: Registry | None = None) -> Defense:
    """Built, bound and reset, as the server does it."""
    defense = cls(**(params or {}))
    bind_defense(defense, registry or default_registry())
    defense.reset()
    return defense


def _respond(cls, defense: Defense, victim, x: np.ndarray, seed: int) -> EndpointResponse:
    endpoint = tiny_endpoint(victim, defense, seed=seed,
                             defense_label=f"defense {cls.name!r}")
    try:
        return endpoint.respond(x)
    except HarnessError as exc:
        fix = ("return new arrays instead of writing into the batch's (they are read-only)"
               if "read-only" in str(exc) else
               "return arrays of the documented shapes: a bool mask, integer exits in range, "
               "probability rows on the simplex, finite latencies >= batch.latency_s")
        raise _fail(cls, "stages", str(exc), fix) from None


def _same(a: EndpointResponse, b: EndpointResponse) -> bool:
    return (np.array_equal(a.exits, b.exits) and np.array_equal(a.admitted, b.admitted)
            and np.allclose(a.probs, b.probs, equal_nan=True)
            and np.allclose(a.latency_s, b.latency_s, equal_nan=True))


def _setup(registry: Registry | None):
    victim = tiny_victim(registry=registry or default_registry())
    return victim, victim.data.attacker.x


def check_protocol(cls: type[Defense], params: dict[str, Any] | None = None,
                   registry: Registry | None = None) -> None:
    """Every overridden stage takes one StageBatch (protocol 2)."""
    problems = protocol_problems(cls)
    if problems:
        raise _fail(cls, "protocol", "; ".join(problems), "port the stages as described")


def check_stage_shapes(cls: type[Defense], params: dict[str, Any] | None = None,
                       registry: Registry | None = None) -> None:
    """Every stage answers well on batches of 1, 7 and the whole pool."""
    victim, pool = _setup(registry)
    for size in (*BATCH_SIZES, len(pool)):
        response = _respond(cls, _fresh(cls, params, registry), victim, pool[:size], seed=0)
        if response.admitted.shape != (size,):
            raise _fail(cls, "stages", f"{size} queries gave {response.admitted.shape} "
                        "admissions", "admit one flag per query")


def check_seeded_determinism(cls: type[Defense], params: dict[str, Any] | None = None,
                             registry: Registry | None = None) -> None:
    """Same seed, same state -> same responses; randomness only from ``batch.rng``."""
    victim, pool = _setup(registry)
    for size in BATCH_SIZES:
        a = [_respond(cls, d, victim, pool[i:i + size], seed=3)
             for d in [_fresh(cls, params, registry)] for i in range(0, 3 * size, size)]
        b = [_respond(cls, d, victim, pool[i:i + size], seed=3)
             for d in [_fresh(cls, params, registry)] for i in range(0, 3 * size, size)]
        if not all(_same(x, y) for x, y in zip(a, b, strict=True)):
            raise _fail(cls, "seeded_determinism", "the same seed gave different responses",
                        "draw randomness only from batch.rng and keep no global state")


def check_no_input_mutation(cls: type[Defense], params: dict[str, Any] | None = None,
                            registry: Registry | None = None) -> None:
    """The queries the client sent are unchanged after the server answered."""
    victim, pool = _setup(registry)
    x = pool[:7].copy()
    _respond(cls, _fresh(cls, params, registry), victim, x, seed=0)
    if not np.array_equal(x, pool[:7]):
        raise _fail(cls, "no_input_mutation", "the query batch changed while being answered",
                    "never modify batch.inputs; work on copies")


def check_reset_honoured(cls: type[Defense], params: dict[str, Any] | None = None,
                         registry: Registry | None = None) -> None:
    """After ``reset()`` a used instance answers like a fresh one."""
    victim, pool = _setup(registry)
    used = _fresh(cls, params, registry)
    for i in range(0, len(pool) // 2, 16):
        _respond(cls, used, victim, pool[i:i + 16], seed=5)
    used.reset()
    tail = pool[len(pool) // 2:]
    fresh = _fresh(cls, params, registry)
    again = [_respond(cls, used, victim, tail[i:i + 8], seed=6 + i) for i in range(0, len(tail), 8)]
    first = [_respond(cls, fresh, victim, tail[i:i + 8], seed=6 + i) for i in range(0, len(tail), 8)]
    if not all(_same(a, b) for a, b in zip(again, first, strict=True)):
        raise _fail(cls, "reset_honoured", "a used instance answered differently from a fresh "
                    "one after reset()", "clear every per-client state in reset()")


def check_stage_properties(cls: type[Defense], params: dict[str, Any] | None = None,
                           registry: Registry | None = None) -> None:
    """Random batches (edges of the input range included) always get a valid answer."""
    victim, _ = _setup(registry)
    shape = victim.data.input_shape

    @settings(max_examples=PROPERTY_EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(query_batches(shape, victim.data.input_range, max_size=9))
    def prop(x: np.ndarray) -> None:
        response = _respond(cls, _fresh(cls, params, registry), victim, x, seed=1)
        ok = response.admitted
        if ok.any() and not np.all(response.latency_s[ok] > 0):
            raise _fail(cls, "stage_properties", "a latency was not positive",
                        "return latencies >= batch.latency_s")

    try:
        prop()
    except ConformanceError:
        raise
    except Exception as exc:  # hypothesis re-raises the (shrunk) failure
        raise _fail(cls, "stage_properties", f"{type(exc).__name__}: {exc}",
                    "handle every batch the oracle can send") from None


def check_report(cls: type[Defense], params: dict[str, Any] | None = None,
                 registry: Registry | None = None) -> None:
    """``report()`` gives string keys and finite numbers, before and after queries."""
    victim, pool = _setup(registry)
    defense = _fresh(cls, params, registry)
    for step in range(2):
        try:
            counters = defense_report(defense)
            bad = (not isinstance(counters, dict)
                   or any(not isinstance(k, str) or isinstance(v, bool)
                          or not isinstance(v, int | float) or not math.isfinite(v)
                          for k, v in counters.items()))
        except Exception as exc:
            raise _fail(cls, "report", f"report() raised {type(exc).__name__}: {exc}",
                        "return a dict of counters; never raise") from None
        if bad:
            raise _fail(cls, "report", f"report() returned {counters!r}",
                        "return {str: finite number}, e.g. {'overruns': 3}")
        if step == 0:
            _respond(cls, defense, victim, pool[:16], seed=2)


DEFENSE_CHECKS = (check_protocol, check_stage_shapes, check_seeded_determinism,
                  check_no_input_mutation, check_reset_honoured, check_stage_properties,
                  check_report)


def check_defense(cls: type[Defense], params: dict[str, Any] | None = None,
                  registry: Registry | None = None) -> None:
    """Every defense check (:data:`DEFENSE_CHECKS`) after :func:`check_component`."""
    registry = registry or default_registry()
    check_component(cls, params, registry)
    for check in DEFENSE_CHECKS:
        check(cls, params, registry)
