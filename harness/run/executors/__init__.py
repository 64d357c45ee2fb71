"""Executors: where a grid's cells run (serial, process, ray); the driver writes results.

One module each, sharing :mod:`.base` (jobs, claims, the runner's cell operations).
"""

from __future__ import annotations

from harness.run.executors.base import CellOps, Job, JobQueue, Result, RunContext
from harness.run.executors.process import run_processes
from harness.run.executors.serial import run_serial

__all__ = ["CellOps", "Job", "JobQueue", "Result", "RunContext", "run_processes", "run_serial"]
