"""Protocol types of the fixed cell flow (docs/design.md section 4).

Frozen dataclasses carry data between components; the small ABCs here are what
plugins subclass: :class:`Victim`, :class:`Attack` (the defense contract is
:mod:`harness.stages`),
:class:`DatasetSource`, :class:`ExitEstimator`, :class:`Architecture`,
:class:`ServingBackend`. Components never import each other: the contexts a cell hands
them (:class:`AttackContext`, :class:`VictimContext`) look policies, estimators and
architectures up by name in the registry.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import numpy as np

from harness.components import Component
from harness.computation import EagerComputation, ExitComputation
from harness.errors import HarnessError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from harness.model import MultiExitNet
    from harness.strategy import ExitPolicy, OutputStrategy

Normalization = tuple[tuple[float, ...], tuple[float, ...]]
"""Per-channel ``(mean, std)`` an architecture applies to its inputs inside the network."""

OutputMode = Literal["probs", "label"]


@dataclass(frozen=True)
class Split:
    """Inputs (n, *input_shape) float32 in the dataset's input range, labels (n,) int64."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class DatasetSplits:
    """Deterministic disjoint splits; the attacker pool's labels are never given to attacks."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    input_range: tuple[float, float]
    train: Split
    val: Split
    attacker: Split
    test: Split


@dataclass(frozen=True)
class TrainedVictim:
    """A trained multi-exit victim and its output strategy (server side only).

    ``details`` (JSON values) is what a cell records about the victim beyond its
    thresholds, e.g. the target exit shares a randomised victim drew; empty by default.
    """

    name: str
    model: MultiExitNet
    strategy: OutputStrategy
    data: DatasetSplits
    family: str
    weights_hash: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueryResult:
    """What the attacker sees: outputs (probs (n,C) or labels (n,)) and latency per query.

    ``admitted[i]`` is False when a query monitor refused query ``i``; its output row is
    NaN (probs) or -1 (label) and its latency NaN. Refused queries are still charged.
    """

    outputs: np.ndarray
    latency_s: np.ndarray
    admitted: np.ndarray


class Tools(Protocol):
    """How contexts build registered components by name (fulfilled by
    :class:`harness.plugins.toolbox.Toolbox`, a read-only view of the registry)."""

    def names(self, kind: str) -> list[str]: ...

    def policy(self, name: str) -> ExitPolicy: ...

    def estimator(self, name: str, **params: Any) -> ExitEstimator: ...

    def new_network(self, architecture: str, input_shape: Sequence[int], num_classes: int,
                    num_exits: int, seed: int, normalization: Normalization | None = None,
                    **params: Any) -> MultiExitNet: ...


class _RegistryAccess:
    """Shared by the contexts: reach registered components through ``self.toolbox``."""

    toolbox: Tools | None

    def _tools(self) -> Tools:
        if self.toolbox is None:
            raise HarnessError(f"{type(self).__name__}: this context was built without a "
                               "registry; contexts that cells and harness.testing hand out "
                               "have one")
        return self.toolbox

    def policy(self, name: str) -> ExitPolicy:
        """A registered exit policy by name."""
        return self._tools().policy(name)


class OracleHandle(Protocol):
    """The attacker's only handle on the victim (implemented by the serving layer).

    ``query(x)`` answers a batch ``(n, *input_shape)`` within the budget; ``budget``,
    ``queries_used`` and ``budget_left`` count queries (1 query = 1 input). Reference
    attacks may call ``true_exits_for_reference()``; real attacks are refused.
    """

    budget: int

    @property
    def queries_used(self) -> int: ...

    @property
    def budget_left(self) -> int: ...

    def query(self, x: object) -> QueryResult: ...

    def true_exits_for_reference(self) -> np.ndarray: ...


@dataclass(frozen=True)
class AttackContext(_RegistryAccess):
    """What the threat model grants an attack besides the oracle and its data pool.

    The cell's ``threat.num_exits`` / ``threat.architecture`` settings decide three fields:

    - ``num_exits``: the victim's number of exits, or None when ``threat.num_exits=hidden``
      (the attack infers it or picks its own).
    - ``victim_family``: the registered architecture of the victim's network, or None when
      ``threat.architecture=hidden`` (then :meth:`new_network` needs ``architecture=``).
    - ``cost_fraction``: the victim's per-exit cost fractions (cumulative compute of each
      exit over the full network's), only when *both* are granted: an attacker who knows
      the family and the number of exits can measure them on its own copy. None otherwise.

    ``policy``, ``estimator`` and ``new_network`` reach registered components by name:
    an attack never imports a victim's code or a private table.
    """

    seed: int
    device: str
    budget: int
    output: OutputMode
    input_shape: tuple[int, ...]
    num_classes: int
    input_range: tuple[float, float]
    num_exits: int | None
    victim_family: str | None
    cache_dir: Path | None = None
    toolbox: Tools | None = field(default=None, repr=False, compare=False)
    cost_fraction: tuple[float, ...] | None = None
    deployment: PublicDeployment | None = None
    own_servers: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    def local_server(self, network: MultiExitNet, strategy: OutputStrategy,
                     inputs: np.ndarray, stream: int = 90) -> Any:
        """An own server for ``network`` behind the public deployment
        (:mod:`harness.serving.own_server`): the victim's backend and timing, the cell's
        defense built fresh with a key drawn from ``ctx.rng(stream)`` (undefended under
        ``threat.defense=hidden``). ``inputs`` (the attacker's) set its live latency
        quantiles. It never touches the victim, its server or its key."""
        if self.deployment is None or self.own_servers is None:
            raise HarnessError("this context has no public deployment (an attack run outside "
                               "a cell): ctx.local_server is not available")
        return self.own_servers(self.deployment, network, strategy,
                                cost_fraction=self.cost_fraction, inputs=inputs,
                                rng=self.rng(stream), device=self.device,
                                cache_dir=self.cache_dir)

    def rng(self, stream: int = 0) -> np.random.Generator:
        """An independent generator per ``stream`` derived from the cell seed."""
        return np.random.default_rng([self.seed, stream])

    def estimator(self, name: str, **params: Any) -> ExitEstimator:
        """A registered exit estimator by name, built with ``params`` and validated."""
        return self._tools().estimator(name, **params)

    def new_network(self, num_exits: int, seed: int, architecture: str | None = None,
                    **params: Any) -> MultiExitNet:
        """A freshly initialised multi-exit network for this task's inputs and classes.

        ``architecture`` names a registered architecture; None means the victim's family,
        which only a threat model that grants the architecture reveals (otherwise a
        :class:`HarnessError`). ``params`` are that architecture's parameters.
        """
        if architecture is None and self.victim_family is None:
            raise HarnessError("the threat model hides the victim's architecture "
                               "(threat.architecture=hidden); pass architecture=... (a "
                               "registered architecture, see `harness list architectures`)")
        return self._tools().new_network(architecture or self.victim_family, self.input_shape,
                                          self.num_classes, num_exits, seed, **params)


@dataclass(frozen=True)
class VictimContext(_RegistryAccess):
    """What a cell hands :meth:`Victim.prepare`: where to cache, the device, the registry.

    ``salt`` is non-empty only in secret mode (see :meth:`salted_seed`).
    """

    cache_dir: Path
    device: str
    toolbox: Tools | None = field(default=None, repr=False, compare=False)
    salt: str = field(default="", repr=False)

    def salted_seed(self, seed: int) -> int:
        """``seed`` itself in public mode; mixed with the server's secret salt otherwise.

        Victims pass their training seeds through this, so that with ``HARNESS_SECRET``
        set nobody can rebuild the exact victim from the public data and recipe.
        """
        if not self.salt:
            return int(seed)
        digest = hashlib.sha256(f"{self.salt}|{int(seed)}".encode()).digest()
        return int.from_bytes(digest[:4], "little")

    def new_network(self, architecture: str, input_shape: Sequence[int], num_classes: int,
                    num_exits: int, seed: int, normalization: Normalization | None = None,
                    **params: Any) -> MultiExitNet:
        """A freshly initialised network of a registered architecture."""
        return self._tools().new_network(architecture, input_shape, num_classes, num_exits,
                                         seed, normalization=normalization, **params)


@dataclass(frozen=True)
class PublicDeployment:
    """How the victim is served, as a cell records it: what an attacker's own server copies
    (:mod:`harness.serving.own_server`). ``defense`` / ``defense_params`` are None / empty
    under ``threat.defense=hidden``; the server's key is never part of it."""

    backend: str
    output: str
    timing: str
    timing_params_json: str
    repeats: int = 1
    defense: str | None = None
    defense_params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StolenModel:
    """An attack's result: a multi-exit substitute, its stolen strategy, diagnostics.

    ``estimated_exits`` (optional) holds the attack's estimated victim exit for each
    query it made, in query order, for ``exit_estimation_accuracy``.
    """

    model: MultiExitNet
    strategy: OutputStrategy
    estimated_exits: np.ndarray | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)


