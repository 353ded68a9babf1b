"""A Maildir written by the real Dovecot 2.3 (tests/fixtures/dovecot-maildir,
made by make_dovecot_fixture.py) served by our store: same UIDs, flags,
keywords and POP3 UIDLs, and still what Dovecot expects after we change it."""

import imaplib
import json
import os
import poplib
import re
import shutil
import socket
import subprocess
import tempfile

from twisted.internet import defer, threads
from twisted.trial.unittest import SkipTest

from mailsrv.store.uidlist import parse_uidlist

from .helpers import FIXTURES, StoreCase, files_in

with open(os.path.join(FIXTURES, "dovecot-maildir.json"), encoding="utf-8") as _f:
    EXPECTED = json.load(_f)
REF = "/work/shared/reference"
NEW = b"From: us@example.com\r\nSubject: written by mailsrv\r\n\r\nhello dovecot\r\n"


class DovecotFixtureTests(StoreCase):
    def setUp(self):
        super().setUp()
        self.root = self.install_fixture()
        self.account = self.store.account("testuser")

    def test_folders_and_subscriptions(self):
        self.assertEqual(self.account.list_folders(), ["INBOX", "Entwürfe/Ärger", "Lists/python"])
        self.assertEqual(sorted(self.account.subscriptions()), EXPECTED["subscriptions"])
        self.assertFalse(self.account.folder_exists("Sent"))  # existing user: no defaults forced

    @defer.inlineCallbacks
    def test_same_uids_flags_sizes_as_dovecot(self):
        for name, want in EXPECTED["folders"].items():
            f = yield self.account.open_folder(name)
            self.assertEqual(f.uidvalidity, want["uidvalidity"], name)
            self.assertEqual(f.uidnext, want["uidnext"], name)
            got = [{"uid": m.uid, "flags": sorted(m.flags), "size": m.size} for m in f.messages()]
            self.assertEqual(got, want["messages"], name)
            for m in f.messages():
                with f.open_message(m.uid) as fh:
                    data = fh.read()
                self.assertEqual(len(data) + data.count(b"\n") - data.count(b"\r\n"), m.size)
        inbox = yield self.account.open_folder("INBOX")
        self.assertEqual([inbox.pop3_uidl(u) for u in inbox.uids()], EXPECTED["pop3_uidl"])
        self.assertEqual([m.size for m in inbox.messages()], EXPECTED["pop3_sizes"])
        self.assertEqual(sorted(inbox.keywords()), ["$Important", "NonJunk"])
        self.assertEqual(inbox.get(1).internaldate, 1700000000)

    @defer.inlineCallbacks
    def test_our_changes_stay_dovecot_shaped(self):
        before = open(os.path.join(self.root, "dovecot-uidlist"), "rb").read()
        inbox = yield self.account.open_folder("INBOX")
        self.assertEqual(open(os.path.join(self.root, "dovecot-uidlist"), "rb").read(), before,
                         "opening must not rewrite a sound uid list")
        uid = yield inbox.append(NEW, ["\\Seen", "NonJunk"], internaldate=1700500000)
        self.assertEqual(uid, EXPECTED["folders"]["INBOX"]["uidnext"])
        yield inbox.store_flags([5], ["$Important", "\\Deleted"], "+")
        yield inbox.store_flags([1], ["$New"], "+")
        yield inbox.expunge([2])
        after = open(os.path.join(self.root, "dovecot-uidlist"), "rb").read()
        old, new = parse_uidlist(before), parse_uidlist(after)
        self.assertEqual((new.uidvalidity, new.guid), (old.uidvalidity, old.guid))
        self.assertEqual(new.uidnext, uid + 1)
        kept = [ln for ln in before.split(b"\n")[1:] if ln and not ln.startswith(b"2 ")]
        self.assertEqual(after.split(b"\n")[1:1 + len(kept)], kept)  # untouched lines verbatim
        self.assertRegex(after.split(b"\n")[-2].decode(), rf"^{uid} :\d+\.M\d+P\d+Q\d+\.[^,]+,S=\d+,W=\d+$")
        self.assertEqual(open(os.path.join(self.root, "dovecot-keywords"), "rb").read(),
                         b"0 $Important\n1 NonJunk\n2 $New\n")
        names = files_in(self.root)
        self.assertTrue(any(n.endswith(f",S={len(NEW)},W={len(NEW)}:2,Sb") for n in names), names)
        self.assertTrue(any(n.endswith(",S=3076,W=3081:2,Ta") for n in names), names)
        self.assertTrue(any(n.endswith(",S=113,W=119:2,FSac") for n in names), names)
        self.assertEqual(len(names), 5)

    @defer.inlineCallbacks
    def test_reference_dovecot_reads_our_changes(self):
        if os.geteuid() != 0 or not shutil.which("dovecot") or not os.path.exists(f"{REF}/dovecot-up.sh"):
            raise SkipTest("needs root, dovecot and the reference scripts")
        inbox = yield self.account.open_folder("INBOX")
        uid = yield inbox.append(NEW, ["\\Flagged", "NonJunk"])
        yield inbox.store_flags([3], ["\\Seen"], "+")
        yield inbox.expunge([2])
        # records appended Dovecot's way: the header's N is left behind
        uid2 = yield inbox.append(NEW)
        uid3 = yield self.account.deliver("INBOX", NEW)
        data = open(os.path.join(self.root, "dovecot-uidlist"), "rb").read()
        self.assertIn(f" N{uid2} ".encode(), data.split(b"\n")[0] + b" ")
        self.assertTrue(data.endswith(b"\n"))
        self.assertEqual(parse_uidlist(data).uidnext, uid3 + 1)
        yield inbox.refresh()
        want = {m.uid: sorted(m.flags) for m in inbox.messages()}
        uidls = [inbox.pop3_uidl(u) for u in inbox.uids()]
        got = yield threads.deferToThread(_dovecot_view, self.root)
        self.assertEqual(got["uidvalidity"], inbox.uidvalidity)
        self.assertEqual(got["flags"], want)
        self.assertEqual(got["uidl"], uidls)
        self.assertIn(uid, got["flags"])
        self.assertEqual(sorted(got["flags"])[-2:], [uid2, uid3])


