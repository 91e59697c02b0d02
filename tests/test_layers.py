"""The layer contract of docs/architecture.md, enforced.

* import-linter's layers contract (``[tool.importlinter]`` in pyproject.toml): a package
  imports only from itself or the layers below it -- shown to fail on an upward import
  injected into a copy of the tree;
* no module uses a ``_private`` name of another package (imported, or as an attribute);
* no ebee module imports an ebee module inside a function, except the front layer (the
  CLI defers its commands' imports to keep ``ebee --help`` fast);
* no module rebinds its globals after import (the old ``_bind()`` pattern).
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PKG = SRC / "ebee"
FRONT = ("ebee.cli", "ebee.pytest_plugin", "ebee.conformance", "ebee.__main__", "ebee.trace")
LINT = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(SRC).with_suffix("")
        name = ".".join(rel.parts)
        out[name[:-len(".__init__")] if name.endswith(".__init__") else name] = p
    return out


MODULES = _modules()


def _package(mod: str) -> str:
    """The top-level package a module belongs to (``ebee.maps.base`` -> ``ebee.maps``)."""
    parts = mod.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else mod


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _lint(cwd: Path, src: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(src))
    return subprocess.run([LINT, str(cwd / "pyproject.toml")], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def lint_available():
    if not Path(LINT).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")


def test_layers_contract_holds(lint_available):
    r = _lint(ROOT, SRC)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "1 kept, 0 broken" in r.stdout


def test_layers_contract_fails_on_an_upward_import(lint_available, tmp_path):
    """The contract is not vacuous: the maps package reaching up into the session layer
    (what `ebee.maps` importing `ebee.session` would be) breaks the build."""
    shutil.copytree(SRC, tmp_path / "src", ignore=shutil.ignore_patterns("*.egg-info",
                                                                       "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    victim = tmp_path / "src" / "ebee" / "maps" / "cpus.py"
    victim.write_text(victim.read_text() + "\nfrom ..session import load  # upward\n")
    r = _lint(tmp_path, tmp_path / "src")
    assert r.returncode != 0
    assert "ebee.maps is not allowed to import ebee.session" in r.stdout


def _private_definitions() -> dict[str, set[str]]:
    """Private names each package defines: functions, classes, methods, attributes."""
    defined: dict[str, set[str]] = {}
    for mod, path in MODULES.items():
        names = defined.setdefault(_package(mod), set())
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(n.name)
            elif isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store):
                names.add(n.attr)
            elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                names.add(n.id)
    # _sunder_ names (ctypes' _fields_, _pack_; enum's _value_) are those libraries' API
    return {pkg: {x for x in names if x.startswith("_") and not x.startswith("__")
                  and not (x.endswith("_") and not x.endswith("__"))}
            for pkg, names in defined.items()}


def test_no_private_name_crosses_a_package():
    defined = _private_definitions()
    bad = []
    for mod, path in MODULES.items():
        pkg = _package(mod)
        own = defined.get(pkg, set())
        foreign = set().union(*(v for k, v in defined.items() if k != pkg)) - own
        tree = ast.parse(path.read_text())
        # names bound to modules outside ebee (os, sys, ctypes...): their _names are theirs
        outside = {a.asname or a.name.split(".")[0] for n in ast.walk(tree)
                   if isinstance(n, ast.Import) for a in n.names
                   if not a.name.startswith("ebee")}
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom):
                target = _resolve(mod, path.name == "__init__.py", n)
                if target.startswith("ebee") and _package(target) != pkg:
                    bad += [f"{mod}:{n.lineno} imports {target}.{a.name}" for a in n.names
                            if a.name.startswith("_") and not a.name.startswith("__")]
            elif isinstance(n, ast.Attribute) and n.attr in foreign:
                if isinstance(n.value, ast.Name) and (n.value.id in ("self", "cls")
                                                      or n.value.id in outside):
                    continue
                bad.append(f"{mod}:{n.lineno} uses {ast.unparse(n)} (private to another "
                           f"package)")
    assert not bad, "\n".join(bad)


def test_no_function_local_imports_of_ebee_modules():
    bad = []
    for mod, path in MODULES.items():
        if mod.startswith(FRONT):
            continue
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for n in ast.walk(fn):
                if isinstance(n, ast.ImportFrom) and (n.level or (n.module or "").startswith("ebee")):
                    bad.append(f"{mod}:{n.lineno}: {ast.unparse(n)}")
                elif isinstance(n, ast.Import) and any(a.name.startswith("ebee") for a in n.names):
                    bad.append(f"{mod}:{n.lineno}: {ast.unparse(n)}")
    assert not bad, "\n".join(bad)


def test_no_globals_rebound_after_import():
    """No function assigns module globals that other modules import (``global`` statements
    are allowed only for a module's own private state, never for imported names)."""
    bad = []
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text())
        imported = {a.asname or a.name.split(".")[0] for n in tree.body
                    if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if fn.name == "_bind":
                    bad.append(f"{mod}:{fn.lineno}: def _bind")
                for n in ast.walk(fn):
                    if isinstance(n, ast.Global):
                        clash = imported & set(n.names)
                        if clash:
                            bad.append(f"{mod}:{n.lineno}: rebinds imported {sorted(clash)}")
    assert not bad, "\n".join(bad)
