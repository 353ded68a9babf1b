"""``twistd mailsrv --workers 2`` on PostgreSQL, used by real clients:
worker processes adopt the parent's listeners and serve logins, mail and
changes between each other (issue 13).  The unit tests of
mailsrv.workers use a stand-in service; this one starts the real thing."""

from __future__ import annotations

import imaplib
import poplib
import time

from mailsrv.auth.hashing import hash_password
from tests.e2e.harness import Server
from tests.pgfixture import fresh_database

PW = "worker-secret"


def test_two_workers_serve_imap_and_pop3_and_see_each_others_changes(pg_cluster, tmp_path):
    dsn = fresh_database(pg_cluster)
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO users (name, password) VALUES (%s, %s)", ("alice", hash_password(PW, "SSHA512")))
    server = Server(str(tmp_path / "node"), kinds=("imap", "pop3"), dsn=dsn, extra=["--workers", "2"]).start()
    try:
        sessions = []
        for _ in range(6):  # the kernel hands connections to either worker
            c = imaplib.IMAP4("127.0.0.1", server.ports["imap"])
            assert c.login("alice", PW)[0] == "OK"
            assert c.select("INBOX")[0] == "OK"
            sessions.append(c)
        first, others = sessions[0], sessions[1:]
        assert first.append("INBOX", None, None, b"Subject: via a worker\r\n\r\nhello\r\n")[0] == "OK"
        deadline = time.monotonic() + 5
        for c in others:
            while True:
                _typ, count = c.select("INBOX", readonly=True)
                if count[0] == b"1" or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert count[0] == b"1"
        pop = poplib.POP3("127.0.0.1", server.ports["pop3"])
        pop.user("alice")
        pop.pass_(PW)
        assert pop.stat()[0] == 1
        assert b"Subject: via a worker" in b"\r\n".join(pop.retr(1)[1])
        pop.quit()
        for c in sessions:
            c.logout()
        assert "Traceback" not in server.log()
    finally:
        server.stop()
