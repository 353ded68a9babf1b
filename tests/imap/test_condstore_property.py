"""The property of issue 9: after any mix of APPEND / STORE / EXPUNGE by
two sessions, with restarts (clean, and as after ``kill -9``) in between,
``FETCH 1:* (FLAGS) (CHANGEDSINCE m)`` answers exactly the messages
changed since the client saw HIGHESTMODSEQ m, with their flags,
``VANISHED (EARLIER)`` exactly those expunged since, and HIGHESTMODSEQ
only grew.

The real server and Maildir store run in this process's reactor; the
clients are imaplib connections driven by hypothesis from a worker thread
(``blockingCallFromThread`` restarts the server between steps)."""

from __future__ import annotations

import imaplib
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor, threads
from twisted.internet.threads import blockingCallFromThread
from twisted.trial import unittest

from mailsrv.config import Config
from mailsrv.imap import IMAPFactory
from mailsrv.store import Store
from tests.fakestore import make_portal

FLAGS = ["\\Seen", "\\Flagged", "\\Answered", "$Work"]
MSG = b"From: a@example.org\r\nSubject: p\r\n\r\nbody %d\r\n"

op = st.one_of(
    st.tuples(st.just("append"), st.integers(0, 1), st.sets(st.sampled_from(FLAGS), max_size=2)),
    st.tuples(st.just("store"), st.integers(0, 1), st.lists(st.integers(0, 12), min_size=1, max_size=4),
              st.sampled_from("+-="), st.sets(st.sampled_from(FLAGS), max_size=2)),
    st.tuples(st.just("expunge"), st.integers(0, 1), st.lists(st.integers(0, 12), min_size=1, max_size=3)),
    st.tuples(st.just("restart"), st.sampled_from(["clean", "crash"])),
)


class Server:
    """The real IMAP server and store on a data dir, restartable."""

    def __init__(self, data: str) -> None:
        self.data = data
        self.store: Store | None = None
        self.port: Any = None
        self.old: list[Store] = []  # crashed stores: never closed, kept alive as a dead process's files would be

    def start(self) -> int:
        self.store = Store(self.data)
        factory = IMAPFactory(make_portal(self.store, {"joe": "secret"}), Config(data_dir=self.data, auth_fail_delay=0))
        self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        return int(self.port.getHost().port)

    @defer.inlineCallbacks
    def stop(self, clean: bool) -> Any:
        yield self.port.stopListening()
        assert self.store is not None
        if clean:
            yield self.store.close()
        else:
            self.old.append(self.store)

    @defer.inlineCallbacks
    def restart(self, clean: bool) -> Any:
        yield self.stop(clean)
        return self.start()


@dataclass
class Model:
    """What the client side knows happened, op by op."""

    flags: dict[int, set[str]] = field(default_factory=dict)
    changed_at: dict[int, int] = field(default_factory=dict)  # uid -> step of its last change
    expunged_at: dict[int, int] = field(default_factory=dict)
    seen: list[int] = field(default_factory=list)  # HIGHESTMODSEQ after each step


def connect(port: int) -> imaplib.IMAP4:
    m = imaplib.IMAP4("127.0.0.1", port, timeout=20)
    m.login("joe", "secret")
    assert m.enable("QRESYNC")[0] == "OK"
    m.select("INBOX")
    return m


def highestmodseq(m: imaplib.IMAP4) -> int:
    typ, data = m.status("INBOX", "(HIGHESTMODSEQ)")
    assert typ == "OK", data
    return int(re.search(rb"HIGHESTMODSEQ (\d+)", data[0]).group(1))  # type: ignore[union-attr]


def fetch_changed(m: imaplib.IMAP4, since: int) -> tuple[dict[int, set[str]], list[int]]:
    m.untagged_responses.pop("VANISHED", None)  # imaplib keeps what earlier commands brought
    m.untagged_responses.pop("FETCH", None)
    typ, data = m.uid("FETCH", "1:*", "(FLAGS) (CHANGEDSINCE %d VANISHED)" % since)
    assert typ == "OK", data
    got: dict[int, set[str]] = {}
    for d in data:
        if isinstance(d, bytes) and b"UID " in d:
            uid = int(re.search(rb"UID (\d+)", d).group(1))  # type: ignore[union-attr]
            flags = re.search(rb"FLAGS \(([^)]*)\)", d).group(1).decode().split()  # type: ignore[union-attr]
            got[uid] = {f for f in flags if f != "\\Recent"}
    vanished: list[int] = []
    for line in m.untagged_responses.pop("VANISHED", []):
        text = line.decode()
        assert text.startswith("(EARLIER) "), text
        for part in text.split()[1].split(","):
            lo, _, hi = part.partition(":")
            vanished.extend(range(int(lo), int(hi or lo) + 1))
    return got, sorted(vanished)


