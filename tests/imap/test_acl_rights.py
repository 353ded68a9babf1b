"""Rights as Dovecot applies them (issue 12), over IMAP on the fake store
with the real UserView: how ACL entries combine, what GETACL shows, the
owner keeping the admin right, RFC 4314's virtual c/d, PERMANENTFLAGS and
STORE narrowed to the user's rights, flags of messages copied into another
user's mailbox, private \\Seen and mod-sequences, and LIST-MYRIGHTS
(RFC 8440)."""

from __future__ import annotations

import re

from mailsrv.store.acl import Acl, grants
from tests.fakestore import FakeStore
from tests.imap.harness import MSG1, MSG2, tagged
from tests.imap.test_acl_quota import ALL_CD, User, setup, share

BOX = '"Shared/alice/Projects"'


def rights_of(user: User, box: str) -> bytes:
    out = user.cmd(f"m MYRIGHTS {box}")
    m = re.search(rb"\* MYRIGHTS \S+ (\S+)\r\n", out)
    assert m is not None, out
    return m.group(1)


def perm_flags(out: bytes) -> bytes:
    m = re.search(rb"\* OK \[PERMANENTFLAGS \(([^)]*)\)\]", out)
    assert m is not None, out
    return m.group(1)


def test_entries_combine_as_dovecot_does():
    store, alice, bob = setup()
    share(store, "lrswi", who="anyone")
    assert rights_of(bob, BOX) == b"lrswi"
    share(store, "lr")  # bob's own entry replaces what anyone gives (it does not add to it)
    assert rights_of(bob, BOX) == b"lr"
    share(store, "r", who="-bob")  # negative rights are taken away last
    assert rights_of(bob, BOX) == b"l"
    assert tagged(alice.cmd("a DELETEACL Projects -bob"), "a").startswith(b"a OK")
    assert rights_of(bob, BOX) == b"lr"
    assert tagged(alice.cmd("b DELETEACL Projects bob"), "b").startswith(b"b OK")
    assert rights_of(bob, BOX) == b"lrswi"
    share(store, "l", who="anyone")
    share(store, "", who="bob")
    assert rights_of(alice, "Projects") == ALL_CD.encode()  # the owner skips anyone's entry
    share(store, "lr", who="authenticated")  # authenticated comes after anyone
    assert rights_of(bob, BOX) == b"lr"
    share(store, "r", who="-anyone")
    assert rights_of(bob, BOX) == b"l"
    share(store, "s", who="-authenticated")  # negative rights of a later kind replace earlier ones
    assert rights_of(bob, BOX) == b"lr"


def test_getacl_shows_identifiers_as_dovecot_does():
    store, alice, bob = setup()
    acls = store.shares.acls
    acls[("alice", "Projects")] = Acl([("user=bob", "lra")])  # no owner entry: the owner has every right
    assert rights_of(alice, "Projects") == ALL_CD.encode()
    out = alice.cmd("a GETACL Projects")
    assert out.startswith(b'* ACL "Projects" bob lra alice ' + ALL_CD.encode() + b"\r\n"), out
    acls[("alice", "Projects")] = Acl([("user=alice", "lra"), ("owner", "lrswipkxtea"), ("-user=bob", "w"),
                                       ("user=bob", "lrwa")])
    out = alice.cmd("b GETACL Projects")  # both owner and alice: neither renamed
    assert out.startswith(b'* ACL "Projects" owner lrswipkxteacd alice lra bob lrwa -bob w\r\n'), out
    assert rights_of(alice, "Projects") == b"lra"  # user=alice applies after owner
    assert rights_of(bob, BOX) == b"lra"
    acls[("alice", "Projects")] = Acl([("owner", "lrsa"), ("user=bob", "lra")])
    # bob, an admin of alice's mailbox, sees the owner entry under alice's name; no default added
    out = bob.cmd(f"c GETACL {BOX}")
    assert out.startswith(b'* ACL "Shared/alice/Projects" alice lrsa bob lra\r\n'), out


