"""The attacker's only handle on the victim (docs/design.md section 4).

``Oracle.query(x)`` validates the batch (array type, dtype, shape, finite values,
input range), enforces the query budget (one input = one query; repeats count; an
invalid or over-budget batch is refused whole and not charged) and returns outputs
(probabilities or labels) plus one latency per query. The true exits stay in a private
log used for scoring; only ``reference`` attacks may read them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.errors import BudgetExhaustedError, InvalidQueryError, QueryError
from harness.protocol import OutputMode, QueryResult


def validate_batch(x: object, input_shape: tuple[int, ...],
                   input_range: tuple[float, float]) -> np.ndarray:
    """The batch as a float array, or :class:`InvalidQueryError` saying what is wrong.

    Array type, dtype (float32 or float64), shape ``(n, *input_shape)`` with n >= 1,
    finite values within ``input_range``. Shared by every oracle, so a client refuses
    exactly what the server would.
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()  # type: ignore[union-attr]
    if not isinstance(x, np.ndarray):
        raise InvalidQueryError(f"query must be a numpy array or torch tensor, got "
                                f"{type(x).__name__}; nothing was charged")
    if x.dtype not in (np.float32, np.float64):
        raise InvalidQueryError(f"query dtype {x.dtype} is not allowed; send float32 (or "
                                "float64) inputs; nothing was charged")
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != tuple(input_shape):
        raise InvalidQueryError(
            f"query shape {tuple(x.shape)} does not match (n, {', '.join(map(str, input_shape))}); "
            "send a batch, e.g. x[None] for one input; nothing was charged")
    if len(x) == 0:
        raise InvalidQueryError("empty query batch; send at least one input")
    if not np.isfinite(x).all():
        raise InvalidQueryError("query contains NaN or inf values; nothing was charged")
    lo, hi = input_range
    if x.min() < lo - 1e-6 or x.max() > hi + 1e-6:
        raise InvalidQueryError(f"query values span [{x.min():.4g}, {x.max():.4g}], outside the "
                                f"input range [{lo}, {hi}]; nothing was charged")
    return x


class BudgetCounter:
    """The budget bookkeeping every oracle shares: ``budget``, ``queries_used``, ``budget_left``."""

    budget: int
    _used: int = 0

    @property
    def queries_used(self) -> int:
        return self._used

    @property
    def budget_left(self) -> int:
        return self.budget - self._used

    def _check_budget(self, n: int) -> None:
        """Refuse a batch of ``n`` queries that the budget cannot pay for (nothing charged)."""
        if self._used + n > self.budget:
            raise BudgetExhaustedError(
                f"batch of {n} queries exceeds the budget: {self._used} of {self.budget} "
                f"used, {self.budget_left} left; send at most {self.budget_left}")


class Oracle(BudgetCounter):
    """Budgeted, validated query access to a defended endpoint."""

    def __init__(self, endpoint: Any, budget: int, output: OutputMode,
                 input_shape: tuple[int, ...], input_range: tuple[float, float],
                 allow_truth: bool = False) -> None:
        self._endpoint = endpoint
        self.budget = int(budget)
        self.output = output
        self.input_shape = tuple(input_shape)
        self.input_range = input_range
        self._allow_truth = allow_truth
        self._used = 0
        self._exits: list[np.ndarray] = []
        self._latencies: list[np.ndarray] = []
        self._inputs: list[np.ndarray] = []
        self._refused = 0

    def check(self, x: object) -> np.ndarray:
        """Validate a batch and check the budget without charging (raises on refusal)."""
        xs = validate_batch(x, self.input_shape, self.input_range).astype(np.float32, copy=False)
        self._check_budget(len(xs))
        return xs

    def query(self, x: object) -> QueryResult:
        """Answer a batch (n, *input_shape); raises :class:`QueryError` subclasses on refusal."""
        xs = self.check(x)
        response = self._endpoint.respond(xs)
        self._used += len(xs)
        self._exits.append(response.exits)
        self._latencies.append(response.latency_s)
        self._inputs.append(xs)
        self._refused += int((~response.admitted).sum())
        if self.output == "label":
            labels = np.where(response.admitted, np.nan_to_num(response.probs).argmax(axis=1), -1)
            outputs = labels.astype(np.int64)
        else:
            outputs = response.probs
        return QueryResult(outputs=outputs, latency_s=response.latency_s,
                           admitted=response.admitted)

    @property
    def refused_count(self) -> int:
        """Queries a defense's monitor refused (charged, reported in ``admitted``)."""
        return self._refused

    def served_exits(self) -> np.ndarray:
        """Private log of the exits that answered each query (harness scoring only)."""
        return np.concatenate(self._exits) if self._exits else np.zeros(0, dtype=np.int64)

    def served_latencies(self) -> np.ndarray:
        """Private log of the latencies of each query (NaN where refused)."""
        return np.concatenate(self._latencies) if self._latencies else np.zeros(0)

    def served_inputs(self) -> np.ndarray:
        """Private log of the queried inputs, in query order (harness scoring only)."""
        if not self._inputs:
            return np.zeros((0, *self.input_shape), dtype=np.float32)
        return np.concatenate(self._inputs)

    def true_exits_for_reference(self) -> np.ndarray:
        """The true exits of all queries so far; only reference (upper-bound) attacks."""
        if not self._allow_truth:
            raise QueryError("true exits are available to reference attacks only (class "
                             "attribute reference=True); a real attack must estimate them")
        return self.served_exits()
