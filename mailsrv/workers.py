"""``twistd mailsrv --workers N``: one parent, N worker processes sharing
the listening sockets.

The parent binds every listener (in ``privilegedStartService``, so as root
if twistd was started as root, before ``--uid/--gid`` drop privileges),
never accepts on them, and starts N workers (in ``startService``, so they
run with the dropped privileges).  Each worker gets the listening sockets
as inherited file descriptors and adopts them
(``reactor.adoptStreamPort``): the kernel hands each new connection to one
of the processes waiting on the socket.  The parent restarts a worker that
dies (backing off if it keeps dying), relays each worker's log lines into
its own log, and on SIGTERM (service stop) stops them all, killing those
that do not stop in time.  A worker whose parent dies notices (its stdin,
a pipe from the parent, closes) and stops too.

Only a store that is safe across processes can run this way: the
PostgreSQL backend.  The Maildir backend keeps its POP3 lock and its live
folders in one process's memory, so :func:`check_backend` refuses it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.application import service
from twisted.internet import defer, protocol
from twisted.logger import ILogObserver, Logger, LogLevel
from zope.interface import provider

log = Logger(namespace="mailsrv.workers")

SPEC_ENV = "MAILSRV_WORKER_SPEC"
STOP_GRACE = 10.0  # seconds a worker has to stop before it is killed
RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_AFTER = 30.0  # a worker that ran this long resets the back-off


class WorkerConfigError(Exception):
    """A configuration that cannot run with workers (one line)."""


def check_backend(backend: str) -> None:
    if backend != "postgresql":
        raise WorkerConfigError(
            "--workers needs [store] backend = postgresql: the Maildir backend keeps the POP3 lock "
            "and the live folders in one process's memory, so several processes would not see each other")


# --- listener descriptions -------------------------------------------------------------------

@dataclass
class Listener:
    """One listening socket: what it is for and how the worker wraps it."""

    kind: str  # pop3, pop3s, imap, imaps, lmtp
    description: str  # the endpoint string from the configuration
    family: int  # socket.AF_INET, AF_INET6 or AF_UNIX
    haproxy: bool  # PROXY protocol header expected first
    fd: int = -1


def _split(desc: str) -> list[str]:
    """Endpoint string fields: ':' separates, backslash escapes (Twisted's rules)."""
    out, cur, esc = [], [], False
    for ch in desc:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == ":":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def parse_listener(kind: str, desc: str) -> tuple[Listener, dict[str, str], list[str]]:
    """The listener, its keyword options and positional arguments; only
    the endpoint types a parent can bind for its workers (tcp, tcp6,
    unix, each optionally behind ``haproxy:``)."""
    fields = _split(desc)
    haproxy = fields[0] == "haproxy"
    if haproxy:
        fields = fields[1:]
    if not fields or fields[0] not in ("tcp", "tcp6", "unix"):
        raise WorkerConfigError(f"{kind} listener {desc!r}: with --workers, listeners must be tcp:, tcp6: or "
                                "unix: endpoints (optionally haproxy:...); TLS is added by mailsrv itself")
    args, opts = [], {}
    for f in fields[1:]:
        key, eq, value = f.partition("=")
        if eq:
            opts[key] = value
        else:
            args.append(f)
    family = {"tcp": socket.AF_INET, "tcp6": socket.AF_INET6, "unix": socket.AF_UNIX}[fields[0]]
    if not args:
        raise WorkerConfigError(f"{kind} listener {desc!r}: no port or path")
    return Listener(kind, desc, family, haproxy), opts, args


def bind(kind: str, desc: str) -> tuple[Listener, socket.socket]:
    """Create, bind and listen; the socket is inheritable (for spawnProcess)."""
    lst, opts, args = parse_listener(kind, desc)
    backlog = int(opts.get("backlog", 1024))  # N workers drain one queue: a deep one (the kernel caps it)
    sock = socket.socket(lst.family, socket.SOCK_STREAM)
    try:
        if lst.family == socket.AF_UNIX:
            path = args[0]
            if os.path.exists(path) and not os.path.isdir(path):
                os.unlink(path)
            sock.bind(path)
            os.chmod(path, int(opts.get("mode", "666"), 8))
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            host = opts.get("interface", "::" if lst.family == socket.AF_INET6 else "")
            sock.bind((host, int(args[0])))
        sock.listen(backlog)
    except (OSError, ValueError) as e:
        sock.close()
        raise WorkerConfigError(f"{kind} listener {desc!r}: {e}") from None
    sock.set_inheritable(True)
    sock.setblocking(False)  # the open file is shared: a worker woken for a connection another took must not block
    lst.fd = sock.fileno()
    return lst, sock


def address(sock: socket.socket) -> str:
    name = sock.getsockname()
    return name if isinstance(name, str) else f"{name[0]}:{name[1]}"


# --- the parent ---------------------------------------------------------------------------

_LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn, "error": LogLevel.error,
           "critical": LogLevel.critical}


