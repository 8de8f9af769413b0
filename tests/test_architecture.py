"""The shape of the whole package: no import cycles, no private names used across packages, no
source file over 400 lines (DESIGN.md §2, §6).

The checker reads ``src/eqv2`` with :mod:`ast` (nothing is imported):

- **module graph**: an edge ``A → B`` for every ``import``/``from … import`` in module ``A`` that
  names module ``B`` of the package, at top level or inside a function alike; imports under
  ``if TYPE_CHECKING:`` are left out (they never run). ``from pkg import name`` points at the
  module ``pkg.name`` when that is a module, else at ``pkg``. A parent package's ``__init__``,
  which Python runs first, is *not* an implied edge: it would put every re-exporting package on
  a cycle with its own modules.
- **private names**: ``from eqv2.x import _name``, ``import eqv2.x._mod`` and attribute chains
  ``eqv2.x._name`` reach something private to the package that holds it (for a module's
  ``_name``, the module's package). That package's own modules may share it (its subpackages
  are other packages); deprecated alias modules may re-export. Dunder names are public.
- **size**: lines of each ``.py`` file.

Known offenders sit in the allowlists below, each with a reason; an entry that no longer applies
fails the test too, so the lists only shrink.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Set
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "eqv2"
MAX_LINES = 400

#: {path relative to src/: reason}: files allowed over MAX_LINES for now.
LONG_FILES: dict[str, str] = {}

#: {(importer, imported): reason}: import edges left out of the cycle check for now.
CYCLE_EDGES: dict[tuple[str, str], str] = {}

#: {(importer, private name): reason}: private names used across packages for now.
PRIVATE_USES: dict[tuple[str, str], str] = {}

#: deprecated alias modules: they may re-export anything for one release.
DEPRECATED_ALIASES: dict[str, str] = {
    "eqv2.model.fairchem": "alias of eqv2.fairchem (split in issue 15); remove next release",
}


# -- the checker ----------------------------------------------------------------------------------


@dataclass
class Package:
    """A package's modules, read from source: ``{dotted name: file}`` and the import edges."""

    root: Path
    name: str
    files: dict[str, Path] = field(default_factory=dict)
    #: importer → imported modules (within the package)
    edges: dict[str, set[str]] = field(default_factory=dict)
    #: (importer, dotted private name) for private names reached across packages
    private_uses: set[tuple[str, str]] = field(default_factory=set)


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, skipping the bodies of ``if TYPE_CHECKING:`` (their ``else`` still runs)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _home(dotted: str, modules: dict[str, Path]) -> str:
    """The package a private dotted name belongs to: the package holding the first private
    component (a module's ``_name`` belongs to the module's package)."""
    parts = dotted.split(".")
    first = next(i for i, p in enumerate(parts) if _is_private(p))
    owner = ".".join(parts[:first])
    if owner in modules and modules[owner].name != "__init__.py":
        owner = owner.rpartition(".")[0]  # a plain module: its package
    return owner


def _package_of(module: str, modules: dict[str, Path]) -> str:
    return module if modules[module].name == "__init__.py" else module.rpartition(".")[0]


