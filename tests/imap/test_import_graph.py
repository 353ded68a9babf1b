"""The shape of mailsrv.imap: no import circle (checked on the source with
ast, and by importing every module first in a fresh interpreter), no
package import hidden inside a function to dodge one, no module over 600
lines."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

_SPEC = importlib.util.find_spec("mailsrv.imap")  # found, not imported: a circle must not stop collection
assert _SPEC is not None and _SPEC.submodule_search_locations
PKG_DIR = Path(list(_SPEC.submodule_search_locations)[0])
PKG = "mailsrv.imap"
MODULES = sorted(p.stem for p in PKG_DIR.glob("*.py") if p.stem != "__init__")
MAX_LINES = 600


def _targets(node: ast.Import | ast.ImportFrom) -> set[str]:
    """The mailsrv.imap modules an import statement loads (bare names)."""
    out = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.startswith(PKG + "."):
                out.add(alias.name.split(".")[2])
    elif node.module == PKG:
        out.update(alias.name for alias in node.names if alias.name in MODULES)
    elif node.module and node.module.startswith(PKG + "."):
        out.add(node.module.split(".")[2])
    return out


def _parse(name: str) -> ast.Module:
    path = PKG_DIR / ("__init__.py" if name == "__init__" else f"{name}.py")
    return ast.parse(path.read_text(encoding="utf-8"))


def graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (anywhere in the file)."""
    g: dict[str, set[str]] = {}
    for name in MODULES:
        deps: set[str] = set()
        for node in ast.walk(_parse(name)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps |= _targets(node)
        g[name] = deps - {name}
    return g


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_circle() -> None:
    g = graph()
    assert "server" in g["factory"] and "dispatch" in g["server"]  # the graph is really read
    assert find_cycle(g) is None, " -> ".join(find_cycle(g) or [])


def test_command_modules_never_import_the_server() -> None:
    g = graph()
    for name in MODULES:
        if name not in ("server", "factory"):
            assert "server" not in g[name] and "factory" not in g[name], name


def test_no_package_import_inside_a_function() -> None:
    for name in [*MODULES, "__init__"]:
        for node in ast.walk(_parse(name)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        assert not _targets(inner), f"{name}.{node.name} imports {_targets(inner)} late"


IMPORT_FIRST = """
import importlib, importlib.util, sys, types
name = sys.argv[1]
if name != "__init__":
    # a bare package object: the module under test is the first one loaded,
    # not whatever mailsrv/imap/__init__.py happens to import first
    spec = importlib.util.find_spec("mailsrv.imap")
    pkg = types.ModuleType("mailsrv.imap")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["mailsrv.imap"] = pkg
    importlib.import_module("mailsrv.imap." + name)
else:
    importlib.import_module("mailsrv.imap")
"""


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    procs = {name: subprocess.Popen([sys.executable, "-c", IMPORT_FIRST, name],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for name in [*MODULES, "__init__"]}
    failed = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            failed[name] = out.decode(errors="replace")[-2000:]
    assert not failed, failed


def test_modules_stay_small() -> None:
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in PKG_DIR.glob("*.py")}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}
