"""The defense contract: four stages, each handed one frozen :class:`StageBatch`.

A defense implements any subset of ``admit`` (a query monitor), ``choose_exits`` (alters
the exit decision), ``perturb_outputs`` (what the client sees) and ``shape_latency`` (how
long the client waits; in live timing the response is really held back). The server runs
them in that order on every batch. Each stage receives the same kind of object, filled
as far as the server has got, and returns its one field:

==================  ==============================================  ===========================
stage               batch fields already set                        returns
==================  ==============================================  ===========================
``admit``           ``inputs``                                      bool mask, shape (n,)
``choose_exits``    + ``policy_exits``, ``exits`` (the policy's),   exits, shape (m,), ints
                    ``exit_probs(k)``, ``policy_exits_up_to(...)``
``perturb_outputs`` + ``outputs``, ``latency_s`` (the computation's)  probabilities, (m, classes)
``shape_latency``   + the perturbed ``outputs``                     seconds, shape (m,)
==================  ==============================================  ===========================

**Exits are computed, and charged, like on a deployed server.** A query computes only up
to the exit that answers it. The server runs its policy stage by stage; a
``choose_exits`` that wants another exit's output asks for it (``batch.exit_probs(k)``,
or ``batch.per_exit_probs[k]``, a lazy sequence), and the server then computes that
query up to that exit. Every query is charged the deepest exit it computed: its latency
(measured under ``live``, that exit's latency under the modelled timings) and its compute
cost. A defense whose decision does not start from the policy's sets
``needs_policy_exits = False``: its ``batch.exits`` and ``batch.policy_exits`` are None,
and it learns what it needs lazily (``batch.policy_exits_up_to(limit)`` evaluates the
policy only as deep as ``limit``). Exit outputs can be asked for in ``choose_exits``
only; later stages see ``per_exit_probs`` None.

``m`` is the number of admitted queries: stages after ``admit`` see only those. Every
batch carries the client id, a seeded :class:`numpy.random.Generator` (the only source
of randomness a defense may use) and a :class:`ServerInfo`. Arrays are read-only.
The server rejects, naming the defense, an exception from a stage, a wrong shape,
exits outside ``0..num_exits-1``, outputs off the probability simplex, and latencies
that are not finite or shorter than the computation.

Protocol 2 replaced protocol 1's per-stage argument lists; a defense written for protocol
1 is refused at registration with a porting message
(:func:`harness.plugins.porting.protocol_problems`). Protocol 3 (this one) keeps the
stage signatures and computes exits lazily (above): a protocol-2 defense runs unchanged,
and pays for every exit it reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np

from harness.components import Component
from harness.errors import HarnessError
from harness.lookup import Lookup

if TYPE_CHECKING:
    from harness.strategy import OutputStrategy

PROTOCOL_VERSION = 4
"""2: defense stages take one :class:`StageBatch`; ``Victim.prepare(data, ctx)``. 3: exits
are computed lazily and each query is charged its deepest computed exit; ``realistic``
timing names a calibrated deployment. 4: a benign mirror client copies the attacker's
traffic shape, and the benign costs weigh each test input once. Results of different
versions are not compared."""

STAGES = ("admit", "choose_exits", "perturb_outputs", "shape_latency")
QUANTILE_LEVELS = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


@dataclass(frozen=True)
class ServerInfo:
    """Read-only description of the server a defense guards.

    ``latency_quantiles[k][j]`` is the ``quantile_levels[j]`` quantile, in seconds, of
    the computation latency of exit ``k`` under the cell's timing mode (analytic: the
    model; replay: the profile; live: measured on this machine when the server starts).
    ``strategy`` is the victim's output strategy (server-side knowledge); ``calibration``
    the victim's outputs on its validation inputs (below). ``secret`` is a
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
    calibration: tuple[np.ndarray, ...] = field(default=(), repr=False, compare=False)
    """Every exit's probabilities (K x (n, classes), read-only) of the server's calibration
    inputs: the victim's answers on its validation split, never a label; what a defense
    that deploys a strategy of its own fits it on (:meth:`Defense.deployed_strategy`)."""

    def latency_quantile(self, exit_index: int, q: float) -> float:
        """Latency (seconds) of exit ``exit_index`` at quantile ``q`` (interpolated)."""
        return float(np.interp(q, self.quantile_levels, self.latency_quantiles[exit_index]))

    def full_latency(self, q: float = 0.5) -> float:
        """The full network's (last exit's) latency at quantile ``q``."""
        return self.latency_quantile(self.num_exits - 1, q)