def read_package(root: Path, name: str) -> Package:
    """Parse every module of package ``name`` under ``root`` (the directory holding it)."""
    pkg = Package(root, name)
    for path in sorted((root / name).rglob("*.py")):
        pkg.files[_module_name(root, path)] = path
    for module, path in pkg.files.items():
        pkg.edges[module] = set()
        tree = ast.parse(path.read_text(), filename=str(path))
        here = _package_of(module, pkg.files)
        names: list[str] = []  # dotted names reached by this module
        for node in _runtime_nodes(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    names.append(alias.name)
                    pkg.edges[module].add(_nearest_module(alias.name, pkg.files))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                names.append(base)
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    names.append(target)
                    hit = target if target in pkg.files else _nearest_module(base, pkg.files)
                    pkg.edges[module].add(hit)
            elif isinstance(node, ast.Attribute):
                chain = _attribute_chain(node, name)
                if chain:
                    names.append(chain)
        pkg.edges[module].discard("")
        pkg.edges[module].discard(module)
        for dotted in names:
            if not (dotted == name or dotted.startswith(name + ".")):
                continue
            if not any(_is_private(p) for p in dotted.split(".")):
                continue
            home = _home(dotted, pkg.files)
            if module in DEPRECATED_ALIASES or here == home:
                continue
            pkg.private_uses.add((module, dotted))
    return pkg


def _nearest_module(dotted: str, modules: dict[str, Path]) -> str:
    """The longest prefix of ``dotted`` that is a module of the package ('' if none)."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return ""


def _attribute_chain(node: ast.Attribute, package: str) -> str | None:
    """``eqv2.a._b`` for an attribute chain rooted at the bare name of the package."""
    parts = [node.attr]
    value = node.value
    while isinstance(value, ast.Attribute):
        parts.append(value.attr)
        value = value.value
    if isinstance(value, ast.Name) and value.id == package:
        return ".".join([package, *reversed(parts)])
    return None


def cycles(
    edges: dict[str, set[str]], ignored: Set[tuple[str, str]] = frozenset()
) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as one cycle
    through its modules, sorted; ``ignored`` edges are left out."""
    graph = {
        a: sorted(b for b in bs if (a, b) not in ignored and b in edges) for a, bs in edges.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth is bounded by the module count (~200)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
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
            if len(component) > 1:
                components.append(_one_cycle(sorted(component), graph))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(components)


def _one_cycle(component: list[str], graph: dict[str, list[str]]) -> list[str]:
    """A path ``start → … → start`` inside a strongly connected component (breadth first)."""
    members = set(component)
    start = component[0]
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in graph[v]:
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if w in members and w not in parents:
                    parents[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{component} is not strongly connected")


def long_files(root: Path, name: str, limit: int = MAX_LINES) -> dict[str, int]:
    """``{path relative to root: lines}`` for the package's files over ``limit`` lines."""
    out = {}
    for path in sorted((root / name).rglob("*.py")):
        n = len(path.read_text().splitlines())
        if n > limit:
            out[path.relative_to(root).as_posix()] = n
    return out


# -- the package ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eqv2_package() -> Package:
    return read_package(SRC, PACKAGE)


def test_no_import_cycles(eqv2_package: Package) -> None:
    pkg = eqv2_package
    found = cycles(pkg.edges, set(CYCLE_EDGES))
    assert not found, "import cycles (break them; see DESIGN.md §2):\n" + "\n".join(
        " → ".join(c) for c in found
    )
    stale = [e for e in CYCLE_EDGES if e[1] not in pkg.edges.get(e[0], set())]
    assert not stale, f"CYCLE_EDGES entries no longer in the code (remove them): {stale}"


def test_no_private_names_across_packages(eqv2_package: Package) -> None:
    pkg = eqv2_package
    found = sorted(pkg.private_uses - set(PRIVATE_USES))
    assert not found, (
        "private names used outside their package (make them public, or move the code):\n"
        + "\n".join(f"{m} uses {n}" for m, n in found)
    )
    stale = sorted(set(PRIVATE_USES) - pkg.private_uses)
    assert not stale, f"PRIVATE_USES entries no longer in the code (remove them): {stale}"


def test_no_source_file_over_400_lines() -> None:
    found = long_files(SRC, PACKAGE)
    over = {p: n for p, n in found.items() if p not in LONG_FILES}
    assert not over, f"files over {MAX_LINES} lines (split them by job): {over}"
    stale = sorted(set(LONG_FILES) - set(found))
    assert not stale, f"LONG_FILES entries now within {MAX_LINES} lines (remove them): {stale}"


def test_deprecated_aliases_exist(eqv2_package: Package) -> None:
    assert set(DEPRECATED_ALIASES) <= set(eqv2_package.files)


# -- the checker itself, on a synthetic package ---------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_finds_cycles_privates_and_long_files(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import f\n",
            "pkg/a.py": "from pkg import b\ndef f():\n    return b\n",
            # a function-level import closes the cycle a → b → a
            "pkg/b.py": "def g():\n    from pkg.a import f\n    return f\n",
            # TYPE_CHECKING imports do not count: no c ↔ a cycle
            "pkg/c.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.d import x\n"
            ),
            "pkg/d.py": "import pkg.c\nx = 1\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/_hidden.py": "y = 2\n",
            "pkg/sub/mod.py": "_secret = 3\n",
            # inside pkg.sub: may share its privates
            "pkg/sub/friend.py": "from pkg.sub._hidden import y\nfrom pkg.sub.mod import _secret\n",
            # outside pkg.sub: may not
            "pkg/e.py": (
                "from pkg.sub.mod import _secret\nimport pkg.sub._hidden\n"
                "from pkg.sub import mod\nz = pkg.sub.mod._secret\nv = pkg.__name__\n"
            ),
            "pkg/long.py": "x = 1\n" * (MAX_LINES + 1),
            "pkg/short.py": "x = 1\n" * MAX_LINES,
        },
    )
    pkg = read_package(tmp_path, "pkg")
    assert pkg.edges["pkg.a"] == {"pkg.b"} and pkg.edges["pkg.b"] == {"pkg.a"}
    assert pkg.edges["pkg.c"] == set() and pkg.edges["pkg.d"] == {"pkg.c"}
    assert pkg.edges["pkg.e"] == {"pkg.sub.mod", "pkg.sub._hidden"}
    assert cycles(pkg.edges) == [["pkg.a", "pkg.b", "pkg.a"]]
    assert cycles(pkg.edges, {("pkg.b", "pkg.a")}) == []
    assert pkg.private_uses == {
        ("pkg.e", "pkg.sub.mod._secret"),
        ("pkg.e", "pkg.sub._hidden"),
    }
    assert long_files(tmp_path, "pkg") == {"pkg/long.py": MAX_LINES + 1}


def test_checker_resolves_relative_imports(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/x/__init__.py": "from . import m\n",
            "pkg/x/m.py": "from ..y import _p\nfrom .n import q\n",
            "pkg/x/n.py": "from .m import *\nq = 1\n",
            "pkg/y.py": "_p = 1\n",
        },
    )
    pkg = read_package(tmp_path, "pkg")
    assert pkg.edges["pkg.x"] == {"pkg.x.m"}
    assert pkg.edges["pkg.x.m"] == {"pkg.y", "pkg.x.n"}
    assert cycles(pkg.edges) == [["pkg.x.m", "pkg.x.n", "pkg.x.m"]]
    assert pkg.private_uses == {("pkg.x.m", "pkg.y._p")}