def test_the_owner_keeps_the_admin_right():
    store, alice, _ = setup()
    assert tagged(alice.cmd("a SETACL Projects alice lr"), "a").startswith(b"a OK")
    assert rights_of(alice, "Projects") == b"lra"
    alice.cmd("b SETACL Projects alice -ar")
    assert rights_of(alice, "Projects") == b"la"
    alice.cmd("c SETACL Projects owner lr")
    assert store.shares.acls[("alice", "Projects")].get("owner") == "lra"
    alice.cmd("d SETACL Secret alice +w")  # the first addition starts from the rights she has
    assert rights_of(alice, "Secret") == ALL_CD.encode()
    alice.cmd("e SETACL Secret owner lr")
    alice.cmd("f DELETEACL Secret alice")
    alice.cmd("g SETACL Secret alice +w")
    assert rights_of(alice, "Secret") == b"lrwa"


def test_virtual_rights_c_and_d():
    store, alice, bob = setup()
    alice.cmd("a SETACL Projects bob lrc")
    assert b" bob lrkxc\r\n" in alice.cmd("b GETACL Projects")
    alice.cmd("c SETACL Projects bob +d")
    assert b" bob lrkxtecd\r\n" in alice.cmd("d GETACL Projects")
    assert rights_of(bob, BOX) == b"lrkxtecd"
    assert store.shares.acls[("alice", "Projects")].get("user=bob") == "lrkxte"  # files never hold c/d


def test_myrights_needs_more_than_post():
    store, _, bob = setup()
    share(store, "p")
    assert tagged(bob.cmd(f"a MYRIGHTS {BOX}"), "a").startswith(b"a NO [NONEXISTENT]")
    share(store, "i")
    assert rights_of(bob, BOX) == b"i"


def test_bad_identifiers_and_public_owner():
    store, alice, _ = setup()
    assert tagged(alice.cmd('a SETACL Projects "" lr'), "a").startswith(b"a BAD")
    assert tagged(alice.cmd('b DELETEACL Projects ""'), "b").startswith(b"b BAD")
    store.make_public("info")
    store.shares.acls[("public", "info")] = grants([("alice", "lrswipkxtea")])
    assert tagged(alice.cmd('c SETACL "Public/info" owner lr'), "c").startswith(b"c NO [CANNOT]")
    assert tagged(alice.cmd('d SETACL "Public/info" bob lr'), "d").startswith(b"d OK")


def test_permanentflags_follow_the_rights():
    store, _, bob = setup()
    store.accounts["alice"].folders["Projects"].add(MSG2, ["$Work"])
    for rights, perm in (("lrs", b"\\Seen"), ("lrt", b"\\Deleted"),
                         ("lrw", b"\\Answered \\Flagged \\Draft $Work \\*"),
                         ("lrswt", b"\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work \\*"),
                         ("lri", b"")):
        share(store, rights)
        out = bob.cmd(f"s SELECT {BOX}")
        assert perm_flags(out) == perm, (rights, out)
        assert b"[READ-WRITE]" in out
    share(store, "lr")
    out = bob.cmd(f"e EXAMINE {BOX}")
    assert perm_flags(out) == b"" and b"[READ-ONLY]" in out


def test_fetch_does_not_set_seen_without_s():
    store, _, bob = setup()
    share(store, "lri")  # read-write (i), but not allowed to keep \Seen
    bob.cmd(f"a SELECT {BOX}")
    out = bob.cmd("b FETCH 1 (BODY[])")
    assert tagged(out, "b").startswith(b"b OK") and b"\\Seen" not in out
    assert store.accounts["alice"].folders["Projects"].get(1).flags == frozenset()


def test_copy_into_another_users_mailbox_keeps_only_permitted_flags():
    store, alice, bob = setup()
    inbox = store.accounts["bob"].inbox
    inbox.add(MSG1, ["\\Seen", "\\Flagged", "\\Deleted", "$Work"])
    bob.cmd("a SELECT INBOX")
    projects = store.accounts["alice"].folders["Projects"]
    for rights, kept in (("lrsi", {"\\Seen"}), ("lrwi", {"\\Flagged", "$Work"}), ("lrti", {"\\Deleted"}),
                         ("lrswti", {"\\Seen", "\\Flagged", "\\Deleted", "$Work"})):
        share(store, rights)
        assert tagged(bob.cmd(f"c COPY 1 {BOX}"), "c").startswith(b"c OK [COPYUID")
        assert projects.messages()[-1].flags == frozenset(kept), rights
    share(store, "lrsi")
    assert tagged(bob.cmd(f"m MOVE 1 {BOX}"), "m").startswith(b"m OK")
    assert projects.messages()[-1].flags == frozenset({"\\Seen"})
    assert inbox.messages() == []


