"""The shape of the whole package, read from the source with ast.

- No import circle anywhere in mailsrv (a function-level import counts: a
  circle dodged inside a function is still a circle).
- Layers run one way: the store imports no protocol and no application
  module; the protocols do not import each other.
- A module over 600 lines says in its docstring why it is one piece.

tests/imap/test_import_graph.py also imports every IMAP module first in a
fresh interpreter; this file covers the rest cheaply.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

_SPEC = importlib.util.find_spec("mailsrv")  # found, not imported
assert _SPEC is not None and _SPEC.submodule_search_locations
ROOT = Path(list(_SPEC.submodule_search_locations)[0])
MAX_LINES = 600
PROTOCOLS = ("imap", "pop3", "lmtp")
APPLICATION = ("tap", "cli", "demo", "admin", "embedded", "workers")


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module an import of ``name`` loads (a name inside a module
    resolves to that module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path) -> set[str]:
    deps: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            deps.update(filter(None, (_resolve(a.name) for a in node.names if a.name.startswith("mailsrv"))))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("mailsrv"):
            assert node.module is not None
            for a in node.names:
                full = f"{node.module}.{a.name}"
                dep = full if full in MODULES else _resolve(node.module)
                if dep:
                    deps.add(dep)
    return deps


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_circle() -> None:
    assert _cycles(GRAPH) == []


def test_cycle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_store_imports_no_protocol_or_application_module() -> None:
    bad = {m: sorted(d for d in deps if _area(d) in PROTOCOLS + APPLICATION)
           for m, deps in GRAPH.items() if _area(m) == "store"}
    assert {m: d for m, d in bad.items() if d} == {}


def test_protocols_do_not_import_each_other() -> None:
    bad = {m: sorted(d for d in deps if _area(d) in PROTOCOLS and _area(d) != _area(m))
           for m, deps in GRAPH.items() if _area(m) in PROTOCOLS}
    assert {m: d for m, d in bad.items() if d} == {}


def test_long_modules_say_why_they_are_one_piece() -> None:
    unexplained = []
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_LINES:
            doc = (ast.get_docstring(ast.parse(text)) or "").lower()
            if "one piece" not in doc and "on purpose" not in doc:
                unexplained.append(name)
    assert unexplained == []
