"""The sandboxed scorer: a substitute built from untrusted code is run outside the evaluator.

The evaluator rebuilds and runs a stolen model only when its architecture and exit
policy are built in or trusted. Otherwise it starts one confined worker per substitute
(:mod:`harness.isolation.confine`: no network, no ``out=``, no cache, memory and CPU
limits) that imports only the plugins providing that architecture and policy, rebuilds
the substitute from its record with every check of
:func:`~harness.cell.stolen.rebuild_stolen`, and returns its exits and labels on the
test inputs. It gets neither the labels nor the victim, so it cannot grade itself: the
evaluator compares what it returns with its own copy of the victim, after checking
every shape and range (:func:`checked_outputs`). Scoring runs on the CPU there.
"""

from __future__ import annotations

import os
import shutil
import traceback
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from harness.cell.stolen import (
    StolenModelError,
    StolenRecord,
    checked_recipe,
    estimated_exits,
    rebuild_stolen,
)
from harness.hookspecs import PROJECT_NAME
from harness.isolation.confine import Confinement, ConfinementReport, run_confined
from harness.isolation.sandbox import (
    PluginSetting,
    privileges_droppable,
    scratch_dir,
    stop_worker,
    use_scratch,
    worker_confinement,
    worker_context,
)
from harness.isolation.wire import Message, WireError, receive, send
from harness.model import exit_probabilities
from harness.plugins.manager import is_trusted
from harness.protocol import StolenModel
from harness.strategy import answering_probs

SCORER_MEMORY = 4 * 2**30
SCORER_CPU_S = 600
SCORER_WAIT_S = 900
"""How long the evaluator waits for the scorer's answer before it gives up on it."""


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

    @property
    def estimated_exits(self) -> np.ndarray | None:
        return estimated_exits(self.record)

    @property
    def diagnostics(self) -> dict[str, Any]:
        return self.record.meta["diagnostics"]

    def outputs(self, x: np.ndarray, protect: tuple[Path | None, ...]) -> SubstituteOutputs:
        """Run the substitute in a fresh confined scorer (see the module docstring)."""
        return checked_outputs(score_in_sandbox(self, x, protect), len(x),
                               checked_recipe(self.record, input_shape=self.input_shape,
                                              num_classes=self.num_classes).num_exits,
                               self.num_classes, self.record.meta.get("strategy"))


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


def score_in_sandbox(stolen: SandboxedStolen, x: np.ndarray,
                     protect: tuple[Path | None, ...]) -> SubstituteOutputs:
    """Start a confined scorer, send it the record and the inputs, return its answer."""
    drop, _ = privileges_droppable()
    scratch = scratch_dir(drop)
    confinement = worker_confinement(scratch, protect, drop=drop, memory_bytes=SCORER_MEMORY,
                                     cpu_seconds=SCORER_CPU_S)
    context = worker_context()
    conn, child = context.Pipe()
    process = context.Process(target=scorer_worker, daemon=True,
                              args=(child, PluginSetting.current(), stolen.owners,
                                    confinement, str(scratch)))
    process.start()
    child.close()
    try:
        send(conn, Message("score", {**stolen.record.meta, "input_shape": stolen.input_shape,
                                     "num_classes": stolen.num_classes},
                           {**stolen.record.arrays, "x": x}))
        if not conn.poll(SCORER_WAIT_S):
            raise StolenModelError(f"the sandboxed scorer gave no answer in {SCORER_WAIT_S} s")
        reply = receive(conn, ("scored", "error"))
    except (EOFError, OSError, WireError) as exc:
        raise StolenModelError(f"the sandboxed scorer died or misbehaved ({type(exc).__name__}: "
                               f"{exc}; exit code {process.exitcode})") from None
    finally:
        stop_worker(conn, process)
        shutil.rmtree(scratch, ignore_errors=True)
    if reply.kind == "error":
        raise StolenModelError(str(reply.meta.get("message"))[:4000])
    return SubstituteOutputs(exits=reply.arrays.get("exits"), labels=reply.arrays.get("labels"),
                             final_labels=reply.arrays.get("final_labels"),
                             cost_fraction=tuple(reply.meta.get("cost_fraction") or ()),
                             strategy=reply.meta.get("strategy"))


def scorer_worker(conn: Any, setting: PluginSetting, owners: tuple[str, ...],
                  confinement: Confinement, scratch: str) -> None:
    """Entry point of the scorer process: confined before any plugin loads."""
    run_confined(confinement, scorer_main, conn, setting, owners, scratch)


def only_owners(owners: tuple[str, ...]) -> None:
    """Block every untrusted entry point but ``owners`` (HARNESS_DISABLE_PLUGINS), so no
    other submitted plugin's code runs beside the substitute and can change its answer."""
    others = {ep.name for ep in metadata.entry_points(group=PROJECT_NAME)
              if not is_trusted(ep) and ep.name not in owners}
    blocked = {*filter(None, os.environ.get("HARNESS_DISABLE_PLUGINS", "").split(",")), *others}
    os.environ["HARNESS_DISABLE_PLUGINS"] = ",".join(sorted(blocked))


def scorer_main(conn: Any, setting: PluginSetting, owners: tuple[str, ...], scratch: str,
                report: ConfinementReport) -> None:
    """Rebuild the one substitute it is sent, answer with its outputs, end."""
    from harness.plugins.registry import load_registry

    try:
        use_scratch(Path(scratch))
        setting.apply()
        only_owners(owners)
        message = receive(conn, ("score",))
        registry = load_registry(untrusted="import")
        meta = dict(message.meta)
        shape, classes = tuple(meta.pop("input_shape")), int(meta.pop("num_classes"))
        x = message.arrays.pop("x")
        stolen = rebuild_stolen(StolenRecord(meta, message.arrays), registry,
                                input_shape=shape, num_classes=classes)
        out = model_outputs(stolen, x, "cpu")
        reply = Message("scored", {"cost_fraction": list(out.cost_fraction),
                                   "strategy": out.strategy},
                        {"exits": np.asarray(out.exits, dtype=np.int64),
                         "labels": np.asarray(out.labels, dtype=np.int64),
                         "final_labels": np.asarray(out.final_labels, dtype=np.int64)})
    except BaseException as exc:
        reply = Message("error", {"message": f"the sandboxed scorer could not run the "
                                             f"substitute: {type(exc).__name__}: {exc}"[:4000],
                                  "traceback": traceback.format_exc()[-4000:]})
    send(conn, reply)
