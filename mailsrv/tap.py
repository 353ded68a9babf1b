"""``twistd mailsrv``: options and the service tree.

One ``MultiService`` holds a listener per configured endpoint; all of them
share one store, one portal and one TLS context.  Listeners are bound in
``privilegedStartService`` (twistd does that before ``--uid/--gid`` drops
root), so ports 110/143/993/995 work for an unprivileged server.

Start-up is checked before anything binds (:mod:`mailsrv.ops.checks`): a
problem is one ``mailsrv: ...`` line on stderr and a sysexits code, with a
traceback only under ``--debug`` or ``MAILSRV_TRACEBACK=1``.  Every
listener's factory is wrapped for accounting (:mod:`mailsrv.ops.conn`):
sessions, limits, the login and session-end lines, metrics.
"""

from __future__ import annotations

import email.utils
import os
import signal
import sys
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, NoReturn

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer, endpoints
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import usage

from mailsrv import config as configmod
from mailsrv.ops import checks
from mailsrv.ops.checks import Problem, RunAs, StartupError

log = Logger()

# Seconds a folder nobody has open stays loaded, so the next login's SELECT
# or STAT does not rescan a large Maildir.
IDLE_FOLDER_TTL = 900.0
EX_SOFTWARE = 70

WELCOME = """\
From: mailsrv <postmaster@{host}>
To: {user}@{host}
Date: {date}
Message-ID: <{msgid}@{host}>
Subject: Welcome to mailsrv
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hello {user},

this message sits in your INBOX on a mailsrv server.  Read it with any
POP3 client (it will download it) or any IMAP client (it will stay on the
server, with its flags, for every device).  Try both and compare.
"""


