"""Properties of the config hash: stable for equal cells, different for any changed input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.board.respec import rebuild_cell
from harness.cell.spec import CellSpec, Settings, ThreatModel
from harness.plugins.registry import load_registry
from harness.run.grid import component_spec, config_hash

REGISTRY = load_registry(load_entrypoints=False)
SEEDS = st.integers(0, 2**32 - 1)


@st.composite
def cells(draw: st.DrawFn) -> CellSpec:
    """Cells of built-in components with drawn parameters and settings."""
    scale = draw(st.floats(0.01, 5, allow_nan=False))
    defense = draw(st.sampled_from([("jitter", {"scale": scale}),
                                    ("pad_bucket", {"width": scale}), ("none", {})]))
    settings_ = Settings(budget=draw(st.integers(1, 5000)),
                         output=draw(st.sampled_from(["probs", "label"])),
                         timing=draw(st.sampled_from(["realistic", "analytic"])),
                         threat=ThreatModel(num_exits=draw(st.sampled_from(["granted",
                                                                             "hidden"]))),
                         isolation=draw(st.sampled_from(["process", "none"])))
    return CellSpec(victim=component_spec("victim", "digits_cnn", {}, REGISTRY),
                    defense=component_spec("defense", defense[0], defense[1], REGISTRY),
                    attack=component_spec("attack", "knockoff",
                                          {"epochs": draw(st.integers(1, 50))}, REGISTRY),
                    seed=draw(SEEDS), settings=settings_)


def result_of(cell: CellSpec) -> dict:
    """What a result records of its cell (enough for :func:`rebuild_cell`)."""
    return {"cell": json.loads(json.dumps(cell.to_json())),
            "components": {k: {"label": getattr(cell, k).display}
                           for k in ("victim", "defense", "attack")}}


@settings(max_examples=60, deadline=None)
@given(cells())
def test_a_cell_rebuilt_from_its_result_has_the_same_hash(cell):
    rebuilt = rebuild_cell(result_of(cell), REGISTRY)
    assert rebuilt == cell
    assert config_hash(rebuilt, REGISTRY) == config_hash(cell, REGISTRY)


@settings(max_examples=60, deadline=None)
@given(cells(), st.data())
def test_any_changed_input_changes_the_hash(cell, data):
    field = data.draw(st.sampled_from(["seed", "budget", "output", "threat", "params"]))
    settings_ = cell.settings
    if field == "seed":
        other = CellSpec(cell.victim, cell.defense, cell.attack, cell.seed ^ 1, settings_)
    elif field == "budget":
        other = CellSpec(cell.victim, cell.defense, cell.attack, cell.seed,
                         Settings(**{**vars(settings_), "budget": settings_.budget + 1}))
    elif field == "output":
        flipped = "label" if settings_.output == "probs" else "probs"
        other = CellSpec(cell.victim, cell.defense, cell.attack, cell.seed,
                         Settings(**{**vars(settings_), "output": flipped}))
    elif field == "threat":
        arch = "hidden" if settings_.threat.grants_architecture else "granted"
        threat = ThreatModel(settings_.threat.num_exits, arch)
        other = CellSpec(cell.victim, cell.defense, cell.attack, cell.seed,
                         Settings(**{**vars(settings_), "threat": threat}))
    else:
        epochs = cell.attack.params["epochs"] % 50 + 1
        attack = component_spec("attack", "knockoff", {"epochs": epochs}, REGISTRY)
        other = CellSpec(cell.victim, cell.defense, attack, cell.seed, settings_)
    assert config_hash(other, REGISTRY) != config_hash(cell, REGISTRY)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.01, 5, allow_nan=False), st.integers(1, 50))
def test_parameter_order_and_defaults_do_not_change_the_hash(scale, epochs):
    """Parameters given in another order, or a default given explicitly, are the same cell."""
    a = component_spec("defense", "jitter", {"scale": scale, "distribution": "uniform"},
                       REGISTRY)
    b = component_spec("defense", "jitter", {"scale": scale}, REGISTRY)
    victim = component_spec("victim", "digits_cnn", {}, REGISTRY)
    attack = component_spec("attack", "knockoff", {"epochs": epochs}, REGISTRY)
    assert config_hash(CellSpec(victim, a, attack, 0), REGISTRY) == config_hash(
        CellSpec(victim, b, attack, 0), REGISTRY)


HASH_IN_CHILD = """
from harness.cell.spec import CellSpec
from harness.plugins.registry import load_registry
from harness.run.grid import component_spec, config_hash
r = load_registry(load_entrypoints=False)
cell = CellSpec(component_spec("victim", "digits_cnn", {}, r),
                component_spec("defense", "jitter", {"scale": 0.3}, r),
                component_spec("attack", "knockoff", {"epochs": 3}, r), 7)
print(config_hash(cell, r))
"""


def test_the_hash_is_the_same_in_another_interpreter():
    """No set or dict order, no string hash seed, nothing of the process enters the hash."""
    cell = CellSpec(component_spec("victim", "digits_cnn", {}, REGISTRY),
                    component_spec("defense", "jitter", {"scale": 0.3}, REGISTRY),
                    component_spec("attack", "knockoff", {"epochs": 3}, REGISTRY), 7)
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    child = subprocess.run([sys.executable, "-c", HASH_IN_CHILD], capture_output=True,
                           text=True, env=env, timeout=300, check=True)
    assert child.stdout.strip() == config_hash(cell, REGISTRY)
