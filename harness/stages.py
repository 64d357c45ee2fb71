"""The defense contract: four stages, each handed one frozen :class:`StageBatch`.

A defense implements any subset of ``admit`` (a query monitor), ``choose_exits`` (alters
the exit decision; in live timing the victim really computes to the chosen exit),
``perturb_outputs`` (what the client sees) and ``shape_latency`` (how long the client
waits; in live timing the response is really held back). The server runs them in that
order on every batch. Each stage receives the same kind of object, filled as far as
the server has got, and returns its one field:

==================  ==============================================  ===========================
stage               batch fields already set                        returns
==================  ==============================================  ===========================
``admit``           ``inputs``                                      bool mask, shape (n,)
``choose_exits``    + ``policy_exits``, ``exits``, ``per_exit_probs``  exits, shape (m,), ints
``perturb_outputs`` + ``outputs``, ``latency_s`` (the computation's)  probabilities, (m, classes)
``shape_latency``   + the perturbed ``outputs``                     seconds, shape (m,)
==================  ==============================================  ===========================

``m`` is the number of admitted queries: stages after ``admit`` see only those. Every
batch carries the client id, a seeded :class:`numpy.random.Generator` (the only source
of randomness a defense may use) and a :class:`ServerInfo`. Arrays are read-only.
The server rejects, naming the defense, an exception from a stage, a wrong shape,
exits outside ``0..num_exits-1``, outputs off the probability simplex, and latencies
that are not finite or shorter than the computation.

Protocol 2 (this one) replaced protocol 1's per-stage argument lists; a defense written
for protocol 1 is refused at registration with a porting message
(:func:`harness.plugins.porting.protocol_problems`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from harness.components import Component
from harness.lookup import Lookup

if TYPE_CHECKING:
    from harness.strategy import OutputStrategy

PROTOCOL_VERSION = 2
"""2: defense stages take one :class:`StageBatch`; ``Victim.prepare(data, ctx)``."""

STAGES = ("admit", "choose_exits", "perturb_outputs", "shape_latency")
QUANTILE_LEVELS = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


@dataclass(frozen=True)
class ServerInfo:
    """Read-only description of the server a defense guards.

    ``latency_quantiles[k][j]`` is the ``quantile_levels[j]`` quantile, in seconds, of
    the computation latency of exit ``k`` under the cell's timing mode (analytic: the
    model; replay: the profile; live: measured on this machine when the server starts).
    ``strategy`` is the victim's output strategy (server-side knowledge). ``secret`` is a
    per-cell server-side key (derived from the cell seed and the salted server streams, see
    :mod:`harness.io.secret`) for defenses that need keyed hashes the client cannot
    compute; empty when the server was described without one.
    """

    num_exits: int
    num_classes: int
    cost_fraction: tuple[float, ...]
    latency_quantiles: tuple[tuple[float, ...], ...]
    quantile_levels: tuple[float, ...]
    timing: str
    output: str
    strategy: OutputStrategy
    secret: bytes = field(default=b"", repr=False)

    def latency_quantile(self, exit_index: int, q: float) -> float:
        """Latency (seconds) of exit ``exit_index`` at quantile ``q`` (interpolated)."""
        return float(np.interp(q, self.quantile_levels, self.latency_quantiles[exit_index]))

    def full_latency(self, q: float = 0.5) -> float:
        """The full network's (last exit's) latency at quantile ``q``."""
        return self.latency_quantile(self.num_exits - 1, q)


@dataclass(frozen=True)
class StageBatch:
    """What every defense stage sees (fields not computed yet are None; arrays read-only)."""

    inputs: np.ndarray
    client_id: str
    rng: np.random.Generator
    server: ServerInfo
    policy_exits: np.ndarray | None = None
    exits: np.ndarray | None = None
    per_exit_probs: tuple[np.ndarray, ...] | None = None
    outputs: np.ndarray | None = None
    latency_s: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.inputs)


def read_only(array: np.ndarray | None) -> np.ndarray | None:
    """A read-only copy (defenses cannot change what the server holds)."""
    if array is None:
        return None
    out = np.array(array, copy=True)
    out.flags.writeable = False
    return out


class Defense(Component):
    """A defense plugin: override any subset of the four stages (identity by default).

    ``reset()`` is called once on every fresh instance before its first query; every
    phase of a cell (the attack's queries, the benign traffic that measures the cost)
    gets its own fresh instance in the same state.
    """

    kind: ClassVar[str] = "defense"

    def bind(self, registry: Lookup) -> None:
        """Called by the server once, before ``reset()``, with the run's registry.

        Only a defense built of other registered components needs it (``stack`` builds
        its members here); the default does nothing.
        """

    def reset(self) -> None:
        """Forget per-client state (called once, before any query)."""

    def report(self) -> dict[str, float]:
        """JSON counters since ``reset()`` (e.g. padding overruns, flagged clients).

        The server collects them after the attack's phase and writes them in the cell's
        diagnostics (``defense_report``); values must be finite numbers.
        """
        return {}

    def admit(self, batch: StageBatch) -> np.ndarray:
        """Boolean mask of queries to answer (refused ones are still charged)."""
        return np.ones(len(batch), dtype=bool)

    def choose_exits(self, batch: StageBatch) -> np.ndarray:
        """Exit that really answers each admitted query (the victim computes up to it)."""
        return batch.exits

    def perturb_outputs(self, batch: StageBatch) -> np.ndarray:
        """Probability vectors the client receives (rows on the simplex)."""
        return batch.outputs

    def shape_latency(self, batch: StageBatch) -> np.ndarray:
        """Latency the client waits (finite, never shorter than ``batch.latency_s``)."""
        return batch.latency_s

    def stages(self) -> tuple[str, ...]:
        """Names of the stages this defense overrides."""
        return tuple(n for n in STAGES if getattr(type(self), n) is not getattr(Defense, n))


def bind_defense(defense: Defense, registry: Lookup) -> None:
    """Call ``bind`` as the class defines it (a plugin's own parameter named ``bind``,
    stored on the instance, must not shadow the protocol's method)."""
    method = getattr(type(defense), "bind", None)
    if callable(method):
        method(defense, registry)


def defense_report(defense: Defense) -> dict[str, float]:
    """``report()`` as the class defines it (an instance attribute named ``report``, e.g.
    a plugin's parameter, does not shadow it); a class without one reports nothing."""
    method = getattr(type(defense), "report", None)
    return method(defense) if callable(method) else {}
