"""Start-up checks: what ``twistd mailsrv`` verifies before it binds
anything, and ``mailsrv config check`` prints.

Each check returns :class:`Problem` values, one sentence each, with the
sysexits code the server exits with.  The server runs them all and stops at
the first start-up with problems, one line per problem on stderr and no
traceback (unless ``--debug``/``MAILSRV_TRACEBACK=1``).

The listener checks are data-driven: every (kind, endpoint) pair from the
configuration (mail listeners, ``--metrics``, any kind added later) is
parsed by Twisted and probed by endpoint type (:mod:`mailsrv.ops.endpoint`);
a new endpoint type (``haproxy:``, ``systemd:``) is parsed, and probed if
:data:`mailsrv.ops.endpoint.PROBES` knows how.

Ownership after ``twistd --uid/--gid``: files are checked as that user
will see them (owner, group and supplementary groups, mode bits; ACLs are
not read), and the line says what to ``chown``.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mailsrv.config import Config
from mailsrv.ops import endpoint

# sysexits.h
EX_UNAVAILABLE = 69
EX_CANTCREAT = 73
EX_NOPERM = 77
EX_CONFIG = 78
MAX_USERS_CHECKED = 10_000


@dataclass(frozen=True)
class Problem:
    """One reason the server cannot start, said in one line."""

    message: str
    code: int = EX_CONFIG


class StartupError(Exception):
    """A :class:`Problem` raised where a check cannot return it (a bind)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@dataclass(frozen=True)
class RunAs:
    """The identity the server will serve as (twistd ``--uid/--gid``)."""

    uid: int
    gid: int
    groups: frozenset[int] = field(default_factory=frozenset)

    @classmethod
    def current(cls) -> RunAs:
        return cls(os.geteuid(), os.getegid(), frozenset(os.getgroups()) | {os.getegid()})

    @classmethod
    def of(cls, uid: int | None, gid: int | None) -> RunAs:
        """twistd's rule: the user's primary group when only --uid is given;
        supplementary groups as initgroups() will set them."""
        if uid is None and gid is None:
            return cls.current()
        uid = os.geteuid() if uid is None else uid
        try:
            pw: Any = pwd.getpwuid(uid)
        except KeyError:
            pw = None
        if gid is None:
            gid = pw.pw_gid if pw is not None else os.getegid()
        groups = {gid}
        if pw is not None:
            groups.update(os.getgrouplist(pw.pw_name, gid))
        return cls(uid, gid, frozenset(groups))

    @property
    def switches(self) -> bool:
        return self.uid != os.geteuid()

    def name(self) -> str:
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return str(self.uid)

    def group_name(self) -> str:
        try:
            return grp.getgrgid(self.gid).gr_name
        except KeyError:
            return str(self.gid)

    def may(self, st: os.stat_result, want: int) -> bool:
        """Would this identity get ``want`` (a mask of 4 r, 2 w, 1 x) on a file with ``st``?"""
        if self.uid == 0:
            return True
        if st.st_uid == self.uid:
            bits = st.st_mode >> 6
        elif st.st_gid in self.groups:
            bits = st.st_mode >> 3
        else:
            bits = st.st_mode
        return bits & want == want


# -- listeners --------------------------------------------------------------------


def listener_specs(cfg: Config) -> list[tuple[str, str]]:
    """Every (kind, endpoint) the server will bind, in a stable order."""
    pairs = [(kind, spec) for kind, specs in cfg.listeners.items() for spec in specs]
    pairs += [("metrics", spec) for spec in cfg.metrics]
    return pairs


