"""What a cell scores the stolen strategy against, and whether a defense's word on it holds.

By default the attack is scored against the victim's own strategy on the test split. A
defense that swaps the victim's exit policy (``pce``, ``cgr``) declares the strategy it
deploys (:meth:`harness.stages.Defense.deployed_strategy`); otherwise it would be credited
merely for changing the strategy. The evaluator rebuilds the declaration from JSON with
harness code and its own registered policies, and scores against the strategy's
*decision*: for a randomized strategy, the exit its draws are biased toward, just as
``exit_noise`` is scored against the policy's exit and not against its noisy draws.

A declaration is the defense's own word, and a hostile defense could declare a strategy
it does not serve (every stolen model then "disagrees" with it). So the declaration is
checked against what the defended server really served the benign clients on the test
split: per answered benign query, ``d = [served == declared decision] - [served ==
original decision]``. A declaration is rejected - the cell fails, naming the defense - when
the one-sided 99.9% upper bound of the mean of ``d`` lies below ``-DECLARATION_SLACK``: the
declared strategy explains the served exits clearly worse than the original one does.
A randomized strategy or a noise stage stacked on top lowers both terms alike and passes.
A declared strategy must keep the victim's exit policy (by name, checked before anything
is built): the evaluator never runs a policy's code that the victim itself does not run.
What stays undetected is bounded: on the digits test split (360 inputs) a declaration
that differs from the served exits on 5% of inputs passes, on 10% it fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.cell.substitute import SubstituteOutputs
from harness.deployed import strategy_from_json
from harness.errors import ComponentFailure, HarnessError
from harness.metrics.scoring import final_exit_scores, strategy_scores
from harness.plugins.registry import Registry
from harness.protocol import ServedModel, TrainedVictim
from harness.strategy import OutputStrategy, answering_probs

DECLARATION_SLACK = 0.02
"""How much worse than the original strategy a declared one may explain the served exits."""
DECLARATION_Z = 3.09
"""One-sided 99.9% normal quantile of the declaration check."""


@dataclass(frozen=True)
class VictimView:
    """What the attack is scored against on the test split: each input's exit under the
    strategy the server deploys (its decision) and the label that exit answers with."""

    exits: np.ndarray
    labels: np.ndarray


def strategy_view(strategy: OutputStrategy, per_exit_probs: list[np.ndarray]) -> VictimView:
    exits = strategy.exits(per_exit_probs)
    return VictimView(exits, answering_probs(per_exit_probs, exits).argmax(1))


def stolen_strategy_scores(reference: VictimView, victim_cost: tuple[float, ...],
                           sub: SubstituteOutputs, y_true: np.ndarray) -> dict[str, Any]:
    """The stolen strategy's scores against ``reference`` on the test split (exit
    agreement and kappa, fidelity, accuracy, cost ratio, efficiency gap, exit-distribution
    TV) and the final-exit scores: what a cell and ``harness score`` both report."""
    metrics: dict[str, Any] = strategy_scores(
        victim_exits=reference.exits, victim_labels=reference.labels, victim_cost=victim_cost,
        sub_exits=sub.exits, sub_labels=sub.labels, sub_cost=sub.cost_fraction, y_true=y_true)
    metrics.update(final_exit_scores(victim_exits=reference.exits,
                                     victim_labels=reference.labels, victim_cost=victim_cost,
                                     final_labels=sub.final_labels))
    return metrics


def victim_view(victim: TrainedVictim, served: ServedModel) -> VictimView:
    """What the victim's own strategy does on the test split (the evaluator's copy)."""
    return strategy_view(victim.strategy, served.exit_probs(victim.data.test.x))


@dataclass(frozen=True)
class DeployedView:
    """A defense's declared deployed strategy, rebuilt by the evaluator, and its view."""

    strategy: OutputStrategy
    view: VictimView
    original_exits: np.ndarray
    check: dict[str, Any]

    def diagnostics(self, served: ServedModel, served_inputs: np.ndarray,
                    served_exits: np.ndarray) -> dict[str, Any]:
        """The strategy, its test exits against the original's, the declaration check, and
        how often the exits served to the attack's admitted queries were the strategy's
        decision (below 1 for a randomized strategy, or where another stage moved them)."""
        k = served.num_exits
        answered = served_exits >= 0
        x = served_inputs[answered]
        agreement = (float(np.mean(self.strategy.exits(served.exit_probs(x))
                                   == served_exits[answered])) if len(x) else None)
        return {
            "strategy": self.strategy.to_json(),
            "exit_histogram": np.bincount(self.view.exits, minlength=k).tolist(),
            "original_exit_histogram": np.bincount(self.original_exits, minlength=k).tolist(),
            "agreement_with_original": float(np.mean(self.view.exits == self.original_exits)),
            "served_agreement": agreement,
            "declaration_check": self.check,
        }


