"""Twisted server endpoint strings, read well enough to explain a bad one
and to try a port before the server binds it.

Twisted is the judge of what parses (``serverFromString``); this module
only turns its exceptions into sentences (``invalid literal for int() with
base 10: 'notaport'`` becomes ``port 'notaport' is not a number``) and
knows, per endpoint type, how to try the address: a test bind for
``tcp``/``tcp6``/``ssl``, the folder of a ``unix`` socket, the inner
endpoint of a wrapper (``haproxy:tcp:993``).  An endpoint type it does not
know is parsed and not probed.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import stat
from collections.abc import Callable
from typing import Any

KNOWN_TYPES = ("tcp", "tcp6", "ssl", "unix", "systemd", "haproxy")
WRAPPERS = ("haproxy",)  # types whose arguments are another endpoint string


def split(spec: str) -> tuple[str, list[str], dict[str, str]]:
    """(type, positional args, key=value options) of an endpoint string;
    ``\\:`` is a literal colon, as in Twisted."""
    parts: list[str] = []
    cur: list[str] = []
    escaped = False
    for ch in spec:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    kind, rest = parts[0], parts[1:]
    args = [p for p in rest if "=" not in p]
    opts = dict(p.split("=", 1) for p in rest if "=" in p)
    return kind, args, opts


def inner(spec: str) -> str | None:
    """The wrapped endpoint of a wrapper type (``haproxy:tcp:993`` -> ``tcp:993``)."""
    head, _, rest = spec.partition(":")
    return rest if head in WRAPPERS and rest else None


def explain(spec: str, exc: BaseException) -> str:
    """A sentence for why Twisted refused ``spec``."""
    kind, args, opts = split(spec)
    text = str(exc)
    if "Unknown endpoint type" in text:
        if spec.strip().isdigit():
            return f"a bare port number is not an endpoint: write tcp:{spec.strip()}"
        return f"unknown endpoint type {kind!r} (use tcp:PORT, tcp6:PORT, ssl:PORT:privateKey=FILE or unix:PATH)"
    m = re.search(r"unexpected keyword argument '([^']+)'", text)
    if m:
        return f"unknown option {m.group(1)!r} for a {kind}: endpoint"
    m = re.search(r"invalid literal for int\(\) with base 10: '([^']*)'", text)
    if m:
        value = m.group(1)
        if kind in ("tcp", "tcp6", "ssl") and (not args or args[0] == value):
            return f"port {value!r} is not a number" if value else "no port number"
        return f"{value!r} is not a number"
    if isinstance(exc, OSError) and kind == "ssl":
        what = exc.filename or "server.pem"
        if "privateKey" not in opts:
            return (f"ssl: needs privateKey=FILE (Twisted's default {os.path.basename(str(what))} is not there); "
                    "or use tcp: on an imaps/pop3s listener with the [tls] certificate")
        return f"cannot read {what}: {exc.strerror}"
    return text or type(exc).__name__


def probe(spec: str, held: list[socket.socket] | None = None) -> str | None:
    """Try what binding ``spec`` needs; a sentence saying what is wrong, or
    None (fine, or nothing known to try).  A test socket is kept open in
    ``held`` (the caller closes them), so two listeners that would take
    the same port (``tcp:143`` and ``tcp:143:interface=127.0.0.1``) clash
    here already, not half-way through binding."""
    wrapped = inner(spec)
    if wrapped is not None:
        return probe(wrapped, held)
    kind, args, opts = split(spec)
    fn = PROBES.get(kind)
    return fn(args, opts, held if held is not None else []) if fn is not None else None


def _probe_tcp(args: list[str], opts: dict[str, str], held: list[socket.socket], default: str = "") -> str | None:
    port_text = args[0] if args else opts.get("port", "")
    try:
        port = int(port_text)
    except ValueError:
        return None  # the parse already said so
    if port == 0:
        return None
    if not 0 < port < 65536:
        return f"port {port} is out of range (1-65535)"
    host = opts.get("interface", default)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    where = f"[{host}]:{port}" if ":" in host else f"{host or '0.0.0.0'}:{port}"
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(1)  # as the server will: a listening socket is what conflicts
    except OSError as e:
        s.close()
        return _bind_problem(e, where, port, host)
    held.append(s)
    return None


def _bind_problem(e: OSError, where: str, port: int, host: str) -> str:
    if e.errno == errno.EADDRINUSE:
        return f"{where} is already in use (another server? see: ss -ltnp 'sport = :{port}')"
    if e.errno == errno.EACCES:
        return (f"port {port} needs privileges: start as root with twistd --uid/--gid "
                "(ports are bound before the switch) or grant CAP_NET_BIND_SERVICE")
    if e.errno == errno.EADDRNOTAVAIL:
        return f"address {host} is not on this machine"
    if isinstance(e, socket.gaierror):
        return f"interface {host!r} is not an address of this machine"
    return f"cannot bind {where}: {e.strerror or e}"


def _probe_unix(args: list[str], opts: dict[str, str], held: list[socket.socket]) -> str | None:
    path = args[0] if args else opts.get("address", "")
    if not path:
        return "unix: needs a socket path"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"folder {folder} for socket {path} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot create socket {path}: folder {folder} is not writable"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        return f"{path} exists and is not a socket"
    if _socket_alive(path):
        return f"socket {path} is in use by a running process"
    if opts.get("lockfile", "0") not in ("0", ""):
        return None  # stale: Twisted's lockfile handling replaces it
    return f"socket {path} is left from an earlier run: remove it, or add :lockfile=1 to replace it on start"


def _socket_alive(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(path)
    except OSError:
        return False
    finally:
        s.close()
    return True


PROBES: dict[str, Callable[[list[str], dict[str, str], list[socket.socket]], str | None]] = {
    "tcp": _probe_tcp,
    "ssl": _probe_tcp,
    "tcp6": lambda args, opts, held: _probe_tcp(args, opts, held, "::"),
    "unix": _probe_unix,
}


def parse(reactor: Any, spec: str) -> str | None:
    """None if Twisted accepts ``spec``, else why not (a sentence)."""
    from twisted.internet import endpoints

    try:
        endpoints.serverFromString(reactor, spec)
    except Exception as e:  # Twisted raises ValueError, TypeError, KeyError, OSError...
        return explain(spec, e)
    return None