class DatasetSource(Component):
    """A dataset plugin: loads deterministic splits from a package or ``data_root``.

    ``num_classes`` (optional) lets victims' thresholds be checked before any data load;
    ``input_shape`` and ``input_range`` (optional, both or neither) let ``pool=`` be
    checked against a victim's dataset without loading either (else both are loaded).
    """

    kind: ClassVar[str] = "dataset"
    num_classes: ClassVar[int | None] = None
    input_shape: ClassVar[tuple[int, ...] | None] = None
    input_range: ClassVar[tuple[float, float] | None] = None

    @abstractmethod
    def load(self, data_root: Path | None) -> DatasetSplits:
        """Return the splits; raise :class:`harness.errors.DatasetError` if data is missing."""

    def check_available(self, data_root: Path | None) -> None:
        """Raise :class:`harness.errors.DatasetError` if the data is absent (cheap if overridden)."""
        self.load(data_root)


class Victim(Component):
    """A victim plugin: trains (or loads from cache) a multi-exit network + strategy.

    ``dataset`` names a registered dataset source; ``family`` the registered
    architecture of its network (attacks granted the architecture build substitutes of it).
    """

    kind: ClassVar[str] = "victim"
    dataset: ClassVar[str] = ""
    family: ClassVar[str] = ""

    @abstractmethod
    def prepare(self, data: DatasetSplits, ctx: VictimContext) -> TrainedVictim:
        """Train or load the victim for ``data`` (cache under ``ctx.cache_dir``); deterministic."""


