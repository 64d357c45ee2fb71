"""Run ``harness`` on a plugin in a temporary environment (like pytest's ``pytester``).

:class:`HarnessEnv` is a temporary site directory: install a plugin module with its
``harness`` entry point (:meth:`HarnessEnv.install_module`) or a whole package with pip
(:meth:`HarnessEnv.install_package`), then run the real command line in a fresh
interpreter that sees it (:meth:`HarnessEnv.run`). Nothing touches the user's
environment. The ``harness_env`` fixture of :mod:`harness.testing.plugin` makes one
per test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The folder that holds the ``harness`` package (a child interpreter's path)."""


def write_plugin(site: Path, module: str, source: str, *, dist: str, version: str = "0.1.0",
                 entry_point: str | None = None) -> Path:
    """Write ``module.py`` and a ``.dist-info`` whose entry point (group ``harness``) names it."""
    site.mkdir(parents=True, exist_ok=True)
    path = site / f"{module}.py"
    path.write_text(source)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[harness]\n{entry_point or module} = {module}\n")
    return path


class HarnessEnv:
    """A temporary site directory for plugins and a runner of the ``harness`` CLI."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.site = self.root / "site"
        self.site.mkdir(parents=True, exist_ok=True)

    def install_module(self, module: str, source: str, *, dist: str, version: str = "0.1.0",
                       entry_point: str | None = None) -> Path:
        """A one-module plugin registered through the ``harness`` entry-point group."""
        return write_plugin(self.site, module, source, dist=dist, version=version,
                            entry_point=entry_point)

    def install_package(self, package_dir: Path) -> subprocess.CompletedProcess:
        """``pip install`` a plugin package (its pyproject.toml) into the site directory."""
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
               "--no-build-isolation", "--disable-pip-version-check", "--target",
               str(self.site), str(package_dir)]
        return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600)

    def environ(self) -> dict[str, str]:
        """The environment of a child process that sees the site directory and this harness."""
        path = os.pathsep.join([str(self.site), str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])
        return {**os.environ, "PYTHONPATH": path.rstrip(os.pathsep)}

    def run(self, *args: str, cwd: Path | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
        """``harness ARGS...`` in a fresh interpreter; returns the completed process."""
        return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                              text=True, cwd=cwd or self.root, env=self.environ(),
                              timeout=timeout)

    def pytest(self, *args: str, cwd: Path | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
        """``pytest ARGS...`` in a fresh interpreter that sees the installed plugins."""
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               *args], capture_output=True, text=True, cwd=cwd or self.root,
                              env=self.environ(), timeout=timeout)
