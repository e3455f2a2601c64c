"""The library's modules import each other without a circle: data flows one way (loop → methods → maths)."""
from __future__ import annotations

import ast
from pathlib import Path

import lowrank

ROOT = Path(lowrank.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ["lowrank", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``source`` (the text of ``module``) imports: every ``import`` statement in
    it (module level, inside functions, under ``TYPE_CHECKING``). ``from pkg import name`` names the submodule
    ``pkg.name`` when there is one, else ``pkg``; importing a submodule is not counted as importing its parent
    package (a package's ``__init__`` importing its own submodules is the ordinary layout, not a circle)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    edges: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            edges.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:
                sub = f"{target}.{a.name}"
                edges.add(sub if sub in known else target)
    return {e for e in edges if e in known and e != module}


def import_graph() -> dict[str, set[str]]:
    """Module → the ``lowrank`` modules it imports (:func:`imports_of`), for every module of the library."""
    mods = _modules()
    return {mod: imports_of(path.read_text(encoding="utf-8"), mod, path.name == "__init__.py", set(mods))
            for mod, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first repeated at the end), or ``None`` (depth-first search)."""
    state: dict[str, int] = {}   # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_imports_of_counts_every_kind_of_import_statement():
    """Module level, relative and absolute, inside a function, under ``TYPE_CHECKING``; a submodule named in
    ``from pkg import sub``; nothing outside the known modules."""
    source = """
from typing import TYPE_CHECKING
import torch
from .a import x
from . import sub
import lowrank.b
if TYPE_CHECKING:
    from ..c import Y
def f():
    from .d import z
"""
    known = {"lowrank", "lowrank.pkg", "lowrank.pkg.a", "lowrank.pkg.sub", "lowrank.b", "lowrank.c", "lowrank.pkg.d"}
    got = imports_of(source, "lowrank.pkg.m", False, known)
    assert got == {"lowrank.pkg.a", "lowrank.pkg.sub", "lowrank.b", "lowrank.c", "lowrank.pkg.d"}
    # the same text as a package's __init__: relative imports resolve inside the package itself
    assert imports_of("from .a import x", "lowrank.pkg", True, known) == {"lowrank.pkg.a"}


def test_the_graph_covers_the_library():
    g = import_graph()
    assert set(g) == set(_modules()) and "lowrank.methods.iht" in g
    assert "lowrank.models" in g["lowrank.data.small"]              # a function-level import of the real code


def test_the_library_import_graph_is_acyclic():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " → ".join(cycle)