class ExitAccess(Protocol):
    """The server's computation of one batch, as ``choose_exits`` may ask it
    (:class:`harness.serving.exits.ExitView`): each answer is computed on demand and
    charged to the queries it was computed for."""

    def probs(self, k: int, rows: np.ndarray | None = None) -> np.ndarray: ...

    def policy_exits(self, limit: np.ndarray | int | None = None,
                     rows: np.ndarray | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class StageBatch:
    """What every defense stage sees (fields not computed yet are None; arrays read-only).

    ``per_exit_probs`` (``choose_exits`` only) is a sequence of every exit's probabilities;
    indexing it computes that exit for the whole batch. ``exit_view`` is the server's
    computation behind :meth:`exit_probs` and :meth:`policy_exits_up_to` (None on a batch
    built by hand, which then answers from ``per_exit_probs``).
    """

    inputs: np.ndarray
    client_id: str
    rng: np.random.Generator
    server: ServerInfo
    policy_exits: np.ndarray | None = None
    exits: np.ndarray | None = None
    per_exit_probs: Sequence[np.ndarray] | None = None
    outputs: np.ndarray | None = None
    latency_s: np.ndarray | None = None
    exit_view: ExitAccess | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.inputs)

    def exit_probs(self, k: int, rows: np.ndarray | None = None) -> np.ndarray:
        """Exit ``k``'s probabilities for ``rows`` (all when None): the server computes
        those queries up to exit ``k`` and charges them for it."""
        if self.exit_view is not None:
            return self.exit_view.probs(k, rows)
        if self.per_exit_probs is None:
            raise HarnessError("this batch carries no exit outputs: only choose_exits may ask "
                               "for them (batch.exit_probs(k))")
        probs = self.per_exit_probs[k]
        return probs if rows is None else probs[np.asarray(rows, dtype=np.int64)]

    def policy_exits_up_to(self, limit: np.ndarray | int | None = None,
                           rows: np.ndarray | None = None) -> np.ndarray:
        """The victim policy's exit for ``rows``, evaluated only as deep as ``limit``
        (per row, or one exit for all; None: as deep as needed): -1 where the policy
        fires only after ``limit``. The stages evaluated are computed and charged."""
        if self.exit_view is not None:
            return self.exit_view.policy_exits(limit, rows)
        if self.per_exit_probs is None:
            raise HarnessError("this batch carries no exit outputs: only choose_exits may ask "
                               "for the policy's exits")
        exits = self.server.strategy.exits(list(self.per_exit_probs))
        if rows is not None:
            exits = exits[np.asarray(rows, dtype=np.int64)]
        if limit is None:
            return exits
        return np.where(exits <= np.broadcast_to(np.asarray(limit), exits.shape), exits, -1)


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

    needs_policy_exits: ClassVar[bool] = True
    """Whether ``choose_exits`` starts from the policy's decision (``batch.exits``, computed
    for every query before the stage runs). False: ``batch.exits`` is None and the stage
    asks for what it needs (``batch.exit_probs``, ``batch.policy_exits_up_to``), so a
    query is computed, and charged, no deeper than the stage asked."""

    def choose_exits(self, batch: StageBatch) -> np.ndarray:
        """Exit that really answers each admitted query (the victim computes up to it)."""
        return batch.exits

    def wants_policy_exits(self) -> bool:
        """:attr:`needs_policy_exits` of this instance (a composite decides from its parts)."""
        return type(self).needs_policy_exits

    def perturb_outputs(self, batch: StageBatch) -> np.ndarray:
        """Probability vectors the client receives (rows on the simplex)."""
        return batch.outputs

    def shape_latency(self, batch: StageBatch) -> np.ndarray:
        """Latency the client waits (finite, never shorter than ``batch.latency_s``)."""
        return batch.latency_s

    def stages(self) -> tuple[str, ...]:
        """Names of the stages this defense overrides."""
        return declared_stages(type(self))

    def deployed_strategy(self, server: ServerInfo) -> OutputStrategy | None:
        """The output strategy this defense deploys in place of ``server.strategy``, or None
        (the default: the victim's own, perhaps perturbed per query, as ``exit_noise`` does).

        A defense that swaps the exit policy (``pce``, ``cgr``) returns the strategy its
        ``choose_exits`` serves, fitted on ``server.calibration``; it must be deterministic
        given ``server``. The evaluator asks one fresh instance once per cell and scores the
        attack's stolen strategy against its decisions (exit agreement, fidelity: what the
        server really deploys; a randomized strategy's decision before its draw), while
        benign costs stay measured against the victim's original strategy (docs/design.md
        section 6). Only strategies the harness can rebuild from JSON
        (:mod:`harness.deployed`) can be declared, and the declaration is checked against
        the exits the benign clients were served: one that explains them clearly worse
        than the victim's own strategy fails the cell (:mod:`harness.cell.scoring_target`).
        """
        return None


def declared_stages(cls: type) -> tuple[str, ...]:
    """Names of the stages a defense class overrides (what it declares it may change);
    () for a class that is not a :class:`Defense`."""
    if not (isinstance(cls, type) and issubclass(cls, Defense)):
        return ()
    return tuple(n for n in STAGES if getattr(cls, n) is not getattr(Defense, n))


def bind_defense(defense: Defense, registry: Lookup) -> None:
    """Call ``bind`` as the class defines it (a plugin's own parameter named ``bind``,
    stored on the instance, must not shadow the protocol's method)."""
    method = getattr(type(defense), "bind", None)
    if callable(method):
        method(defense, registry)


def declared_strategy(defense: Defense, server: ServerInfo) -> OutputStrategy | None:
    """``deployed_strategy(server)`` as the class defines it (None for a class without one)."""
    method = getattr(type(defense), "deployed_strategy", None)
    return method(defense, server) if callable(method) else None


def defense_report(defense: Defense) -> dict[str, float]:
    """``report()`` as the class defines it (an instance attribute named ``report``, e.g.
    a plugin's parameter, does not shadow it); a class without one reports nothing."""
    method = getattr(type(defense), "report", None)
    return method(defense) if callable(method) else {}
