"""The verifier's modules import one another in one direction only.

Read from the source (not by importing it), the graph of imports between the
modules of ``ebee.verifier`` must be acyclic, and no function may import an
ebee module: mutual recursion between handlers goes through a module both
import (as Linux uses forward declarations), never through a late import or
a name bound after import.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "src" / "ebee" / "verifier"

# Imports still made inside functions, each waiting for a move another change
# makes; the test fails once one is gone, so the entry is dropped with it.
PENDING: dict[tuple[str, str], str] = {}


def _modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(PKG.glob("*.py"))}


def _target(node: ast.ImportFrom | ast.Import) -> list[str]:
    """What an import names, as ``.x`` (a sibling module) or a dotted module path."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    prefix = "." * node.level + (node.module or "")
    if node.level == 1 and node.module is None:          # from . import x, y
        return ["." + a.name for a in node.names]
    return [prefix]


def _is_ebee(name: str) -> bool:
    return name.startswith(".") or name == "ebee" or name.startswith("ebee.")


def _sibling(name: str, modules) -> str | None:
    if name.startswith(".") and not name.startswith(".."):
        mod = name[1:].split(".")[0]
        return mod if mod in modules else None
    if name.startswith("ebee.verifier."):
        mod = name.split(".")[2]
        return mod if mod in modules else None
    return None


def _graph(modules) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for m, tree in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for name in _target(node):
                    dep = _sibling(name, modules)
                    if dep is not None and dep != m:
                        graph[m].add(dep)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}          # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def _local_imports(modules) -> set[tuple[str, str]]:
    out = set()
    for m, tree in modules.items():
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        out.update((m, name) for name in _target(node) if _is_ebee(name))
    return out


def test_the_verifier_import_graph_is_acyclic():
    modules = _modules()
    graph = _graph(modules)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    # the package's own __init__ only re-exports the API
    assert graph["__init__"] == {"api"}


def test_no_verifier_function_imports_an_ebee_module():
    local = _local_imports(_modules())
    assert local - set(PENDING) == set()
    assert set(PENDING) <= local, "a pending move landed: drop its PENDING entry"


def test_no_module_binds_names_after_import():
    for m, tree in _modules().items():
        for node in ast.walk(tree):
            assert not isinstance(node, ast.Global), f"{m}: global {', '.join(node.names)}"
            if isinstance(node, ast.FunctionDef):
                assert node.name != "_bind", f"{m}._bind"


@pytest.mark.parametrize("src, cycle", [
    ("a: from .b import x\nb: from .c import y\nc: from . import a", ["a", "b", "c", "a"]),
    ("a: from .b import x\nb: import ebee.verifier.a", ["a", "b", "a"]),
    ("a: from .b import x\nb: from .c import y\nc: x = 1", None),
])
def test_the_cycle_check_sees_cycles(src, cycle):
    modules = {}
    for line in src.splitlines():
        name, code = line.split(": ", 1)
        modules[name] = ast.parse(code)
    assert _cycle(_graph(modules)) == cycle


def test_the_local_import_check_sees_late_imports():
    modules = {"a": ast.parse("def f():\n    from .b import x\n    import os\n"),
               "b": ast.parse("class C:\n    def g(self):\n        from ..btf import BTF\n")}
    assert _local_imports(modules) == {("a", ".b"), ("b", "..btf")}
