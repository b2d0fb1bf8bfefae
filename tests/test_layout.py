"""Package layout: no import cycles between brachymc's packages (lazy imports inside functions
count too), so each package can be read, tested and replaced on its own."""

from __future__ import annotations

import ast
from pathlib import Path

import brachymc

ROOT = Path(brachymc.__file__).resolve().parent


def _unit(module: str) -> str | None:
    """The layout unit of a dotted module name: its package, or the top-level module."""
    parts = module.split(".")
    if parts[0] != "brachymc":
        return None
    if len(parts) == 1:
        return "brachymc"
    return parts[1]


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        mod = ".".join(rel.parts)
        if mod.endswith(".__init__"):
            mod = mod[: -len(".__init__")]
        src = _unit(mod if "." in mod else "brachymc")
        if src == "brachymc" and path.name != "__init__.py":
            src = path.stem
        edges = graph.setdefault(src, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + ([f"{node.module}.{a.name}" for a in node.names] if node.module == "brachymc"
                                         else [])
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for n in names:
                u = _unit(n)
                if u is None or u == "brachymc":
                    continue
                if n.count(".") == 1 and (ROOT / f"{u}.py").exists() or (ROOT / u).is_dir():
                    if u != src:
                        edges.add(u)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_no_import_cycles_between_packages():
    graph = import_graph()
    assert {"mc", "io", "geometry", "sources", "pipeline", "validation", "tg43", "report"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between packages: " + " -> ".join(cycle)


def test_physics_packages_do_not_reach_up():
    """mc/, geometry/ and sources/ never import the layers that use them."""
    graph = import_graph()
    upper = {"io", "pipeline", "report", "validation", "examples", "cli"}
    for pkg in ("mc", "geometry", "sources", "tg43"):
        assert not (graph[pkg] & upper), f"{pkg} imports {sorted(graph[pkg] & upper)}"
