"""Maildir data folder -> database -> Maildir: everything a client sees
survives both ways (UIDs, UIDVALIDITY, flags, keywords, internal dates,
subscriptions, POP3 UIDLs, passwd entries), and an interrupted migration
resumes without duplicates."""

from __future__ import annotations

import io
import os
import shutil
import tempfile

from twisted.internet import defer

from mailsrv.auth.passwd import PasswdFile
from mailsrv.store import Store
from mailsrv.store.crlf import to_crlf
from mailsrv.store.pg import migrate as migmod
from mailsrv.store.pg.store import PgStore
from mailsrv.store.pg.users import PgUsers
from tests.store.helpers import FIXTURES

from .helpers import PgStoreCase

CUSTOM_UIDL = "kept-from-an-old-pop3-server"


def quiet(total: int) -> migmod.Progress:
    return migmod.Progress(total, out=io.StringIO())


class MigrationTests(PgStoreCase):
    def setUp(self):
        super().setUp()
        self.data = tempfile.mkdtemp(prefix="mailsrv-migrate-")
        self.addCleanup(shutil.rmtree, self.data, True)
        root = os.path.join(self.data, "testuser", "Maildir")
        shutil.copytree(os.path.join(FIXTURES, "dovecot-maildir"), root)
        import json

        with open(os.path.join(FIXTURES, "dovecot-maildir.mtimes.json"), encoding="utf-8") as fh:
            for rel, mtime in json.load(fh).items():
                os.utime(os.path.join(root, rel), (mtime, mtime))
        ul = os.path.join(root, "dovecot-uidlist")
        with open(ul, encoding="utf-8") as fh:
            text = fh.read()
        with open(ul, "w", encoding="utf-8") as fh:
            fh.write(text.replace("6 W74 :", f"6 W74 P{CUSTOM_UIDL} :"))
        PasswdFile(os.path.join(self.data, "passwd")).add_user("testuser", "{PLAIN}pw")

    @defer.inlineCallbacks
    def _maildir_view(self, data_dir):
        store = Store(data_dir)
        try:
            account = store.account("testuser")
            view = {"subs": sorted(account.subscriptions()), "folders": {}}
            for name in account.list_folders():
                f = yield account.open_folder(name)
                msgs = []
                for m in f.messages():
                    with f.open_message(m.uid) as fh:
                        data = to_crlf(fh.read())
                    msgs.append((m.uid, sorted(m.flags), round(m.internaldate), m.size, data, f.pop3_uidl(m.uid)))
                view["folders"][name] = (f.uidvalidity, f.uidnext, sorted(f.keywords()), msgs)
            return view
        finally:
            yield defer.maybeDeferred(store.close)

    @defer.inlineCallbacks
    def _pg_view(self, store):
        account = yield store.open_account("testuser")
        view = {"subs": sorted(account.subscriptions()), "folders": {}}
        for name in account.list_folders():
            f = yield account.open_folder(name)
            yield f.prefetch(f.uids(), body="full")
            msgs = [(m.uid, sorted(m.flags), round(m.internaldate), m.size, f.open_message(m.uid).read(),
                     f.pop3_uidl(m.uid)) for m in f.messages()]
            view["folders"][name] = (f.uidvalidity, f.uidnext, sorted(f.keywords()), msgs)
        return view

    @defer.inlineCallbacks
    def test_round_trip(self):
        before = yield self._maildir_view(self.data)
        self.assertIn(CUSTOM_UIDL, [m[5] for m in before["folders"]["INBOX"][3]])
        report = yield defer.ensureDeferred(migmod.migrate_to_postgresql(self.data, self.dsn, progress=quiet))
        self.assertEqual((report.users, report.folders, report.skipped), (1, 3, 0))
        self.assertEqual(report.messages, sum(len(v[3]) for v in before["folders"].values()))
        in_db = yield self._pg_view(self.store)
        self.assertEqual(in_db, before)
        self.assertEqual(PgUsers(self.store.db).lookup("testuser").password, "{PLAIN}pw")
        # and back out
        out = tempfile.mkdtemp(prefix="mailsrv-export-")
        self.addCleanup(shutil.rmtree, out, True)
        report = yield defer.ensureDeferred(migmod.export_to_maildir(self.dsn, out, progress=quiet))
        self.assertEqual(report.messages, sum(len(v[3]) for v in before["folders"].values()))
        after = yield self._maildir_view(out)
        for name, (validity, nxt, keywords, msgs) in before["folders"].items():
            self.assertEqual(after["folders"][name], (validity, nxt, keywords, msgs), name)
        self.assertEqual(after["subs"], before["subs"])
        self.assertEqual(PasswdFile(os.path.join(out, "passwd")).lookup("testuser").password, "{PLAIN}pw")
        # never into a Maildir that has the user already
        yield self.assertFailure(defer.ensureDeferred(migmod.export_to_maildir(self.dsn, out, progress=quiet)),
                                 migmod.MigrationError)

    @defer.inlineCallbacks
    def test_interrupted_migration_resumes(self):
        calls = []
        real = migmod.folder_sql.append

        def failing(conn, *args):
            calls.append(1)
            if len(calls) == 3:
                raise OSError("simulated crash")
            return real(conn, *args)

        self.patch(migmod, "BATCH_MESSAGES", 1)
        self.patch(migmod.folder_sql, "append", failing)
        yield self.assertFailure(defer.ensureDeferred(migmod.migrate_to_postgresql(self.data, self.dsn,
                                                                                   progress=quiet)), OSError)
        self.patch(migmod.folder_sql, "append", real)
        report = yield defer.ensureDeferred(migmod.migrate_to_postgresql(self.data, self.dsn, progress=quiet))
        self.assertEqual(report.skipped, 2)
        before = yield self._maildir_view(self.data)
        fresh = PgStore(self.dsn)
        self.addCleanup(fresh.close)
        in_db = yield self._pg_view(fresh)
        self.assertEqual(in_db, before)

    @defer.inlineCallbacks
    def test_folder_with_other_uidvalidity_is_refused(self):
        account = yield self.store.open_account("testuser")
        inbox = yield account.open_folder("INBOX")
        yield inbox.append(b"Subject: already here\r\n\r\n")
        yield self.assertFailure(defer.ensureDeferred(migmod.migrate_to_postgresql(self.data, self.dsn,
                                                                                   progress=quiet)),
                                 migmod.MigrationError)

    @defer.inlineCallbacks
    def test_reference_dovecot_reads_the_export(self):
        from twisted.internet import threads
        from twisted.trial.unittest import SkipTest

        from tests.store import test_dovecot_fixture as dv

        if os.geteuid() != 0 or not shutil.which("dovecot") or not os.path.exists(f"{dv.REF}/dovecot-up.sh"):
            raise SkipTest("needs root, dovecot and the reference scripts")
        before = yield self._maildir_view(self.data)
        yield defer.ensureDeferred(migmod.migrate_to_postgresql(self.data, self.dsn, progress=quiet))
        out = tempfile.mkdtemp(prefix="mailsrv-export-")
        self.addCleanup(shutil.rmtree, out, True)
        yield defer.ensureDeferred(migmod.export_to_maildir(self.dsn, out, progress=quiet))
        got = yield threads.deferToThread(dv._dovecot_view, os.path.join(out, "testuser", "Maildir"))
        validity, _next, _kw, msgs = before["folders"]["INBOX"]
        self.assertEqual(got["uidvalidity"], validity)
        self.assertEqual(sorted(got["flags"]), [m[0] for m in msgs])
        self.assertEqual(got["uidl"], [m[5] for m in msgs])
        for uid, flags, *_rest in msgs:
            self.assertEqual(got["flags"][uid], flags)
