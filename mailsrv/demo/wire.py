"""Counting sockets and transcripts: the demo's figures come from here.

Every client connection of the demo goes through :class:`CountingSocket`,
which counts the bytes the kernel accepted and delivered and the *round
trips*: the number of times the client, having sent something (or having
just connected, for the greeting), had to wait for the server's answer.
Pipelined commands sent back to back therefore count as one round trip.
The same socket records what passed for the annotated transcript, keeping
only the head of long responses so a 10 MiB RETR costs no memory.
"""

from __future__ import annotations

import imaplib
import poplib
import re
import smtplib
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

HEAD_KEEP = 4096  # bytes of each block kept for the transcript
TIMEOUT = 30.0


@dataclass
class WireStats:
    """What one connection cost, measured at the socket."""

    sent: int = 0
    received: int = 0
    round_trips: int = 0
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    _last: str = "send"  # a fresh connection waits for the greeting

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def add(self, other: WireStats) -> WireStats:
        return WireStats(self.sent + other.sent, self.received + other.received,
                         self.round_trips + other.round_trips, 0.0, self.seconds + other.seconds)


@dataclass
class Block:
    """One run of bytes in one direction on one connection."""

    label: str
    direction: str  # 'C' client->server, 'S' server->client, '#' note
    head: bytearray
    total: int = 0


class Transcript:
    """Blocks and notes in the order they happened, over all connections."""

    def __init__(self) -> None:
        self.items: list[Block] = []

    def note(self, text: str) -> None:
        self.items.append(Block("", "#", bytearray(text.encode("utf-8")), 0))

    def record(self, label: str, direction: str, data: bytes) -> None:
        last = self.items[-1] if self.items else None
        if last is None or last.label != label or last.direction != direction:
            last = Block(label, direction, bytearray())
            self.items.append(last)
        room = HEAD_KEEP - len(last.head)
        if room > 0:
            last.head += data[:room]
        last.total += len(data)


class CountingSocket(socket.socket):
    """A socket that counts and records everything passing through it."""

    stats: WireStats
    transcript: Transcript | None
    label: str

    @classmethod
    def connect_to(cls, host: str, port: int, timeout: float, label: str,
                   transcript: Transcript | None) -> CountingSocket:
        raw = socket.create_connection((host, port), timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = cls(raw.family, raw.type, raw.proto, fileno=raw.detach())
        s.settimeout(timeout)
        s.stats = WireStats()
        s.transcript = transcript
        s.label = label
        return s

    def _sent(self, data: ReadableBuffer) -> None:
        data = bytes(data)
        self.stats.sent += len(data)
        self.stats._last = "send"
        if self.transcript is not None:
            self.transcript.record(self.label, "C", data)

    def _got(self, data: ReadableBuffer) -> None:
        view = memoryview(data)
        if not view.nbytes:
            return
        if self.stats._last == "send":
            self.stats.round_trips += 1
        self.stats._last = "recv"
        self.stats.received += view.nbytes
        if self.transcript is not None:
            self.transcript.record(self.label, "S", view.tobytes())

    def sendall(self, data: ReadableBuffer, flags: int = 0) -> None:
        super().sendall(data, flags)
        self._sent(data)

    def send(self, data: ReadableBuffer, flags: int = 0) -> int:
        n = super().send(data, flags)
        self._sent(memoryview(data)[:n])
        return n

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        self._got(data)
        return data

    def recv_into(self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0) -> int:
        n = super().recv_into(buffer, nbytes, flags)
        self._got(memoryview(buffer)[:n])
        return n

    def close(self) -> None:
        if getattr(self, "stats", None) is not None and self.stats.ended is None:
            self.stats.ended = time.monotonic()
        super().close()


class CountingPOP3(poplib.POP3):
    """poplib over a counting socket."""

    def __init__(self, host: str, port: int, label: str, transcript: Transcript | None,
                 timeout: float = TIMEOUT) -> None:
        self._label, self._transcript = label, transcript
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout: float) -> socket.socket:  # poplib hook
        self._counting = CountingSocket.connect_to(self.host, self.port, timeout, self._label, self._transcript)
        return self._counting

    @property
    def stats(self) -> WireStats:
        return self._counting.stats