def declaration_check(declared: np.ndarray, original: np.ndarray,
                      served: np.ndarray) -> dict[str, Any]:
    """How much better the declared decisions explain the ``served`` exits than the
    original ones (answered queries only: ``served >= 0``), with the one-sided upper
    bound the rejection rule reads; ``rejected`` says whether it falls below the slack."""
    ok = served >= 0
    d = ((declared[ok] == served[ok]).astype(np.float64)
         - (original[ok] == served[ok]).astype(np.float64))
    n = int(ok.sum())
    if n == 0:
        return {"n": 0, "mean": None, "upper": None, "rejected": False}
    mean = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    upper = mean + DECLARATION_Z * se
    return {"n": n, "declared_agreement": float(np.mean(declared[ok] == served[ok])),
            "original_agreement": float(np.mean(original[ok] == served[ok])),
            "mean": mean, "upper": upper, "rejected": bool(upper < -DECLARATION_SLACK)}


def deployed_view(defense: str, label: str, registry: Registry, victim: TrainedVictim,
                  served: ServedModel, declared: dict[str, Any] | None,
                  benign_rows: np.ndarray, benign_exits: np.ndarray) -> DeployedView | None:
    """The strategy the cell's defense declared it deploys (None: the victim's own), rebuilt
    from JSON with harness code and the evaluator's registered policies, checked against
    the exits the benign clients were served (``benign_exits`` answered test inputs
    ``benign_rows``), and its view of the test split. A declaration that failed, cannot be
    rebuilt or does not match what was served is the defense's failure."""
    if declared is None:
        return None
    component = f"defense:{defense}"
    if "failure" in declared:
        raise ComponentFailure(str(declared["failure"])[:2000], component)
    raw = declared.get("strategy")
    policy = raw.get("policy") if isinstance(raw, dict) else None
    if policy != victim.strategy.policy.name:  # checked before any policy code is built
        raise ComponentFailure(
            f"{label}: its declared deployed strategy uses exit policy {str(policy)[:80]!r}, "
            f"but the victim's is {victim.strategy.policy.name!r}; a deployed strategy keeps "
            "the victim's policy (the evaluator runs no policy code the victim does not)",
            component)
    data = victim.data
    try:
        strategy = strategy_from_json(raw, registry.policy)
        strategy.validate(served.num_exits, data.num_classes, owner="deployed strategy")
    except (HarnessError, KeyError, TypeError, ValueError) as exc:
        raise ComponentFailure(f"{label}: its declared deployed strategy cannot be rebuilt "
                               f"({type(exc).__name__}: {exc})", component) from None
    probs = served.exit_probs(data.test.x)
    view = strategy_view(strategy, probs)
    original = victim.strategy.exits(probs)
    check = declaration_check(view.exits[benign_rows], original[benign_rows], benign_exits)
    if check["rejected"]:
        raise ComponentFailure(
            f"{label}: its declared deployed strategy does not match the exits it served: "
            f"on {check['n']} answered benign queries it explains {check['declared_agreement']:.3f} "
            f"of the served exits and the victim's own strategy {check['original_agreement']:.3f} "
            f"(upper bound of the difference {check['upper']:.3f} < -{DECLARATION_SLACK}); "
            "declare the strategy the defense really serves, or none", component)
    return DeployedView(strategy, view, original, check)
