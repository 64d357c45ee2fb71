"""The kit's tiny victim, tiny server and tiny oracle: one copy, for plugin authors and this project.

* :func:`random_splits` - a small random dataset (no files).
* :func:`tiny_victim` - a small multi-exit network of a registered architecture
  (``small_cnn`` by default, built through the registry), optionally trained, with
  thresholds that spread the attacker pool evenly over the exits.
* :class:`BatchedServed` - serves it with the batched path only (enough for modelled
  timing; the real backends are plugins).
* :func:`tiny_endpoint` / :func:`tiny_oracle` - a defended endpoint and an oracle plus
  :class:`~harness.protocol.AttackContext` around it, as a cell builds them.

The pytest fixtures of the same names live in :mod:`harness.testing.plugin`.
"""

from __future__ import annotations

import json

import numpy as np

from harness.cell.attacker import AttackerRequest
from harness.cell.server import describe_server
from harness.cell.spec import ThreatModel
from harness.model import MultiExitNet, exit_probabilities, weights_digest
from harness.nn.training import train_multi_exit
from harness.plugins.registry import Registry, load_registry
from harness.plugins.toolbox import Toolbox
from harness.protocol import (
    AttackContext,
    DatasetSplits,
    PublicDeployment,
    ServedModel,
    ServeTrace,
    Split,
    TrainedVictim,
)
from harness.serving.endpoint import Endpoint
from harness.serving.oracle import Oracle
from harness.stages import Defense
from harness.strategy import OutputStrategy
from harness.timing.models import MODELLED, AnalyticTiming, TimingModel

TEST_SECRET = b"harness.testing fixed server secret"
"""The tiny endpoint's server key (:attr:`harness.stages.ServerInfo.secret`): fixed, so kit
tests are reproducible; real cells derive theirs from the cell seed and salt."""


def default_registry() -> Registry:
    """The registry of every installed plugin (the built-ins included)."""
    return load_registry(untrusted="import")  # conformance checks of the author's own code


def random_splits(input_shape: tuple[int, ...] = (1, 8, 8), num_classes: int = 10,
                  sizes: tuple[int, int, int, int] = (64, 32, 96, 60), seed: int = 0,
                  name: str = "random") -> DatasetSplits:
    """Uniform random inputs in [0, 1] and random labels: train, val, attacker, test."""
    rng = np.random.default_rng([seed, 1])

    def split(n: int) -> Split:
        return Split(rng.uniform(0, 1, (n, *input_shape)).astype(np.float32),
                     rng.integers(0, num_classes, n).astype(np.int64))

    train, val, attacker, test = (split(n) for n in sizes)
    return DatasetSplits(name=name, input_shape=tuple(input_shape), num_classes=num_classes,
                         input_range=(0.0, 1.0), train=train, val=val, attacker=attacker,
                         test=test)


def spread_thresholds(per_exit_probs: list[np.ndarray], policy) -> tuple[float, ...]:
    """Thresholds that route about equal shares of the given inputs to every exit."""
    k_total = len(per_exit_probs)
    remaining = np.ones(len(per_exit_probs[0]), dtype=bool)
    thresholds = []
    for k in range(k_total - 1):
        score = policy.score(per_exit_probs[k])
        conf = policy.confidence(score[remaining])
        cut = float(np.quantile(conf, 1.0 - 1.0 / (k_total - k)))
        tau = cut if policy.higher_is_confident else -cut
        thresholds.append(tau)
        remaining &= ~policy.fires(score, tau)
    return tuple(thresholds)


def tiny_victim(data: DatasetSplits | None = None, *, num_exits: int = 3, width: int = 8,
                epochs: int = 0, seed: int = 0, policy: str = "max_prob",
                architecture: str = "small_cnn", name: str = "tiny",
                registry: Registry | None = None) -> TrainedVictim:
    """A small victim of a registered architecture; ``epochs=0`` leaves it untrained."""
    registry = registry or default_registry()
    data = data or random_splits(seed=seed)
    model = Toolbox(registry).new_network(architecture, data.input_shape, data.num_classes,
                                          num_exits, seed, width=width)
    if epochs:
        train_multi_exit(model, data.train, epochs=epochs, lr=3e-3, batch_size=64, seed=seed,
                         num_threads=1)
    model.eval()
    exit_policy = registry.policy(policy)
    probs = exit_probabilities(model, data.attacker.x)
    strategy = OutputStrategy(exit_policy, spread_thresholds(probs, exit_policy))
    return TrainedVictim(name, model, strategy, data, architecture, weights_digest(model))


