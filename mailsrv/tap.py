"""``twistd mailsrv``: options and the service tree.

One ``MultiService`` holds a listener per configured endpoint; all of them
share one store, one portal and one TLS context.  Listeners are bound in
``privilegedStartService`` (twistd does that before ``--uid/--gid`` drops
root), so ports 110/143/993/995 work for an unprivileged server.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import usage

from mailsrv import config as configmod

log = Logger()

# Seconds a folder nobody has open stays loaded, so the next login's SELECT
# or STAT does not rescan a large Maildir.
IDLE_FOLDER_TTL = 900.0

WELCOME = b"""\
From: mailsrv <postmaster@localhost>
To: %(user)s@localhost
Subject: Welcome to mailsrv
Content-Type: text/plain; charset=utf-8

Hello %(user)s,

this message sits in your INBOX on a mailsrv server.  Read it with any
POP3 client (it will download it) or any IMAP client (it will stay on the
server, with its flags, for every device).  Try both and compare.
"""


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
    ]
    optFlags = [["no-demo-user", None, "Do not create a demo user on first start"]]

    def __init__(self) -> None:
        super().__init__()
        self["listeners"] = {kind: [] for kind in configmod.LISTENER_KINDS}

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

    def postOptions(self) -> None:
        try:
            self["cfg"] = build_config(self)
        except configmod.ConfigError as e:
            raise usage.UsageError(str(e)) from None


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
    return cfg


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

    def __init__(self, cfg: configmod.Config, reactor: Any = None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.reactor = reactor
        self.config = cfg
        from mailsrv import auth, tls
        from mailsrv.store import Store

        os.makedirs(cfg.data_dir, mode=0o700, exist_ok=True)
        self.store = Store(cfg.data_dir, idle_ttl=IDLE_FOLDER_TTL, reactor=reactor,
                           quota_rules=quota_policy(cfg), quota_warnings=cfg.quota_warnings,
                           quota_tempfail=cfg.quota_full_tempfail)
        self.portal = auth.make_portal(self.store, cfg)
        had_tls = os.path.exists(os.path.join(cfg.data_dir, tls.SELF_SIGNED_DIR))
        cert, key = tls.resolve_paths(cfg.tls_cert, cfg.tls_key, cfg.data_dir, cfg.hostname)
        self.tls = tls.ReloadableContext(cert, key)
        self.demo_password = self._ensure_demo_user()
        # Made as root before twistd drops to --uid: hand them to the data folder's owner.
        made = [] if had_tls else [os.path.join(cfg.data_dir, tls.SELF_SIGNED_DIR)]
        if self.demo_password is not None:
            made += [os.path.join(cfg.data_dir, "demo"), cfg.passwd_path]
        for path in made:
            if os.path.exists(path):
                configmod.give_to_data_owner(cfg, path)
        for kind in configmod.LISTENER_KINDS:
            for desc in cfg.endpoints(kind):
                self._add_listener(kind, desc)

    def _ensure_demo_user(self) -> str | None:
        from mailsrv import auth
        from mailsrv.store import layout, maildir

        password = auth.ensure_demo_user(self.config)
        if password is not None:
            self.store.account("demo")
            inbox = layout.folder_dir(self.config.data_dir, "demo", "INBOX")
            maildir.deliver(inbox, WELCOME % {b"user": b"demo"})
        return password

    def _factory(self, kind: str) -> IProtocolFactory:
        cfg = self.config
        if kind in ("pop3", "pop3s"):
            from mailsrv.pop3 import POP3Factory

            return POP3Factory(self.portal, cfg, tls_context=self.tls, implicit_tls=kind == "pop3s",
                               reactor=self.reactor)
        if kind in ("imap", "imaps"):
            from mailsrv.imap import IMAPFactory

            return IMAPFactory(self.portal, cfg, tls_context=self.tls, implicit_tls=kind == "imaps",
                               reactor=self.reactor)
        from mailsrv.auth import PasswdFile
        from mailsrv.lmtp import LMTPFactory

        passwd = PasswdFile(cfg.passwd_path)  # re-reads itself when the file changes

        def account_name(local_part: str) -> str | bool:
            """The passwd file's spelling of a (lower-cased) local part, or False."""
            if passwd.lookup(local_part) is not None:
                return local_part
            return next((u for u in passwd.users() if u.lower() == local_part), False)

        return LMTPFactory(self.store, cfg, account_name, reactor=self.reactor)

    def _add_listener(self, kind: str, desc: str) -> None:
        factory = self._factory(kind)
        implicit = kind in ("pop3s", "imaps")
        if implicit and desc.split(":", 1)[0] not in ("ssl", "tls"):
            factory = TLSMemoryBIOFactory(self.tls, False, factory)
        endpoint = endpoints.serverFromString(self.reactor, desc)
        svc = _LoggingEndpointService(endpoint, factory, kind, desc)
        svc._raiseSynchronously = True
        svc.setServiceParent(self)

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if self.demo_password is not None:
            log.info(
                "created demo user 'demo' with password {password!r} (shown once; stored hashed)",
                password=self.demo_password,
            )

    def startService(self) -> None:
        super().startService()
        if hasattr(signal, "SIGHUP") and self.reactor is _global_reactor():
            self.reactor.addSystemEventTrigger("after", "startup", self._install_sighup)

    def stopService(self) -> defer.Deferred[Any]:
        d = super().stopService()
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
    """Logs the real address it listens on (useful with port 0)."""

    def __init__(self, endpoint: IStreamServerEndpoint, factory: IProtocolFactory, kind: str, desc: str) -> None:
        super().__init__(endpoint, factory)
        self.kind, self.desc = kind, desc
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
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


def makeService(options: Options) -> service.IService:
    return MailService(options["cfg"])

