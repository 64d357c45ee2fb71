"""The attacker's unlabeled pool: ``pool=same|DATASET`` (docs/design.md section 7).

``same`` (the default) is the victim dataset's attacker split: same distribution,
disjoint from the victim's training data and from the test split. ``pool=NAME`` is the
attacker split of another registered dataset with the same input shape, read from
``data_root`` (Knockoff Nets' setting: an SVHN pool against a CIFAR-10 victim). Its
input range must lie within the victim's, since the oracle refuses inputs outside it.

Naming the victim's own dataset is the same as ``same`` (:func:`resolve_pool`), so the
two spellings share cells. Another dataset is loaded with its default parameters and
its split is never salted in secret mode: it is not the victim's data, and the attacker
receives it anyway. ``harness run`` and the standalone ``harness attack`` client share
this module.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness.errors import ConfigError
from harness.plugins.registry import Registry
from harness.protocol import DatasetSplits

SAME = "same"
"""The victim dataset's own attacker split."""
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def check_pool_name(pool: str, registry: Registry | None = None, who: str = "") -> str:
    """``pool`` if it is ``same`` or a registered dataset; else an error listing the choices
    (``who`` prefixes the message)."""
    pool, prefix = str(pool).strip(), f"{who}: " if who else ""
    if pool != SAME and not _NAME.fullmatch(pool):
        raise ConfigError(f"{prefix}pool={pool!r} is not a dataset name; write pool=same (the "
                          "victim dataset's attacker split) or pool=DATASET (harness list "
                          "datasets)")
    if registry is not None and pool != SAME and pool not in registry.names("dataset"):
        raise ConfigError(f"{prefix}pool={pool!r} is not a registered dataset; choose same or one of "
                          f"{', '.join(registry.names('dataset')) or 'none'} (harness list "
                          "datasets)")
    return pool


def resolve_pool(pool: str, victim_dataset: str) -> str:
    """The pool a cell records: ``same`` when ``pool`` names the victim's own dataset."""
    return SAME if pool == victim_dataset else pool


def _declared(registry: Registry,
              dataset: str) -> tuple[tuple[int, ...], tuple[float, float]] | None:
    """(input shape, input range) as a dataset's class declares them, or None."""
    cls = registry.get("dataset", dataset).cls
    shape, bounds = getattr(cls, "input_shape", None), getattr(cls, "input_range", None)
    if shape is None or bounds is None:
        return None
    return tuple(int(s) for s in shape), (float(bounds[0]), float(bounds[1]))


def _signature(registry: Registry, dataset: str,
               data_root: Path | None) -> tuple[tuple[int, ...], tuple[float, float]]:
    """(input shape, input range) of a dataset: declared on its class, else from its data."""
    declared = _declared(registry, dataset)
    if declared is not None:
        return declared
    data = registry.get("dataset", dataset).cls().load(data_root)
    return tuple(int(s) for s in data.input_shape), (float(data.input_range[0]),
                                                     float(data.input_range[1]))


def check_compatible(pool: str, shape: Sequence[int], bounds: Sequence[float], target: str,
                     target_shape: Sequence[int], target_bounds: Sequence[float],
                     who: str = "") -> None:
    """The pool's inputs fit the victim: same shape, range within the victim's."""
    prefix = f"{who}: " if who else ""
    if tuple(shape) != tuple(target_shape):
        raise ConfigError(f"{prefix}pool={pool} has inputs of shape {tuple(shape)} but {target} "
                          f"takes {tuple(target_shape)}; choose a pool dataset of shape "
                          f"{tuple(target_shape)} (harness list datasets) or pool=same")
    lo, hi = float(bounds[0]), float(bounds[1])
    t_lo, t_hi = float(target_bounds[0]), float(target_bounds[1])
    if lo < t_lo or hi > t_hi:
        raise ConfigError(f"{prefix}pool={pool} has inputs in [{lo:g}, {hi:g}] but {target} "
                          f"accepts [{t_lo:g}, {t_hi:g}], so the oracle would refuse them; "
                          "choose a pool in the same input range or pool=same")


def check_pool(registry: Registry, pool: str, victim: str, data_root: Path | None) -> None:
    """Before any work: ``pool`` is registered, fits ``victim`` (shape, range) and is
    present under ``data_root``. A declared shape is compared before the data is looked for."""
    check_pool_name(pool, registry)
    dataset = registry.get("victim", victim).cls.dataset
    if resolve_pool(pool, dataset) == SAME:
        return
    target = f"victim {victim!r} (dataset {dataset})"
    v_shape, v_bounds = _signature(registry, dataset, data_root)
    declared = _declared(registry, pool)
    if declared is not None:
        check_compatible(pool, *declared, target, v_shape, v_bounds)
    registry.get("dataset", pool).cls().check_available(data_root)
    if declared is None:
        check_compatible(pool, *_signature(registry, pool, data_root), target, v_shape, v_bounds)


def load_pool(registry: Registry, pool: str, data_root: Path | None,
              input_shape: Sequence[int], input_range: Sequence[float], target: str,
              who: str = "") -> np.ndarray:
    """The attacker split of dataset ``pool`` (a private float32 copy), checked to fit."""
    check_pool_name(pool, registry, who)
    data = registry.get("dataset", pool).cls().load(data_root)
    check_compatible(pool, data.input_shape, data.input_range, target, input_shape, input_range,
                     who)
    return np.ascontiguousarray(data.attacker.x, dtype=np.float32).copy()


def attacker_pool(registry: Registry, pool: str, victim_data: DatasetSplits, data_root: Path | None,
                  victim: str) -> np.ndarray:
    """A cell's attacker pool: ``victim_data``'s attacker split, or that of dataset ``pool``."""
    if resolve_pool(pool, victim_data.name) == SAME:
        return np.ascontiguousarray(victim_data.attacker.x, dtype=np.float32).copy()
    return load_pool(registry, pool, data_root, victim_data.input_shape, victim_data.input_range,
                     f"victim {victim!r} (dataset {victim_data.name})")