def test_private_seen_travels_with_copies_and_bumps_modseq():
    store, alice, bob = setup()
    public = store.make_public("info")
    store.shares.acls[("public", "info")] = grants([("alice", "lrswipkxte"), ("bob", "lrswipte")])
    info = public.folders["info"]
    info.add(MSG1)
    alice.cmd('a SELECT "Public/info"')
    before = info.get(1).modseq
    alice.cmd("b STORE 1 +FLAGS.SILENT (\\Seen)")
    assert info.get(1).modseq > before  # a private flag change is a change for CONDSTORE (Dovecot bumps it too)
    assert "\\Seen" not in info.get(1).flags
    # copies out carry alice's own \Seen, not the file's
    assert tagged(alice.cmd("c COPY 1 Secret"), "c").startswith(b"c OK")
    assert store.accounts["alice"].folders["Secret"].messages()[-1].flags == frozenset({"\\Seen"})
    # copies in: \Seen goes to the copier's own set
    store.accounts["alice"].inbox.add(MSG2, ["\\Seen", "\\Answered"])
    alice.cmd("d SELECT INBOX")
    assert tagged(alice.cmd('f COPY 1 "Public/info"'), "f").startswith(b"f OK")
    assert info.messages()[-1].flags == frozenset({"\\Answered"})
    alice.cmd('g SELECT "Public/info"')
    assert b"* 2 FETCH (FLAGS (\\Answered \\Seen \\Recent))" in alice.cmd("h FETCH 2 FLAGS")
    bob.cmd('i EXAMINE "Public/info"')
    assert b"* 2 FETCH (FLAGS (\\Answered))" in bob.cmd("j FETCH 2 FLAGS")  # alice's \Seen is hers


def test_list_myrights():
    store, alice, bob = setup()
    share(store, "lrs")
    assert b" LIST-MYRIGHTS" in bob.cmd("a CAPABILITY")
    out = bob.cmd('b LIST "" "*" RETURN (MYRIGHTS)')
    lines = out.split(b"\r\n")
    i = lines.index(b'* LIST (\\HasNoChildren) "/" "Shared/alice/Projects"')
    assert lines[i + 1] == b'* MYRIGHTS "Shared/alice/Projects" lrs'
    inbox = lines.index(b'* MYRIGHTS "INBOX" ' + ALL_CD.encode())
    assert lines[inbox - 1].endswith(b'"INBOX"')
    assert b'MYRIGHTS "Shared"' not in out and b'MYRIGHTS "Shared/alice"' not in out  # not mailboxes
    assert tagged(out, "b").startswith(b"b OK")
    out = alice.cmd('c LIST (SUBSCRIBED) "" "*" RETURN (MYRIGHTS CHILDREN)')
    assert out.count(b"* MYRIGHTS") == out.count(b"* LIST"), out
    assert tagged(bob.cmd('d LIST "" "*" RETURN (MYRIGHTS BOGUS)'), "d").startswith(b"d BAD")


def test_changes_and_rights_revoked_reach_an_idle_session():
    """Both users' changes reach the other's sessions, IDLE included."""
    store, alice, bob = setup()
    share(store, "lrswite")
    alice.cmd("a SELECT Projects")
    bob.cmd(f"b SELECT {BOX}")
    bob.proto.dataReceived(b"c IDLE\r\n")
    assert bob.take().startswith(b"+")
    alice.append("Projects", MSG2)
    assert b"* 2 EXISTS" in bob.take()
    alice.cmd("d STORE 1 +FLAGS.SILENT (\\Answered)")
    assert re.search(rb"\* 1 FETCH \((UID \d+ )?FLAGS \(\\Answered( \\Recent)?\)\)", bob.take())
    alice.cmd("e STORE 2 +FLAGS.SILENT (\\Deleted)")
    alice.cmd("f EXPUNGE")
    assert b"* 2 EXPUNGE" in bob.take()
    bob.proto.dataReceived(b"DONE\r\n")
    assert tagged(bob.take(), "c").startswith(b"c OK")
    alice_store_folder = store.accounts["alice"].folders["Projects"]
    bob.cmd("g STORE 1 +FLAGS.SILENT (\\Flagged)")
    assert "\\Flagged" in alice_store_folder.get(1).flags
    assert re.search(rb"\* 1 FETCH \((UID 1 )?FLAGS \(\\Answered \\Flagged", alice.cmd("h NOOP"))


