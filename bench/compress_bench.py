#!/usr/bin/env python3
"""COMPRESS=DEFLATE figures (issue 12): bytes on the wire with and without
compression, and what compressing costs the server in CPU time.

A throw-away ``twistd mailsrv`` (this checkout) serves one user whose INBOX
holds ``-n`` messages (default 10,000: the 1,000-message corpus repeated,
each copy with its own Message-ID) and whose folder ``Corpus`` holds the
corpus once.  For each of plain and COMPRESS=DEFLATE, on a fresh session
each, after one untimed warm-up run that fills the server's caches:

  envelope:  FETCH 1:* (ENVELOPE) on INBOX
  bodies:    FETCH 1:* BODY.PEEK[] on Corpus (the full-body download)

and prints the bytes that crossed the socket, the bytes of the IMAP
responses they carry, the server's CPU seconds (from /proc) and wall time,
and the server CPU per MB of response.  The extra CPU of the compressed run
over the plain one, per MB, is the cost of compressing.  Bounded: one run
of each, a per-command timeout, the server stopped on exit.

    python3 bench/compress_bench.py [-n 10000] [--corpus /work/tools/corpus.mbox]

Figures on a shared machine are provisional.
"""

from __future__ import annotations

import argparse
import mailbox
import os
import shutil
import socket
import sys
import tempfile
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from mailsrv.embedded import EmbeddedServer, add_user  # noqa: E402
from mailsrv.store import layout, maildir  # noqa: E402

USER, PASSWORD = "bench", "bench-pass"
TIMEOUT = 600.0
MB = 1e6


def server_cpu(pid: int) -> float:
    """utime + stime of the server process, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seed(data: str, corpus: str, n: int) -> None:
    """INBOX: n messages (the corpus cycled, Message-IDs made unique);
    Corpus: the corpus once."""
    msgs = [m.as_bytes() for m in mailbox.mbox(corpus)]
    inbox = layout.folder_dir(data, USER, "INBOX")
    layout.make_folder_dirs(inbox, is_inbox=True)
    for i in range(n):
        raw = msgs[i % len(msgs)]
        if i >= len(msgs):
            raw = b"Message-ID: <copy%d.bench@example.org>\n" % i + raw
        maildir.deliver(inbox, raw)
    folder = layout.folder_dir(data, USER, "Corpus")
    layout.make_folder_dirs(folder)
    for raw in msgs:
        maildir.deliver(folder, raw)


class Session:
    """A raw client: writes commands, reads until the tagged answer, counts
    the bytes on the wire and the bytes of the (inflated) responses."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.inflate: zlib._Decompress | None = None
        self.deflate: zlib._Compress | None = None
        self.buf = b"\r\n"
        self.wire = 0
        self.data = 0
        self.client_cpu = 0.0
        self._read_until(b"\r\n* OK")

    def _read_until(self, marker: bytes) -> bytes:
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                j = self.buf.find(b"\r\n", i + len(marker))
                if j >= 0:
                    out, self.buf = self.buf[:j + 2], b"\r\n" + self.buf[j + 2:]  # lines start after CRLF
                    return out
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.wire += len(chunk)
            if self.inflate is not None:
                t = time.process_time()
                chunk = self.inflate.decompress(chunk)
                self.client_cpu += time.process_time() - t
            self.data += len(chunk)
            # keep only a tail to search in: responses are counted, not kept
            self.buf = (self.buf + chunk)[-(1 << 16):]

    def cmd(self, tag: str, line: str) -> bytes:
        data = f"{tag} {line}\r\n".encode()
        if self.deflate is not None:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)
        answer = self._read_until(b"\r\n" + tag.encode() + b" ")
        tail = answer[answer.rfind(b"\r\n" + tag.encode()) + 2:]
        if not tail.startswith(tag.encode() + b" OK"):
            raise RuntimeError(f"{line!r}: {tail!r}")
        return tail

    def compress(self) -> None:
        self.cmd("Z", "COMPRESS DEFLATE")
        self.inflate = zlib.decompressobj(-15)
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)

    def close(self) -> None:
        try:
            self.cmd("L", "LOGOUT")
        except (OSError, RuntimeError):
            pass
        self.sock.close()


def measure(port: int, pid: int, compress: bool, folder: str, fetch: str) -> dict[str, float]:
    s = Session(port)
    s.cmd("A", f"LOGIN {USER} {PASSWORD}")
    if compress:
        s.compress()
    s.cmd("S", f"SELECT {folder}")
    wire0, data0, cpu0, t0 = s.wire, s.data, server_cpu(pid), time.monotonic()
    s.cmd("F", fetch)
    out = {"wire": s.wire - wire0, "data": s.data - data0, "cpu": server_cpu(pid) - cpu0,
           "wall": time.monotonic() - t0, "client_cpu": s.client_cpu}
    s.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=10_000, help="messages in INBOX (default 10,000)")
    ap.add_argument("--corpus", default="/work/tools/corpus.mbox")
    args = ap.parse_args()
    data = tempfile.mkdtemp(prefix="mailsrv-compress-bench-")
    server = None
    try:
        t = time.monotonic()
        add_user(data, USER, PASSWORD)
        seed(data, args.corpus, args.n)
        print(f"seeded {args.n} + corpus messages in {time.monotonic() - t:.1f}s", flush=True)
        server = EmbeddedServer(data, kinds=("imap",), extra=["--plaintext-auth", "yes"]).start()
        assert server.proc is not None
        port, pid = server.ports["imap"], server.proc.pid
        runs = [("envelope", "INBOX", "1:* (ENVELOPE)"), ("bodies", "Corpus", "1:* BODY.PEEK[]")]
        print(f"{'what':9} {'mode':10} {'wire MB':>9} {'resp MB':>9} {'ratio':>6} {'srv CPU s':>9} "
              f"{'CPU s/MB':>8} {'wall s':>7}")
        for name, folder, fetch in runs:
            measure(port, pid, False, folder, f"FETCH {fetch}")  # warm-up: caches filled
            results = {}
            for compress in (False, True):
                r = measure(port, pid, compress, folder, f"FETCH {fetch}")
                results[compress] = r
                print(f"{name:9} {'deflate' if compress else 'plain':10} {r['wire'] / MB:9.2f} "
                      f"{r['data'] / MB:9.2f} {r['data'] / max(r['wire'], 1):6.2f} {r['cpu']:9.2f} "
                      f"{r['cpu'] / (r['data'] / MB):8.4f} {r['wall']:7.2f}", flush=True)
            extra = (results[True]["cpu"] - results[False]["cpu"]) / (results[True]["data"] / MB)
            print(f"{name:9} compression costs {extra * 1000:.1f} ms server CPU per MB of response, "
                  f"client inflate {results[True]['client_cpu'] / (results[True]['data'] / MB) * 1000:.1f} ms/MB",
                  flush=True)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
