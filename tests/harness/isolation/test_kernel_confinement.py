"""Hostile plugins against the kernel confinement of the plugin workers (docs/design.md
section 8), installed through their entry point: as this process's user (root in CI, with
every capability) and as root with every capability dropped and ``no_new_privs`` set,
which is what an ordinary user gets.

Two cells: the attack ``patcher`` patches the scoring at import time and in ``steal``
(the evaluator never imports it, so its score is its own); the attack ``prober`` runs
against the defense ``probing``, and each tries to read
and plant files under ``out=`` and the cache, read other processes' environment and
memory, take their descriptors, kill a process outside the cell, reach the network,
leave a detached process behind and allocate past ``memory=``. The assertions are on
the world outside (files, processes, a listening socket) and on the probes' own counts.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.isolation import landlock
from tests.harness.conftest import install_plugin

pytestmark = pytest.mark.integration  # runs cells and workers

PLUGIN = (Path(__file__).parent / "kernel_plugin.txt").read_text()
HOSTILE = (Path(__file__).parent / "hostile_plugin.txt").read_text()
MARKER = "hostile-orphan"
MEMORY = 2 * 2**30
PROBES = ("files_read", "files_planted", "environ_read", "mem_read", "fds_taken", "vm_read",
          "signalled", "tcp_connected", "udp_sent", "unix_socket", "memory_hogged")
RUN = textwrap.dedent('''
    import json, sys
    from harness.plugins.manager import make_plugin_manager
    from harness.run.config import parse_overrides
    from harness.run.runner import run_grid
    summary = run_grid(parse_overrides(sys.argv[1:]), make_plugin_manager(), show_progress=False)
    imported = sorted(m for m in sys.modules if m.split(".")[0] in ("kernel_exploits",
                                                                    "hostile_plugins"))
    print(json.dumps({"results": [json.loads(p.read_text()) for p in summary.result_paths],
                      "imported": imported}))
''')
needs_landlock = pytest.mark.skipif(landlock.abi_version() < 6,
                                    reason="the kernel lacks Landlock ABI 6 (signal scoping)")


@pytest.fixture
def world(plugin_dir, tmp_path):
    """The plugin, a fake finished result and cache entry, a private key file, a process
    outside the cell, and a listening TCP socket."""
    install_plugin(plugin_dir, "kernel-exploits", "kernel_exploits", PLUGIN, "kernel_exploits")
    install_plugin(plugin_dir, "hostile-plugins", "hostile_plugins", HOSTILE, "hostile")
    (tmp_path / "out" / "cells").mkdir(parents=True)
    (tmp_path / "out" / "cells" / "old.json").write_text(json.dumps({"status": "ok"}))
    (tmp_path / "cache" / "victims").mkdir(parents=True)
    (tmp_path / "cache" / "victims" / "weights.pt").write_bytes(b"weights")
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "key.pem").write_text("secret key")
    bystander = subprocess.Popen(["sleep", "300"])
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    yield tmp_path, bystander, listener
    bystander.kill()
    listener.close()
    subprocess.run(["pkill", "-KILL", "-x", MARKER], check=False)
    for module in ("kernel_exploits", "hostile_plugins"):
        sys.modules.pop(module, None)


def _keys(tmp_path: Path, bystander: subprocess.Popen, port: int) -> list[str]:
    settings = json.dumps({"targets": [str(tmp_path / "out"), str(tmp_path / "cache"),
                                       str(tmp_path / "private")],
                           "victim_pid": bystander.pid, "port": port,
                           "hog_bytes": 2 * MEMORY, "marker": MARKER})
    return ["victims=digits_cnn", "victim.digits_cnn.epochs=1", "victim.digits_cnn.width=8",
            "budget=40", "attacks=prober,patcher", "defenses=probing", "replicas=0",
            f"attack.prober.settings={settings}", f"defense.probing.settings={settings}",
            f"out={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}", f"memory={MEMORY}"]


def _orphans() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == MARKER:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _check(results: list[dict], imported: list[str], world) -> None:
    tmp_path, bystander, listener = world
    by_attack = {r["components"]["attack"]["name"]: r for r in results}
    assert not imported  # the evaluator never imported either plugin
    patcher = by_attack["patcher"]  # patches the scoring at import time and in steal()
    assert patcher["status"] == "ok", patcher.get("error")
    assert patcher["metrics"]["exit_agreement"] != 0.999
    result = by_attack["prober"]
    assert result["status"] == "ok", result.get("error")
    assert result["diagnostics"]["isolation"]["level"] == "kernel"
    attack = result["diagnostics"]["attack"]["found"]
    defense = result["diagnostics"]["defense_report"]
    for found in (attack, {k: int(v) for k, v in defense.items()}):
        assert set(found) == set(PROBES)
        assert found == dict.fromkeys(PROBES, 0), found
    time.sleep(0.2)
    assert bystander.poll() is None  # still running
    assert not _orphans()
    with pytest.raises(BlockingIOError):
        listener.accept()
    assert not list(tmp_path.rglob("planted.json"))
    assert (tmp_path / "out" / "cells" / "old.json").read_text() == json.dumps({"status": "ok"})
    assert (tmp_path / "cache" / "victims" / "weights.pt").read_bytes() == b"weights"


@needs_landlock
def test_plugin_workers_reach_nothing_outside_their_cell(world):
    tmp_path, bystander, listener = world
    from harness.plugins.manager import make_plugin_manager
    from harness.run.config import parse_overrides
    from harness.run.runner import run_grid

    port = listener.getsockname()[1]
    summary = run_grid(parse_overrides(_keys(tmp_path, bystander, port)),
                       make_plugin_manager(), show_progress=False)
    imported = sorted(m for m in sys.modules if m in ("kernel_exploits", "hostile_plugins"))
    _check([json.loads(p.read_text()) for p in summary.result_paths], imported, world)


@needs_landlock
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to drop every capability")
def test_the_same_holds_for_root_without_capabilities(world):
    tmp_path, bystander, listener = world
    port = listener.getsockname()[1]
    command = ["setpriv", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all",
               sys.executable, "-c", RUN, *_keys(tmp_path, bystander, port)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    _check(out["results"], out["imported"], world)