def welcome_message(user: str, hostname: str) -> bytes:
    """The first message of a new user, with Date and Message-ID like any other."""
    host = hostname or "localhost"
    return WELCOME.format(user=user, host=host, date=email.utils.formatdate(localtime=True),
                          msgid=uuid.uuid4().hex).encode("utf-8")


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Serve Maildir++ mailboxes over POP3 and IMAP4.  Each listener option takes a "
        "Twisted server endpoint string (e.g. tcp:1143:interface=127.0.0.1) and may be "
        "repeated.  With no listener given (here or in the config file), unprivileged "
        "loopback ports are used: POP3 1110, POP3S 1995, IMAP 1143, IMAPS 1993."
    )
    optParameters = [
        ["data", "d", None, "Data folder (default: ./mailsrv-data)"],
        ["config", "c", None, "Configuration file (ini, see etc/mailsrv.ini)"],
        ["tls-cert", None, None, "TLS certificate (PEM, may hold the chain)"],
        ["tls-key", None, None, "TLS private key (PEM)"],
        ["plaintext-auth", None, None, "loopback (default), yes or no: plaintext login before TLS"],
        ["auth-fail-delay", None, None, "Seconds to wait after a failed login (default 2)"],
        ["hostname", None, None, "Host name used in greetings and the self-signed certificate"],
        ["dsn", None, None, "Serve from this PostgreSQL database (as [store] backend = postgresql, dsn = ...)"],
        ["workers", "w", None, "Worker processes sharing the listeners (PostgreSQL store only; default 0: one)"],
    ]
    optFlags = [
        ["no-demo-user", None, "Do not create a demo user on first start"],
        ["debug", None, "Show the traceback of a start-up failure (also: MAILSRV_TRACEBACK=1)"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listeners"] = {kind: [] for kind in configmod.LISTENER_KINDS}
        self["metrics"] = []

    def _listener(kind: str) -> Callable[[Options, str], None]:  # type: ignore[misc]
        def opt(self: Options, endpoint: str) -> None:
            self["listeners"][kind].append(endpoint)

        opt.__doc__ = f"{kind.upper()} listener endpoint (repeatable)"
        return opt

    opt_pop3 = _listener("pop3")
    opt_pop3s = _listener("pop3s")
    opt_imap = _listener("imap")
    opt_imaps = _listener("imaps")
    opt_lmtp = _listener("lmtp")
    del _listener

    def opt_metrics(self, endpoint: str) -> None:
        """Serve Prometheus metrics on this endpoint, e.g. tcp:9100:interface=127.0.0.1 (repeatable)"""
        self["metrics"].append(endpoint)

    def opt_version(self) -> NoReturn:
        """Print the version and exit"""
        from mailsrv.version import version_line

        print(version_line("twistd mailsrv"))
        sys.exit(0)

    def postOptions(self) -> None:
        try:
            self["cfg"] = build_config(self)
        except configmod.ConfigError as e:
            if getattr(self, "parent", None) is not None:  # under twistd: one line, not the usage text
                Startup(RunAs.current(), debug=_debug(self), daemon=False).fail([Problem(str(e))])
            raise usage.UsageError(str(e)) from None


def _debug(opts: Options) -> bool:
    parent = getattr(opts, "parent", None)
    return bool(opts["debug"] or os.environ.get("MAILSRV_TRACEBACK") or (parent is not None and parent["debug"]))


def build_config(opts: Options) -> configmod.Config:
    """Config file first, then command-line options on top of it."""
    cfg = configmod.load(opts["config"], opts["data"])
    given = {k: v for k, v in opts["listeners"].items() if v}
    if given:
        cfg.listeners = given
    elif not any(cfg.listeners.values()):
        cfg.listeners = {k: list(v) for k, v in configmod.DEFAULT_LISTENERS.items()}
    if opts["tls-cert"]:
        cfg.tls_cert = opts["tls-cert"]
    if opts["tls-key"]:
        cfg.tls_key = opts["tls-key"]
    if opts["plaintext-auth"]:
        if opts["plaintext-auth"] not in ("loopback", "yes", "no"):
            raise configmod.ConfigError("--plaintext-auth must be loopback, yes or no")
        cfg.plaintext_auth = opts["plaintext-auth"]
    if opts["auth-fail-delay"] is not None:
        try:
            cfg.auth_fail_delay = float(opts["auth-fail-delay"])
        except ValueError:
            raise configmod.ConfigError("--auth-fail-delay takes a number of seconds") from None
    if opts["hostname"]:
        cfg.hostname = opts["hostname"]
    if opts["no-demo-user"]:
        cfg.demo_user = False
    if opts["metrics"]:
        cfg.metrics = list(opts["metrics"])
    _store_options(opts, cfg)
    return cfg


def _store_options(opts: Options, cfg: configmod.Config) -> None:
    """--dsn and --workers on top of [store] and [server] workers."""
    if opts["dsn"]:
        cfg.store_backend, cfg.store_dsn = "postgresql", opts["dsn"]
    if opts["workers"] is not None:
        try:
            cfg.workers = int(opts["workers"])
        except ValueError:
            raise configmod.ConfigError("--workers takes a number of processes") from None
    configmod.check_store(cfg)
    if cfg.workers:
        from mailsrv.workers import WorkerConfigError, check_backend

        try:
            check_backend(cfg.store_backend)
        except WorkerConfigError as e:
            raise configmod.ConfigError(str(e)) from None


@dataclass
class Startup:
    """How this start reports a failure: who the server will run as
    (``--uid/--gid``), whether tracebacks are wanted, whether twistd has
    daemonized (its parent then reports through the status pipe)."""

    run_as: RunAs
    debug: bool = False
    daemon: bool = False

    @classmethod
    def of(cls, opts: Options) -> Startup:
        parent = getattr(opts, "parent", None)
        if parent is None:
            return cls(RunAs.current(), _debug(opts))
        return cls(RunAs.of(parent.get("uid"), parent.get("gid")), _debug(opts), not parent.get("nodaemon"))

    def fail(self, problems: list[Problem], logging: bool = False) -> NoReturn:
        """One line per problem on stderr (the real one: twistd may have
        redirected sys.stderr into its log), then exit with the first
        problem's code."""
        text = "".join(f"mailsrv: {' '.join(p.message.split())}\n" for p in problems)
        if self.debug and sys.exc_info()[0] is not None:
            text = traceback.format_exc() + text
        try:
            os.write(2, text.encode("utf-8", "replace"))
        except OSError:
            pass
        if logging:
            for p in problems:
                log.critical("start-up failed: {message}", message=p.message)
            if self.daemon:  # twistd's parent process prints it from the status pipe
                raise StartupError(problems[0])
        raise SystemExit(problems[0].code)


def quota_policy(cfg: configmod.Config) -> Callable[[str], Any]:
    """``user -> QuotaRules``: the configured rules with the passwd file's
    ``userdb_quota_rule*`` fields on top (re-read when the file changes)."""
    from mailsrv.auth.passwd import PasswdFile
    from mailsrv.store.quota import rules_for

    passwd = PasswdFile(cfg.passwd_path)

    def rules(user: str) -> Any:
        try:
            fields = passwd.user_fields(user)
        except OSError:
            fields = {}
        return rules_for(cfg.quota_rules, fields, user)

    return rules


class MailService(service.MultiService):
    """The server: shared store, portal and TLS context; one child per listener."""

    def __init__(self, cfg: configmod.Config, reactor: Any = None, startup: Startup | None = None,
                 listen: bool = True) -> None:
        """``listen``: bind the configured listeners (a worker process
        adopts its parent's sockets instead, see mailsrv.workers)."""
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.reactor = reactor
        self.config = cfg
        self.startup = startup or Startup(RunAs.current())
        from mailsrv import auth, tls
        from mailsrv.auth.passwd import demo_password_path
        from mailsrv.ops.limits import Limits
        from mailsrv.ops.sessions import Registry
        from mailsrv.store import Store

        self._make_data_dir()
        self.store: Any
        if cfg.store_backend == "postgresql":
            from mailsrv import pgserve

            self.store = pgserve.make_store(cfg, reactor, IDLE_FOLDER_TTL)
            self.portal = pgserve.make_portal(self.store, cfg)
        else:
            self.store = Store(cfg.data_dir, idle_ttl=IDLE_FOLDER_TTL, reactor=reactor,
                               quota_rules=quota_policy(cfg), quota_warnings=cfg.quota_warnings,
                               quota_tempfail=cfg.quota_full_tempfail, watch=True)
            self.portal = auth.make_portal(self.store, cfg)
        self.sessions = Registry(Limits(cfg.limits, cfg.auth_fail_delay), reactor)
        had_tls = os.path.exists(os.path.join(cfg.data_dir, tls.SELF_SIGNED_DIR))
        cert, key = tls.resolve_paths(cfg.tls_cert, cfg.tls_key, cfg.data_dir, cfg.hostname)
        self.tls = tls.ReloadableContext(cert, key)
        self.demo_password = self._ensure_demo_user()
        # Made as root before twistd drops to --uid: hand them to the data folder's owner.
        made = [] if had_tls else [os.path.join(cfg.data_dir, tls.SELF_SIGNED_DIR)]
        if self.demo_password is not None:
            made += [os.path.join(cfg.data_dir, "demo"), cfg.passwd_path, demo_password_path(cfg)]
        for path in made:
            if os.path.exists(path):
                configmod.give_to_data_owner(cfg, path)
        self.metrics = self._make_metrics()
        for kind, desc in checks.listener_specs(cfg) if listen else ():
            self._add_listener(kind, desc)
        if cfg.admin_socket:
            _AdminSocketService(self).setServiceParent(self)

    def _make_data_dir(self) -> None:
        """Create the data folder if needed, owned by the user the server
        will run as (twistd --uid), not by root."""
        data = self.config.data_dir
        if os.path.isdir(data):
            return
        os.makedirs(data, mode=0o700, exist_ok=True)
        if self.startup.run_as.switches:
            os.chown(data, self.startup.run_as.uid, self.startup.run_as.gid)

    def _ensure_demo_user(self) -> str | None:
        from mailsrv.auth.passwd import ensure_demo_user, remembered_demo_password
        from mailsrv.store import layout, maildir

        if self.config.store_backend == "postgresql":
            from mailsrv import pgserve

            password = pgserve.ensure_demo_user(self.config, welcome_message("demo", self.config.hostname))
            self.demo_created = password is not None
            return password
        password = ensure_demo_user(self.config)
        self.demo_created = password is not None
        if password is not None:
            self.store.account("demo")
            inbox = layout.folder_dir(self.config.data_dir, "demo", "INBOX")
            maildir.deliver(inbox, welcome_message("demo", self.config.hostname))
            return password
        return remembered_demo_password(self.config)

    def _make_metrics(self) -> Any:
        if not self.config.metrics:
            return None
        from mailsrv.ops.metrics import LiveCollector, Metrics

        metrics = Metrics()
        self.sessions.metrics = metrics
        checker = next(iter(self.portal.checkers.values()), None)
        metrics.watch(LiveCollector(self.sessions, self.store, getattr(checker, "pending", None), self.reactor))
        return metrics

    # -- listeners: one factory builder per kind ---------------------------------------

    def _pop3(self, kind: str) -> IProtocolFactory:
        from mailsrv.pop3 import POP3Factory

        return POP3Factory(self.portal, self.config, tls_context=self.tls, implicit_tls=kind == "pop3s",
                           reactor=self.reactor)

    def _imap(self, kind: str) -> IProtocolFactory:
        from mailsrv.imap import IMAPFactory

        return IMAPFactory(self.portal, self.config, tls_context=self.tls, implicit_tls=kind == "imaps",
                           reactor=self.reactor)

    def _lmtp(self, kind: str) -> IProtocolFactory:
        from mailsrv.auth import PasswdFile
        from mailsrv.lmtp import LMTPFactory

        if self.config.store_backend == "postgresql":
            from mailsrv import pgserve

            return LMTPFactory(self.store, self.config, pgserve.lmtp_lookup(self.store), reactor=self.reactor)
        passwd = PasswdFile(self.config.passwd_path)  # re-reads itself when the file changes

        def account_name(local_part: str) -> str | bool:
            """The passwd file's spelling of a (lower-cased) local part, or False."""
            if passwd.lookup(local_part) is not None:
                return local_part
            return next((u for u in passwd.users() if u.lower() == local_part), False)

        return LMTPFactory(self.store, self.config, account_name, reactor=self.reactor)

    def _metrics_site(self, kind: str) -> IProtocolFactory:
        from mailsrv.ops.metrics import site

        return site(self.metrics)

    FACTORIES: dict[str, Callable[[MailService, str], IProtocolFactory]] = {
        "pop3": _pop3, "pop3s": _pop3, "imap": _imap, "imaps": _imap, "lmtp": _lmtp, "metrics": _metrics_site,
    }
    IMPLICIT_TLS = ("pop3s", "imaps")
    ACCOUNTED = ("pop3", "pop3s", "imap", "imaps", "lmtp")

    def factory_for(self, kind: str, desc: str = "tcp:") -> IProtocolFactory:
        """The protocol factory of a listener: accounted, TLS for pop3s/imaps
        unless the endpoint does it (ssl:, tls:), and outermost the PROXY
        header reader for a ``haproxy:`` listener (mailsrv.proxyproto), so
        everything inside sees the real client."""
        from mailsrv import proxyproto
        from mailsrv.ops.conn import AccountingFactory

        behind_proxy, inner = proxyproto.split(desc)
        factory: Any = self.FACTORIES[kind](self, kind)
        if kind in self.ACCOUNTED:
            factory = AccountingFactory(factory, kind, self.sessions, self.reactor)
        if kind in self.IMPLICIT_TLS and inner.split(":", 1)[0] not in ("ssl", "tls"):
            factory = TLSMemoryBIOFactory(self.tls, False, factory)
        if behind_proxy:
            factory = proxyproto.ProxyHeaderFactory(factory, reactor=self.reactor)
        result: IProtocolFactory = factory
        return result

    def _add_listener(self, kind: str, desc: str) -> None:
        from mailsrv import proxyproto

        factory = self.factory_for(kind, desc)
        endpoint = endpoints.serverFromString(self.reactor, proxyproto.split(desc)[1])
        svc = _LoggingEndpointService(endpoint, factory, kind, desc)
        svc._raiseSynchronously = True
        svc.setServiceParent(self)

    def privilegedStartService(self) -> None:
        from mailsrv.ops.process import raise_fd_limit

        raise_fd_limit()  # before the switch to --uid: only root may raise the hard limit
        # The demo password goes to the log before the listening lines: whoever
        # waits for those (a person, a test) has seen it.
        if self.demo_password is not None:
            from mailsrv.auth.passwd import demo_password_path

            log.info(
                "{how} demo user 'demo' with password {password!r} (shown at each start until you change it: "
                "mailsrv --data {data} user passwd demo; kept in {path})",
                how="created" if self.demo_created else "still have", password=self.demo_password,
                path=demo_password_path(self.config), data=self.config.data_dir,
            )
        try:
            super().privilegedStartService()
        except StartupError as e:
            self.startup.fail([e.problem], logging=True)
        configured = [k for k in configmod.LISTENER_KINDS if self.config.endpoints(k)]
        for kind in configmod.LISTENER_KINDS:
            if kind not in configured:
                log.info("mailsrv {kind} is off (no {kind} listener configured)", kind=kind)

    def startService(self) -> None:
        start = getattr(self.store, "start", None)  # a database store starts its threads now, after twistd forked
        if start is not None:
            start()
        if self.metrics is not None:
            self.metrics.start_store_timing()
        super().startService()
        if hasattr(signal, "SIGHUP") and self.reactor is _global_reactor():
            self.reactor.addSystemEventTrigger("after", "startup", self._install_sighup)

    def stopService(self) -> defer.Deferred[Any]:
        d = super().stopService()
        if self.metrics is not None:
            self.metrics.stop_store_timing()
        # Flush the folders' cache and index writes before the reactor stops.
        return defer.gatherResults([d, defer.maybeDeferred(self.store.close)])

    def _install_sighup(self) -> None:
        previous = signal.getsignal(signal.SIGHUP)

        def on_hup(signum: int, frame: FrameType | None) -> None:
            self.reactor.callFromThread(self.reload)
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGHUP, on_hup)

    def reload(self) -> None:
        """SIGHUP: reload the certificate (the password file is re-read on change anyway)."""
        try:
            self.tls.reload()
            log.info("reloaded TLS certificate {cert}", cert=self.tls.cert_path)
        except Exception as e:  # keep serving with the old certificate
            log.error("TLS reload failed, keeping the old certificate: {e}", e=e)


def _global_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class _LoggingEndpointService(StreamServerEndpointService):
    """Logs the real address it listens on (useful with port 0); a bind
    failure becomes a :class:`StartupError` naming the listener."""

    def __init__(self, endpoint: IStreamServerEndpoint, factory: IProtocolFactory, kind: str, desc: str) -> None:
        super().__init__(endpoint, factory)
        self.kind, self.desc = kind, desc
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            why = getattr(e.socketError, "strerror", None) or str(e.socketError)
            where = f"{e.interface or '*'}:{e.port}"
            raise StartupError(Problem(f"cannot listen for {self.kind} on {self.desc}: {where}: {why}",
                                       checks.EX_UNAVAILABLE)) from e
        except Exception as e:
            raise StartupError(Problem(f"cannot listen for {self.kind} on {self.desc}: {e}",
                                       checks.EX_UNAVAILABLE)) from e
        if self._waitingForPort is not None:  # set by the call above
            self._waitingForPort.addCallback(self._listening)

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        addr = port.getHost()
        if hasattr(addr, "port"):
            where = f"{getattr(addr, 'host', '')}:{addr.port}"
        else:  # a UNIX socket
            where = getattr(addr, "name", str(addr))
        log.info("mailsrv {kind} listening on {where}", kind=self.kind, where=where)
        return port


class _AdminSocketService(service.Service):
    """DATA/.mailsrv-admin.sock for ``mailsrv who``/``kick``.  Optional: if
    it cannot be made (a second server on the same data folder holds it, a
    path too long for a socket), the server runs without it and says so."""

    def __init__(self, mail: MailService) -> None:
        self.mail = mail
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        from mailsrv.ops import adminsock

        path = adminsock.socket_path(self.mail.config.data_dir)
        if len(os.fsencode(path)) > adminsock.MAX_PATH:
            log.warn("no admin socket: {path} is longer than a UNIX socket path may be; "
                     "mailsrv who/kick will not work", path=path)
            return
        d = adminsock.server_endpoint(self.mail.reactor, self.mail.config.data_dir).listen(
            adminsock.AdminFactory(self.mail.sessions))
        d.addCallbacks(self._listening, self._failed, errbackArgs=(path,))

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        path = str(getattr(port.getHost(), "name", ""))
        for p in (path, path + ".lock"):
            if os.path.lexists(p):
                configmod.give_to_data_owner(self.mail.config, p)

    def _failed(self, failure: Any, path: str) -> None:
        log.warn("no admin socket at {path} ({why}): another server on this data folder? "
                 "mailsrv who/kick reach only the server that has it", path=path, why=failure.getErrorMessage())

    def stopService(self) -> defer.Deferred[Any] | None:
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return defer.maybeDeferred(port.stopListening)
        return None


def makeService(options: Options) -> service.IService:
    startup = Startup.of(options)
    cfg = options["cfg"]
    problems = checks.startup_problems(cfg, startup.run_as)
    if problems:
        startup.fail(problems)
    try:
        if cfg.workers:
            return make_parent_service(cfg)
        return MailService(cfg, startup=startup)
    except StartupError as e:
        startup.fail([e.problem])
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        startup.fail([Problem(f"cannot start: {where}{e.strerror or e}", checks.EX_CANTCREAT)])
    except Exception as e:
        startup.fail([Problem(f"cannot start: {type(e).__name__}: {e} (--debug shows where)", EX_SOFTWARE)])


def make_parent_service(cfg: configmod.Config) -> service.IService:
    """``--workers N``: this process binds the listeners and runs N workers
    (mailsrv.workers); the shared one-time work (TLS material, the demo
    user) is done here, once, before any worker starts.  (Metrics and the
    admin socket are per process: not served in this mode.)"""
    import dataclasses

    from mailsrv import pgserve, tls, workers

    os.makedirs(cfg.data_dir, mode=0o700, exist_ok=True)
    had_tls = os.path.exists(os.path.join(cfg.data_dir, tls.SELF_SIGNED_DIR))
    tls.resolve_paths(cfg.tls_cert, cfg.tls_key, cfg.data_dir, cfg.hostname)
    if not had_tls and os.path.exists(os.path.join(cfg.data_dir, tls.SELF_SIGNED_DIR)):
        configmod.give_to_data_owner(cfg, os.path.join(cfg.data_dir, tls.SELF_SIGNED_DIR))
    problem = pgserve.check_database(cfg)
    if problem:
        log.error("{problem}; workers start anyway and answer 'try later' until it is reachable", problem=problem)
    password = pgserve.ensure_demo_user(cfg, welcome_message("demo", cfg.hostname))
    if password is not None:
        log.info("created demo user 'demo' with password {password!r} (shown once; stored hashed)", password=password)
    listeners = [(kind, desc) for kind in configmod.LISTENER_KINDS for desc in cfg.endpoints(kind)]
    spec = dataclasses.asdict(cfg)
    spec.update(workers=0, demo_user=False, metrics=[], admin_socket=False)
    return workers.WorkerManager(listeners, cfg.workers, spec)


def make_worker_service(reactor: Any, spec: dict[str, Any], index: int) -> tuple[service.IService, Any]:
    """A worker's service (no listeners of its own) and the factory for
    each listener it adopts (called by mailsrv.workers in the worker)."""
    cfg = configmod.from_spec(spec)
    svc = MailService(cfg, reactor, listen=False)
    return svc, lambda listener: svc.factory_for(listener.kind, listener.description)
