"""Issue 12 end to end on the real server: two users sharing a folder over
real sockets (one idling while the other changes it), and swaks delivering
over LMTP to a public mailbox and to an over-quota user."""

from __future__ import annotations

import imaplib
import os
import subprocess

import pytest

from mailsrv.embedded import EmbeddedServer, add_user
from tests.e2e.harness import Server, have, mailsrv_cli

MSG = b"From: a@example.org\r\nSubject: shared news\r\n\r\nhello\r\n"


@pytest.fixture
def server(tmp_path, store_dsn):
    data = str(tmp_path / "data")
    os.makedirs(data)
    if store_dsn is not None:
        yield from _pg_server(data, store_dsn)
        return
    add_user(data, "alice", "pw1")
    add_user(data, "bob", "pw2")
    with open(os.path.join(data, "passwd"), "a") as f:
        f.write("carol:{PLAIN}pw3::::::userdb_quota_rule=*:bytes=100\n")
    mailsrv_cli(data, "shared", "create", "info", "--grant", "alice=lrswipkxte", "--grant", "bob=lrswipte")
    with EmbeddedServer(data, kinds=("imap", "lmtp")) as srv:
        yield srv


def _pg_server(data, dsn):
    """The same on the PostgreSQL store: users (carol with her quota field)
    in the users table, the public mailbox made by the same admin command."""
    srv = Server(data, kinds=("imap", "lmtp"), dsn=dsn)
    srv.add_user("alice", "pw1")
    srv.add_user("bob", "pw2")
    from mailsrv.store.pg.db import Database
    from mailsrv.store.pg.users import PgUsers

    db = Database(dsn, max_size=1, start=False)
    try:
        PgUsers(db).add_user("carol", "{PLAIN}pw3", {"quota_rule": "*:bytes=100"})
    finally:
        db.close_now()
    srv.cli("shared", "create", "info", "--grant", "alice=lrswipkxte", "--grant", "bob=lrswipte")
    with srv:
        yield srv
    assert "blocking database read" not in srv.log()


def test_two_users_share_a_folder_and_idle(server):
    port = server.ports["imap"]
    alice = imaplib.IMAP4("127.0.0.1", port, timeout=20)
    alice.login("alice", "pw1")
    alice.create("Projects")
    assert alice._simple_command("SETACL", "Projects", "bob", "lrswite")[0] == "OK"
    bob = imaplib.IMAP4("127.0.0.1", port, timeout=20)
    bob.login("bob", "pw2")
    assert b"Shared/alice/Projects" in b" ".join(bob.list()[1])
    bob.select('"Shared/alice/Projects"')
    tag = bob._new_tag().decode()
    bob.send(f"{tag} IDLE\r\n".encode())
    assert bob.readline().startswith(b"+")
    assert alice.append("Projects", None, None, MSG)[0] == "OK"
    assert bob.readline().strip() == b"* 1 EXISTS"
    bob.send(b"DONE\r\n")
    while not bob.readline().startswith(tag.encode()):
        pass
    bob.store("1", "+FLAGS", "(\\Flagged)")
    alice.select("Projects")
    assert b"\\Flagged" in alice.fetch("1", "(FLAGS)")[1][0]
    alice.logout()
    bob.logout()


@pytest.mark.skipif(not have("swaks"), reason="swaks not installed")
def test_swaks_to_a_public_mailbox_and_an_over_quota_user(server):
    port = server.ports["lmtp"]
    ok = subprocess.run(["swaks", "--protocol", "LMTP", "--server", f"127.0.0.1:{port}", "--to", "info@example.org",
                         "--from", "x@example.net", "--body", "for the team"], capture_output=True, timeout=60)
    assert ok.returncode == 0, ok.stdout.decode()[-2000:]
    full = subprocess.run(["swaks", "--protocol", "LMTP", "--server", f"127.0.0.1:{port}", "--to",
                           "carol@example.org", "--from", "x@example.net", "--body", "x" * 500],
                          capture_output=True, timeout=60)
    assert b"552 5.2.2" in full.stdout, full.stdout.decode()[-2000:]
    alice = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=20)
    alice.login("alice", "pw1")
    alice.select('"Public/info"')
    assert alice.search(None, "ALL")[1] == [b"1"]
    alice.fetch("1", "(BODY[])")
    bob = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=20)
    bob.login("bob", "pw2")
    assert b"UNSEEN 1" in bob.status('"Public/info"', "(UNSEEN)")[1][0]  # alice's \Seen is hers
    assert b"UNSEEN 0" in alice.status('"Public/info"', "(UNSEEN)")[1][0]
    alice.logout()
    bob.logout()


def test_quota_warning_lines_in_the_servers_log(tmp_path):
    data = str(tmp_path / "data")
    os.makedirs(data)
    with open(os.path.join(data, "passwd"), "w") as f:
        f.write("dave:{PLAIN}pw4::::::userdb_quota_rule=*:bytes=1000\n")
    ini = tmp_path / "mailsrv.ini"
    ini.write_text("[quota]\nwarning = 50 90\n")
    with EmbeddedServer(data, kinds=("imap",), extra=["--config", str(ini)]) as srv:
        dave = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=20)
        dave.login("dave", "pw4")
        body = MSG + b"x" * (600 - len(MSG))
        assert dave.append("INBOX", None, None, body)[0] == "OK"
        assert dave.append("INBOX", None, None, body)[0] == "NO"  # 1200 > 1000: refused, no 90 % line
        assert dave.append("INBOX", None, None, MSG + b"y" * 300)[0] == "OK"
        dave.logout()
        log = srv.log()
    assert "quota warning: dave reached 50% of the storage limit (600 of 1000)" in log
    assert "quota warning: dave reached 90% of the storage limit" in log


def test_copy_into_a_shared_folder_keeps_only_the_copiers_flags(server):
    """On either store: bob may keep \\Seen in alice's folder but set no
    other flag there (lrsi); a copy of his flagged message arrives with
    \\Seen alone, and PERMANENTFLAGS says so.  In the public mailbox his
    \\Seen is his own."""
    port = server.ports["imap"]
    alice = imaplib.IMAP4("127.0.0.1", port, timeout=20)
    alice.login("alice", "pw1")
    alice.create("Inbox2")
    assert alice._simple_command("SETACL", "Inbox2", "bob", "lrsi")[0] == "OK"
    bob = imaplib.IMAP4("127.0.0.1", port, timeout=20)
    bob.login("bob", "pw2")
    assert bob.append("INBOX", "(\\Seen \\Flagged $Work)", None, MSG)[0] == "OK"
    bob.select("INBOX")
    assert bob.copy("1", '"Shared/alice/Inbox2"')[0] == "OK"
    assert bob.copy("1", '"Public/info"')[0] == "OK"
    alice.select("Inbox2")
    assert alice.fetch("1", "(FLAGS)")[1][0] == b"1 (FLAGS (\\Seen \\Recent))"
    typ, _ = bob.select('"Shared/alice/Inbox2"')
    assert typ == "OK" and bob.response("PERMANENTFLAGS")[1] == [b"(\\Seen)"]
    alice.select('"Public/info"')
    flags = set(alice.fetch("1", "(FLAGS)")[1][0].split(b"FLAGS (")[1].rstrip(b")").split()) - {b"\\Recent"}
    assert flags == {b"$Work", b"\\Flagged"}  # bob's \Seen went to his own set
    bob.select('"Public/info"')
    assert b"\\Seen" in bob.fetch("1", "(FLAGS)")[1][0]
    alice.logout()
    bob.logout()
