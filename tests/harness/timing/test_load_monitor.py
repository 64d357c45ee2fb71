"""The load monitor that decides whether a latency recording was quiet."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.timing.load_monitor import QUIET, LoadMonitor, LoadReport


def report(**figures) -> LoadReport:
    base = {"wall_s": 1.0, "steal_pct": 0.0, "steal_pct_max": 0.0, "pressure_pct": 0.0,
            "pressure_pct_max": 0.0, "other_cpu_cores": 0.0, "samples": 5}
    return LoadReport(**{**base, **figures})


def test_a_quiet_recording_has_no_problems_and_each_threshold_is_named():
    assert report().problems() == []
    noisy = report(steal_pct=2.5, steal_pct_max=9.0, pressure_pct=7.0, other_cpu_cores=0.9)
    problems = noisy.problems()
    assert [p.split()[0] for p in problems] == ["steal_pct", "steal_pct_max", "other_cpu_cores",
                                                "pressure_pct"]
    assert "steal_pct 2.50 > 1" in problems


def test_pressure_from_the_recording_itself_is_not_judged_and_unknown_figures_pass():
    own_threads = report(pressure_pct=60.0)
    assert own_threads.problems() and own_threads.problems(judge_pressure=False) == []
    assert report(steal_pct=None, pressure_pct=None, other_cpu_cores=None).problems() == []
    assert report(steal_pct=0.5).problems({"steal_pct": 0.1}) == ["steal_pct 0.50 > 0.1"]


def test_the_thresholds_are_stated():
    assert set(QUIET) == {"steal_pct", "steal_pct_max", "pressure_pct", "other_cpu_cores"}


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc/stat")
def test_another_busy_process_beside_the_recording_is_caught():
    with LoadMonitor(interval_s=0.05) as monitor:
        time.sleep(0.3)
    quiet = monitor.report
    assert quiet is not None and quiet.wall_s >= 0.3 and quiet.samples >= 3
    assert quiet.steal_pct is None or 0.0 <= quiet.steal_pct <= 100.0
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\n"
                             "while time.time() - t < 5: pass"])
    try:
        time.sleep(0.3)  # the child is up and spinning
        with LoadMonitor(interval_s=0.05) as monitor:
            time.sleep(0.8)
    finally:
        busy.kill()
        busy.wait()
    loaded = monitor.report
    assert loaded is not None and loaded.other_cpu_cores > 0.5
    assert any(p.startswith("other_cpu_cores") for p in loaded.problems())


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc/stat")
def test_a_process_that_is_part_of_the_recording_is_not_other_load():
    """Two monitors over the same window (whatever else runs on the machine): the one told
    that the busy child is part of the recording sees its CPU as the recording's own."""
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\n"
                             "while time.time() - t < 5: pass"])
    try:
        time.sleep(0.3)
        with LoadMonitor(interval_s=0.05) as plain, \
                LoadMonitor(interval_s=0.05, part_of_recording=(busy.pid,)) as told:
            time.sleep(0.8)
    finally:
        busy.kill()
        busy.wait()
    assert plain.report is not None and told.report is not None
    assert plain.report.other_cpu_cores - told.report.other_cpu_cores > 0.3
