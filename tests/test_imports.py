"""The package's modules import each other without a cycle.

A cycle makes the import order matter (whichever module is imported first
sees the other half-initialised) and hides which module owns what.  Every
import statement counts, also one inside a function: a deferred import only
hides a cycle from the interpreter, not from the reader.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: Package name -> its directory (icatdump.backends lives in backends/, see setup.cfg).
PACKAGES = {"icatdump": ROOT / "icatdump", "icatdump.backends": ROOT / "backends"}


def modules() -> dict[str, pathlib.Path]:
    """Every module of the packages by dotted name (a package by its __init__)."""
    found = {}
    for package, directory in PACKAGES.items():
        for path in sorted(directory.rglob("*.py")):
            parts = list(path.relative_to(directory).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package] + parts)] = path
    return found


def imported(name: str, path: pathlib.Path, known) -> set[str]:
    """The package's modules that module ``name`` imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            bases = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            bases = [(base, alias.name) for alias in node.names]
        else:
            continue
        for base, member in bases:
            # "from pkg import mod" imports the module pkg.mod; "from mod
            # import name" the module mod.
            if member is not None and "%s.%s" % (base, member) in known:
                targets.add("%s.%s" % (base, member))
            elif base in known:
                targets.add(base)
    targets.discard(name)
    return targets


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}      # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for succ in sorted(graph.get(node, ())):
            if state.get(succ) == 1:
                return path[path.index(succ):] + [succ]
            if succ not in state:
                cycle = visit(succ)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_graph_sees_the_package():
    """The walk finds the modules and their imports (so an empty graph
    cannot pass the cycle test by accident)."""
    graph = import_graph()
    assert {"icatdump.dumpfile", "icatdump.streams", "icatdump.backends.xml",
            "icatdump.store.catalogue", "icatdump.cli.common"} <= set(graph)
    assert "icatdump.dumpfile" in graph["icatdump.backends.xml"]
    assert "icatdump.store.catalogue" in graph["icatdump.store"]
    # A deferred import counts too.
    assert "icatdump.check" in graph["icatdump.cli.data"]


def test_find_cycle_names_it():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