class CountingIMAP(imaplib.IMAP4):
    """imaplib over a counting socket."""

    def __init__(self, host: str, port: int, label: str, transcript: Transcript | None,
                 timeout: float = TIMEOUT) -> None:
        self._label, self._transcript = label, transcript
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:  # imaplib hook
        self._counting = CountingSocket.connect_to(self.host, self.port, timeout or TIMEOUT, self._label,
                                                   self._transcript)
        return self._counting

    @property
    def stats(self) -> WireStats:
        return self._counting.stats


class CountingLMTP(smtplib.LMTP):
    """smtplib's LMTP client over a counting socket (TCP only)."""

    def __init__(self, host: str, port: int, label: str, transcript: Transcript | None,
                 timeout: float = TIMEOUT) -> None:
        self._label, self._transcript = label, transcript
        super().__init__(host, port, local_hostname="demo.localhost", timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:  # smtplib hook
        self._counting = CountingSocket.connect_to(host, port, timeout, self._label, self._transcript)
        return self._counting

    @property
    def stats(self) -> WireStats:
        return self._counting.stats


# -- rendering ----------------------------------------------------------------

_SECRET = [
    (re.compile(rb"^(PASS )\S.*$", re.I), rb"\1********"),
    (re.compile(rb"^(\S+ LOGIN \S+ )\S.*$", re.I), rb"\1********"),
    (re.compile(rb"^(AUTH PLAIN )\S+$", re.I), rb"\1********"),
]
ANSI = {"C": "\x1b[36m", "S": "\x1b[32m", "err": "\x1b[31m", "#": "\x1b[1;33m", "dim": "\x1b[2m", "off": "\x1b[0m"}
_ERR = re.compile(rb"^(-ERR|\S+ (NO|BAD)\b|[45]\d\d[ -])")


def _redact(line: bytes) -> bytes:
    for rx, repl in _SECRET:
        line = rx.sub(repl, line)
    return line


def render_block(block: Block, max_lines: int, color: bool) -> list[str]:
    """Lines of text for one block, long ones elided with a byte count."""
    if block.direction == "#":
        text = block.head.decode("utf-8")
        return [f"{ANSI['#']}# {text}{ANSI['off']}" if color else f"# {text}"]
    raw_lines = bytes(block.head).split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    total_lines = block.head.count(b"\n") if block.total == len(block.head) else None
    shown = raw_lines[:max_lines]
    out = []
    arrow = "C:" if block.direction == "C" else "S:"
    for ln in shown:
        ln = _redact(ln.rstrip(b"\r"))
        text = ln.decode("utf-8", "replace")
        if len(text) > 100:
            text = text[:97] + "..."
        prefix = f"{block.label:>6} {arrow} "
        if color:
            col = ANSI["err"] if block.direction == "S" and _ERR.match(ln) else ANSI[block.direction]
            out.append(f"{ANSI['dim']}{prefix}{ANSI['off']}{col}{text}{ANSI['off']}")
        else:
            out.append(prefix + text)
    hidden = (total_lines - len(shown)) if total_lines is not None else None
    if block.total > len(block.head) or (hidden and hidden > 0):
        shown_bytes = sum(len(x) + 1 for x in shown)
        more = f"{block.label:>6} {arrow} ... {block.total - shown_bytes:,} more bytes"
        out.append(f"{ANSI['dim']}{more}{ANSI['off']}" if color else more)
    return out


def render_transcript(t: Transcript, color: bool, max_lines: int = 8) -> list[str]:
    lines: list[str] = []
    for b in t.items:
        lines.extend(render_block(b, max_lines, color))
    return lines
