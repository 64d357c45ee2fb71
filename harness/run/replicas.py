"""The replica agreement (docs/design.md section 6, "Context"): what retraining the victim outright reaches.

A reference, not an upper bound: an attack may match or beat it (files written before
the rename have ``kind: replica_ceiling`` and are read alike).

Per victim, ``replicas=N`` (default 3; ``replicas=0`` turns the step off) replicas are
trained on the victim's own training data with the victim's own recipe and calibration
rule, changing only the training seed: each is the same registered victim component
with ``train_seed = victim's train_seed + 1000 + k`` (k = 0..N-1, modulo 2**32), so a
replica seed never equals the victim's. Each replica is scored against the victim on
the held-out test split exactly like a stolen model with its own strategy
(:func:`harness.metrics.scoring.strategy_scores`: exit agreement and kappa, fidelity,
accuracy, cost ratio, efficiency gap, exit-distribution TV); the summary holds each
metric's mean and 95% Student-t interval over the replicas.

A victim without a ``train_seed`` parameter (a third-party or fixed-weights victim), or
one whose replica comes out with the victim's own weights (its seed changes nothing),
gets status ``not_available`` with the reason, never a crash; an error while training
or scoring is ``failed`` (recorded, recomputed on the next run).

Cached twice: replica weights go to the weight cache like victims (keyed by their
weights config, which holds the seed), and the scores to
``OUT/replicas/<victim>-<hash16>.json``, written atomically and reused on resume while
its config hash (victim and parameters, N, device type, plugin and package versions,
secret mode) matches. In secret mode (``HARNESS_SECRET``) replicas go through the same
salted victim context as the victim: their training seeds and the split permutation
are salted the same way, so they are replicas of the secret victim; the seeds recorded
are the unsalted ones.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from harness.cell.server import prepare_registered_victim
from harness.cell.spec import CellEnvironment, CellSpec, ComponentSpec
from harness.io.provenance import package_versions
from harness.io.results import load_replica_file
from harness.io.schema import SCHEMA_VERSION
from harness.io.secret import secret_mode
from harness.io.signing import FolderTrust, RunManifest
from harness.metrics.scoring import strategy_scores
from harness.metrics.stats import mean_ci
from harness.model import exit_probabilities
from harness.plugins.registry import Registry
from harness.protocol import TrainedVictim
from harness.serving.devices import resolve_device
from harness.strategy import answering_probs
from harness.version import __version__

SEED_PARAM = "train_seed"
"""The victim parameter a replica changes; a victim without it has no replica agreement."""
SEED_OFFSET = 1000
SEED_MODULUS = 2**32
REPLICA_VERSION = 1
"""Bump when the replica recipe or its scoring changes, to recompute cached replica_files."""


def replica_seeds(train_seed: int, n: int) -> tuple[int, ...]:
    """The training seeds of ``n`` replicas: ``train_seed + 1000 + k`` (mod 2**32)."""
    return tuple((int(train_seed) + SEED_OFFSET + k) % SEED_MODULUS for k in range(n))


def replica_hash(registry: Registry, victim: ComponentSpec, n: int, device: str) -> str:
    """sha256 of everything that determines a victim's replica agreement."""
    blob = json.dumps({"victim": {"name": victim.name, "params": victim.params},
                       "plugin": registry.get("victim", victim.name).origin(),
                       "replicas": n, "device_type": device.split(":")[0],
                       "packages": package_versions(), "secret_mode": secret_mode(),
                       "version": REPLICA_VERSION},
                      sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def replica_path(out: Path, victim: ComponentSpec, digest: str) -> Path:
    return Path(out) / "replicas" / f"{victim.name}-{digest[:16]}.json"


def _victim_view(victim: TrainedVictim, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Exits and labels of a (victim or replica) network under its own strategy, on test."""
    probs = exit_probabilities(victim.model, victim.data.test.x, device)
    exits = victim.strategy.exits(probs)
    return exits, answering_probs(probs, exits).argmax(axis=1)


def _not_available(reason: str) -> dict[str, Any]:
    return {"status": "not_available", "reason": reason, "seeds": [], "replicas": [],
            "metrics": {}}


def compute_replica_agreement(registry: Registry, victim: ComponentSpec, n: int, env: CellEnvironment,
                    device: str, note: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Train (or load) ``n`` replicas of ``victim`` and score each against it."""
    entry = registry.get("victim", victim.name)
    params = victim.params
    owner = entry.label(victim.display)
    if SEED_PARAM not in params:
        return _not_available(f"{owner} has no {SEED_PARAM} parameter, so it cannot be "
                              "retrained with another seed (a third-party or fixed-weights "
                              "victim)")
    original = prepare_registered_victim(registry, victim.name, params, env, device)
    v_exits, v_labels = _victim_view(original, device)
    seeds = replica_seeds(params[SEED_PARAM], n)
    replicas = []
    for k, seed in enumerate(seeds):
        note(f"replica agreement of {victim.display}: replica {k + 1}/{n} ({SEED_PARAM}={seed})")
        replica = prepare_registered_victim(registry, victim.name, {**params, SEED_PARAM: seed},
                                            env, device)
        if replica.weights_hash == original.weights_hash:
            return _not_available(f"{owner}: the replica with {SEED_PARAM}={seed} has the "
                                  f"victim's own weights, so {SEED_PARAM} does not change its "
                                  "training and replicas would not be independent")
        r_exits, r_labels = _victim_view(replica, device)
        metrics = strategy_scores(
            victim_exits=v_exits, victim_labels=v_labels,
            victim_cost=original.model.cost_fraction, sub_exits=r_exits, sub_labels=r_labels,
            sub_cost=replica.model.cost_fraction, y_true=original.data.test.y)
        replicas.append({"seed": seed, "weights_hash": replica.weights_hash,
                         "thresholds": [float(t) for t in replica.strategy.thresholds],
                         "metrics": metrics})
    names = sorted({m for r in replicas for m in r["metrics"]})
    return {"status": "ok", "reason": None, "victim_train_seed": int(params[SEED_PARAM]),
            "victim_weights_hash": original.weights_hash, "seeds": list(seeds),
            "replicas": replicas,
            "metrics": {m: mean_ci([r["metrics"][m] for r in replicas]) for m in names}}


def ensure_replica_agreement(registry: Registry, victim: ComponentSpec, n: int, env: CellEnvironment,
                   device: str, manifest: RunManifest, trust: FolderTrust,
                   note: Callable[[str], None] = lambda _: None,
                   is_interrupt: Callable[[BaseException], bool] = lambda e: False,
                   ) -> tuple[Path, dict[str, Any], bool]:
    """The victim's replica file: reused when intact and current, else computed and written.

    Returns (path, record, reused). The file is signed and listed in the run's
    ``manifest``; an old one is reused only when ``trust`` vouches for it. Anything but
    the user's interrupt fails only this replica agreement (recorded as ``failed`` and computed
    again next time).
    """
    device = resolve_device(device)
    digest = replica_hash(registry, victim, n, device)
    path = replica_path(env.out or Path("."), victim, digest)
    old = load_replica_file(path, trust)
    if old is not None and old["config_hash"] == digest and old["status"] != "failed":
        return path, old, True
    start = time.perf_counter()
    try:
        body = compute_replica_agreement(registry, victim, n, env, device, note)
    except BaseException as exc:
        if is_interrupt(exc):  # the user's Ctrl-C; anything a plugin raised is recorded
            raise
        body = {**_not_available(f"{type(exc).__name__}: {exc}"[:2000]), "status": "failed"}
    entry = registry.get("victim", victim.name)
    record = {"kind": "replica_agreement", "schema_version": SCHEMA_VERSION,
              "harness_version": __version__, "config_hash": digest,
              "victim": {"name": victim.name, "label": victim.display, "params": victim.params,
                         **entry.origin()},
              "replicas_requested": n, "seed_param": SEED_PARAM, "secret_mode": secret_mode(),
              "device": device, **body, "wall_time_s": round(time.perf_counter() - start, 4),
              "finished_at": datetime.now(UTC).isoformat(timespec="seconds")}
    return path, manifest.write_signed(path, record), False


def grid_replica_agreement(cells: list[CellSpec], n: int, registry: Registry, env: CellEnvironment,
                  device: str, manifest: RunManifest, trust: FolderTrust,
                  note: Callable[[str], None] = lambda _: None,
                  is_interrupt: Callable[[BaseException], bool] = lambda e: False,
                  ) -> list[Path]:
    """One replica file per distinct victim (name and parameters) of the grid; none when n == 0."""
    if n == 0:
        return []
    paths = []
    for victim in dict.fromkeys(c.victim for c in cells):
        path, record, reused = ensure_replica_agreement(registry, victim, n, env, device, manifest,
                                              trust, note, is_interrupt)
        status = record["status"]
        summary = ("reused" if reused else f"{record['wall_time_s']:.1f} s")
        if status == "ok":
            ea = record["metrics"]["exit_agreement"]["mean"]
            note(f"replica agreement of {victim.display}: exit agreement {ea:.3f} over "
                 f"{len(record['replicas'])} replicas ({summary})")
        else:
            note(f"replica agreement of {victim.display}: {status.replace('_', ' ')} "
                 f"({record['reason']})")
        paths.append(path)
    return paths