class BatchedServed(ServedModel):
    """Batched-only serving of a network (modelled timing needs nothing more)."""

    def __init__(self, net: MultiExitNet) -> None:
        self.net = net
        self.num_exits = net.num_exits
        self.cost_fraction = net.cost_fraction

    def exit_probs(self, x: np.ndarray) -> list[np.ndarray]:
        return exit_probabilities(self.net, x)

    def serve(self, x, strategy=None, exits=None, repeats=1) -> ServeTrace:
        raise NotImplementedError("BatchedServed has no per-sample path; use modelled timing or "
                                  "a serving backend (harness list backends)")


def tiny_endpoint(victim: TrainedVictim, defense: Defense | None = None, *,
                  timing: TimingModel | None = None, seed: int = 0, output: str = "probs",
                  served: ServedModel | None = None, client_id: str = "client",
                  defense_label: str = "defense under test") -> Endpoint:
    """A defended endpoint (the defense is used as given; call ``reset()`` yourself)."""
    served = served or BatchedServed(victim.model)
    timing = timing or AnalyticTiming()
    info = describe_server(victim, served, timing, output, np.random.default_rng([seed, 8]),
                           secret=TEST_SECRET)
    return Endpoint(served, victim.strategy, defense or Defense(), timing,
                    np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2]),
                    server=info, client_id=client_id, defense_label=defense_label)


def tiny_oracle(victim: TrainedVictim, budget: int, *, output: str = "probs",
                defense: Defense | None = None, timing: TimingModel | None = None,
                seed: int = 0, truth: bool = False, registry: Registry | None = None,
                served: ServedModel | None = None,
                threat: ThreatModel | None = None) -> tuple[Oracle, AttackContext]:
    """An oracle on :func:`tiny_endpoint` and the context a cell would hand the attack.

    ``threat`` (default: everything granted) hides the number of exits and/or the family
    from the context exactly as a cell with those ``threat.*`` settings does. The context's
    public deployment (``ctx.local_server``) is the torch backend, the timing and, when
    ``defense`` is a registered one, its name and parameters (:func:`tiny_deployment`).
    """
    registry = registry or default_registry()
    threat = threat or ThreatModel()
    served = served or BatchedServed(victim.model)
    timing = timing or AnalyticTiming()
    endpoint = tiny_endpoint(victim, defense, timing=timing, seed=seed, output=output,
                             served=served, client_id="attacker")
    data = victim.data
    oracle = Oracle(endpoint, budget, output, data.input_shape, data.input_range,
                    allow_truth=truth)
    request = AttackerRequest.for_victim(
        victim, attack="", params={}, pool=data.attacker.x, seed=seed, device="cpu",
        budget=budget, output=output,  # type: ignore[arg-type]
        threat=threat, deployment=tiny_deployment(registry, defense, timing, output, threat))
    return oracle, request.context(registry, None)


def tiny_deployment(registry: Registry, defense: Defense | None, timing: TimingModel,
                    output: str, threat: ThreatModel) -> PublicDeployment | None:
    """The public deployment of a tiny oracle: None when it cannot be copied (a replay or
    live timing, or a defense instance that is not a registered component)."""
    if timing.mode not in MODELLED:
        return None
    name = None
    if defense is not None and type(defense) is not Defense:
        name = getattr(defense, "name", None)
        if name not in registry.names("defense") or registry.get("defense", name).cls is not type(
                defense):
            return None
    known = threat.knows_defense and name is not None
    return PublicDeployment(
        backend="torch", output=output, timing=timing.mode,
        timing_params_json=json.dumps(timing.describe()["params"], sort_keys=True),
        defense=name if known else None,
        defense_params=dict(defense.get_params()) if known else {})  # type: ignore[union-attr]
