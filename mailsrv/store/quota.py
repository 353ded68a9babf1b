"""Quota (RFC 9208) for the Maildir store, Dovecot-compatible.

Rules are Dovecot's ``quota_rule`` strings (``*:storage=1G``,
``*:messages=50000``, ``Trash:storage=+10%``, ``Spam:ignore``), read from
``mailsrv.ini`` (``[quota] rule``, ``rule2``...) and overridden per user by
the passwd file's extra fields ``userdb_quota_rule=...``,
``userdb_quota_rule2=...`` exactly as Dovecot reads them: a rule of the same
key replaces the configured one, ``storage`` without a unit is KiB and
``bytes`` octets (units B K M G T), the default rule (``*``) is absolute, a
folder rule is relative to it (``+``/``-``, or ``%`` of the default).

Usage lives in Maildir++'s ``maildirsize`` file at the Maildir root, the one
Dovecot's ``maildir`` quota backend keeps: a limits line (``1073741824S,
50000C``) and ``<octets> <messages>`` lines, one appended per change
(O_APPEND, as the Maildir++ specification and Dovecot do).  Each change
costs an append and, when the file changed behind us, one read of at most
5 KiB: never a scan of the mailbox.  The file is compacted to one line by
summing before it reaches Dovecot's 5120-octet re-count threshold, and
re-counted from the folders (``recalc``) only when it is missing, broken,
written for other limits, or over quota on untrusted sums - Dovecot's
rules.  Sizes are the files' sizes (the ``S=`` of their names), as
Dovecot's quota counts them.

:class:`QuotaTracker` is the per-account object; its methods block (file
I/O) and are thread-safe: the live store calls them from worker threads,
``mailsrv deliver`` and the admin commands directly.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from twisted.logger import Logger

from mailsrv.store import layout
from mailsrv.store.filename import filename_size, split_filename
from mailsrv.store.fsutil import atomic_write, unlink_quiet
from mailsrv.store.interfaces import OverQuota, QuotaResource, QuotaRoot

log = Logger(namespace="mailsrv.quota")

MAILDIRSIZE = "maildirsize"
ROOT_NAME = "User quota"  # Dovecot's default quota root name
COMPACT_AT = 4096  # octets; Dovecot re-counts a file of 5120 or more
STALE_SECS = 15 * 60  # Dovecot distrusts an over-quota sum older than this
_UNITS = {"": None, "B": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
_LIMIT = re.compile(r"([+-]?)(\d+)([A-Za-z%]?)\Z")


class QuotaRuleError(ValueError):
    """A quota rule Dovecot would refuse too."""


@dataclass
class Rule:
    """One folder rule: limits relative to the default rule's."""

    mask: str
    bytes: int = 0
    count: int = 0
    bytes_percent: int = 0
    count_percent: int = 0
    ignore: bool = False


