"""mailsrv.quickack: finding the TCP socket under wrapped transports, and
the parser state that asks for an immediate ACK."""

from __future__ import annotations

import socket

from twisted.internet.testing import StringTransport

from mailsrv.imap.grammar import command_parser
from mailsrv.quickack import TCP_QUICKACK, QuickAck, socket_of


class _Handle:
    def __init__(self, handle: object) -> None:
        self._h = handle

    def getHandle(self) -> object:
        return self._h


class _Wrapper:
    """Like TLSMemoryBIOProtocol: its own handle is not a socket."""

    def __init__(self, inner: object) -> None:
        self.transport = inner

    def getHandle(self) -> object:
        return object()


def test_socket_found_through_wrappers() -> None:
    with socket.socket() as s:
        assert socket_of(_Handle(s)) is s
        assert socket_of(_Wrapper(_Wrapper(_Handle(s)))) is s
        direct = _Wrapper(None)
        direct.socket = s  # type: ignore[attr-defined]  # a Twisted tcp.Connection keeps .socket
        assert socket_of(direct) is s


def test_no_socket_means_no_op() -> None:
    assert socket_of(StringTransport()) is None
    with socket.socket(socket.AF_UNIX) as u:
        assert socket_of(_Handle(u)) is None  # not TCP
    QuickAck(StringTransport()).ack_now()  # nothing to do, no error


def test_ack_now_on_a_connected_socket() -> None:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        c = socket.create_connection(srv.getsockname())
        conn, _ = srv.accept()
        with c, conn:
            c.sendall(b"a APPEND INBOX {3}\r\nabc")
            assert conn.recv(100)
            QuickAck(_Handle(conn)).ack_now()
            if TCP_QUICKACK is not None:
                assert conn.getsockopt(socket.IPPROTO_TCP, TCP_QUICKACK) == 1


def test_parser_incomplete_while_a_command_is_partial() -> None:
    p = command_parser()
    assert not p.incomplete()
    p.feed(b"a1 APPEND INBOX {5+}\r\nhel")
    assert p.incomplete()  # literal under way
    p.feed(b"lo")
    assert p.incomplete()  # literal done, its line is not
    assert len(p.feed(b"\r\n")) == 1
    assert not p.incomplete()
    p.feed(b"a2 NOO")
    assert p.incomplete()  # part of a line
