"""Quota on the Maildir store: Dovecot's rule syntax, the maildirsize file,
and every door (append, copy, move, deliver, LMTP, ``mailsrv deliver``)."""

from __future__ import annotations

import io
import os
import shutil
import tempfile

import pytest
from twisted.internet import defer
from twisted.trial import unittest

from mailsrv.config import Config
from mailsrv.delivery import EX_CANTCREAT, EX_OK, EX_TEMPFAIL, deliver_command
from mailsrv.store import Store
from mailsrv.store.interfaces import OverQuota
from mailsrv.store.quota import (
    QuotaRuleError,
    QuotaTracker,
    merge_rule_fields,
    parse_rules,
    read_maildirsize,
    rules_for,
)

MSG = b"From: a@example.org\r\nSubject: x\r\n\r\n" + b"y" * 1000 + b"\r\n"


def test_dovecot_rule_syntax():
    r = parse_rules(["*:storage=1G", "*:messages=50000", "Trash:storage=+10%", "Spam:ignore"])
    assert (r.bytes, r.count) == (1 << 30, 50000)
    assert r.limits_for("INBOX") == (1 << 30, 50000)
    assert r.limits_for("Trash") == ((1 << 30) + (1 << 30) // 10, 50000)
    assert r.ignored("Spam") and not r.ignored("INBOX")
    assert parse_rules(["*:storage=100"]).bytes == 100 * 1024  # storage without unit: KiB
    assert parse_rules(["*:bytes=100"]).bytes == 100
    assert parse_rules(["*:storage=2M:messages=10"]).count == 10
    r = parse_rules(["*:storage=10M", "Archive:storage=-2M", "Junk:messages=+5"])
    assert r.limits_for("Archive")[0] == 8 << 20 and r.limits_for("Junk")[1] == 0  # no default count: none
    assert parse_rules(["*:storage=1G"]).limits_line() == f"{1 << 30}S"
    for bad in ("*:storage=+1G", "*:storage=10%", "*:storage=1X", "nocolon", "*:volume=1", "*:storage=-5"):
        with pytest.raises(QuotaRuleError):
            parse_rules([bad])


def test_passwd_extra_fields_override_rules_as_dovecot_does():
    from mailsrv.auth.passwd import _parse_line

    entry = _parse_line("alice:{PLAIN}x:1000:1000::/home/alice::userdb_quota_rule=*:storage=2G "
                        "userdb_quota_rule2=*:messages=10 other=1\n")
    assert entry is not None
    fields = entry.extra_fields()
    assert fields["quota_rule"] == "*:storage=2G" and fields["other"] == "1"
    configured = {"quota_rule": "*:storage=1G", "quota_rule3": "Trash:storage=+10%"}
    assert merge_rule_fields(configured, fields) == ["*:storage=2G", "*:messages=10", "Trash:storage=+10%"]
    r = rules_for(configured, fields, "alice")
    assert (r.bytes, r.count) == (2 << 30, 10)
    broken = rules_for(configured, {"quota_rule": "*:storage=+1"}, "alice")  # logged, configured rules kept
    assert broken.bytes == 1 << 30


def test_percent_signs_as_dovecot_expands_them():
    # dovecot.conf (and mailsrv.ini): %% is %; a single % is taken as it is here
    assert parse_rules(["*:storage=1M", "Trash:storage=+10%%"]).limits_for("Trash")[0] == (1 << 20) * 11 // 10
    assert parse_rules(["*:storage=1M", "Trash:storage=+10%"]).limits_for("Trash")[0] == (1 << 20) * 11 // 10
    # a passwd-file field is expanded twice by Dovecot: %%%% is a percentage, %% is gone (KiB)
    fields = {"quota_rule": "*:storage=1M", "quota_rule2": "Trash:storage=+10%%%%"}
    assert rules_for({}, fields).limits_for("Trash")[0] == (1 << 20) * 11 // 10
    fields["quota_rule2"] = "Trash:storage=+10%%"
    assert rules_for({}, fields).limits_for("Trash")[0] == (1 << 20) + 10 * 1024


def test_maildirsize_is_dovecots_format_and_stays_small(tmp_path):
    root = tmp_path / "Maildir"
    for d in ("cur", "new", "tmp"):
        (root / d).mkdir(parents=True)
    (root / "cur" / "1.M1P1.h,S=300,W=310:2,S").write_bytes(b"x" * 300)
    t = QuotaTracker(str(root), "alice", lambda: parse_rules(["*:bytes=100000", "*:messages=1000"]))
    assert t.usage() == (300, 1) and t.recalcs == 1
    assert (root / "maildirsize").read_text() == "100000S,1000C\n300 1\n"
    for _ in range(400):
        t.change("INBOX", 10, 1, check=True)
    assert (root / "maildirsize").stat().st_size < 5120  # Dovecot would re-count past 5120
    assert t.usage() == (4300, 401) and t.recalcs == 1  # summed, never re-counted
    t.change("INBOX", -4000, -400, check=False)
    assert read_maildirsize(str(root / "maildirsize")).bytes == 300
    t.change("INBOX", 90000, 1, check=False)  # a sum the folders do not back
    t.change("INBOX", 20000, 1, check=True)  # over on an untrusted sum: re-counted (Dovecot), then it fits
    assert t.recalcs == 2 and t.usage() == (20300, 2)
    with pytest.raises(OverQuota):
        t.change("INBOX", 99800, 1, check=True)  # beyond even the re-counted 300


class StoreQuota(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.rules = ["*:messages=3", "Trash:messages=+1"]
        self.store = Store(self.dir, quota_rules=lambda user: parse_rules(self.rules))
        self.addCleanup(self.store.close)
        self.acct = self.store.account("alice")

    @defer.inlineCallbacks
    def test_every_door_refuses_and_stores_nothing(self):
        inbox = yield self.acct.open_folder("INBOX")
        a = yield inbox.append(MSG)
        yield self.acct.deliver("INBOX", MSG)
        yield inbox.append(MSG)
        with self.assertRaises(OverQuota):
            yield inbox.append(MSG)
        with self.assertRaises(OverQuota):
            yield self.acct.deliver("INBOX", MSG)
        archive = yield self.acct.open_folder("Archive")
        with self.assertRaises(OverQuota):
            yield inbox.copy_to([a], archive)
        self.assertEqual(len(inbox.messages()), 3)
        self.assertEqual(archive.messages(), [])
        self.assertEqual(os.listdir(os.path.join(inbox.path, "tmp")), [])
        trash = yield self.acct.open_folder("Trash")
        yield inbox.copy_to([a], trash)  # Trash gets one more (Trash:messages=+1)
        pairs = yield inbox.copy_to([a], archive, move=True)  # a move within the account is never refused
        yield inbox.expunge([a])
        self.assertEqual(len(pairs), 1)
        root = yield self.acct.quota()
        self.assertEqual([(r.name, r.usage, r.limit) for r in root.resources], [("MESSAGE", 4, 3)])
        yield trash.expunge(None) if False else trash.expunge([m.uid for m in trash.messages()])
        yield self.acct.delete_folder("Archive")
        root = yield self.acct.quota()
        self.assertEqual(root.resources[0].usage, 2)
        tracker = self.acct.quota_tracker
        self.assertEqual(tracker.recalc(), tracker.usage())  # the incremental sums match a re-count

    @defer.inlineCallbacks
    def test_no_rules_no_file_no_limit(self):
        self.rules = []
        inbox = yield self.acct.open_folder("INBOX")
        for _ in range(5):
            yield inbox.append(MSG)
        self.assertIsNone((yield self.acct.quota()))
        self.assertFalse(os.path.exists(os.path.join(self.acct.root, "maildirsize")))


def _cfg(tmp_path, tempfail=False):
    data = tmp_path / "data"
    data.mkdir()
    (data / "passwd").write_text("alice:{PLAIN}x::::::userdb_quota_rule=*:bytes=1500\n")
    return Config(data_dir=str(data), quota_full_tempfail=tempfail)


@pytest.mark.parametrize("tempfail,code", [(False, EX_CANTCREAT), (True, EX_TEMPFAIL)])
def test_deliver_command_exit_codes_over_quota(tmp_path, tempfail, code):
    cfg = _cfg(tmp_path, tempfail)
    err = io.StringIO()
    assert deliver_command(cfg, "alice", None, [], io.BytesIO(MSG), stderr=err) == EX_OK
    assert deliver_command(cfg, "alice", None, [], io.BytesIO(MSG), stderr=err) == code
    assert "Quota exceeded" in err.getvalue()
    new = os.path.join(cfg.data_dir, "alice", "Maildir", "new")
    assert len(os.listdir(new)) == 1


def test_lmtp_over_quota_per_recipient_before_data(tmp_path):
    from tests.fakestore import FakeStore
    from tests.lmtp.helpers import Session, stuff

    store = FakeStore(alice=(), bob=())
    store.accounts["alice"].quota_limits = (500, 0)
    s = Session(store=store, users={"alice", "bob"})
    s.cmd("LHLO c")
    assert s.cmd("MAIL FROM:<x@y.org> SIZE=800") == [b"250 2.1.0 Sender OK"]
    assert s.cmd("RCPT TO:<alice@example.org>") == [b"552 5.2.2 <alice@example.org> Mailbox is full"]
    assert s.cmd("RCPT TO:<bob@example.org>")[0].startswith(b"250")
    s.cmd("RSET")
    s.cmd("MAIL FROM:<x@y.org>")  # no SIZE: refused per recipient after DATA
    s.cmd("RCPT TO:<alice@example.org>")
    s.cmd("RCPT TO:<bob@example.org>")
    s.cmd("DATA")
    replies = s.send(stuff(MSG))
    assert replies[0] == b"552 5.2.2 <alice@example.org> Mailbox is full" and replies[1].startswith(b"250")
    t = Session(store=store, users={"alice"}, quota_full_tempfail=True)
    t.cmd("LHLO c")
    t.cmd("MAIL FROM:<x@y.org> SIZE=800")
    assert t.cmd("RCPT TO:<alice@example.org>")[0].startswith(b"452 4.2.2")


def test_lmtp_to_a_public_mailbox(tmp_path):
    from mailsrv.store.acl import grants
    from tests.fakestore import FakeStore
    from tests.lmtp.helpers import Session, stuff

    store = FakeStore(alice=())
    public = store.make_public("info")
    store.shares.acls[("public", "info")] = grants([("alice", "lrswipkxte"), ("anyone", "p")])
    s = Session(store=store, users={"alice"})
    s.start("info@example.org")
    s.cmd("DATA")
    assert s.send(stuff(MSG))[0].startswith(b"250 2.0.0 <info@example.org>")
    assert len(public.folders["info"].messages()) == 1
    store.shares.acls[("public", "info")] = grants([("alice", "lrswipkxte")])  # no post right
    s.start("info@example.org")
    s.cmd("DATA")
    assert s.send(stuff(MSG))[0].startswith(b"550 5.7.1")
    s.cmd("MAIL FROM:<x@y.org>")
    assert s.cmd("RCPT TO:<nobody@example.org>") == [b"550 5.1.1 <nobody@example.org> User unknown"]
