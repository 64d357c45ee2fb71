"""Source digests of components: changed plugin code re-runs its cells (docs/design.md section 7).

A component's digest is the sha256 over the source files of its package: the top-level
package of the module that defines its class (every ``.py`` file under it, by relative
path and content), or that module's file alone when it is not in a package, plus the
module its plugin was registered from when that lies elsewhere. It enters every cell's
config hash, so editing a plugin without bumping its version makes its cells stale. The
harness core has a digest of its own (:func:`core_source_digest`), hashed the same way.
Digests are cached per process by file path and modification time.
"""

from __future__ import annotations

import hashlib
import sys
from functools import lru_cache
from pathlib import Path

UNAVAILABLE = "unavailable"
"""The digest of a component whose source cannot be found (built in memory, frozen)."""


def _module_file(module_name: str) -> Path | None:
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None) if module is not None else None
    return Path(file).resolve() if file else None


def source_root(module_name: str) -> Path | None:
    """The folder of ``module_name``'s top-level package, or its own file when it is a
    plain module (None when it has no file)."""
    top = module_name.split(".")[0]
    top_file = _module_file(top)
    if top_file is not None and top_file.name == "__init__.py":
        return top_file.parent
    return _module_file(module_name)


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.py")
                  if "__pycache__" not in p.parts and p.is_file())


@lru_cache(maxsize=256)
def _digest_of(root: Path, stamp: tuple[tuple[str, int, int], ...]) -> str:
    sha = hashlib.sha256()
    base = root.parent if root.is_file() else root
    for name, _, _ in stamp:
        path = base / name
        sha.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()


def core_source_digest() -> str:
    """The digest of the harness core itself (every ``.py`` file of the ``harness``
    package): it enters every cell's config hash, so a core change marks finished cells
    stale instead of leaving them to disagree with a re-run (docs/design.md section 7)."""
    return tree_digest(Path(__file__).resolve().parents[1])


def tree_digest(root: Path) -> str:
    """sha256 over ``root``'s Python files (relative path and content)."""
    base = root.parent if root.is_file() else root
    try:
        stamp = tuple((str(p.relative_to(base)), p.stat().st_mtime_ns, p.stat().st_size)
                      for p in _files(root))
        return _digest_of(root, stamp)
    except OSError:
        return UNAVAILABLE


def component_source_digest(cls: type, plugin_module: str | None = None) -> str:
    """The digest of ``cls``'s package (and of ``plugin_module`` when outside it)."""
    roots = {r for r in (source_root(cls.__module__),
                         source_root(plugin_module) if plugin_module else None) if r}
    if not roots:
        return UNAVAILABLE
    digests = sorted(tree_digest(r) for r in roots)
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("".join(digests).encode()).hexdigest()
