"""Pure-numpy stage batches for the defense tests (no victim, no endpoint)."""

from __future__ import annotations

import numpy as np

from harness.stages import QUANTILE_LEVELS, ServerInfo, StageBatch, read_only
from harness.strategy import MaxProbPolicy, OutputStrategy


def server_info(num_classes: int) -> ServerInfo:
    return ServerInfo(num_exits=2, num_classes=num_classes, cost_fraction=(0.5, 1.0),
                      latency_quantiles=((1e-4,) * 7, (2e-4,) * 7),
                      quantile_levels=QUANTILE_LEVELS, timing="analytic", output="probs",
                      strategy=OutputStrategy(MaxProbPolicy(), (0.9,)))


def output_batch(outputs: np.ndarray, seed: int = 0) -> StageBatch:
    """The batch ``perturb_outputs`` sees for these answers (inputs are placeholders)."""
    n, c = outputs.shape
    return StageBatch(inputs=read_only(np.zeros((n, 1, 2, 2), np.float32)), client_id="c",
                      rng=np.random.default_rng(seed), server=server_info(c),
                      exits=read_only(np.ones(n, np.int64)), outputs=read_only(outputs),
                      latency_s=read_only(np.full(n, 2e-4)))


def query_batch(inputs: np.ndarray, client_id: str) -> StageBatch:
    """The batch ``admit`` sees."""
    return StageBatch(inputs=read_only(inputs), client_id=client_id,
                      rng=np.random.default_rng(0), server=server_info(10))


class PolicyOracle:
    """An :class:`harness.stages.ExitAccess` that knows only the policy's exits: it answers
    ``policy_exits`` (-1 past ``limit``) and records, per row, the deepest exit it was asked
    to evaluate - what a server would have computed and charged."""

    def __init__(self, exits: np.ndarray) -> None:
        self.exits = np.asarray(exits, dtype=np.int64)
        self.depth = np.full(len(self.exits), -1, dtype=np.int64)

    def probs(self, k: int, rows: np.ndarray | None = None) -> np.ndarray:
        raise AssertionError("this oracle has no exit outputs")

    def policy_exits(self, limit: np.ndarray | int | None = None,
                     rows: np.ndarray | None = None) -> np.ndarray:
        rows = np.arange(len(self.exits)) if rows is None else np.asarray(rows, dtype=np.int64)
        exits = self.exits[rows]
        if limit is None:
            np.maximum.at(self.depth, rows, exits)
            return exits
        limit = np.broadcast_to(np.asarray(limit, dtype=np.int64), exits.shape)
        np.maximum.at(self.depth, rows, np.minimum(exits, limit))
        return np.where(exits <= limit, exits, -1)