class Attack(Component):
    """An attack plugin. ``reference`` attacks use privileged information (upper bounds)."""

    kind: ClassVar[str] = "attack"
    reference: ClassVar[bool] = False

    @abstractmethod
    def steal(self, oracle: OracleHandle, attacker_data: np.ndarray,
              ctx: AttackContext) -> StolenModel:
        """Query ``oracle`` (within ``ctx.budget``) and return a substitute + strategy."""


@dataclass(frozen=True)
class ExitEstimate:
    """Exit estimation result for latencies in query order.

    ``boundaries`` are the latency thresholds between consecutive estimated exits
    (ascending, ``num_exits - 1`` of them); ``exits[i]`` is the estimated exit of query
    ``i``; ``posterior`` (n, num_exits) is given by estimators that have one.
    """

    boundaries: np.ndarray
    exits: np.ndarray
    num_exits: int
    posterior: np.ndarray | None = None


class ExitEstimator(Component):
    """Latencies in; an estimated exit per query out. ``reference`` = uses true exits."""

    kind: ClassVar[str] = "exit_estimator"
    reference: ClassVar[bool] = False

    @abstractmethod
    def estimate(self, latency_s: np.ndarray, num_exits: int | None,
                 rng: np.random.Generator, *,
                 cost_fraction: tuple[float, ...] | None = None) -> ExitEstimate:
        """Estimate exits; ``num_exits`` None means infer the number of exits.

        ``cost_fraction`` (each exit's share of the full network's compute) is given when
        the threat model grants the architecture and the number of exits; an estimator
        may use it to tell which exits its clusters are (unused exits), or ignore it.
        Exits are indices ``0..num_exits-1``; some may receive no query.
        """


class Architecture(Component):
    """A multi-exit network family: builds fresh networks for victims and substitutes.

    Parameters (``width``, ``depth``, ...) are the family's knobs; :meth:`build` is
    deterministic for ``seed`` and leaves the global RNG untouched.
    """

    kind: ClassVar[str] = "architecture"

    @abstractmethod
    def build(self, input_shape: Sequence[int], num_classes: int, num_exits: int, *,
              seed: int = 0, normalization: Normalization | None = None) -> MultiExitNet:
        """A freshly initialised network with ``num_exits`` exits."""


@dataclass(frozen=True)
class ServeTrace:
    """Per-sample serving record: outputs of the answering exit, exits, measured latency."""

    probs: np.ndarray
    exits: np.ndarray
    latency_s: np.ndarray


class ServedModel(ABC):
    """A victim loaded into a serving backend (server side)."""

    num_exits: int
    cost_fraction: tuple[float, ...]

    @abstractmethod
    def exit_probs(self, x: np.ndarray) -> list[np.ndarray]:
        """Batched path: softmax probabilities of every exit, K x (n, classes)."""

    @abstractmethod
    def serve(self, x: np.ndarray, strategy: OutputStrategy | None = None,
              exits: np.ndarray | None = None, repeats: int = 1) -> ServeTrace:
        """True per-sample early exit, each sample timed on its own (batch size 1).

        Stops where ``strategy`` fires or, when ``exits`` is given, at that exit
        (a defense's choice); never computes a block beyond the answering exit.
        """

    def compute_exits(self, x: np.ndarray, *, timed: bool = False,
                      repeats: int = 1) -> ExitComputation:
        """The exits of ``x`` computed on demand, each row only as deep as asked
        (:mod:`harness.computation`); ``timed``: measure each row's compute alone, taking
        the median of ``repeats`` runs per stage.

        The default has no stages: it computes every exit at once with
        :meth:`exit_probs`, charges only what is asked, and is never timed (the server
        then times the answering exits with :meth:`serve`). The built-in backends
        override it with a real staged computation.
        """
        return EagerComputation(self.exit_probs(x))


class ServingBackend(Component):
    """A serving backend plugin (``torch``, ``onnx``)."""

    kind: ClassVar[str] = "backend"

    @abstractmethod
    def load(self, victim: TrainedVictim, device: str, cache_dir: Path) -> ServedModel:
        """Load ``victim`` for serving on ``device`` (``cpu`` or ``cuda``)."""
