"""The mailsrv command on the PostgreSQL store: users in the database,
deliver into it (a live folder hears of it), migrate a Maildir data folder
in and export it back out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from twisted.internet import defer, threads

from mailsrv.auth.hashing import verify_password
from mailsrv.auth.passwd import PasswdFile
from mailsrv.store import Store
from mailsrv.store.pg.users import PgUsers

from .helpers import PgStoreCase, Recorder, until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class CliTests(PgStoreCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="mailsrv-pgcli-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.ini = os.path.join(self.dir, "mailsrv.ini")
        with open(self.ini, "w", encoding="utf-8") as f:
            f.write(f"[server]\ndata = {self.dir}/data\n[auth]\nscheme = SSHA512\n"
                    f"[store]\nbackend = postgresql\ndsn = {self.dsn}\n")

    def mailsrv(self, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        return subprocess.run([sys.executable, "-m", "mailsrv.cli", "--config", self.ini, *args], input=stdin,
                              capture_output=True, env=env, timeout=120, cwd=REPO)

    def test_users_in_the_database(self):
        r = self.mailsrv("user", "add", "alice", stdin=b"first-pw\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.mailsrv("user", "add", "alice", stdin=b"x\n").returncode, 1)
        users = PgUsers(self.store.db)
        self.assertTrue(verify_password(users.lookup("alice").password, "first-pw"))
        self.assertTrue(users.lookup("alice").password.startswith("{SSHA512}"))
        self.assertEqual(self.mailsrv("user", "passwd", "alice", stdin=b"second-pw\n").returncode, 0)
        self.assertTrue(verify_password(users.lookup("alice").password, "second-pw"))
        self.mailsrv("user", "add", "bob", stdin=b"pw\n")
        self.assertEqual(self.mailsrv("user", "list").stdout.split(), [b"alice", b"bob"])
        r = self.mailsrv("user", "del", "bob", "--purge")
        self.assertIn(b"and their mail", r.stdout)
        self.assertEqual(self.mailsrv("user", "list").stdout.split(), [b"alice"])
        self.assertFalse(os.path.exists(os.path.join(self.dir, "data", "passwd")))  # nothing went to the file

    @defer.inlineCallbacks
    def test_deliver_reaches_a_live_folder(self):
        PgUsers(self.store.db).add_user("Carol", "{PLAIN}x")
        inbox = yield (yield self.store.open_account("Carol")).open_folder("INBOX")
        rec = Recorder()
        inbox.add_listener(rec)
        r = yield threads.deferToThread(self.mailsrv, "deliver", "carol+lists@example.org", "--folder", "Nope",
                                        "--flags", "\\Flagged", stdin=b"Subject: lda\n\nbody\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"delivered to INBOX", r.stderr)
        yield until(lambda: rec.events)
        [(_, [uid])] = rec.take()
        self.assertEqual(inbox.get(uid).flags, {"\\Flagged"})
        r = yield threads.deferToThread(self.mailsrv, "deliver", "nobody", stdin=b"Subject: x\n\ny\n")
        self.assertEqual(r.returncode, 67)
        r = yield threads.deferToThread(self.mailsrv, "deliver", "carol", stdin=b"not a header\n")
        self.assertEqual(r.returncode, 65)

    @defer.inlineCallbacks
    def test_migrate_then_export(self):
        data = os.path.join(self.dir, "maildir-data")
        os.makedirs(data)
        PasswdFile(os.path.join(data, "passwd")).add_user("dave", "{PLAIN}pw")
        src = Store(data)
        f = yield src.account("dave").open_folder("INBOX")
        yield f.append(b"Subject: old mail\n\nfrom the Maildir\n", ["\\Seen", "$Old"], 1500000000.0)
        yield src.close()
        r = yield threads.deferToThread(self.mailsrv, "--data", data, "migrate", "--to", self.dsn)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"migrated 1 messages", r.stdout)
        g = yield (yield self.store.open_account("dave")).open_folder("INBOX")
        self.assertEqual([(m.uid, m.flags, m.internaldate) for m in g.messages()],
                         [(1, {"\\Seen", "$Old"}, 1500000000.0)])
        out = os.path.join(self.dir, "exported")
        r = yield threads.deferToThread(self.mailsrv, "export", "--maildir", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        back = Store(out)
        h = yield back.account("dave").open_folder("INBOX")
        self.assertEqual([(m.uid, m.flags) for m in h.messages()], [(1, {"\\Seen", "$Old"})])
        self.assertEqual(h.uidvalidity, f.uidvalidity)
        yield back.close()
