"""The CPU kernels are pinned at AVX2 on x86-64 (docs/design.md section 8): only where the
processor has AVX2, never over what the user set, and in this very process."""

from __future__ import annotations

import torch

import harness
from harness.io.provenance import machine_info
from harness.kernels import PINNED, pin_cpu_kernels

AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})


def test_pins_every_library_on_an_avx2_x86_machine():
    env: dict[str, str] = {}
    assert pin_cpu_kernels(env, AVX2, "x86_64") == PINNED
    assert env == PINNED


def test_what_the_user_set_wins():
    env = {"ATEN_CPU_CAPABILITY": "default"}
    added = pin_cpu_kernels(env, AVX2, "x86_64")
    assert env["ATEN_CPU_CAPABILITY"] == "default" and "ATEN_CPU_CAPABILITY" not in added
    assert env["MKL_CBWR"] == "AVX2"


def test_machines_without_avx2_and_other_architectures_are_left_alone():
    for flags, machine in ((frozenset({"sse4_2", "avx"}), "x86_64"), (AVX2, "aarch64")):
        env: dict[str, str] = {}
        assert pin_cpu_kernels(env, flags, machine) == {} and env == {}


def test_this_process_runs_the_pinned_kernels_and_records_them():
    if harness.kernels.PINNED_HERE.get("ATEN_CPU_CAPABILITY") == "avx2":
        assert torch.backends.cpu.get_cpu_capability() == "AVX2"
    assert "ATEN_CPU_CAPABILITY=" in machine_info().cpu_kernels
