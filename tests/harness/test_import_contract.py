"""The import contract inside ``harness/``: layers only point down, no cycles, reasons stated.

:data:`LAYERS` is the contract, bottom first. A module may import its own layer or a lower
one, never a higher one; the top layer's members (the command line and the plugin
author's kit) may not import each other. Every import counts: at module level, under
``TYPE_CHECKING``, inside a function, and literal ``importlib.import_module`` calls. The
module graph (every edge above) has no cycle. An import inside a function (of any
module, third-party ones included) carries a comment on its line or the line above that
says why it is not at the top. The facade
(``harness/__init__.py``) is for plugins: nothing below it imports it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("harness.errors", "harness.version", "harness.kernels")),
    ("io", ("harness.io",)),
    ("contract", ("harness.lookup", "harness.params", "harness.components", "harness.computation",
                  "harness.strategy", "harness.deployed", "harness.model", "harness.protocol",
                  "harness.stages", "harness.hookspecs")),
    ("plugins", ("harness.plugins",)),
    ("facade", ("harness",)),
    ("nn", ("harness.nn",)),
    ("timing", ("harness.timing",)),
    ("serving", ("harness.serving",)),
    ("metrics", ("harness.metrics",)),
    ("cell", ("harness.cell",)),
    ("isolation", ("harness.isolation",)),
    ("run", ("harness.run",)),
    ("board", ("harness.board",)),
    ("cli|testing", ("harness.cli", "harness.testing")),
)
"""The layers, bottom first: the contract the tests below enforce."""
INDEPENDENT_TOP = ("harness.cli", "harness.testing")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    where: str  # "top", "type_checking" or "function"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((ROOT / "harness").rglob("*.py"))}


def _resolve(source: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = source.split(".") if is_package else source.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(module: str, names: list[str]) -> list[str]:
    """``from module import a, b``: the submodules named, else the module itself."""
    out = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
    return out if len(out) == len(names) else [*out, module]


def edges_of(source: str) -> list[Edge]:
    path = MODULES[source]
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[Edge] = []

    def visit(node: ast.AST, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = where
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                inner = "function"
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                inner = "type_checking" if where == "top" else where
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                module = _resolve(source, path.name == "__init__.py", child)
                targets = _targets(module, [a.name for a in child.names])
            elif isinstance(child, ast.Call):
                func = child.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                arg = child.args[0] if child.args else None
                if (name in ("import_module", "__import__") and isinstance(arg, ast.Constant)
                        and isinstance(arg.value, str)):
                    targets = [arg.value]
            for target in targets:
                if target == "harness" or target.startswith("harness."):
                    found.append(Edge(source, target, child.lineno, inner))
            visit(child, inner)

    visit(tree, "top")
    return found


EDGES = [e for m in MODULES for e in edges_of(m)]


def layer_of(module: str) -> int:
    """The index of the layer whose longest prefix names ``module``."""
    best, index = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, index = len(prefix), i
    return index


def _top_member(module: str) -> str | None:
    return next((p for p in INDEPENDENT_TOP if module == p or module.startswith(p + ".")), None)


def test_every_module_has_a_layer():
    assert all(layer_of(m) >= 0 for m in MODULES)
    facade = LAYERS.index(("facade", ("harness",)))
    strays = [m for m in MODULES if layer_of(m) == facade and m != "harness"]
    assert not strays, (f"modules outside every layer (add them to LAYERS in "
                        f"{Path(__file__).name}): {strays}")


def test_layers_only_point_down():
    upward = [f"{MODULES[e.source].relative_to(ROOT)}:{e.line} ({LAYERS[layer_of(e.source)][0]}) "
              f"imports {e.target} ({LAYERS[layer_of(e.target)][0]}) [{e.where}]"
              for e in EDGES if layer_of(e.target) > layer_of(e.source)]
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_the_top_layers_are_independent():
    crossing = [f"{e.source}:{e.line} imports {e.target}" for e in EDGES
                if _top_member(e.source) and _top_member(e.target)
                and _top_member(e.source) != _top_member(e.target)]
    assert not crossing, "\n".join(crossing)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module, or a self-loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_strongly_connected_finds_a_cycle_and_no_false_one():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_cycles():
    graph: dict[str, set[str]] = defaultdict(set)
    for m in MODULES:
        graph[m]
    for e in EDGES:
        if e.target in MODULES and e.target != e.source:
            graph[e.source].add(e.target)
    cycles = strongly_connected(graph)
    assert not cycles, "import cycles (TYPE_CHECKING and function imports count):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


def function_imports(path: Path) -> list[tuple[int, bool]]:
    """(line, has a comment on it or the line above) of every import inside a function."""
    lines = path.read_text().splitlines()
    out = []
    for fn in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    n = node.lineno
                    out.append((n, "#" in lines[n - 1]
                                or (n > 1 and lines[n - 2].strip().startswith("#"))))
    return out


def test_imports_inside_functions_say_why():
    silent = [f"{path.relative_to(ROOT)}:{line}" for path in MODULES.values()
              for line, commented in function_imports(path) if not commented]
    assert not silent, ("imports inside functions (any module) without a comment saying why, "
                        "on the line or the line above:\n" + "\n".join(silent))


def test_nothing_below_the_facade_imports_it():
    facade = LAYERS.index(("facade", ("harness",)))
    users = [f"{e.source}:{e.line}" for e in EDGES
             if e.target == "harness" and layer_of(e.source) < facade]
    assert not users, "the facade (harness/__init__.py) is for plugins: " + ", ".join(users)


@pytest.mark.parametrize(("source", "expected"), [
    ("from harness.io import atomic", ["harness.io.atomic"]),
    ("from harness import hookspecs, errors", ["harness.hookspecs", "harness.errors"]),
    ("from harness import Attack", ["harness"]),
    ("from . import grid", ["harness.run.grid"]),
    ("def f():\n    import harness.board.verify  # why\n", ["harness.board.verify"]),
])
def test_the_scanner_resolves_import_forms(tmp_path, monkeypatch, source, expected):
    monkeypatch.setitem(MODULES, "harness.run", tmp_path / "__init__.py")
    (tmp_path / "__init__.py").write_text(source)
    assert [e.target for e in edges_of("harness.run")] == expected