def check_listeners(cfg: Config, probe: bool, reactor: Any = None) -> list[Problem]:
    """Each endpoint parses; with ``probe``, each address can be bound now."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    problems = []
    held: list[Any] = []  # test sockets, open until every listener was tried
    try:
        for kind, spec in listener_specs(cfg):
            why = endpoint.parse(reactor, spec)
            if why is not None:
                problems.append(Problem(f"bad {kind} listener {spec!r}: {why}"))
                continue
            if probe:
                why = endpoint.probe(spec, held)
                if why is not None:
                    problems.append(Problem(f"cannot listen for {kind} on {spec}: {why}", EX_UNAVAILABLE))
    finally:
        for s in held:
            s.close()
    return problems


# -- TLS --------------------------------------------------------------------------


def check_tls(cfg: Config) -> tuple[list[Problem], str | None]:
    """The configured certificate and key (or the self-signed pair once it
    exists): readable, matching, not expired.  Also returns the line that
    describes a usable certificate."""
    from mailsrv.tls import check_pair, configured_pair, self_signed_paths

    pair = configured_pair(cfg.tls_cert, cfg.tls_key)
    if pair is None:
        cert, key = self_signed_paths(cfg.data_dir)
        if not (os.path.exists(cert) and os.path.exists(key)):
            return [], None  # generated on first start
        pair = cert, key
    problems, note = check_pair(*pair)
    return [Problem(p) for p in problems], note


# -- the data folder ----------------------------------------------------------------


def check_data(cfg: Config, run_as: RunAs) -> list[Problem]:
    """The data folder exists (or can be made) and the serving identity can
    reach, read and write it and what is in it."""
    data = os.path.abspath(cfg.data_dir)
    try:
        st = os.stat(data)
    except (FileNotFoundError, NotADirectoryError):
        return _check_creatable(data, run_as)
    except OSError as e:
        return [Problem(f"data folder {data}: {e.strerror}", EX_CANTCREAT)]
    if not stat.S_ISDIR(st.st_mode):
        return [Problem(f"data folder {data} exists and is not a folder", EX_CANTCREAT)]
    reach = _reach(os.path.dirname(data), run_as, data)
    if reach:
        return reach
    if not run_as.may(st, 7):
        return [_ownership(data, st, run_as, data)]
    if not run_as.switches and not os.access(data, os.R_OK | os.W_OK | os.X_OK):
        return [Problem(f"data folder {data} is not writable", EX_CANTCREAT)]
    passwd = cfg.passwd_path
    if os.path.exists(passwd) and not os.path.isfile(passwd):
        return [Problem(f"password file {passwd} is not a file")]
    return _check_contents(data, cfg, run_as)


def _check_creatable(data: str, run_as: RunAs) -> list[Problem]:
    parent = os.path.dirname(data)
    while not os.path.exists(parent) and parent != os.path.dirname(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return [Problem(f"cannot create data folder {data}: {parent} is not a folder", EX_CANTCREAT)]
    if not os.access(parent, os.W_OK | os.X_OK):
        return [Problem(f"cannot create data folder {data}: {parent} is not writable", EX_CANTCREAT)]
    return _reach(parent, run_as, data)


def _reach(folder: str, run_as: RunAs, data: str) -> list[Problem]:
    """Every folder from / down to ``folder`` lets ``run_as`` through."""
    if not run_as.switches:
        return []
    path = os.sep
    for part in [p for p in folder.split(os.sep) if p]:
        path = os.path.join(path, part)
        try:
            st = os.stat(path)
        except OSError:
            return []
        if not run_as.may(st, 1):
            return [Problem(f"data folder {data}: {run_as.name()} (uid {run_as.uid}) cannot reach it after "
                            f"--uid: {path} is mode {stat.S_IMODE(st.st_mode):04o} {_owner(st)} "
                            f"(chmod o+x {path}, or keep the data folder elsewhere)", EX_NOPERM)]
    return []


def _check_contents(data: str, cfg: Config, run_as: RunAs) -> list[Problem]:
    """After --uid: the password file, the TLS folder and the users' folders."""
    if not run_as.switches:
        return []
    wanted: list[tuple[str, int]] = [(cfg.passwd_path, 4), (os.path.join(data, "tls"), 5)]
    try:
        names = sorted(os.listdir(data))[:MAX_USERS_CHECKED]
    except OSError:
        names = []
    wanted += [(os.path.join(data, n), 7) for n in names if not n.startswith(".") and n != "tls"]
    for path, want in wanted:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if want == 7 and not stat.S_ISDIR(st.st_mode):
            continue  # passwd.lock and other files the server does not use
        if not run_as.may(st, want):
            return [_ownership(path, st, run_as, data)]
    return []


def _owner(st: os.stat_result) -> str:
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{user}:{group}"


def _ownership(path: str, st: os.stat_result, run_as: RunAs, data: str) -> Problem:
    return Problem(f"{path} belongs to {_owner(st)} (mode {stat.S_IMODE(st.st_mode):04o}) and {run_as.name()} "
                   f"cannot use it after --uid: chown -R {run_as.name()}:{run_as.group_name()} {data}", EX_NOPERM)


# -- everything -----------------------------------------------------------------------


def startup_problems(cfg: Config, run_as: RunAs, probe: bool = True) -> list[Problem]:
    """What ``twistd mailsrv`` checks before it binds anything."""
    problems = check_listeners(cfg, probe)
    problems += check_tls(cfg)[0]
    problems += check_data(cfg, run_as)
    problems += check_scheme(cfg)
    return problems


def check_scheme(cfg: Config) -> list[Problem]:
    from mailsrv.auth.hashing import UnsupportedScheme
    from mailsrv.auth.hashing import check_scheme as check

    try:
        check(cfg.hash_scheme)
    except UnsupportedScheme as e:
        return [Problem(str(e))]
    return []


def first_code(problems: Iterable[Problem]) -> int:
    return next((p.code for p in problems), 0)