def test_fake_store_is_what_these_tests_use():
    assert isinstance(setup()[0], FakeStore)


def test_a_parent_the_user_may_not_look_up_is_listed_only_when_needed():
    """RFC 4314 section 4's LIST example, as Dovecot's acl plugin does it."""
    store, alice, bob = setup()
    alice.cmd("a CREATE Projects/Q1")
    share(store, "lr", folder="Projects/Q1")  # Projects itself stays alice's alone
    out = bob.cmd('b LIST "" "*"')
    assert b'"Shared/alice/Projects/Q1"' in out and b'"Shared/alice/Projects"\r\n' not in out, out
    assert b'(\\Noselect \\HasChildren) "/" "Shared/alice"' in out  # the namespace's own levels stay
    out = bob.cmd('c LIST "" "Shared/alice/%"')  # the pattern misses Q1: Projects stands in for it
    assert b'* LIST (\\Noselect \\HasChildren) "/" "Shared/alice/Projects"\r\n' in out, out
    out = bob.cmd('d LIST () "" "Shared/alice/%"')
    assert b'* LIST (\\NonExistent \\HasChildren) "/" "Shared/alice/Projects"\r\n' in out, out


def test_mailbox_commands_under_shared_with_the_rights():
    """CREATE needs k on the parent, DELETE x, RENAME x on the old name and
    k where it goes, within the one owner (RFC 4314 section 4)."""
    store, alice, bob = setup()
    alice_folders = store.accounts["alice"].folders
    share(store, "lrkx")
    assert tagged(bob.cmd('a CREATE "Shared/alice/Projects/Sub"'), "a").startswith(b"a OK")
    assert "Projects/Sub" in alice_folders
    assert b" bob lrkxc" in alice.cmd("b GETACL Projects/Sub")  # inherited from the parent
    assert tagged(bob.cmd('c RENAME "Shared/alice/Projects/Sub" "Shared/alice/Projects/Renamed"'),
                  "c").startswith(b"c OK")
    assert "Projects/Renamed" in alice_folders and "Projects/Sub" not in alice_folders
    assert tagged(bob.cmd('d RENAME "Shared/alice/Projects/Renamed" "Mine"'), "d").startswith(b"d NO [NOPERM]")
    assert tagged(bob.cmd('e RENAME "Shared/alice/Projects/Renamed" "Shared/alice/Top"'),
                  "e").startswith(b"e NO [NOPERM]")  # no k at the top of alice's mailboxes
    assert tagged(bob.cmd('f DELETE "Shared/alice/Projects/Renamed"'), "f").startswith(b"f OK")
    assert "Projects/Renamed" not in alice_folders
    assert tagged(bob.cmd('g DELETE "Shared/alice/Secret"'), "g").startswith(b"g NO [NONEXISTENT]")
    assert tagged(bob.cmd('h SUBSCRIBE "Shared/alice/Projects"'), "h").startswith(b"h OK")
    assert b'"Shared/alice/Projects"' in bob.cmd('i LSUB "" "*"')
    assert b'* LIST (\\HasChildren \\Subscribed) "/" "Shared/alice/Projects"' in \
        bob.cmd('j LIST "" "Shared/alice/*" RETURN (SUBSCRIBED)') or \
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "Shared/alice/Projects"' in \
        bob.cmd('k LIST "" "Shared/alice/*" RETURN (SUBSCRIBED)')


def test_private_seen_reaches_the_users_other_sessions_only():
    store, alice, bob = setup()
    public = store.make_public("info")
    store.shares.acls[("public", "info")] = grants([("alice", "lrswipkxte"), ("bob", "lrswipte")])
    public.folders["info"].add(MSG1)
    alice2 = User(store, "alice")
    for u, tag in ((alice, "a"), (alice2, "b"), (bob, "c")):
        u.cmd(f'{tag} SELECT "Public/info"')
    alice2.proto.dataReceived(b"d IDLE\r\n")
    assert alice2.take().startswith(b"+")
    alice.cmd("e STORE 1 +FLAGS.SILENT (\\Seen)")
    assert re.search(rb"\* 1 FETCH \((UID 1 )?FLAGS \(\\Seen( \\Recent)?\)\)", alice2.take())
    assert b"FETCH" not in bob.cmd("f NOOP")
    alice2.proto.dataReceived(b"DONE\r\n")
    assert tagged(alice2.take(), "d").startswith(b"d OK")
