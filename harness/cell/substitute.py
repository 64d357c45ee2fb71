"""What scoring needs of a stolen model, wherever it runs: its outputs on the test inputs.

A substitute built from trusted code is rebuilt and run in the evaluator
(:func:`model_outputs`). One built from an untrusted plugin's architecture or exit
policy stays a :class:`SandboxedStolen` (its record, plain data): the cell's session runs
it in a sandboxed scorer (:mod:`harness.isolation.scorer`), and the evaluator checks
the answer (:func:`checked_outputs`) before it scores it. See docs/design.md section 10.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.cell.stolen import StolenModelError, StolenRecord, estimated_exits
from harness.model import exit_probabilities
from harness.protocol import StolenModel
from harness.strategy import answering_probs


@dataclass(frozen=True)
class SubstituteOutputs:
    """What scoring needs of a substitute on the test inputs: per input, the exit its
    strategy takes and the label it answers there, and its final exit's label."""

    exits: np.ndarray
    labels: np.ndarray
    final_labels: np.ndarray
    cost_fraction: tuple[float, ...]
    strategy: dict[str, Any]

    @property
    def num_exits(self) -> int:
        return len(self.cost_fraction)


def model_outputs(stolen: StolenModel, x: np.ndarray, device: str) -> SubstituteOutputs:
    """A rebuilt substitute's outputs on ``x``."""
    probs = exit_probabilities(stolen.model, x, device)
    exits = stolen.strategy.exits(probs)
    return SubstituteOutputs(exits=exits, labels=answering_probs(probs, exits).argmax(axis=1),
                             final_labels=probs[-1].argmax(axis=1),
                             cost_fraction=tuple(float(c) for c in stolen.model.cost_fraction),
                             strategy=stolen.strategy.to_json())


@dataclass(frozen=True)
class SandboxedStolen:
    """A substitute the evaluator does not run: its record, and the plugins (entry-point
    names) whose code it needs. Estimates and diagnostics are plain data."""

    record: StolenRecord
    owners: tuple[str, ...]
    input_shape: tuple[int, ...]
    num_classes: int
    num_exits: int
    """The recipe's, checked as data before the scorer is asked."""

    @property
    def estimated_exits(self) -> np.ndarray | None:
        return estimated_exits(self.record)

    @property
    def diagnostics(self) -> dict[str, Any]:
        return self.record.meta["diagnostics"]

    def checked(self, outputs: SubstituteOutputs, n: int) -> SubstituteOutputs:
        """What a scorer answered for ``n`` inputs, checked (:func:`checked_outputs`)."""
        return checked_outputs(outputs, n, self.num_exits, self.num_classes,
                               self.record.meta.get("strategy"))


def checked_outputs(outputs: SubstituteOutputs, n: int, num_exits: int, num_classes: int,
                    strategy: Any) -> SubstituteOutputs:
    """``outputs`` if every array has ``n`` integer entries in range, the costs are
    ``num_exits`` increasing fractions in (0, 1] and the strategy is the record's."""
    for name, values, high in (("exits", outputs.exits, num_exits),
                               ("labels", outputs.labels, num_classes),
                               ("final_labels", outputs.final_labels, num_classes)):
        array = np.asarray(values)
        if array.shape != (n,) or array.dtype.kind not in "iu":
            raise StolenModelError(f"the scorer returned {name} of shape {array.shape} and "
                                   f"dtype {array.dtype}; expected {n} integers")
        if n and (array.min() < 0 or array.max() >= high):
            raise StolenModelError(f"the scorer returned {name} outside 0..{high - 1}")
    costs = np.asarray(outputs.cost_fraction, dtype=float)
    if (costs.shape != (num_exits,) or not np.isfinite(costs).all() or costs.min() <= 0
            or costs.max() > 1 or (np.diff(costs) < 0).any()):
        raise StolenModelError(f"the substitute's cost fractions {costs.tolist()} are not "
                               f"{num_exits} increasing fractions in (0, 1]")
    if outputs.strategy != strategy:
        raise StolenModelError("the scorer answered for another strategy than the record's")
    return outputs
