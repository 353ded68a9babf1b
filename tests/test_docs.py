"""docs/architecture.md stays a true map: every file path, ``*.py`` name and
``mailsrv.x.y`` module (and the class, function or constant after it) that
the document names in backticks exists in the checkout, and every other
code name in backticks (``CommandPump``, ``Folder.deliver_file``,
``SYSTEM_FLAGS``: CamelCase, dotted or with an underscore) still occurs in
the Python source (mailsrv, tests, bench, twisted/plugins) as code or as a
word of a string (an SQL table, a log line).

Checked on the source with ``ast``, like tests/test_layers.py: nothing is
imported, so a name the document keeps after a rename fails here with the
name, not with an import error somewhere else.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
TOP_DIRS = ("mailsrv", "tests", "bench", "etc", "twisted", "docs", ".ci")
SOURCE_DIRS = ("mailsrv", "tests", "bench", "twisted")

_SPAN = re.compile(r"`([^`\n]+)`")
_PATH = re.compile(r"(?<![\w./-])((?:%s)/[\w./-]*)" % "|".join(re.escape(d) for d in TOP_DIRS))
_DOTTED = re.compile(r"(?<![\w./-])(mailsrv(?:\.\w+)+)")
_BARE_PY = re.compile(r"^[\w-]+\.py$")
_CODE = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:\(.*\))?$")  # Name, a.b, f(x)
_OTHER_FILE = re.compile(r"\.(?:toml|md|cfg|ini|json|sqlite|lock|sock|txt|snippet)$")
_WORD = re.compile(r"[A-Za-z_]\w*")


def spans(text: str) -> list[str]:
    """The backticked spans of a Markdown text (inline code)."""
    return _SPAN.findall(text)


@cache
def _source_words() -> frozenset[str]:
    """Every identifier of the source (names, attributes, definitions,
    arguments, imported modules) and every word of its string constants."""
    words: set[str] = set()
    for d in SOURCE_DIRS:
        for p in (ROOT / d).rglob("*.py"):
            if p.resolve() == Path(__file__).resolve():
                continue  # its own examples of missing names must stay missing
            for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
                for field in ("id", "attr", "name", "arg", "asname", "module"):
                    value = getattr(node, field, None)
                    if isinstance(value, str):
                        words.update(value.split("."))
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    words.update(_WORD.findall(node.value))
    return frozenset(words)


def _code_name(span: str) -> str | None:
    """The dotted name a span is, if it looks like code (CamelCase, dotted
    or with an underscore), else None (plain words, commands, options)."""
    m = _CODE.match(span)
    if m is None or _OTHER_FILE.search(span):
        return None
    name = m.group(1)
    if "." in name or "_" in name or re.search(r"[A-Z][a-z]", name):
        return name
    return None


@cache
def _source_basenames() -> frozenset[str]:
    return frozenset(p.name for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py"))


def _module_file(dotted: str) -> Path | None:
    """The file of module ``dotted`` (a package's ``__init__.py``), or None."""
    base = ROOT.joinpath(*dotted.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _defined(body: list[ast.stmt]) -> dict[str, ast.AST]:
    """Names bound at this level of a module or class body."""
    names: dict[str, ast.AST] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        names[n.id] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                names[(a.asname or a.name).split(".")[0]] = node
        elif isinstance(node, (ast.If, ast.Try)):
            names.update(_defined(node.body))
    return names


@cache
def _module_names(path: Path) -> dict[str, ast.AST]:
    return _defined(ast.parse(path.read_text(encoding="utf-8")).body)


def dotted_problem(dotted: str) -> str | None:
    """Why ``mailsrv.a.b.Name.attr`` does not exist, or None if it does:
    the longest prefix that is a module, then each further part defined in
    the module (and, after a class, in the class body)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        path = _module_file(".".join(parts[:cut]))
        if path is not None:
            break
    else:
        return f"{dotted}: no such module"
    rest = parts[cut:]
    names = _module_names(path)
    for i, part in enumerate(rest):
        node = names.get(part)
        if node is None:
            where = ".".join(parts[:cut + i])
            return f"{dotted}: {where} defines no {part!r}"
        if not isinstance(node, ast.ClassDef):
            return None  # an attribute of a function or value: not followed
        names = _defined(node.body)
    return None


def problems(text: str) -> list[str]:
    """Every name in ``text``'s backticks that the checkout does not have."""
    found: list[str] = []
    for span in spans(text):
        for path in _PATH.findall(span):
            if not (ROOT / path.rstrip("/")).exists():
                found.append(f"{path}: no such file or directory")
        for dotted in _DOTTED.findall(span):
            why = dotted_problem(dotted)
            if why:
                found.append(why)
        if _BARE_PY.match(span):
            if span not in _source_basenames():
                found.append(f"{span}: no file of that name in {', '.join(SOURCE_DIRS)}")
        elif not (_PATH.search(span) or _DOTTED.search(span)):
            name = _code_name(span)
            missing = [w for w in name.split(".") if w not in _source_words()] if name else []
            if missing:
                found.append(f"{span}: {', '.join(missing)} not in the source")
    return found


def test_architecture_names_only_what_exists() -> None:
    assert problems(DOC.read_text(encoding="utf-8")) == []


def test_the_document_names_the_code() -> None:
    """The check has something to check: the map names many real paths
    and modules (a document that lost its backticks would pass vacuously)."""
    text = DOC.read_text(encoding="utf-8")
    named = [s for s in spans(text) if _PATH.search(s) or _DOTTED.search(s)]
    assert len(named) > 100


def test_checker_finds_what_is_missing() -> None:
    text = (
        "`mailsrv/pump.py` `mailsrv/imap/nosuch.py` `mailsrv.pump.CommandPump.next_event` "
        "`mailsrv.pump.NoSuchPump` `mailsrv.nosuchmodule` `fetch.py` `nosuch.py` `tests/` "
        "`mailsrv.imap.context.Context.nosuch` `etc/mailsrv.ini` `CommandPump.next_event()` "
        "`Folder.nosuch_method` `NoSuchClass` `QUIT` `pyproject.toml`"
    )
    assert problems(text) == [
        "mailsrv/imap/nosuch.py: no such file or directory",
        "mailsrv.pump.NoSuchPump: mailsrv.pump defines no 'NoSuchPump'",
        "mailsrv.nosuchmodule: mailsrv defines no 'nosuchmodule'",
        "nosuch.py: no file of that name in mailsrv, tests, bench, twisted",
        "mailsrv.imap.context.Context.nosuch: mailsrv.imap.context.Context defines no 'nosuch'",
        "Folder.nosuch_method: nosuch_method not in the source",
        "NoSuchClass: NoSuchClass not in the source",
    ]
