"""How quiet the machine was while latencies were recorded: steal time and CPU pressure.

Latency traces and calibrations become every user's default timing, so they must be
recorded on a quiet machine. The load average lags and misses hypervisor steal, so
:class:`LoadMonitor` samples, throughout a recording, what the kernel says directly:

- **steal** (``/proc/stat``): the share of CPU time the hypervisor gave to someone else;
- **CPU pressure** (``/proc/pressure/cpu``, PSI ``some``): the share of wall time in
  which at least one runnable task waited for a CPU;
- **other processes' CPU**: busy CPU time of the whole machine less this process's own,
  in cores (another build or test suite beside the recording shows up here).

:meth:`LoadReport.problems` compares a recording with :data:`QUIET`, the stated
thresholds; a recorder refuses (or marks) a trace that exceeds them. Pressure counts
this process's own threads too: a recording whose threads alone can fill every CPU (a
two-thread backend on two cores; ONNX Runtime's pool spins) is judged by steal and other
processes' CPU only. Where a file is absent (not Linux, PSI disabled), that figure is
None and is not judged.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

QUIET = {"steal_pct": 1.0, "steal_pct_max": 5.0, "pressure_pct": 5.0, "other_cpu_cores": 0.15}
"""Thresholds of a quiet recording: mean steal <= 1% (no 0.2 s interval above 5%), CPU
pressure <= 5% of wall time, other processes <= 0.15 of a core on average."""
INTERVAL_S = 0.2

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class _Reading:
    wall: float
    busy_s: float | None
    total_s: float | None
    steal_s: float | None
    pressure_s: float | None
    own_s: float


def _cpu_times() -> tuple[float | None, float | None, float | None]:
    """(busy, total, steal) seconds summed over all CPUs, or Nones without /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None, None, None
    values = [int(v) / _TICK for v in fields[:8]]
    user, nice, system, idle, iowait, irq, softirq, steal = values
    busy = user + nice + system + irq + softirq
    return busy, busy + idle + iowait + steal, steal


def _pressure_s() -> float | None:
    """Cumulative CPU pressure (PSI ``some``) in seconds, or None without PSI."""
    try:
        for line in Path("/proc/pressure/cpu").read_text().splitlines():
            if line.startswith("some"):
                return int(line.rsplit("total=", 1)[1]) * 1e-6
    except (OSError, IndexError, ValueError):
        return None
    return None


def _process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far; 0 when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def _own_cpu_s(part_of_recording: tuple[int, ...]) -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime
            + sum(_process_cpu_s(pid) for pid in part_of_recording))


def _read(part_of_recording: tuple[int, ...] = ()) -> _Reading:
    busy, total, steal = _cpu_times()
    return _Reading(time.perf_counter(), busy, total, steal, _pressure_s(),
                    _own_cpu_s(part_of_recording))


def _pct(part: float | None, whole: float | None) -> float | None:
    if part is None or whole is None or whole <= 0:
        return None
    return 100.0 * part / whole


@dataclass(frozen=True)
class LoadReport:
    """What the machine did during one recording (percentages of time; None: unknown)."""

    wall_s: float
    steal_pct: float | None
    steal_pct_max: float | None
    pressure_pct: float | None
    pressure_pct_max: float | None
    other_cpu_cores: float | None
    samples: int

    def problems(self, thresholds: dict[str, float] | None = None, *,
                 judge_pressure: bool = True) -> list[str]:
        """Which thresholds the recording exceeded (empty: it was quiet); pressure is not
        judged when ``judge_pressure`` is False (the recording's own threads fill the CPUs)."""
        limits = thresholds or QUIET
        out = []
        figures = [("steal_pct", self.steal_pct), ("steal_pct_max", self.steal_pct_max),
                   ("other_cpu_cores", self.other_cpu_cores)]
        if judge_pressure:
            figures.append(("pressure_pct", self.pressure_pct))
        for key, figure in figures:
            if figure is not None and key in limits and figure > limits[key]:
                out.append(f"{key} {figure:.2f} > {limits[key]:g}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


class LoadMonitor:
    """Samples steal and pressure in a thread while the ``with`` block records.

    ``part_of_recording``: ids of other processes that belong to the recording (a server
    subprocess under test); their CPU counts as the recording's own, not as other load.
    """

    def __init__(self, interval_s: float = INTERVAL_S,
                 part_of_recording: tuple[int, ...] = ()) -> None:
        self.interval_s = interval_s
        self.part_of_recording = tuple(part_of_recording)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first: _Reading | None = None
        self._peaks = {"steal": 0.0, "pressure": 0.0}
        self._samples = 0
        self.report: LoadReport | None = None

    def _sample(self) -> None:
        last = self._first
        while not self._stop.wait(self.interval_s):
            now = _read(self.part_of_recording)
            if last is not None:
                steal = _pct(_delta(now.steal_s, last.steal_s), _delta(now.total_s, last.total_s))
                pressure = _pct(_delta(now.pressure_s, last.pressure_s), now.wall - last.wall)
                self._peaks["steal"] = max(self._peaks["steal"], steal or 0.0)
                self._peaks["pressure"] = max(self._peaks["pressure"], pressure or 0.0)
                self._samples += 1
            last = now

    def __enter__(self) -> LoadMonitor:
        self._first = _read(self.part_of_recording)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        end, first = _read(self.part_of_recording), self._first
        assert first is not None
        wall = end.wall - first.wall
        busy = _delta(end.busy_s, first.busy_s)
        other = None if busy is None or wall <= 0 else max(
            0.0, (busy - (end.own_s - first.own_s)) / wall)
        self.report = LoadReport(
            wall_s=wall,
            steal_pct=_pct(_delta(end.steal_s, first.steal_s), _delta(end.total_s, first.total_s)),
            steal_pct_max=self._peaks["steal"] if self._samples else None,
            pressure_pct=_pct(_delta(end.pressure_s, first.pressure_s), wall),
            pressure_pct_max=self._peaks["pressure"] if self._samples else None,
            other_cpu_cores=other, samples=self._samples)


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b
