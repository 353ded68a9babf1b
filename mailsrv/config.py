"""Configuration: an ini file (see etc/mailsrv.ini) with command-line overrides.

Every part of the server reads its settings from one :class:`Config`, so the
ini file, ``twistd mailsrv`` options and ``mailsrv`` admin commands agree.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mailsrv.ops.limits import LimitSettings

DEFAULT_DATA = "mailsrv-data"
# Development defaults: unprivileged loopback ports.
DEFAULT_LISTENERS = {
    "pop3": ["tcp:1110:interface=127.0.0.1"],
    "pop3s": ["tcp:1995:interface=127.0.0.1"],
    "imap": ["tcp:1143:interface=127.0.0.1"],
    "imaps": ["tcp:1993:interface=127.0.0.1"],
    "lmtp": [],
}
LISTENER_KINDS = tuple(DEFAULT_LISTENERS)


class ConfigError(Exception):
    """A configuration problem, reported as one line."""


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "yes", "true", "on"):
        return True
    if v in ("0", "no", "false", "off"):
        return False
    raise ConfigError(f"not a boolean: {value!r}")


@dataclass
class Config:
    data_dir: str = DEFAULT_DATA
    passwd_file: str | None = None  # default: <data_dir>/passwd
    listeners: dict[str, list[str]] = field(default_factory=dict)  # kind -> [endpoint strings]
    tls_cert: str | None = None
    tls_key: str | None = None
    # 'loopback' (default): plaintext USER/PASS/LOGIN only from 127.0.0.0/8 and ::1
    # before TLS; 'yes': always; 'no': only after STLS/STARTTLS.
    plaintext_auth: str = "loopback"
    auth_fail_delay: float = 2.0
    apop: bool = False
    pop3_timeout: int = 600
    imap_timeout: int = 1800
    append_limit: int = 50 * 1024 * 1024
    literal_plus: bool = True  # LITERAL+ (any size); False: LITERAL- (non-sync literals up to 4096 bytes)
    lmtp_max_size: int = 50 * 1024 * 1024
    local_domains: list[str] = field(default_factory=list)  # empty: accept any domain
    lmtp_detail_folders: bool = True
    hostname: str = "localhost"
    hash_scheme: str = "ARGON2ID"
    demo_user: bool = True
    trace: bool = False
    # [store]: 'maildir' (default: files under data_dir, one process) or
    # 'postgresql' (store_dsn; any number of processes and nodes).
    store_backend: str = "maildir"
    store_dsn: str | None = None
    store_pool: int = 8  # database connections (and query threads) per process
    workers: int = 0  # [server] workers: processes sharing the listeners (postgresql only)
    # quota (issue 12): Dovecot quota_rule values by key (quota_rule, quota_rule2...),
    # percentages that log a warning when crossed, 4xx instead of 5xx when full
    quota_rules: dict[str, str] = field(default_factory=dict)
    quota_warnings: list[int] = field(default_factory=list)
    quota_full_tempfail: bool = False
    source: str | None = None  # the ini file read, if any
    # -- operations (issue 11): abuse limits, metrics, the admin socket
    limits: LimitSettings = field(default_factory=LimitSettings)
    metrics: list[str] = field(default_factory=list)  # endpoints serving Prometheus metrics
    admin_socket: bool = True  # DATA/.mailsrv-admin.sock for mailsrv who/kick

    @property
    def passwd_path(self) -> str:
        return self.passwd_file or os.path.join(self.data_dir, "passwd")

    def endpoints(self, kind: str) -> list[str]:
        return list(self.listeners.get(kind, []))


def from_spec(spec: dict[str, Any]) -> Config:
    """A Config rebuilt from ``dataclasses.asdict`` of one (a worker's copy of
    its parent's, through JSON): nested settings become objects again."""
    spec = dict(spec)
    spec["limits"] = LimitSettings(**spec.get("limits", {}))
    return Config(**spec)


def load(path: str | None = None, data_dir: str | None = None) -> Config:
    """Read ``path`` (if given) and apply ``data_dir`` on top of it."""
    cfg = Config()
    if path:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with open(path, encoding="utf-8") as f:
                parser.read_file(f)
        except OSError as e:
            raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
        except configparser.Error as e:
            raise ConfigError(f"bad config {path}: {e}".splitlines()[0]) from None
        cfg.source = path
        _apply(cfg, parser)
    if data_dir:
        cfg.data_dir = data_dir
    return cfg


def _apply(cfg: Config, p: configparser.ConfigParser) -> None:
    """Each known section onto ``cfg``; a bad value is one ConfigError."""
    sections: dict[str, Callable[[Config, configparser.SectionProxy], None]] = {
        "server": _server, "listeners": _listeners, "tls": _tls, "auth": _auth,
        "pop3": _pop3, "imap": _imap, "lmtp": _lmtp, "store": _store, "quota": _quota,
        "limits": _limits, "metrics": _metrics,
    }
    try:
        for name, apply in sections.items():
            if p.has_section(name):
                apply(cfg, p[name])
    except ValueError as e:
        raise ConfigError(f"bad value in config: {e}") from None


def _server(cfg: Config, s: configparser.SectionProxy) -> None:
    if "data" in s:
        cfg.data_dir = s["data"]
    if "passwd" in s:
        cfg.passwd_file = s["passwd"]
    if "hostname" in s:
        cfg.hostname = s["hostname"]
    if "trace" in s:
        cfg.trace = _bool(s["trace"])
    if "demo_user" in s:
        cfg.demo_user = _bool(s["demo_user"])
    if "workers" in s:
        cfg.workers = int(s["workers"])
    if "admin_socket" in s:
        cfg.admin_socket = _bool(s["admin_socket"])


def _listeners(cfg: Config, s: configparser.SectionProxy) -> None:
    for kind, value in s.items():
        if kind not in LISTENER_KINDS:
            raise ConfigError(f"unknown listener kind {kind!r} in [listeners]")
        cfg.listeners[kind] = [v.strip() for v in value.split("\n") if v.strip()]


def _tls(cfg: Config, s: configparser.SectionProxy) -> None:
    cfg.tls_cert = s.get("cert") or None
    cfg.tls_key = s.get("key") or None


def _auth(cfg: Config, s: configparser.SectionProxy) -> None:
    if "plaintext" in s:
        v = s["plaintext"].strip().lower()
        if v not in ("loopback", "yes", "no"):
            raise ConfigError("[auth] plaintext must be loopback, yes or no")
        cfg.plaintext_auth = v
    if "fail_delay" in s:
        cfg.auth_fail_delay = float(s["fail_delay"])
    if "apop" in s:
        cfg.apop = _bool(s["apop"])
    if "scheme" in s:
        cfg.hash_scheme = s["scheme"].strip().upper()


def _pop3(cfg: Config, s: configparser.SectionProxy) -> None:
    if "timeout" in s:
        cfg.pop3_timeout = int(s["timeout"])
        if cfg.pop3_timeout < 600:
            raise ConfigError("[pop3] timeout must be at least 600 seconds (RFC 1939)")


def _imap(cfg: Config, s: configparser.SectionProxy) -> None:
    if "timeout" in s:
        cfg.imap_timeout = int(s["timeout"])
        if cfg.imap_timeout < 1800:
            raise ConfigError("[imap] timeout must be at least 1800 seconds (RFC 3501)")
    if "append_limit" in s:
        cfg.append_limit = int(s["append_limit"])
    if "literal_plus" in s:
        cfg.literal_plus = _bool(s["literal_plus"])


def _lmtp(cfg: Config, s: configparser.SectionProxy) -> None:
    if "max_size" in s:
        cfg.lmtp_max_size = int(s["max_size"])
    if "domains" in s:
        cfg.local_domains = [d.strip().lower() for d in s["domains"].replace(",", " ").split()]
    if "detail_folders" in s:
        cfg.lmtp_detail_folders = _bool(s["detail_folders"])


STORE_BACKENDS = ("maildir", "postgresql")


def _store(cfg: Config, s: configparser.SectionProxy) -> None:
    if "backend" in s:
        cfg.store_backend = s["backend"].strip().lower()
    if "dsn" in s:
        cfg.store_dsn = s["dsn"].strip() or None
    if "pool_size" in s:
        cfg.store_pool = int(s["pool_size"])
    check_store(cfg)


def check_store(cfg: Config) -> None:
    """The [store] settings make sense together (also after command-line options)."""
    if cfg.store_backend not in STORE_BACKENDS:
        raise ConfigError(f"[store] backend must be one of {', '.join(STORE_BACKENDS)}")
    if cfg.store_backend == "postgresql" and not cfg.store_dsn:
        raise ConfigError("[store] backend = postgresql needs dsn = postgresql://user@host/database")
    if cfg.store_pool < 1:
        raise ConfigError("[store] pool_size must be at least 1")
    if cfg.workers < 0:
        raise ConfigError("[server] workers must be 0 (one process) or more")


def _quota(cfg: Config, s: configparser.SectionProxy) -> None:
    """``rule``, ``rule2``... (Dovecot's quota_rule, quota_rule2...),
    ``warning = 80 95``, ``full_tempfail = no``."""
    import re

    from mailsrv.store.quota import QuotaRuleError, parse_rules

    for key, value in s.items():
        m = re.fullmatch(r"rule(\d*)", key)
        if m:
            cfg.quota_rules["quota_rule" + m.group(1)] = value.strip()
        elif key == "warning":
            cfg.quota_warnings = [int(v.rstrip("%")) for v in value.replace(",", " ").split()]
        elif key == "full_tempfail":
            cfg.quota_full_tempfail = _bool(value)
        else:
            raise ConfigError(f"unknown setting {key!r} in [quota]")
    try:
        parse_rules(cfg.quota_rules.values())
    except QuotaRuleError as e:
        raise ConfigError(f"[quota]: {e}") from None


_LIMIT_KEYS = {  # [limits] key -> (LimitSettings field, type)
    "connections_per_ip": ("connections_per_ip", int),
    "userip_connections": ("userip_connections", int),
    "login_timeout": ("login_timeout", float),
    "auth_penalty_max": ("penalty_max", float),
    "auth_ban_after": ("ban_after", int),
    "auth_ban_time": ("ban_time", float),
}


def _limits(cfg: Config, s: configparser.SectionProxy) -> None:
    for key, value in s.items():
        if key not in _LIMIT_KEYS:
            raise ConfigError(f"unknown key {key!r} in [limits] (known: {', '.join(_LIMIT_KEYS)})")
        name, kind = _LIMIT_KEYS[key]
        number = kind(value)
        if number < 0:
            raise ConfigError(f"[limits] {key} must not be negative (0 turns it off)")
        setattr(cfg.limits, name, number)


def _metrics(cfg: Config, s: configparser.SectionProxy) -> None:
    if "listen" in s:
        cfg.metrics = [v.strip() for v in s["listen"].split("\n") if v.strip()]


def give_to_data_owner(config: Config, top: str) -> None:
    """Run as root, hand new files to the data folder's owner so a server
    that dropped privileges (twistd --uid) can still use them."""
    if os.geteuid() != 0:
        return
    st = os.stat(config.data_dir)
    if st.st_uid == 0 and st.st_gid == 0:
        return
    paths = [top]
    if os.path.isdir(top):
        for root, dirs, files in os.walk(top):
            paths += [os.path.join(root, n) for n in dirs + files]
    for p in paths:
        os.lchown(p, st.st_uid, st.st_gid)
