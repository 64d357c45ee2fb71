"""The sandboxed scorer: a substitute built from untrusted code is run outside the evaluator.

The evaluator rebuilds and runs a stolen model only when its architecture and exit
policy are built in or trusted. Otherwise it starts one confined worker per substitute
(:mod:`harness.isolation.confine`: no network, no ``out=``, no cache, memory and CPU
limits) that imports only the plugins providing that architecture and policy, rebuilds
the substitute from its record with every check of
:func:`~harness.cell.stolen.rebuild_stolen`, and returns its exits and labels on the
test inputs. It gets neither the labels nor the victim, so it cannot grade itself: the
evaluator compares what it returns with its own copy of the victim, after checking
every shape and range (:func:`~harness.cell.substitute.checked_outputs`). Scoring runs on
the CPU there. The cell's session (:class:`~harness.isolation.roles.IsolatedSession`)
starts it; ``isolation=none`` never has an untrusted substitute to score.
"""

from __future__ import annotations

import os
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from harness.cell.stolen import StolenModelError, StolenRecord, rebuild_stolen
from harness.cell.substitute import SandboxedStolen, SubstituteOutputs, model_outputs
from harness.hookspecs import PROJECT_NAME
from harness.isolation.confine import Confinement, ConfinementReport, run_confined
from harness.isolation.sandbox import PluginSetting, start_confined, use_scratch
from harness.isolation.wire import Message, WireError, receive, send
from harness.plugins.manager import is_trusted
from harness.plugins.registry import load_registry

SCORER_MEMORY = 4 * 2**30
SCORER_CPU_S = 600
SCORER_WAIT_S = 900
"""How long the evaluator waits for the scorer's answer before it gives up on it."""


def score_in_sandbox(stolen: SandboxedStolen, x: np.ndarray,
                     protect: tuple[Path | None, ...]) -> SubstituteOutputs:
    """Start a confined scorer, send it the record and the inputs, return its answer."""
    worker = start_confined(scorer_worker, (stolen.owners,), protect,
                            memory_bytes=SCORER_MEMORY, cpu_seconds=SCORER_CPU_S)
    conn, process = worker.conn, worker.process
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
        worker.stop()
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
