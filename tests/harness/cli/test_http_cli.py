"""End to end on loopback: ``harness serve`` in a subprocess, ``harness attack`` against it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from harness.cell.stolen import load_stolen
from harness.testing.fixtures import default_registry

pytestmark = pytest.mark.integration  # runs cells, workers or subprocesses

CLI = [sys.executable, "-m", "harness.cli"]
VICTIM = ["victim=digits_cnn", "victim.digits_cnn.epochs=1", "victim.digits_cnn.width=8"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(url: str, proc: subprocess.Popen, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"harness serve exited: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            time.sleep(0.5)
    raise AssertionError("harness serve did not answer /health in time")


@pytest.fixture
def served(tmp_path):
    port = free_port()
    proc = subprocess.Popen([*CLI, "serve", *VICTIM, "defense=none", "budget=80",
                             f"cache_dir={tmp_path / 'cache'}", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        yield url, wait_for_health(url, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run(capsys, *args: str) -> tuple[int, str]:
    """The real CLI in this process (the attack side needs no server state): (code, stderr)."""
    from harness.cli.main import main

    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


def test_attack_a_served_victim_end_to_end(served, tmp_path, capsys):
    url, health = served
    assert health["victim"] == "digits_cnn" and health["budget"] == 80
    out = tmp_path / "stolen"
    code, err = run(capsys, "attack", "exit_steal", "--oracle", url, "budget=60",
                    "attack.exit_steal.epochs=1", "attack.exit_steal.finetune_epochs=0",
                    "threat.num_exits=4", "threat.architecture=small_cnn", "timing.network=lan",
                    f"out={out}", f"cache_dir={tmp_path / 'cache'}")
    assert code == 0, err
    stolen, doc = load_stolen(out, default_registry())
    assert stolen.model.num_exits == 4 and stolen.strategy.num_exits == 4
    assert len(stolen.estimated_exits) == 60
    assert doc["queries_used"] == 60 and len(doc["estimated_exits"]) == 60
    assert doc["network_jitter"] == "lan" and doc["attack"]["name"] == "exit_steal"
    assert "threshold" not in json.dumps(doc["server"]).lower()
    # The same client resumes with what is left; a second client has its own budget.
    code, err = run(capsys, "attack", "knockoff", "--oracle", url, "attack.knockoff.epochs=1",
                    f"out={tmp_path / 'k'}")
    assert code == 0, err
    assert json.loads((tmp_path / "k" / "stolen.json").read_text())["queries_used"] == 80
    code, err = run(capsys, "attack", "knockoff", "--oracle", url, f"out={tmp_path / 'k2'}")
    assert code == 2 and "budget" in err and "Traceback" not in err


def test_bad_keys_fail_before_any_work(tmp_path, capsys):
    cases = [
        (["serve", "victim=nope"], "unknown victim 'nope'"),
        (["serve", "budget=0"], "budget='0' is invalid; allowed: an integer"),
        (["serve", "victims=a,b"], "unknown key 'victims'"),
        (["serve", "defense=none,none"], "must name one registered defense"),
        (["serve", "defense.none.x=1"], "none"),
        (["attack", "knockoff", "--oracle", "http://127.0.0.1:9", "seed=-1"], "seed='-1'"),
        (["attack", "knockoff", "--oracle", "http://127.0.0.1:9", "timing.network=5g"],
         "none, lan, wan"),
        (["attack", "knockoff", "--oracle", "http://127.0.0.1:9"], "cannot reach the server"),
        (["attack", "exit_steal_reference", "--oracle", "http://127.0.0.1:9"],
         "reference attack"),
    ]
    for args, needle in cases:
        code, err = run(capsys, *args, f"cache_dir={tmp_path}")
        assert code == 2 and needle in err and "Traceback" not in err, (args, err)
    assert not any(tmp_path.iterdir())  # nothing was trained or written