class _WorkerProtocol(protocol.ProcessProtocol):
    """Relays a worker's output lines into the parent's log; tells the
    manager when the worker is gone."""

    def __init__(self, manager: WorkerManager, index: int) -> None:
        self.manager = manager
        self.index = index
        self._buf = {1: b"", 2: b""}
        self.ended: defer.Deferred = defer.Deferred()

    def childDataReceived(self, fd: int, data: bytes) -> None:
        buf = self._buf.get(fd, b"") + data
        *lines, self._buf[fd] = buf.split(b"\n")
        for line in lines:
            text = line.decode("utf-8", "replace").rstrip()
            if text.strip():
                level = _LEVELS.get(text.split("#", 1)[-1].split("]", 1)[0], LogLevel.info)
                log.emit(level, "worker {n}: {line}", n=self.index, line=text)

    def processEnded(self, reason: Any) -> None:
        for fd, rest in self._buf.items():
            if rest.strip():
                self.childDataReceived(fd, b"\n")
        self.manager._ended(self, reason)
        self.ended.callback(None)


class WorkerManager(service.Service):
    """The parent's service.  ``listeners``: (kind, endpoint string) pairs;
    ``spec``: the JSON-able configuration the workers build their service
    from; ``argv``: the worker command (default: this Python running
    ``mailsrv.worker``)."""

    def __init__(self, listeners: list[tuple[str, str]], count: int, spec: dict[str, Any],
                 argv: list[str] | None = None, reactor: Any = None, env: dict[str, str] | None = None) -> None:
        if count < 1:
            raise WorkerConfigError("--workers must be at least 1")
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.wanted = listeners
        self.count = count
        self.spec = spec
        self.argv = argv or [sys.executable, "-m", "mailsrv.worker"]
        self.env = env
        self.sockets: list[tuple[Listener, socket.socket]] = []
        self.procs: dict[int, Any] = {}
        self.protocols: dict[int, _WorkerProtocol] = {}
        self.started_at: dict[int, float] = {}
        self.failures: dict[int, int] = {}
        self.restarts = 0
        self._timers: dict[int, Any] = {}
        self._stopping = False

    def privilegedStartService(self) -> None:
        for kind, desc in self.wanted:
            lst, sock = bind(kind, desc)
            self.sockets.append((lst, sock))
            log.info("mailsrv {kind} listening on {where} ({n} workers)", kind=kind, where=address(sock),
                     n=self.count)
        super().privilegedStartService()

    def startService(self) -> None:
        if not self.sockets:
            self.privilegedStartService()
        super().startService()
        for i in range(self.count):
            self._spawn(i)

    def _spec_json(self, index: int) -> str:
        listeners = [{"kind": lst.kind, "description": lst.description, "family": int(lst.family),
                      "haproxy": lst.haproxy, "fd": lst.fd} for lst, _s in self.sockets]
        return json.dumps({"index": index, "listeners": listeners, "config": self.spec})

    def _spawn(self, index: int) -> None:
        self._timers.pop(index, None)
        if self._stopping:
            return
        env = dict(self.env if self.env is not None else os.environ)
        env[SPEC_ENV] = self._spec_json(index)
        fds: dict[int, Any] = {0: "w", 1: "r", 2: "r"}
        for lst, _s in self.sockets:
            fds[lst.fd] = lst.fd
        proto = _WorkerProtocol(self, index)
        self.protocols[index] = proto
        self.started_at[index] = self.reactor.seconds()
        self.procs[index] = self.reactor.spawnProcess(proto, self.argv[0], self.argv, env=env, childFDs=fds)
        log.info("worker {n} started (pid {pid})", n=index, pid=self.procs[index].pid)

    def _ended(self, proto: _WorkerProtocol, reason: Any) -> None:
        index = proto.index
        if self.protocols.get(index) is not proto:
            return
        self.procs.pop(index, None)
        if self._stopping:
            return
        ran = self.reactor.seconds() - self.started_at.get(index, 0.0)
        if ran > STABLE_AFTER:
            self.failures[index] = 0
        n = self.failures.get(index, 0)
        self.failures[index] = n + 1
        delay = RESTART_DELAYS[min(n, len(RESTART_DELAYS) - 1)]
        log.warn("worker {n} exited ({why}); restarting in {d}s", n=index, why=reason.getErrorMessage(), d=delay)
        self.restarts += 1
        self._timers[index] = self.reactor.callLater(delay, self._spawn, index)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values() if p.pid]

    def stopService(self) -> defer.Deferred:
        """SIGTERM every worker, SIGKILL those still there after STOP_GRACE;
        fires when all are gone."""
        self._stopping = True
        super().stopService()
        for t in self._timers.values():
            if t.active():
                t.cancel()
        self._timers.clear()
        waits = [self.protocols[i].ended for i in self.procs]
        for p in list(self.procs.values()):
            _signal(p, "TERM")

        def kill() -> None:
            for p in list(self.procs.values()):
                log.warn("worker pid {pid} did not stop in time; killing it", pid=p.pid)
                _signal(p, "KILL")

        timer = self.reactor.callLater(STOP_GRACE, kill)

        def done(_: Any) -> None:
            if timer.active():
                timer.cancel()
            for _lst, sock in self.sockets:
                sock.close()
            self.sockets = []

        return defer.gatherResults(waits).addBoth(done)