@dataclass
class QuotaRules:
    """The rules of one owner: the default limits (0: none) and folder rules."""

    bytes: int = 0
    count: int = 0
    rules: list[Rule] = field(default_factory=list)

    @property
    def enforced(self) -> bool:
        return bool(self.bytes or self.count)

    def _rule(self, mailbox: str) -> Rule | None:
        for r in self.rules:
            if _wildcard(r.mask, mailbox):
                return r
        return None

    def ignored(self, mailbox: str) -> bool:
        r = self._rule(mailbox)
        return r is not None and r.ignore

    def limits_for(self, mailbox: str) -> tuple[int, int]:
        """(octets, messages) limits when storing into ``mailbox`` (0: no limit)."""
        r = self._rule(mailbox)
        b, c = self.bytes, self.count
        if r is not None and not r.ignore:
            if b:
                b += r.bytes + (self.bytes * r.bytes_percent // 100 if r.bytes_percent else 0)
            if c:
                c += r.count + (self.count * r.count_percent // 100 if r.count_percent else 0)
        return max(b, 0), max(c, 0)

    def limits_line(self) -> str:
        """The first line of maildirsize for these limits."""
        parts = []
        if self.bytes:
            parts.append(f"{self.bytes}S")
        if self.count:
            parts.append(f"{self.count}C")
        return ",".join(parts) or "0S"


def _wildcard(mask: str, name: str) -> bool:
    if mask.upper() == "INBOX":
        return name == "INBOX"
    rx = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in mask)
    return re.fullmatch(rx, name) is not None


def _parse_limit(text: str, default_unit: int, relative: bool) -> tuple[int, int]:
    """(value, percent) of ``storage=``/``bytes=``/``messages=`` values."""
    m = _LIMIT.match(text)
    if m is None:
        raise QuotaRuleError(f"invalid limit {text!r}")
    sign, digits, unit = m.groups()
    if sign == "+" and not relative:
        raise QuotaRuleError("the default rule's limit cannot have '+'")
    value = int(digits) * (-1 if sign == "-" else 1)
    if unit == "%":
        if not relative:
            raise QuotaRuleError("the default rule cannot be a percentage")
        return 0, value
    mult = _UNITS.get(unit.upper())
    if unit and mult is None:
        raise QuotaRuleError(f"unknown unit {unit!r}")
    value *= mult if mult is not None else default_unit
    if value < 0 and not relative:
        raise QuotaRuleError("a limit cannot be negative")
    return value, 0


def _apply_limits(target: Rule | QuotaRules, limits: str, relative: bool) -> None:
    for item in limits.split(":"):
        key, _, value = item.partition("=")
        if key == "storage":
            target.bytes, pct = _parse_limit(value, 1024, relative)
            if isinstance(target, Rule):
                target.bytes_percent = pct
        elif key == "bytes":
            target.bytes, pct = _parse_limit(value, 1, relative)
            if isinstance(target, Rule):
                target.bytes_percent = pct
        elif key == "messages":
            target.count, pct = _parse_limit(value, 1, relative)
            if isinstance(target, Rule):
                target.count_percent = pct
        else:
            raise QuotaRuleError(f"unknown rule limit name {key!r}")


def parse_rules(defs: Iterable[str]) -> QuotaRules:
    """Dovecot's ``quota_rule`` values, in order, into QuotaRules.  ``%%``
    is ``%``, as in dovecot.conf, where Dovecot expands ``%`` variables
    (``Trash:storage=+10%%``); a single ``%`` is taken as it is."""
    rules = QuotaRules()
    for d in defs:
        mask, sep, limits = d.strip().replace("%%", "%").partition(":")
        if not sep or not mask:
            raise QuotaRuleError(f"invalid rule {d!r} (want MAILBOX:LIMITS)")
        if limits.startswith("backend="):
            continue  # Maildir++ backend rules: limits come from our own rules
        if mask in ("*", "?"):
            if limits == "ignore":
                raise QuotaRuleError("the default rule cannot be 'ignore'")
            _apply_limits(rules, limits, relative=False)
            continue
        rule = next((r for r in rules.rules if r.mask == mask), None)
        if rule is None:
            rule = Rule("INBOX" if mask.upper() == "INBOX" else mask)
            rules.rules.append(rule)
        if limits == "ignore":
            rule.ignore = True
        else:
            _apply_limits(rule, limits, relative=True)
    return rules


def _rule_order(key: str) -> int:
    tail = key[len("quota_rule"):]
    return int(tail) if tail.isdigit() else (1 if not tail else 1 << 30)


def _var_expand(text: str) -> str:
    """One round of Dovecot's ``%`` expansion as it touches quota rules:
    ``%%`` is ``%``, a ``%`` ending the text is dropped (no variable)."""
    return re.sub(r"%(%|$)", lambda m: m.group(1), text)


def userdb_value(text: str) -> str:
    """A passwd-file extra field as Dovecot's quota plugin finally sees it:
    expanded twice (by the passwd-file userdb, then as a plugin setting),
    so ``userdb_quota_rule2=Trash:storage=+10%%%%`` is ten per cent, while
    ``+10%%`` ends up as ``+10`` (KiB) - tests/e2e/test_dovecot_share.py
    has Dovecot show it."""
    return _var_expand(_var_expand(text))


def merge_rule_fields(configured: Mapping[str, str], user_fields: Mapping[str, str]) -> list[str]:
    """The rule values in effect for one user: ``quota_rule``, ``quota_rule2``...
    from the configuration, each replaced by the user's field of the same
    key (Dovecot: userdb fields override plugin settings; their values as
    :func:`userdb_value` has them)."""
    merged = dict(configured)
    merged.update({k: userdb_value(v) for k, v in user_fields.items() if re.fullmatch(r"quota_rule\d*", k)})
    return [merged[k] for k in sorted(merged, key=_rule_order) if merged[k].strip()]


def rules_for(configured: Mapping[str, str], user_fields: Mapping[str, str], user: str = "") -> QuotaRules:
    """Parse the merged rules; a broken user rule is logged and left out
    (the configured ones are checked at start-up), so a typo in one passwd
    entry never locks its user out."""
    try:
        return parse_rules(merge_rule_fields(configured, user_fields))
    except QuotaRuleError as e:
        log.error("quota rules of {user} ignored: {e}", user=user, e=e)
        try:
            return parse_rules(merge_rule_fields(configured, {}))
        except QuotaRuleError:
            return QuotaRules()


# ---------------------------------------------------------------- counting

def message_size(directory: str, filename: str) -> int:
    """A message file's size: ``S=`` of its name, else its length on disk."""
    key, _ = split_filename(filename)
    size = filename_size(key, "S")
    if size is None:
        try:
            size = os.stat(os.path.join(directory, filename)).st_size
        except OSError:
            size = 0
    return size


def folder_usage(path: str) -> tuple[int, int]:
    """(octets, messages) of one folder's new/ and cur/."""
    total = count = 0
    for sub in ("new", "cur"):
        d = os.path.join(path, sub)
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for fn in names:
            if fn.startswith("."):
                continue
            total += message_size(d, fn)
            count += 1
    return total, count


def scan(root: str, rules: QuotaRules | None = None) -> tuple[int, int]:
    """Count every folder under a Maildir root (Dovecot's re-count)."""
    total = count = 0
    for name in layout.list_folder_names(root):
        if rules is not None and rules.ignored(name):
            continue
        b, c = folder_usage(layout.folder_path(root, name))
        total += b
        count += c
    return total, count


# ---------------------------------------------------------------- maildirsize

@dataclass
class SizeFile:
    """What ``maildirsize`` says: its limits line and the summed lines."""

    limits: str
    bytes: int
    count: int
    lines: int  # <octets> <messages> lines after the limits line
    size: int
    mtime: float


def read_maildirsize(path: str) -> SizeFile | None:
    """The parsed file, or None when it is missing, broken or too large to
    trust (what makes Dovecot re-count)."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read(8192)
    except FileNotFoundError:
        return None
    cut = data.rfind(b"\n")
    if cut < 0 or b"\0" in data or len(data) >= 8192:
        return None
    rows = data[:cut].decode("ascii", "replace").split("\n")
    total = count = 0
    try:
        for row in rows[1:]:
            b, c = row.split()
            total += int(b)
            count += int(c)
    except ValueError:
        return None
    if total < 0 or count < 0:
        return None
    return SizeFile(rows[0].strip(), total, count, len(rows) - 1, st.st_size, st.st_mtime)


def write_maildirsize(path: str, limits: str, octets: int, messages: int) -> None:
    """Replace the file with the limits line and one sum line."""
    atomic_write(path, f"{limits}\n{octets} {messages}\n".encode("ascii"), fsync=False)


def append_maildirsize(path: str, octets: int, messages: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, f"{octets} {messages}\n".encode("ascii"))
    finally:
        os.close(fd)


class QuotaTracker:
    """One owner's usage against their rules (``rules()`` is asked on each
    call, so a passwd-file change applies at once).  Thread-safe."""

    def __init__(self, root: str, user: str, rules: Callable[[], QuotaRules],
                 warnings: Iterable[int] = (), tempfail: bool = False) -> None:
        self.root = root
        self.user = user
        self.path = os.path.join(root, MAILDIRSIZE)
        self.rules = rules
        self.warnings = sorted(set(warnings))
        self.tempfail = tempfail
        self._lock = threading.Lock()
        self.recalcs = 0  # full re-counts done (tests, benchmarks)

    # -- reading
    def _current(self, rules: QuotaRules) -> SizeFile:
        """The usage, re-counted when the file cannot be trusted."""
        sf = read_maildirsize(self.path)
        if sf is None or sf.limits != rules.limits_line():
            return self._recalc(rules)
        if sf.size >= COMPACT_AT:
            write_maildirsize(self.path, sf.limits, sf.bytes, sf.count)
            sf = SizeFile(sf.limits, sf.bytes, sf.count, 1, 0, time.time())
        return sf

    def _recalc(self, rules: QuotaRules) -> SizeFile:
        self.recalcs += 1
        octets, messages = scan(self.root, rules)
        limits = rules.limits_line()
        write_maildirsize(self.path, limits, octets, messages)
        return SizeFile(limits, octets, messages, 1, 0, time.time())

    def usage(self) -> tuple[int, int]:
        """(octets, messages) in use: from maildirsize when limits apply,
        else counted (nothing is tracked for an owner without limits)."""
        rules = self.rules()
        if not rules.enforced:
            return scan(self.root, rules)
        with self._lock:
            sf = self._current(rules)
        return sf.bytes, sf.count

    def root_info(self) -> QuotaRoot | None:
        """The RFC 9208 view: the default rule's limits, or None."""
        rules = self.rules()
        if not rules.enforced:
            return None
        octets, messages = self.usage()
        res = []
        if rules.bytes:
            res.append(QuotaResource("STORAGE", octets, rules.bytes))
        if rules.count:
            res.append(QuotaResource("MESSAGE", messages, rules.count))
        return QuotaRoot(ROOT_NAME, tuple(res))

    def recalc(self) -> tuple[int, int]:
        """Re-count from the folders and rewrite maildirsize (``mailsrv quota
        recalc``); without limits, just count."""
        rules = self.rules()
        if not rules.enforced:
            return scan(self.root, rules)
        with self._lock:
            sf = self._recalc(rules)
        return sf.bytes, sf.count

    # -- changing
    def change(self, mailbox: str, octets: int, messages: int, check: bool) -> None:
        """Record ``octets``/``messages`` more (or fewer) in ``mailbox``;
        with ``check``, first refuse (OverQuota) what goes beyond the limit
        that applies to that mailbox.  Check and record are one step under
        the lock, so concurrent stores cannot both slip under the limit."""
        rules = self.rules()
        if not rules.enforced or rules.ignored(mailbox) or (octets == 0 and messages == 0):
            return
        with self._lock:
            sf = self._current(rules)
            if check and octets >= 0 and messages >= 0 and self._over(rules, mailbox, sf, octets, messages):
                if sf.lines > 1 or time.time() - sf.mtime > STALE_SECS:
                    sf = self._recalc(rules)  # Dovecot trusts no over-quota sum it did not just count
                if self._over(rules, mailbox, sf, octets, messages):
                    err = OverQuota(f"Quota exceeded (mailbox for user {self.user} is full)")
                    err.temporary = self.tempfail
                    raise err
            try:
                append_maildirsize(self.path, octets, messages)
            except FileNotFoundError:
                self._recalc(rules)
                return
        if octets > 0 or messages > 0:
            self._warn(rules, sf.bytes, sf.bytes + octets, sf.count, sf.count + messages)

    @staticmethod
    def _over(rules: QuotaRules, mailbox: str, sf: SizeFile, octets: int, messages: int) -> bool:
        blimit, climit = rules.limits_for(mailbox)
        return bool((blimit and sf.bytes + octets > blimit) or (climit and sf.count + messages > climit))

    def _warn(self, rules: QuotaRules, b0: int, b1: int, c0: int, c1: int) -> None:
        """A log line each time usage crosses a configured percentage."""
        for pct in self.warnings:
            for what, limit, before, after in (("storage", rules.bytes, b0, b1), ("messages", rules.count, c0, c1)):
                mark = limit * pct // 100
                if limit and before < mark <= after:
                    log.warn("quota warning: {user} reached {pct}% of the {what} limit ({after} of {limit})",
                             user=self.user, pct=pct, what=what, after=after, limit=limit)


def drop_file(root: str) -> None:
    """Forget the tracked usage (the next use re-counts)."""
    unlink_quiet(os.path.join(root, MAILDIRSIZE))
