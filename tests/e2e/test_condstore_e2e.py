"""CONDSTORE/QRESYNC end to end with the real ``twistd mailsrv``: a client
away while another session changed and expunged mail, the server killed
(``kill -9``) and restarted in between, resynchronises with one SELECT
(QRESYNC) and gets exactly the right VANISHED and FETCH lines; imapclient
speaks CONDSTORE to it."""

from __future__ import annotations

import re
import signal
import socket

import imapclient

from tests.e2e.conftest import USERS

MSG = b"From: a@example.org\r\nSubject: m%d\r\n\r\nbody\r\n"


class Raw:
    """A plain IMAP connection that shows every response line as sent."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.buf = b""
        self.n = 0
        self._line()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            assert data, "connection closed"
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, text: str) -> list[bytes]:
        self.n += 1
        tag = b"r%d" % self.n
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        out = []
        while True:
            line = self._line()
            out.append(line)
            if line.startswith(tag + b" "):
                assert line.split()[1] == b"OK", out
                return out

    def close(self) -> None:
        self.cmd("LOGOUT")
        self.sock.close()


def login(port: int) -> Raw:
    r = Raw(port)
    r.cmd(f"LOGIN alice {USERS['alice']}")
    r.cmd("ENABLE QRESYNC")
    return r


def highest(out: list[bytes]) -> int:
    return max(int(m.group(1)) for ln in out if (m := re.search(rb"HIGHESTMODSEQ (\d+)", ln)))


def test_qresync_after_changes_and_a_kill_9(server):
    seen = []
    a = login(server.ports["imap"])
    for i in range(1, 7):
        a.cmd("APPEND INBOX {%d+}\r\n%s" % (len(MSG % i), (MSG % i).decode()))
    out = a.cmd("SELECT INBOX")
    uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", b"\n".join(out)).group(1))
    modseq = highest(out)
    seen.append(modseq)
    a.close()  # the client goes away knowing UIDs 1:6 at `modseq`

    b = login(server.ports["imap"])
    b.cmd("SELECT INBOX")
    b.cmd("UID STORE 2:3 +FLAGS.SILENT (\\Flagged)")
    b.cmd("UID STORE 4:5 +FLAGS.SILENT (\\Deleted)")
    seen.append(highest(b.cmd("UID EXPUNGE 4:5")))
    server.proc.send_signal(signal.SIGKILL)  # kill -9: no clean close of anything
    server.proc.wait(timeout=15)
    server.proc = None
    server.start()

    b = login(server.ports["imap"])
    seen.append(highest(b.cmd("SELECT INBOX")))
    b.cmd("UID STORE 6 +FLAGS.SILENT ($Late)")
    b.cmd("UID STORE 1 +FLAGS.SILENT (\\Deleted)")
    seen.append(highest(b.cmd("UID EXPUNGE 1")))
    b.close()
    server.restart()

    a = login(server.ports["imap"])
    out = a.cmd(f"SELECT INBOX (QRESYNC ({uidvalidity} {modseq} 1:6))")
    seen.append(highest(out))
    assert seen == sorted(seen), seen  # never backwards
    if server.dsn is None:  # Maildir: grew with every change, and past its ceiling after the kill -9
        assert len(set(seen[:-1])) == len(seen) - 1, seen
    else:  # PostgreSQL: grew with every change; the kill -9 lost nothing and changed nothing
        assert seen[2] == seen[1] and len(set(seen[:-1])) == len(seen) - 2, seen
    assert seen[-1] == seen[-2]  # a clean restart changes nothing
    tail = out[out.index(next(ln for ln in out if ln.startswith(b"* OK [HIGHESTMODSEQ"))) + 1:]
    assert tail[0] == b"* VANISHED (EARLIER) 1,4:5"
    fetches = [re.sub(rb"MODSEQ \((\d+)\)", b"MODSEQ (m)", ln) for ln in tail[1:-1]]
    assert fetches == [b"* 1 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ (m))",
                       b"* 2 FETCH (UID 3 FLAGS (\\Flagged) MODSEQ (m))",
                       b"* 3 FETCH (UID 6 FLAGS ($Late) MODSEQ (m))"]
    modseqs = [int(x) for x in re.findall(rb"MODSEQ \((\d+)\)", b"\n".join(tail))]
    assert all(modseq < m <= seen[-1] for m in modseqs), (modseq, modseqs)
    assert tail[-1].endswith(b"OK [READ-WRITE] SELECT completed")
    # and nothing more to tell from the new point on
    out = a.cmd(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {seen[-1]} VANISHED)")
    assert out[:-1] == []
    a.close()


def test_imapclient_condstore(server):
    c = imapclient.IMAPClient("127.0.0.1", port=server.ports["imap"], ssl=False, timeout=30)
    c.login("alice", USERS["alice"])
    assert b"CONDSTORE" in c.capabilities() and c.has_capability("QRESYNC")
    assert c.enable("CONDSTORE") == [b"CONDSTORE"]
    for i in range(3):
        c.append("INBOX", MSG % i)
    status = c.folder_status("INBOX", [b"HIGHESTMODSEQ", b"MESSAGES"])
    start = status[b"HIGHESTMODSEQ"]
    sel = c.select_folder("INBOX")
    assert sel[b"HIGHESTMODSEQ"] == start
    uids = c.search()
    c.add_flags(uids[1:], [b"\\Flagged"])
    changed = c.fetch(uids, ["FLAGS"], modifiers=[f"CHANGEDSINCE {start}"])
    assert sorted(changed) == uids[1:]
    assert all(d[b"MODSEQ"][0] > start and b"\\Flagged" in d[b"FLAGS"] for d in changed.values())
    assert c.search(["MODSEQ", str(start + 1)]) == uids[1:]
    after = c.fetch(uids, ["MODSEQ"])
    assert after[uids[0]][b"MODSEQ"][0] <= start
    assert c.folder_status("INBOX", [b"HIGHESTMODSEQ"])[b"HIGHESTMODSEQ"] > start
    c.logout()