def run_ops(server: Server, ops: list[tuple]) -> None:
    """Worker thread: play the ops, then check every sync point."""
    model = Model()
    port = blockingCallFromThread(reactor, server.start)
    clients = [connect(port), connect(port)]
    model.seen.append(highestmodseq(clients[0]))
    n = 0
    for step, o in enumerate(ops, 1):
        kind = o[0]
        if kind == "restart":
            for c in clients:
                c.logout()
            port = blockingCallFromThread(reactor, server.restart, o[1] == "clean")
            clients = [connect(port), connect(port)]
        elif kind == "append":
            n += 1
            flags = "(" + " ".join(sorted(o[2])) + ")"
            typ, data = clients[o[1]].append("INBOX", flags, None, MSG % n)
            uid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))  # type: ignore[union-attr]
            model.flags[uid] = set(o[2])
            model.changed_at[uid] = step
        elif kind == "store":
            _store(clients[o[1]], model, step, o)
        else:
            _expunge(clients[o[1]], model, step, o[2])
        h = highestmodseq(clients[o[1] if kind != "restart" else 0])
        assert h >= model.seen[-1], f"HIGHESTMODSEQ went back: {model.seen} then {h}"
        changed = any(v == step for v in model.changed_at.values()) or step in model.expunged_at.values()
        assert (h > model.seen[-1]) == changed or (kind == "restart" and h >= model.seen[-1]), (o, model.seen, h)
        model.seen.append(h)
    _check_sync_points(clients[0], model)
    for c in clients:
        c.logout()


def _uids(model: Model, picks: list[int]) -> list[int]:
    live = sorted(model.flags)
    return sorted({live[i % len(live)] for i in picks}) if live else []


def _store(m: imaplib.IMAP4, model: Model, step: int, o: tuple) -> None:
    uids = _uids(model, o[2])
    if not uids:
        return
    mode, flags = o[3], set(o[4])
    typ, data = m.uid("STORE", ",".join(map(str, uids)), ("" if mode == "=" else mode) + "FLAGS.SILENT",
                      "(" + " ".join(sorted(flags)) + ")")
    assert typ == "OK", data
    for u in uids:
        old = model.flags[u]
        new = old | flags if mode == "+" else old - flags if mode == "-" else set(flags)
        if new != old:
            model.flags[u] = new
            model.changed_at[u] = step


def _expunge(m: imaplib.IMAP4, model: Model, step: int, picks: list[int]) -> None:
    uids = _uids(model, picks)
    if not uids:
        return
    s = ",".join(map(str, uids))
    assert m.uid("STORE", s, "+FLAGS.SILENT", "(\\Deleted)")[0] == "OK"
    for u in uids:
        if "\\Deleted" not in model.flags[u]:
            model.flags[u].add("\\Deleted")
            model.changed_at[u] = step
    assert m.uid("EXPUNGE", s)[0] == "OK"
    for u in uids:
        del model.flags[u]
        del model.changed_at[u]
        model.expunged_at[u] = step


def _check_sync_points(m: imaplib.IMAP4, model: Model) -> None:
    """A client that last saw HIGHESTMODSEQ seen[i] (after step i) learns
    exactly what changed and vanished after step i."""
    m.noop()  # the other session's last changes reach this one
    for i, since in enumerate(model.seen):
        got, vanished = fetch_changed(m, since)
        want = {u: f for u, f in model.flags.items() if model.changed_at[u] > i}
        assert got == want, (i, since, got, want)
        assert vanished == sorted(u for u, at in model.expunged_at.items() if at > i), (i, since, vanished)


class ChangedSinceProperty(unittest.TestCase):
    timeout = 600

    def test_changedsince_equals_the_changes_since(self) -> Any:
        servers: list[Server] = []

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(op, min_size=1, max_size=14))
        def check(ops: list[tuple]) -> None:
            data = tempfile.mkdtemp(prefix="mailsrv-modseq-prop-")
            server = Server(data)
            servers.append(server)
            try:
                run_ops(server, ops)
            finally:
                blockingCallFromThread(reactor, server.stop, True)
                shutil.rmtree(data, ignore_errors=True)

        return threads.deferToThread(check)
