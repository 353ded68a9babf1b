"""The ``mailsrv`` admin command: users, local delivery, configuration check.

Contract (issue 2): ``mailsrv [--data DIR] [--config FILE] COMMAND ...``
where ``--data``/``--config`` may also follow the subcommand.  Every
failure is one ``mailsrv: ...`` line on stderr and a non-zero exit code;
``deliver`` uses sysexits codes because MTAs interpret them.

New subcommands plug in through :data:`COMMANDS`: a builder receives the
subparsers object and the parent parser carrying the global options, and
registers a parser whose ``func(args, config) -> int`` does the work.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from mailsrv.config import DEFAULT_LISTENERS, LISTENER_KINDS, Config, ConfigError, give_to_data_owner, load

if TYPE_CHECKING:
    from mailsrv.auth.passwd import PasswdFile

# sysexits.h
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_CONFIG = 78

RESERVED_NAMES = frozenset({"tls", "passwd", "passwd.lock"})  # files the server keeps in DIR


class CliError(Exception):
    """A failure reported as one line, with its exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line instead of a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        where = self.prog[len("mailsrv"):].strip()
        raise _UsageError(f"{where + ': ' if where else ''}{message} (try '{self.prog} --help')")


def _global_options() -> argparse.ArgumentParser:
    # SUPPRESS: a subparser must not reset a value given before the subcommand.
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--data", metavar="DIR", default=argparse.SUPPRESS,
                   help="data folder (mail and passwd file); default ./mailsrv-data or the config's [server] data")
    p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                   help="ini configuration file (see etc/mailsrv.ini)")
    return p


# -- helpers -----------------------------------------------------------------


def _passwd(config: Config) -> PasswdFile:
    from mailsrv.auth.passwd import PasswdFile

    return PasswdFile(config.passwd_path)


def _username(name: str) -> str:
    from mailsrv.auth.passwd import validate_username

    return validate_username(name)


def _scheme(config: Config) -> str:
    from mailsrv.auth.hashing import UnsupportedScheme, check_scheme

    try:
        return check_scheme(config.hash_scheme)
    except UnsupportedScheme as e:
        raise ConfigError(str(e)) from None


def _read_password() -> str:
    """One line from stdin, or twice without echo from a terminal."""
    if sys.stdin is None:
        raise CliError("no password: standard input is closed")
    if sys.stdin.isatty():
        first = getpass.getpass("New password: ")
        if getpass.getpass("Retype new password: ") != first:
            raise CliError("passwords do not match")
        password = first
    else:
        line = sys.stdin.buffer.readline()
        if not line:
            raise CliError("no password on standard input")
        if line.endswith(b"\n"):
            line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        try:
            password = line.decode("utf-8")
        except UnicodeDecodeError:
            raise CliError("password is not valid UTF-8") from None
    if not password:
        raise CliError("empty password")
    return password


def _hash(password: str, config: Config) -> str:
    from mailsrv.auth.hashing import hash_password

    try:
        return hash_password(password, _scheme(config))
    except ValueError as e:
        raise CliError(str(e)) from None


def _user_dir(config: Config, name: str) -> str:
    return os.path.join(config.data_dir, name)


def _make_maildir(config: Config, name: str) -> str:
    """Create the user's Maildir through the store, with its default folders."""
    from mailsrv.store import Store

    store = Store(config.data_dir)
    try:
        store.account(name)
    finally:
        store.close()
    return os.path.join(_user_dir(config, name), "Maildir")


def _forget_demo_password(config: Config, name: str) -> None:
    """The generated demo password is shown at each start until it changes."""
    from mailsrv.auth.passwd import DEMO_USER, forget_demo_password

    if name == DEMO_USER:
        forget_demo_password(config)


# -- user --------------------------------------------------------------------