def _signal(proc: Any, name: str) -> None:
    try:
        proc.signalProcess(name)
    except Exception:  # already gone
        pass


# --- the worker ------------------------------------------------------------------------------

def wrap_factory(lst: Listener, factory: Any) -> Any:
    """The factory a worker adopts a socket with: PROXY protocol first if
    the listener is behind HAProxy (the wrapper hands the real client
    address to getPeer())."""
    if lst.haproxy:
        from mailsrv.proxyproto import ProxyHeaderFactory

        return ProxyHeaderFactory(factory)
    return factory


def adopt(reactor: Any, listeners: list[Listener], factory_for: Callable[[Listener], Any]) -> list[Any]:
    """Adopt every inherited listening socket; returns the ports."""
    ports = []
    for lst in listeners:
        os.set_blocking(lst.fd, False)
        ports.append(reactor.adoptStreamPort(lst.fd, lst.family, wrap_factory(lst, factory_for(lst))))
        os.close(lst.fd)  # adoptStreamPort made its own copy
    return ports


def read_spec(environ: dict[str, str] | None = None) -> tuple[int, list[Listener], dict[str, Any]]:
    """What the parent handed this worker: its index, the listeners, the config."""
    raw = (environ or os.environ).get(SPEC_ENV)
    if not raw:
        raise WorkerConfigError(f"not started by a mailsrv parent ({SPEC_ENV} missing)")
    spec = json.loads(raw)
    listeners = [Listener(d["kind"], d["description"], d["family"], d["haproxy"], d["fd"]) for d in spec["listeners"]]
    return int(spec["index"]), listeners, spec["config"]


class _ParentWatch(protocol.Protocol):
    """The worker's stdin is a pipe from the parent: when it closes, the
    parent is gone, and so is the reason to serve."""

    def __init__(self, on_gone: Callable[[], None]) -> None:
        self.on_gone = on_gone

    def connectionLost(self, reason: Any = None) -> None:
        self.on_gone()


def watch_parent(reactor: Any) -> None:
    from twisted.internet import stdio

    def gone() -> None:
        if reactor.running:
            log.info("parent process gone; stopping")
            reactor.stop()

    stdio.StandardIO(_ParentWatch(gone), stdin=0, stdout=os.dup(1), reactor=reactor)  # type: ignore[call-arg]


@provider(ILogObserver)
def _to_parent(event: dict[str, Any]) -> None:
    """One line per event on stdout, which the parent reads and logs (it
    adds the time): ``[namespace#level] text``."""
    from twisted.logger import formatEvent

    text = formatEvent(event)
    failure = event.get("log_failure")
    if failure is not None:
        text += "\n" + failure.getTraceback()
    level = event.get("log_level", LogLevel.info)
    for line in text.splitlines() or [""]:
        sys.stdout.write(f"[{event.get('log_namespace', '-')}#{level.name}] {line}\n")
    sys.stdout.flush()


def run_worker(build: Callable[[Any, dict[str, Any], int], Any]) -> None:
    """A worker's main: ``build(reactor, config, index)`` returns an
    ``(IService, factory_for)`` pair; the service is started, the sockets
    adopted, and the reactor run until SIGTERM or the parent goes away."""
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner

    globalLogBeginner.beginLoggingTo([_to_parent], redirectStandardIO=False)
    index, listeners, config = read_spec()
    svc, factory_for = build(reactor, config, index)
    svc.startService()
    adopt(reactor, listeners, factory_for)
    watch_parent(reactor)
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))  # type: ignore[attr-defined]
    reactor.addSystemEventTrigger("before", "shutdown", svc.stopService)
    log.info("worker {n} (pid {pid}) serving", n=index, pid=os.getpid())
    reactor.run(installSignalHandlers=False)  # type: ignore[call-arg]
