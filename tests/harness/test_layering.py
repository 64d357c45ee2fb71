"""The package layering of docs/design.md section 2, enforced on the code itself.

``attacks/`` and ``defenses/`` import only ``harness`` (the attacker never holds the
victim's code); ``harness/`` never imports the built-in packages, except that
:mod:`harness.plugins.manager` names them (as strings) in ``BUILTIN_PLUGINS``. Imports are read
from every module's syntax tree, ``importlib.import_module`` and ``__import__`` calls
included, and then checked for real by importing ``attacks`` and ``defenses`` in a
fresh interpreter where importing ``victims`` fails.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILTIN_PACKAGES = ("attacks", "defenses", "victims")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import statement and literal dynamic import in ``path``.

    A dynamic import whose argument is not a string literal is reported as ``"<dynamic>"``.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                literal = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                found.append((node.lineno, arg.value if literal else "<dynamic>"))
    return found


def _top(module: str) -> str:
    return module.split(".")[0]


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_the_scanner_sees_every_import_form(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(textwrap.dedent("""
        import victims
        import os, victims.zoo as z
        from victims.architectures import build_small_cnn
        from . import sibling
        import importlib
        importlib.import_module("victims.plugin")
        __import__("victims")
        importlib.import_module(name)
        def later():
            from victims import cache
    """))
    found = [m for _, m in imported_modules(sample)]
    assert found.count("victims") == 3
    assert {"victims.zoo", "victims.architectures", "victims.plugin", "<dynamic>"} <= set(found)
    assert "sibling" not in found


@pytest.mark.parametrize("package", ["attacks", "defenses"])
def test_attacks_and_defenses_import_only_harness(package):
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {module}"
                 for path in _modules(package) for line, module in imported_modules(path)
                 if module == "<dynamic>" or (_top(module) in BUILTIN_PACKAGES
                                              and _top(module) != package)]
    assert not offenders, "\n".join(offenders)


def test_harness_never_imports_the_builtin_packages():
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {module}"
                 for path in _modules("harness") for line, module in imported_modules(path)
                 if _top(module) in BUILTIN_PACKAGES
                 or (module == "<dynamic>" and path.relative_to(ROOT).as_posix()
                     != "harness/plugins/manager.py")]
    assert not offenders, "\n".join(offenders)


BLOCKED_IMPORT = textwrap.dedent("""
    import importlib, importlib.abc, os, pkgutil, sys

    class BlockVictims(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "victims" or name.startswith("victims."):
                raise ImportError(f"blocked for this test: {name}")
            return None

    sys.meta_path.insert(0, BlockVictims())
    import attacks, defenses
    imported = []
    for package in (attacks, defenses):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)
            imported.append(info.name)
    assert not any(m == "victims" or m.startswith("victims.") for m in sys.modules)

    from harness.plugins.manager import make_plugin_manager
    from harness.plugins.registry import Registry, load_registry

    registry = load_registry(load_entrypoints=False)
    for kind in ("attack", "defense", "exit_estimator"):
        for entry in registry.entries(kind):
            entry.cls().validate(registry)
    print(len(imported), len(registry.names("attack")), len(registry.names("exit_estimator")))
""")


def test_attacks_and_defenses_import_and_validate_with_victims_blocked():
    env = {"HARNESS_DISABLE_PLUGINS": "victims.plugin", "PYTHONPATH": str(ROOT),
           "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", BLOCKED_IMPORT], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    modules, attacks, estimators = map(int, res.stdout.split())
    assert modules >= 15 and attacks >= 6 and estimators >= 8