def _user_add(args: argparse.Namespace, config: Config) -> int:
    from mailsrv.auth.passwd import UserExists

    name = _username(args.name)
    if config.store_backend == "postgresql":
        from mailsrv import pgcli

        if pgcli.user_exists(config, name):
            raise UserExists(f"user {name} already exists")
        print(pgcli.user_add(config, name, _hash(_read_password(), config)))
        return EX_OK
    if name in RESERVED_NAMES:
        raise CliError(f"user name {name!r} is reserved (the server keeps {name!r} in the data folder)")
    home = _user_dir(config, name)
    if os.path.lexists(home) and not os.path.isdir(os.path.join(home, "Maildir")):
        if not os.path.isdir(home) or os.listdir(home):
            raise CliError(f"{home} exists and is not a user's mail folder")
    scheme = _scheme(config)
    passwd = _passwd(config)
    if passwd.lookup(name) is not None:
        raise UserExists(f"user {name} already exists")
    stored = _hash(_read_password(), config)
    os.makedirs(config.data_dir, exist_ok=True)
    new_file = not os.path.exists(config.passwd_path)
    maildir = _make_maildir(config, name)
    passwd.add_user(name, stored)
    give_to_data_owner(config, home)
    if new_file:
        give_to_data_owner(config, config.passwd_path)
    print(f"added user {name} ({scheme}), mail in {maildir}")
    return EX_OK


def _user_passwd(args: argparse.Namespace, config: Config) -> int:
    from mailsrv.auth.passwd import NoSuchUser

    name = _username(args.name)
    if config.store_backend == "postgresql":
        from mailsrv import pgcli

        if not pgcli.user_exists(config, name):
            raise NoSuchUser(f"no such user {name}")
        pgcli.user_passwd(config, name, _hash(_read_password(), config))
        print(f"password of {name} changed")
        return EX_OK
    passwd = _passwd(config)
    if passwd.lookup(name) is None:
        raise NoSuchUser(f"no such user {name}")
    passwd.set_password(name, _hash(_read_password(), config))
    _forget_demo_password(config, name)
    print(f"password of {name} changed")
    return EX_OK


def _user_del(args: argparse.Namespace, config: Config) -> int:
    name = _username(args.name)
    if config.store_backend == "postgresql":
        from mailsrv import pgcli

        print(pgcli.user_del(config, name, args.purge))
        return EX_OK
    _passwd(config).remove_user(name)
    _forget_demo_password(config, name)
    home = _user_dir(config, name)
    if args.purge:
        if os.path.isdir(home) and not os.path.islink(home):
            shutil.rmtree(home)
        print(f"deleted user {name} and {home}")
    elif os.path.isdir(home):
        print(f"deleted user {name}; mail kept in {home} (use --purge to remove it)")
    else:
        print(f"deleted user {name}")
    return EX_OK


def _user_list(args: argparse.Namespace, config: Config) -> int:
    if config.store_backend == "postgresql":
        from mailsrv import pgcli

        names = pgcli.user_list(config)
    else:
        names = _passwd(config).users()
    for name in names:
        print(name)
    return EX_OK


