"""The plugin page's copy-paste defense package is built, installed, checked and run.

The three fenced blocks of ``docs/plugins.md`` whose first line is ``# my-padding/<file>``
are written out as a package, ``pip install``-ed (no dependencies, no network) into a
temporary site directory, its own conformance and property tests are run with pytest, and
``harness run`` runs one cell with its defense, all in fresh interpreters that see only
that site directory and this repository. The README's short example shows two of those
blocks, unchanged.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # runs cells, workers or subprocesses

ROOT = Path(__file__).resolve().parents[3]
BLOCK = re.compile(r"```(?:python|toml)\n# my-padding/(?P<file>[\w.]+)\n(?P<body>.*?)```", re.S)


def package_blocks(page: str) -> dict[str, str]:
    return {m["file"]: m["body"] for m in BLOCK.finditer((ROOT / page).read_text())}


def test_readme_example_is_the_tested_package():
    readme, plugins = package_blocks("README.md"), package_blocks("docs/plugins.md")
    assert sorted(readme) == ["my_padding.py", "pyproject.toml"]
    assert all(readme[name] == plugins[name] for name in readme)


def readme_package(target: Path) -> list[str]:
    files = package_blocks("docs/plugins.md")
    target.mkdir(parents=True)
    for name, body in files.items():
        (target / name).write_text(body)
    return sorted(files)


def test_readme_defense_package_installs_passes_its_tests_and_runs(harness_env, tmp_path):
    package = tmp_path / "my-padding"
    assert readme_package(package) == ["my_padding.py", "pyproject.toml", "test_my_padding.py"]
    harness_env.install_package(package)
    assert list(harness_env.site.glob("my_padding-0.1.0.dist-info"))

    tests = harness_env.pytest(str(package / "test_my_padding.py"), cwd=tmp_path)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert re.search(r"\b(1[0-9]|[2-9][0-9]) passed", tests.stdout), tests.stdout[-500:]

    out = tmp_path / "results"
    run = harness_env.run("run", "victims=digits_cnn", "defenses=uniform_padding",
                          "attacks=knockoff", "budget=100", "victim.digits_cnn.epochs=2",
                          "attack.knockoff.epochs=1", f"out={out}",
                          f"cache_dir={tmp_path / 'cache'}", "--quiet")
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(next(out.glob("cells/**/*.json")).read_text())
    assert result["status"] == "ok"
    assert result["components"]["defense"]["distribution"] == "my-padding"
    assert result["metrics"]["latency_overhead_p50"] > 0.5  # everyone waits for the full network
    assert result["metrics"]["leakage_bits"] < 0.2