def _free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _dovecot_view(maildir: str) -> dict:
    """Start the reference Dovecot on a copy of ``maildir``; what it reports."""
    base = tempfile.mkdtemp(prefix="mailsrv-dovecot-")
    try:
        dest = os.path.join(base, "mail", "testuser", "Maildir")
        shutil.copytree(maildir, dest)
        for r, dirs, files in os.walk(os.path.join(base, "mail")):
            for n in dirs + files:
                shutil.chown(os.path.join(r, n), "mail", "mail")
        imap, pop3, imaps, pop3s = _free_ports(4)
        env = dict(os.environ, DOVECOT_BASE=base, MAIL_ROOT=os.path.join(base, "mail"), N_USERS="0",
                   IMAP_PORT=str(imap), POP3_PORT=str(pop3), IMAPS_PORT=str(imaps), POP3S_PORT=str(pop3s))
        log_path = os.path.join(base, "up.log")
        try:
            # output to a file: the daemon keeps inherited pipes open forever
            with open(log_path, "wb") as log:
                up = subprocess.run([f"{REF}/dovecot-up.sh"], env=env, timeout=60, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT)
            if up.returncode:
                raise RuntimeError("dovecot-up failed: " + open(log_path).read()[-2000:])
            m = imaplib.IMAP4("127.0.0.1", imap, timeout=10)
            m.login("testuser", "pass")
            m.select("INBOX")
            uidvalidity = int(m.response("UIDVALIDITY")[1][0])
            typ, data = m.uid("FETCH", "1:*", "(UID FLAGS)")
            flags = {}
            for line in data:
                line = line if isinstance(line, bytes) else line[0]
                u = int(re.search(rb"UID (\d+)", line).group(1))
                fl = re.search(rb"FLAGS \(([^)]*)\)", line).group(1).decode().split()
                flags[u] = sorted(f for f in fl if f != "\\Recent")
            m.logout()
            p = poplib.POP3("127.0.0.1", pop3, timeout=10)
            p.user("testuser")
            p.pass_("pass")
            uidl = [ln.decode().split()[1] for ln in p.uidl()[1]]
            p.quit()
            return {"uidvalidity": uidvalidity, "flags": flags, "uidl": uidl}
        finally:
            subprocess.run([f"{REF}/dovecot-down.sh"], env=env, timeout=30, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        shutil.rmtree(base, ignore_errors=True)
