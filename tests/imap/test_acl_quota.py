"""ACL (RFC 4314) and QUOTA (RFC 9208) transcripts: two users on one fake
store (the real UserView applies the rights), every command and response
code, rights refused at each step, quota refused at each IMAP door."""

from __future__ import annotations

import re

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from mailsrv.config import Config
from mailsrv.imap import IMAPFactory
from mailsrv.store.acl import grants
from tests.fakestore import FakeStore, make_portal
from tests.imap.harness import MSG1, MSG2, tagged

ALL = "lrswipkxtea"
ALL_CD = ALL + "cd"  # as sent: with RFC 4314 2.1.1's virtual c and d


class User:
    """One IMAP session of ``name`` on a shared store."""

    def __init__(self, store: FakeStore, name: str) -> None:
        portal = make_portal(store, {u: "secret" for u in store.accounts})
        factory = IMAPFactory(portal, Config(auth_fail_delay=0), reactor=Clock())
        self.proto = factory.buildProtocol(None)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.proto.makeConnection(self.transport)
        self.transport.clear()
        assert b"a OK" in self.cmd(f"a LOGIN {name} secret")

    def take(self) -> bytes:
        out = self.transport.value()
        self.transport.clear()
        return out

    def cmd(self, line: str) -> bytes:
        self.proto.dataReceived(line.encode() + b"\r\n")
        return self.take()

    def append(self, box: str, msg: bytes, tag: str = "p") -> bytes:
        self.proto.dataReceived(f"{tag} APPEND {box} {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
        return self.take()


def setup() -> tuple[FakeStore, User, User]:
    store = FakeStore(alice=("Projects", "Secret"), bob=())
    store.accounts["alice"].folders["Projects"].add(MSG1)
    return store, User(store, "alice"), User(store, "bob")


def share(store: FakeStore, rights: str, folder: str = "Projects", who: str = "bob") -> None:
    alice = User(store, "alice")
    assert tagged(alice.cmd(f'x SETACL {folder} {who} "{rights}"'), "x").startswith(b"x OK")


def test_capabilities_advertise_acl_and_quota():
    _, alice, _ = setup()
    caps = alice.cmd("c CAPABILITY")
    for cap in (b"ACL", b"RIGHTS=texk", b"QUOTA", b"QUOTA=RES-STORAGE", b"QUOTA=RES-MESSAGE"):
        assert b" " + cap + b" " in caps or b" " + cap + b"\r\n" in caps, caps


def test_owner_rights_getacl_setacl_listrights():
    store, alice, _ = setup()
    assert alice.cmd("a MYRIGHTS INBOX") == (b'* MYRIGHTS "INBOX" ' + ALL_CD.encode()
                                             + b"\r\na OK MYRIGHTS completed\r\n")
    assert alice.cmd("b SETACL Projects bob lrs") == b"b OK SETACL completed\r\n"
    # the owner entry shows as the owner's name, as Dovecot shows it
    assert alice.cmd("c GETACL Projects") == (b'* ACL "Projects" alice ' + ALL_CD.encode() + b" bob lrs\r\n"
                                              b"c OK GETACL completed\r\n")
    assert alice.cmd("d SETACL Projects bob +w") == b"d OK SETACL completed\r\n"
    assert b" bob lrsw\r\n" in alice.cmd("e GETACL Projects")
    alice.cmd("f SETACL Projects bob -rw")
    assert b" bob ls\r\n" in alice.cmd("g GETACL Projects")
    out = alice.cmd("h LISTRIGHTS Projects bob")
    assert out == b'* LISTRIGHTS "Projects" bob "" l r s w i p k x t e a c d\r\nh OK LISTRIGHTS completed\r\n'
    assert alice.cmd("i DELETEACL Projects bob") == b"i OK DELETEACL completed\r\n"
    assert b"bob" not in alice.cmd("j GETACL Projects")
    assert tagged(alice.cmd("k SETACL Projects bob lrz"), "k").startswith(b"k BAD")
    assert tagged(alice.cmd("l MYRIGHTS Nope"), "l").startswith(b"l NO [NONEXISTENT]")


def test_bob_sees_the_shared_folder_in_the_other_users_namespace():
    store, alice, bob = setup()
    assert b"Shared/alice" not in bob.cmd('a LIST "" "*"')
    share(store, "lr")
    assert bob.cmd("b NAMESPACE") == b'* NAMESPACE (("" "/")) (("Shared/" "/")) NIL\r\nb OK NAMESPACE completed\r\n'
    listing = bob.cmd('c LIST "" "*"')
    assert b'"Shared/alice/Projects"' in listing and b"Secret" not in listing, listing
    assert b'* MYRIGHTS "Shared/alice/Projects" lr\r\n' in bob.cmd('d MYRIGHTS "Shared/alice/Projects"')
    assert tagged(bob.cmd('e MYRIGHTS "Shared/alice/Secret"'), "e").startswith(b"e NO [NONEXISTENT]")
    out = bob.cmd('f SELECT "Shared/alice/Projects"')
    assert b"* 1 EXISTS" in out and b"[READ-ONLY]" in out, out
    assert b"Hello" in bob.cmd("g FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")


def test_rights_refused_at_each_step():
    store, alice, bob = setup()
    share(store, "lrs")
    box = '"Shared/alice/Projects"'
    assert tagged(bob.append(box, MSG2), "p").startswith(b"p NO [NOPERM]")
    assert tagged(bob.cmd(f"a GETACL {box}"), "a").startswith(b"a NO [NOPERM]")
    assert tagged(bob.cmd(f"b SETACL {box} bob lrswipkxtea"), "b").startswith(b"b NO [NOPERM]")
    assert tagged(bob.cmd(f"b2 DELETEACL {box} bob"), "b2").startswith(b"b2 NO [NOPERM]")
    assert tagged(bob.cmd(f"b3 LISTRIGHTS {box} bob"), "b3").startswith(b"b3 NO [NOPERM]")
    assert tagged(bob.cmd(f"c DELETE {box}"), "c").startswith(b"c NO [NOPERM]")
    assert tagged(bob.cmd('d CREATE "Shared/alice/Projects/Sub"'), "d").startswith(b"d NO [NOPERM]")
    assert tagged(bob.cmd(f'e RENAME {box} "Shared/alice/Other"'), "e").startswith(b"e NO [NOPERM]")
    out = bob.cmd(f"f SELECT {box}")
    # s alone still allows setting \Seen: read-write, and only \Seen is permanent (RFC 4314 5.1.1)
    assert b"[READ-WRITE]" in out and b"* OK [PERMANENTFLAGS (\\Seen)]" in out, out
    # a flag bob may not set is left alone, silently: Dovecot answers OK too (RFC 4314 4)
    out = bob.cmd("g STORE 1 +FLAGS (\\Flagged)")
    assert tagged(out, "g").startswith(b"g OK") and b"\\Flagged" not in out
    out = bob.cmd("h STORE 1 +FLAGS (\\Deleted)")
    assert tagged(out, "h").startswith(b"h OK") and b"\\Deleted" not in out
    assert b"FLAGS (\\Seen \\Recent)" in bob.cmd("i STORE 1 +FLAGS (\\Seen \\Flagged)")  # \Flagged dropped silently
    assert b"FLAGS (\\Recent)" in bob.cmd("i2 STORE 1 FLAGS (\\Deleted)")  # \Seen off; \Deleted is not his to set
    assert store.accounts["alice"].folders["Projects"].get(1).flags == frozenset()
    assert tagged(bob.cmd("j EXPUNGE"), "j").startswith(b"j NO [NOPERM]")
    assert tagged(bob.cmd("k MOVE 1 INBOX"), "k").startswith(b"k NO [NOPERM]")
    assert tagged(bob.cmd("l COPY 1 INBOX"), "l").startswith(b"l OK")  # r is enough to copy out
    bob.cmd("m SELECT INBOX")
    assert tagged(bob.cmd(f"n COPY 1 {box}"), "n").startswith(b"n NO [NOPERM]")
    assert tagged(bob.cmd(f"o MOVE 1 {box}"), "o").startswith(b"o NO [NOPERM]")
    assert len(store.accounts["alice"].folders["Projects"].messages()) == 1
    share(store, "")  # no rights at all: gone from bob's view
    assert tagged(bob.cmd(f"q SELECT {box}"), "q").startswith(b"q NO [NONEXISTENT]")
    assert tagged(bob.cmd(f"r STATUS {box} (MESSAGES)"), "r").startswith(b"r NO [NONEXISTENT]")


def test_changes_by_either_user_reach_the_other():
    store, alice, bob = setup()
    share(store, "lrswipte")
    box = '"Shared/alice/Projects"'
    alice.cmd("a SELECT Projects")
    bob.cmd(f"b SELECT {box}")
    assert tagged(bob.append(box, MSG2), "p").startswith(b"p OK [APPENDUID")
    assert b"* 2 EXISTS" in alice.cmd("c NOOP")
    alice.cmd("d STORE 2 +FLAGS.SILENT (\\Flagged)")
    assert re.search(rb"\* 2 FETCH \(UID \d+ FLAGS \(\\Flagged( \\Recent)?\)\)", bob.cmd("e NOOP"))
    bob.cmd("f STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert tagged(bob.cmd("g EXPUNGE"), "g").startswith(b"g OK")
    assert b"* 1 EXPUNGE" in alice.cmd("h NOOP")


def test_create_inherits_the_parents_acl():
    store, alice, bob = setup()
    share(store, "lrk")
    assert tagged(bob.cmd('a CREATE "Shared/alice/Projects/Q1"'), "a").startswith(b"a OK")
    assert "Projects/Q1" in store.accounts["alice"].folders
    assert b" bob lrk" in alice.cmd("b GETACL Projects/Q1")


def test_public_mailbox_has_private_seen_and_shared_flags():
    store, alice, bob = setup()
    public = store.make_public("info")
    store.shares.acls[("public", "info")] = grants([("alice", "lrswipkxte"), ("bob", "lrswipte")])
    public.folders["info"].add(MSG1)
    assert b'(("Public/" "/"))' in alice.cmd("a NAMESPACE")
    assert b'"Public/info"' in bob.cmd('b LIST "" "*"')
    alice.cmd('c SELECT "Public/info"')
    bob.cmd('d SELECT "Public/info"')
    alice.cmd("e FETCH 1 (BODY[])")  # sets \Seen for alice only
    assert b"\\Seen" in alice.cmd("f FETCH 1 (FLAGS)")
    assert b"\\Seen" not in bob.cmd("g FETCH 1 (FLAGS)")
    bob.cmd("h STORE 1 +FLAGS (\\Flagged)")
    assert b"\\Flagged" in alice.cmd("i FETCH 1 (FLAGS)")
    assert "\\Seen" not in public.folders["info"].get(1).flags  # not in the shared file flags
    assert b"UNSEEN 1" in bob.cmd('j STATUS "Public/info" (UNSEEN)')
    assert b"UNSEEN 0" in alice.cmd('k STATUS "Public/info" (UNSEEN)')


def test_quota_commands_and_status_deleted():
    store, alice, _ = setup()
    assert alice.cmd("a GETQUOTAROOT INBOX") == b'* QUOTAROOT "INBOX"\r\na OK GETQUOTAROOT completed\r\n'
    store.accounts["alice"].quota_limits = (10 * 1024, 5)
    size = len(MSG1)
    out = alice.cmd("b GETQUOTAROOT INBOX")
    assert out == (b'* QUOTAROOT "INBOX" "User quota"\r\n'
                   b'* QUOTA "User quota" (STORAGE %d 10 MESSAGE 1 5)\r\nb OK GETQUOTAROOT completed\r\n'
                   % -(-size // 1024))  # KiB rounded up, as Dovecot shows them (tests/e2e/test_dovecot_share.py)
    assert 0 < size < 1024
    assert alice.cmd('c GETQUOTA "User quota"').startswith(b'* QUOTA "User quota" (STORAGE')
    assert tagged(alice.cmd('d GETQUOTA "nope"'), "d").startswith(b"d NO [NONEXISTENT]")
    assert tagged(alice.cmd('e SETQUOTA "User quota" (STORAGE 99999)'), "e").startswith(b"e NO [NOPERM]")
    alice.cmd("f SELECT Projects")
    alice.cmd("g STORE 1 +FLAGS (\\Deleted)")
    assert b"(MESSAGES 1 SIZE %d DELETED 1 DELETED-STORAGE 0)" % size in alice.cmd(
        "h STATUS Projects (MESSAGES SIZE DELETED DELETED-STORAGE)")


def test_quota_refused_at_append_copy_move():
    store, alice, _ = setup()
    acct = store.accounts["alice"]
    acct.quota_limits = (0, 2)
    assert tagged(alice.append("INBOX", MSG2), "p").startswith(b"p OK")
    assert tagged(alice.append("INBOX", MSG2, "q"), "q").startswith(b"q NO [OVERQUOTA]")
    assert len(acct.inbox.messages()) == 1  # nothing stored
    alice.cmd("a SELECT INBOX")
    assert tagged(alice.cmd("b COPY 1 Secret"), "b").startswith(b"b NO [OVERQUOTA]")
    assert acct.folders["Secret"].messages() == []
    assert tagged(alice.cmd("c MOVE 1 Secret"), "c").startswith(b"c OK")  # within the account: never refused
    assert len(acct.folders["Secret"].messages()) == 1 and acct.inbox.messages() == []
