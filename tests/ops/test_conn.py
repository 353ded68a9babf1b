"""The accounting wrapper and the session registry on StringTransports:
bytes counted, refusals at connect, the login deadline, kicks, the lines
an operator reads."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, globalLogPublisher

from mailsrv.ops.conn import AccountingFactory
from mailsrv.ops.limits import Limits, LimitSettings
from mailsrv.ops.sessions import NO_SESSION, Registry, printable


class Echo(Protocol):
    ops_session: Any = NO_SESSION

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data.upper())

    def ops_detail(self) -> dict[str, Any]:
        return {"mailbox": "INBOX", "idle": True}


@pytest.fixture
def events():
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


def setup(kind="imap", **settings):
    clock = Clock()
    registry = Registry(Limits(LimitSettings(**settings), fail_delay=0.0, clock=clock.seconds), clock)
    return AccountingFactory(Factory.forProtocol(Echo), kind, registry, clock), registry, clock


def connect(factory, ip="192.0.2.7", port=5000):
    peer = IPv4Address("TCP", ip, port)
    proto = factory.buildProtocol(peer)
    t = StringTransport(peerAddress=peer, hostAddress=IPv4Address("TCP", "192.0.2.1", 993))
    proto.makeConnection(t)
    return proto, t


def test_bytes_and_session_end_line(events):
    factory, registry, clock = setup()
    proto, t = connect(factory)
    session = proto.wrappedProtocol.ops_session
    assert session is proto.session and registry.per_ip == {"192.0.2.7": 1}
    proto.dataReceived(b"hello\r\n")
    proto.writeSequence(iter([b"ab", b"c"]))
    assert t.value() == b"HELLO\r\nabc"
    assert session.authenticated("alice", "PLAIN", True) is None
    clock.advance(12.5)
    session.command("NOOP", 0.001)
    session.ending("Logged out")
    proto.connectionLost(None)
    assert registry.sessions == {} and registry.per_ip == {} and registry.per_user_ip == {}
    assert registry.closed_bytes == {("imap", "in"): 7, ("imap", "out"): 10}
    texts = [e["log_format"].format(**e) for e in events if e.get("event") in ("login", "disconnected")]
    assert texts[0] == (f"imap-login: Login: user=<alice>, method=PLAIN, rip=192.0.2.7, rport=5000, "
                        f"lip=192.0.2.1, lport=993, TLS, session=<{session.id}>")
    assert texts[1].startswith(f"imap(alice)<{session.id}>: Disconnected: Logged out in=7 out=10 commands=1")
    end = next(e for e in events if e.get("event") == "disconnected")
    assert end["bytes_in"] == 7 and end["user"] == "alice" and end["log_level"] == LogLevel.info


def test_connection_limit_per_address():
    factory, registry, _ = setup(connections_per_ip=2)
    a = connect(factory)
    connect(factory)
    proto, t = connect(factory)
    assert t.value() == b"* BYE [LIMIT] Too many connections from your address.\r\n" and t.disconnecting
    connect(factory, ip="192.0.2.8")  # another address is fine
    a[0].connectionLost(None)
    proto, t = connect(factory)
    assert t.value() == b"" and not t.disconnecting


def test_pop3_refusal_and_lmtp_is_exempt():
    factory, _, _ = setup("pop3s", connections_per_ip=1)
    connect(factory)
    _, t = connect(factory)
    assert t.value() == b"-ERR [SYS/TEMP] Too many connections from your address.\r\n"
    lmtp, _, _ = setup("lmtp", connections_per_ip=1)
    connect(lmtp)
    _, t = connect(lmtp)
    assert not t.disconnecting


def test_login_deadline():
    factory, _, clock = setup(login_timeout=60)
    slow, t = connect(factory)
    quick, t2 = connect(factory)
    quick.session.authenticated("bob", "PLAIN", False)
    clock.advance(59)
    assert not t.disconnecting
    clock.advance(1)
    assert t.value() == b"* BYE Disconnected: no login within 60 seconds.\r\n" and t.disconnecting
    assert slow.session.end_reason == "login timeout"
    assert not t2.disconnecting  # logged in in time
    assert not getattr(t, "disconnected", False)
    clock.advance(2)  # the peer did not go: cut
    assert t.disconnected


def test_kick_by_user_and_protocol_and_who():
    factory, registry, clock = setup()
    pop, _, _ = setup("pop3")
    pop.registry = registry
    a, ta = connect(factory)
    b, tb = connect(pop)
    a.session.authenticated("alice", "PLAIN", False)
    b.session.authenticated("alice", "PLAIN", False)
    who = registry.who()
    assert [(w["user"], w["protocol"], w["mailbox"], w["idle"]) for w in who] == [
        ("alice", "imap", "INBOX", True), ("alice", "pop3", "INBOX", True)]
    assert registry.kick("alice", "imap") == 1
    assert ta.value() == b"* BYE Disconnected by the administrator.\r\n" and ta.disconnecting
    assert not tb.disconnecting
    assert registry.kick("alice") == 2  # a's connection is still closing
    assert tb.value() == b"-ERR [SYS/TEMP] Disconnected by the administrator.\r\n"
    assert a.session.end_reason == "Kicked by the administrator"


def test_user_limit_refusal_and_failures_counted(events):
    factory, registry, _ = setup(userip_connections=1, ban_after=2)
    a, _ = connect(factory)
    b, _ = connect(factory)
    assert a.session.authenticated("alice", "PLAIN", False) is None
    refusal = b.session.authenticated("alice", "PLAIN", False)
    assert refusal == "Too many connections for this user from your address (max 1)"
    assert b.session.user is None
    b.session.auth_failed(b"mallory\r\n<x>, rip=6.6.6.6", "PLAIN", False)
    assert not registry.limits.banned("192.0.2.7")
    b.session.auth_failed("mallory", "PLAIN", False)
    assert registry.limits.banned("192.0.2.7")
    lines = [e["log_format"].format(**e) for e in events if e.get("event") in ("login_failed", "banned")]
    assert lines[0].startswith("imap-login: Login failed (user+IP connection limit): user=<alice>")
    assert lines[1].startswith("imap-login: Login failed (auth failed): "
                               "user=<mallory\\x0d\\x0a\\x3cx\\x3e\\x2c\\x20rip=6.6.6.6>, method=PLAIN, rip=192.0.2.7,")
    assert lines[-1] == "imap-login: Banned rip=192.0.2.7 for 300s after 2 failed logins"


def test_unix_peer_and_printable():
    factory, registry, _ = setup("lmtp")
    proto = factory.buildProtocol(UNIXAddress(None))
    proto.makeConnection(StringTransport(peerAddress=UNIXAddress(None), hostAddress=UNIXAddress(b"/x")))
    assert proto.session.rip == "local"
    assert printable("a" * 150).endswith("...") and printable(None) == ""