def build_user(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("user", parents=[common], help="manage users in the passwd file",
                       description="Manage users (Dovecot-compatible passwd file, DIR/passwd by default).")
    us = p.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    a = us.add_parser("add", parents=[common], help="add a user (password from stdin)",
                      description="Add a user: reads the password from standard input (one line), "
                                  "or asks twice on a terminal; creates DIR/NAME/Maildir.")
    a.add_argument("name", metavar="NAME")
    a.set_defaults(func=_user_add)
    pw = us.add_parser("passwd", parents=[common], help="change a user's password (from stdin)",
                       description="Change a user's password: one line from standard input, "
                                   "or asked twice on a terminal.")
    pw.add_argument("name", metavar="NAME")
    pw.set_defaults(func=_user_passwd)
    d = us.add_parser("del", parents=[common], help="delete a user (keeps the mail unless --purge)",
                      description="Remove a user from the passwd file; the mail stays unless --purge.")
    d.add_argument("name", metavar="NAME")
    d.add_argument("--purge", action="store_true", help="also delete DIR/NAME with all its mail")
    d.set_defaults(func=_user_del)
    ls = us.add_parser("list", parents=[common], help="list users",
                       description="Print the user names, one per line.")
    ls.set_defaults(func=_user_list)


# -- deliver -----------------------------------------------------------------


def _deliver(args: argparse.Namespace, config: Config) -> int:
    from mailsrv.auth.passwd import InvalidUsername

    try:
        name = _username(args.name)
    except InvalidUsername as e:
        raise CliError(str(e), EX_NOUSER) from None
    from mailsrv.delivery import deliver_command

    flags: list[str] = []
    for f in args.flags or ():
        flags.extend(f.split())
    if config.store_backend == "postgresql":
        from mailsrv import pgcli

        return pgcli.deliver_command(config, name, args.folder, flags, sys.stdin.buffer)
    return int(deliver_command(config, name, args.folder, flags, sys.stdin.buffer))


def build_deliver(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("deliver", parents=[common], help="deliver one message from stdin (an LDA)",
                       description="Deliver one message read from standard input into NAME's mailbox. "
                                   "Exit codes follow sysexits: 0 delivered, 65 bad input, 67 unknown user, "
                                   "73 over quota, 75 temporary failure, 78 configuration error.")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--folder", metavar="F", default="INBOX", help="target folder (default INBOX)")
    p.add_argument("--flags", metavar="FLAGS", action="append",
                   help="flags to set, space-separated, e.g. '\\Seen \\Flagged'")
    p.set_defaults(func=_deliver, sysexits=True)


# -- config check ------------------------------------------------------------


def _config_check(args: argparse.Namespace, config: Config) -> int:
    """The checks ``twistd mailsrv`` runs before it binds anything
    (mailsrv.ops.checks), printed; ports are not tried (the server may be
    running)."""
    from mailsrv.ops import checks

    problems: list[str] = []
    print(f"config: {config.source or '(none, built-in defaults)'}")
    later = "" if os.path.isdir(config.data_dir) else " (created on first start)"
    print(f"data: {os.path.abspath(config.data_dir)}{later}")
    problems += [p.message for p in checks.check_scheme(config)]
    problems += [p.message for p in checks.check_data(config, checks.RunAs.current())]
    path = config.passwd_path
    if os.path.exists(path):
        try:
            users = _passwd(config).users()
            print(f"passwd: {path}: {len(users)} user(s)")
            if os.stat(path).st_mode & 0o077:
                print(f"warning: {path} is readable by group or others (chmod 600 recommended)")
        except OSError as e:
            problems.append(f"cannot read {path}: {e.strerror}")
    else:
        print(f"passwd: {path} (not created yet)")
    tls_problems, note = checks.check_tls(config)
    problems += [p.message for p in tls_problems]
    if note is not None:
        print(f"tls: {note}")
    elif not tls_problems:
        from mailsrv.tls import self_signed_paths

        print(f"tls: self-signed certificate generated on first start in "
              f"{os.path.dirname(self_signed_paths(config.data_dir)[0])}")
    problems += _print_listeners(config)
    _print_limits(config)
    if config.pop3_timeout < 600:
        print(f"warning: pop3 timeout {config.pop3_timeout}s is below RFC 1939's 10 minutes")
    for p in problems:
        print(f"mailsrv: {p}", file=sys.stderr)
    if problems:
        return 1
    print("configuration ok")
    return EX_OK


def _print_listeners(config: Config) -> list[str]:
    """One line per listener (and the kinds that are off); the parse problems."""
    from mailsrv.ops import checks

    configured = any(config.listeners.values())
    effective = config if configured else dataclasses.replace(
        config, listeners={k: list(v) for k, v in DEFAULT_LISTENERS.items()})
    bad = checks.check_listeners(effective, probe=False)
    bad_specs = {p.message for p in bad}
    origin = "" if configured else " (default)"
    for kind in LISTENER_KINDS:
        specs = effective.endpoints(kind)
        if not specs:
            why = " (not in [listeners]: only the kinds listed there are served)" if configured else ""
            print(f"listen {kind}: none{why}")
        for spec in specs:
            if not any(repr(spec) in m for m in bad_specs):
                print(f"listen {kind}: {spec}{origin}")
    for spec in config.metrics:
        if not any(repr(spec) in m for m in bad_specs):
            print(f"metrics: {spec}")
    return [p.message for p in bad]


def _print_limits(config: Config) -> None:
    lim = config.limits

    def n(value: float, unit: str = "") -> str:
        return f"{value:g}{unit}" if value else "off"

    print(f"limits: {n(lim.connections_per_ip)} connections per address, {n(lim.userip_connections)} per user "
          f"and address, login within {n(lim.login_timeout, ' s')}, ban after {n(lim.ban_after)} failed logins "
          f"for {n(lim.ban_time, ' s')}")


def build_config(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("config", parents=[common], help="configuration tools",
                       description="Configuration tools.")
    cs = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    c = cs.add_parser("check", parents=[common], help="check the configuration, certificate and listeners",
                      description="Load the configuration, check the TLS certificate and key "
                                  "(readable, matching, not expired), print the listeners. Exit 1 on problems.")
    c.set_defaults(func=_config_check)


# -- entry point ---------------------------------------------------------------

COMMANDS: dict[str, Callable[[Any, argparse.ArgumentParser], None]] = {
    "user": build_user,
    "deliver": build_deliver,
    "config": build_config,
    "admin": lambda sub, common: _register("mailsrv.admin", sub, common),
    "migrate": lambda sub, common: _pgcli().build_migrate(sub, common),
    "export": lambda sub, common: _pgcli().build_export(sub, common),
    "quota": lambda sub, common: _register("mailsrv.admin.quota", sub, common),
    "shared": lambda sub, common: _register("mailsrv.admin.shared", sub, common),
    "demo": lambda sub, common: _register("mailsrv.demo", sub, common),
    "who": lambda sub, common: _register("mailsrv.ops.admincmd", sub, common),
}

# Commands that work on an existing data folder: with a missing one they say
# so instead of acting on nothing (user add, config check and demo do not).
NEEDS_DATA = frozenset({"who", "kick", "mailbox", "check", "import"})  # deliver: mailsrv.delivery
NEEDS_DATA_ACTIONS = frozenset({("user", "passwd"), ("user", "del"), ("user", "list")})


def _pgcli() -> Any:
    """migrate/export live with the PostgreSQL tools (imported on use)."""
    from mailsrv import pgcli

    return pgcli


def _register(module: str, subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Subcommands that live in their own module (mailbox, check, import, demo)."""
    import importlib

    importlib.import_module(module).register(subparsers, common)


def build_parser() -> argparse.ArgumentParser:
    common = _global_options()
    parser = _Parser(prog="mailsrv", parents=[common],
                     description="mailsrv administration: users, local delivery, configuration.")
    from mailsrv.version import version_line

    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for build in COMMANDS.values():
        build(sub, common)
    return parser


def _check_data_folder(args: argparse.Namespace, config: Config) -> None:
    command = args.command
    if command not in NEEDS_DATA and (command, getattr(args, "user_command", None)) not in NEEDS_DATA_ACTIONS:
        return
    if config.store_backend == "postgresql" and command in ("user", "deliver", "shared"):
        return  # users and mail are in the database
    if not os.path.isdir(config.data_dir):
        where = "--data" if getattr(args, "data", None) else (f"[server] data in {config.source}" if config.source
                                                               else "the default ./mailsrv-data (or --data)")
        raise ConfigError(f"data folder {os.path.abspath(config.data_dir)} does not exist (from {where}); "
                          "'mailsrv user add' creates it")


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in argv (for exit codes of unparsable commands)."""
    skip = False
    for tok in argv:
        if skip:
            skip = False
        elif tok in ("--data", "--config"):
            skip = True
        elif not tok.startswith("-"):
            return tok
    return None


def _describe_oserror(e: OSError) -> str:
    where = f"{e.filename}: " if e.filename else ""
    return f"{where}{e.strerror or e}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (console_scripts exits with it)."""
    from mailsrv.auth.hashing import UnsupportedScheme
    from mailsrv.auth.passwd import AuthError

    argv = list(sys.argv[1:] if argv is None else argv)
    sysexits = _command_of(argv) == "deliver"
    try:
        try:
            args = build_parser().parse_args(argv)
        except _UsageError as e:
            raise CliError(str(e), EX_USAGE if sysexits else 2) from None
        config = load(getattr(args, "config", None), getattr(args, "data", None))
        _check_data_folder(args, config)
        return args.func(args, config)
    except CliError as e:
        _err(str(e))
        return e.code
    except ConfigError as e:
        _err(str(e))
        return EX_CONFIG if sysexits else 1
    except (AuthError, UnsupportedScheme) as e:
        _err(str(e))
        return 1
    except BrokenPipeError:
        # stdout closed early (mailsrv user list | head): not an error worth a line
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as e:
        _err(_describe_oserror(e))
        return EX_TEMPFAIL if sysexits else 1
    except KeyboardInterrupt:
        _err("interrupted")
        return EX_TEMPFAIL if sysexits else 130
    except Exception as e:
        if os.environ.get("MAILSRV_TRACEBACK"):
            raise
        _err(f"internal error: {type(e).__name__}: {e} (set MAILSRV_TRACEBACK=1 for details)")
        # An MTA bounces on EX_SOFTWARE; our own fault must make it retry instead.
        return EX_TEMPFAIL if sysexits else EX_SOFTWARE


def _err(message: str) -> None:
    line = " ".join(message.split("\n"))
    try:
        print(f"mailsrv: {line}", file=sys.stderr)
        sys.stderr.flush()
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
