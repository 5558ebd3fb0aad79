"""The package's import graph, read from the source (AST): no cycles, backends kept apart.

Every ``import`` counts, including those inside functions (a lazy import hides a cycle; it
does not remove it). Imports under ``if TYPE_CHECKING:`` never run, so they make no cycle,
but they still may not cross from one store backend to another or into a backend from
outside ``store/_open.py``: a backend is reached only through the one module that decides
which backend a path or URL opens.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "airq_nb"

#: The store's backends: a module of one never imports the other.
BACKENDS = {
    "sqlite": ("airq_nb.store.sqlite",),
    "postgres": ("airq_nb.store.postgres",),
}
#: The one module outside the backends that imports them: it opens a path or a URL.
OPENER = "airq_nb.store._open"
#: Private store modules code outside ``store/`` may not import (the store's public face
#: is ``airq_nb.store`` and its documented table modules).
STORE_INTERNALS = (
    "airq_nb.store._json",
    "airq_nb.store._queue",
    "airq_nb.store._batch",
    "airq_nb.store._dialect",
    "airq_nb.store._open",
    "airq_nb.store.kv",
    "airq_nb.store.queue",
    "airq_nb.store.sqlite",
    "airq_nb.store.postgres",
)


@dataclass(frozen=True)
class Edge:
    """``importer`` imports ``imported`` (at ``line``); ``typing_only`` under TYPE_CHECKING."""

    importer: str
    imported: str
    line: int
    typing_only: bool


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _ancestors(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def _targets(importer: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The airq_nb modules an import statement runs (the packages on the way included)."""
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = importer.split(".")
            if not _is_package(importer):
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            # ``from pkg import sub`` runs the submodule; ``from pkg import name`` needs
            # pkg's ``__init__`` to have run to its end (the upward import that closes cycles).
            names.append(sub if sub in MODULES else source)
    targets = []
    for name in names:
        if not name.startswith("airq_nb"):
            continue
        while name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        # Importing a.b.c runs a and a.b first; those a module already sits inside have
        # run (or are running) before it, so they are no edge of its own.
        for package in sorted(_ancestors(name) - _ancestors(importer) - {importer}):
            targets.append(package)
        targets.append(name)
    return [t for t in targets if t != importer]


def _edges() -> list[Edge]:
    edges = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))

        def visit(node: ast.AST, typing_only: bool, name: str = name) -> None:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                for child in node.body:
                    visit(child, True)
                for child in node.orelse:
                    visit(child, typing_only)
                return
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(name, node):
                    edges.append(Edge(name, target, node.lineno, typing_only))
            for child in ast.iter_child_nodes(node):
                visit(child, typing_only)

        visit(tree, False)
    return edges


EDGES = _edges()


def _cycles(edges: list[Edge]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for edge in edges:
        if not edge.typing_only:
            graph.setdefault(edge.importer, set()).add(edge.imported)
            graph.setdefault(edge.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def _backend_of(name: str) -> str | None:
    for backend, prefixes in BACKENDS.items():
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return backend
    return None


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _where(edges: list[Edge]) -> list[str]:
    return sorted({f"{e.importer}:{e.line} -> {e.imported}" for e in edges})


def test_the_walk_sees_imports_inside_functions_and_upward_ones() -> None:
    # The walk itself: a lazy import and a relative one are edges (else the rules are empty).
    assert len(MODULES) > 50
    assert any(e.importer == "airq_nb" and e.imported == "airq_nb.store" for e in EDGES)
    assert any(
        e.imported == "airq_nb.store.postgres" and not e.typing_only
        for e in EDGES
        if e.importer == OPENER
    )
    assert _cycles([Edge("a", "b", 1, False), Edge("b", "a", 2, True)]) == []
    assert _cycles([Edge("a", "b", 1, False), Edge("b", "a", 2, False)]) == [["a", "b"]]


def test_there_is_no_import_cycle_inside_airq_nb() -> None:
    cycles = _cycles(EDGES)
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_backends_never_import_each_other() -> None:
    crossing = [
        e
        for e in EDGES
        if _backend_of(e.importer) is not None
        and _backend_of(e.imported) is not None
        and _backend_of(e.importer) != _backend_of(e.imported)
    ]
    assert _where(crossing) == []


def test_only_the_opener_imports_a_backend() -> None:
    reaching = [
        e
        for e in EDGES
        if _backend_of(e.imported) is not None
        and _backend_of(e.importer) is None
        and e.importer != OPENER
    ]
    assert _where(reaching) == []


def test_code_outside_the_store_uses_its_public_names_only() -> None:
    private = [
        e
        for e in EDGES
        if not _within(e.importer, "airq_nb.store")
        and any(_within(e.imported, internal) for internal in STORE_INTERNALS)
    ]
    assert _where(private) == []


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_each_backend_exists(backend: str) -> None:
    # The rules above are vacuous for a backend whose modules moved elsewhere.
    assert any(_backend_of(name) == backend for name in MODULES)
