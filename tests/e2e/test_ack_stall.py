"""No delayed-ACK stall for clients that write one command in several pieces.

Python's imaplib sends an APPEND literal and its closing CRLF in two writes
without TCP_NODELAY: Nagle holds the CRLF until the literal is ACKed, and a
server that delays that ACK (Linux does, ~40 ms, on a connection that has
been answering quickly) made every such APPEND take 40+ ms
(:mod:`mailsrv.quickack`).  Each test runs the piecewise client and a client
that sends the same command in one write against the same server, turn
about, and bounds the difference: the stall adds at least 40 ms per command
(2 s over 50), the bound allows 20 ms (the continuation round trip costs
well under that even on a loaded machine), and slow storage (fsync) costs
both clients the same.
"""

from __future__ import annotations

import imaplib
import socket
import ssl
import time
from collections.abc import Callable

import pytest

from tests.e2e.harness import Server
from tests.e2e.test_pop3_clients import PW, insecure

N = 50
ALLOWED_EXTRA = 0.020  # seconds per command; the stall costs >= 0.040
MSG = b"From: a@example.org\r\nSubject: ack\r\n\r\n" + b"a line of the body, long enough\r\n" * 100


def _imaplib(server: Server, mode: str) -> imaplib.IMAP4:
    if mode == "imaps":
        m: imaplib.IMAP4 = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=insecure(), timeout=30)
    else:
        m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
        if mode == "starttls":
            m.starttls(ssl_context=insecure())
    m.login("alice", PW)
    return m


class OneWrite:
    """A client that sends each command whole, in one write, with
    TCP_NODELAY (LITERAL+): what the piecewise client is compared with."""

    def __init__(self, server: Server, mode: str, port_kind: str = "imap") -> None:
        sock = socket.create_connection(("127.0.0.1", server.ports["imaps" if mode == "imaps" else port_kind]),
                                        timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket | ssl.SSLSocket = sock
        if mode == "imaps":
            self.sock = insecure().wrap_socket(sock)
        self.f = self.sock.makefile("rb")
        self.f.readline()
        if mode == "starttls":
            self.command(b"s STARTTLS\r\n", b"s ")
            self.sock = insecure().wrap_socket(sock)
            self.f = self.sock.makefile("rb")

    def command(self, data: bytes, tag: bytes) -> bytes:
        self.sock.sendall(data)
        while True:
            line = self.f.readline()
            if not line:
                raise ConnectionError("closed")
            if line.startswith(tag):
                return line

    def close(self) -> None:
        self.f.close()
        self.sock.close()


def _turn_about(piecewise: Callable[[], None], whole: Callable[[], None], n: int) -> tuple[float, float]:
    """Total seconds of ``n`` calls of each, alternating."""
    a = b = 0.0
    for _ in range(n):
        t = time.perf_counter()
        piecewise()
        a += time.perf_counter() - t
        t = time.perf_counter()
        whole()
        b += time.perf_counter() - t
    return a, b


@pytest.fixture
def server(tmp_path):
    srv = Server(str(tmp_path / "data"), kinds=("imap", "imaps", "lmtp"))
    srv.add_user("alice", PW)
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("mode", ["plain", "starttls", "imaps"])
def test_imaplib_append_answers_without_the_delayed_ack(server, mode):
    m = _imaplib(server, mode)
    one = OneWrite(server, mode)
    assert one.command(b"l LOGIN alice %s\r\n" % PW.encode(), b"l ").startswith(b"l OK")

    def by_imaplib() -> None:
        assert m.append("INBOX", None, None, MSG)[0] == "OK"

    def in_one_write() -> None:
        line = one.command(b"a APPEND INBOX {%d+}\r\n%s\r\n" % (len(MSG), MSG), b"a ")
        assert line.startswith(b"a OK"), line

    piecewise, whole = _turn_about(by_imaplib, in_one_write, N)
    assert m.select("INBOX")[1] == [b"%d" % (2 * N)]
    m.logout()
    one.close()
    assert piecewise < whole + N * ALLOWED_EXTRA, (piecewise, whole)


def test_multiappend_written_piecewise(server):
    """MULTIAPPEND as imaplib would write it: each literal, then the next
    announcement (or the final CRLF), each in a write of its own."""
    sock = socket.create_connection(("127.0.0.1", server.ports["imap"]), timeout=30)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"l LOGIN alice %s\r\n" % PW.encode())
    while not f.readline().startswith(b"l "):
        pass
    one = OneWrite(server, "plain")
    one.command(b"l LOGIN alice %s\r\n" % PW.encode(), b"l ")
    n = N // 2  # two pieces wait on an ACK per command

    def piecewise() -> None:
        sock.sendall(b"m APPEND INBOX {%d}\r\n" % len(MSG))
        assert f.readline().startswith(b"+")
        sock.sendall(MSG)
        sock.sendall(b" {%d}\r\n" % len(MSG))
        assert f.readline().startswith(b"+")
        sock.sendall(MSG)
        sock.sendall(b"\r\n")
        line = f.readline()
        assert line.startswith(b"m OK"), line

    def whole() -> None:
        data = b"w APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(MSG), MSG, len(MSG), MSG)
        assert one.command(data, b"w ").startswith(b"w OK")

    a, b = _turn_about(piecewise, whole, n)
    sock.close()
    one.close()
    assert a < b + 2 * n * ALLOWED_EXTRA, (a, b)


def test_lmtp_body_and_final_dot_written_apart(server):
    """An LMTP client that writes the message and its ``.`` line apart."""
    def session() -> tuple[socket.socket, object]:
        s = socket.create_connection(("127.0.0.1", server.ports["lmtp"]), timeout=30)
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"LHLO client.test\r\n")
        while f.readline()[3:4] == b"-":
            pass
        return s, f

    def deliver(s: socket.socket, f, pieces: list[bytes]) -> None:
        for cmd in (b"MAIL FROM:<s@example.org>\r\n", b"RCPT TO:<alice@localhost>\r\n", b"DATA\r\n"):
            s.sendall(cmd)
            assert f.readline()[:1] in b"23"
        for p in pieces:
            s.sendall(p)
        line = f.readline()
        assert line.startswith(b"250"), line

    s1, f1 = session()
    s2, f2 = session()
    s2.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    a, b = _turn_about(lambda: deliver(s1, f1, [MSG, b".\r\n"]), lambda: deliver(s2, f2, [MSG + b".\r\n"]), N)
    s1.close()
    s2.close()
    assert a < b + N * ALLOWED_EXTRA, (a, b)
