"""IMAP end to end: the real ``twistd mailsrv`` driven by real clients over real sockets."""

from __future__ import annotations

import imaplib
import os
import subprocess
import textwrap
import threading
import time

import imapclient
import pytest

from tests.e2e.harness import have
from tests.e2e.test_pop3_clients import PW, Getmail, insecure, message


def imap(server) -> imaplib.IMAP4:
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    m.login("alice", PW)
    return m


def test_imaplib_core(server):
    for i in range(1, 4):
        server.deliver("alice", message(i))
    m = imap(server)
    typ, data = m.select("INBOX")
    assert typ == "OK" and data == [b"3"]
    typ, data = m.fetch("1:3", "(UID FLAGS RFC822.SIZE)")
    assert typ == "OK" and len([d for d in data if d]) == 3
    typ, data = m.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert data[0][1] == b"Subject: test 2\r\n\r\n"
    typ, data = m.fetch("1", "(BODY.PEEK[TEXT]<0.10>)")
    assert data[0][1] == b"line 0 of "
    typ, data = m.fetch("1", "(BODY[])")
    assert data[0][1] == message(1).replace(b"\n", b"\r\n")
    typ, data = m.search(None, "SUBJECT", '"test 3"')
    assert data == [b"3"]
    m.store("1", "+FLAGS", "(\\Flagged $Work)")
    m.create("Archive/2026")
    typ, data = m.uid("COPY", "1:2", "Archive/2026")
    assert typ == "OK"
    m.store("3", "+FLAGS", "\\Deleted")
    typ, data = m.expunge()
    assert data == [b"3"]
    m.logout()
    m = imap(server)
    typ, data = m.select("Archive/2026", readonly=True)
    assert data == [b"2"]
    typ, data = m.fetch("1", "(FLAGS)")
    assert b"\\Flagged" in data[0] and b"$Work" in data[0]
    typ, data = m.list()
    names = b"\n".join(data)
    for name in (b"INBOX", b"Sent", b"Trash", b"Archive/2026"):
        assert name in names
    m.logout()


def test_imaps_and_starttls(server):
    m = imaplib.IMAP4_SSL("127.0.0.1", server.ports["imaps"], ssl_context=insecure(), timeout=30)
    assert "STARTTLS" not in m.capabilities
    m.login("alice", PW)
    m.logout()
    m = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=30)
    assert "STARTTLS" in m.capabilities
    m.starttls(ssl_context=insecure())
    m.login("alice", PW)
    assert m.select("INBOX")[0] == "OK"
    m.logout()


def test_idle_sees_delivery_and_other_session(server):
    server.deliver("alice", message(1))
    watcher = imap(server)
    watcher.select("INBOX")
    tag = watcher._new_tag()
    watcher.send(tag + b" IDLE\r\n")
    assert watcher.readline().startswith(b"+")
    server.deliver("alice", message(2))
    other = imap(server)
    other.select("INBOX")
    got = []
    deadline = time.monotonic() + 20
    watcher.sock.settimeout(20)
    while time.monotonic() < deadline and not any(b"EXISTS" in line for line in got):
        got.append(watcher.readline())
    assert any(line.strip() == b"* 2 EXISTS" for line in got), got
    other.store("1", "+FLAGS", "\\Flagged")
    line = watcher.readline()
    while b"FETCH" not in line:
        line = watcher.readline()
    assert b"\\Flagged" in line
    other.store("1", "+FLAGS", "\\Deleted")
    other.expunge()
    line = watcher.readline()
    while b"EXPUNGE" not in line:
        line = watcher.readline()
    assert line.strip() == b"* 1 EXPUNGE"
    watcher.send(b"DONE\r\n")
    while not line.startswith(tag):
        line = watcher.readline()
    assert b"OK" in line
    other.logout()
    watcher.logout()


@pytest.mark.skipif(not have("curl"), reason="curl not installed")
def test_curl_imap(server, tmp_path):
    server.deliver("alice", message(1))
    base = f"imap://127.0.0.1:{server.ports['imap']}"

    def curl(*args, data=None):
        r = subprocess.run(["curl", "-sS", "--user", f"alice:{PW}", *args], capture_output=True, timeout=60, input=data)
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert b"INBOX" in curl(base + "/")
    assert curl(base + "/INBOX;UID=1") == message(1).replace(b"\n", b"\r\n")
    assert curl(base + "/INBOX;UID=1;SECTION=HEADER.FIELDS%20(SUBJECT)") == b"Subject: test 1\r\n\r\n"
    assert b"SEARCH 1" in curl(base + "/INBOX?SUBJECT%20%22test%201%22")
    up = tmp_path / "up.eml"
    up.write_bytes(message(9).replace(b"\n", b"\r\n"))
    curl("-T", str(up), base + "/INBOX")
    assert b"SEARCH 2" in curl(base + "/INBOX?SUBJECT%20%22test%209%22")
    out = curl("-k", f"imaps://127.0.0.1:{server.ports['imaps']}/INBOX;UID=2")
    assert out == message(9).replace(b"\n", b"\r\n")


def test_imapclient_folders_flags_partial_move(server):
    server.deliver("alice", message(1))
    c = imapclient.IMAPClient("127.0.0.1", port=server.ports["imap"], ssl=False, timeout=30)
    c.login("alice", PW)
    c.create_folder("Reisekosten/Köln")
    assert "Reisekosten/Köln" in [f[2] for f in c.list_folders()]
    c.select_folder("INBOX")
    c.add_flags([1], [b"\\Answered", b"Project-X"])
    data = c.fetch([1], ["FLAGS", "BODYSTRUCTURE", "BODY.PEEK[1]<0.4>"])
    assert set(data[1][b"FLAGS"]) >= {b"\\Answered", b"Project-X"}
    assert data[1][b"BODY[1]<0>"] == b"line"
    assert c.search(["KEYWORD", "Project-X"]) == [1]
    c.move([1], "Reisekosten/Köln")
    assert c.search(["ALL"]) == []
    c.select_folder("Reisekosten/Köln")
    assert c.search(["ALL"]) == [1]
    c.logout()


@pytest.mark.skipif(not have("mbsync"), reason="isync (mbsync) not installed")
def test_mbsync_two_way(server, tmp_path):
    server.deliver("alice", message(1))
    server.deliver("alice", message(2), folder="Archive")
    local = tmp_path / "mail"
    local.mkdir()
    rc = tmp_path / "mbsyncrc"
    rc.write_text(
        textwrap.dedent(
            f"""\
            IMAPAccount acct
            Host localhost
            Port {server.ports['imaps']}
            User alice
            Pass {PW}
            SSLType IMAPS
            CertificateFile {server.data}/tls/cert.pem

            IMAPStore remote
            Account acct

            MaildirStore local
            Path {local}/
            Inbox {local}/INBOX
            SubFolders Verbatim

            Channel all
            Far :remote:
            Near :local:
            Patterns *
            Create Both
            Expunge Both
            SyncState *
            Sync All
            """
        )
    )

    def sync():
        r = subprocess.run(["mbsync", "-c", str(rc), "-a"], capture_output=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr

    sync()
    inbox_new = list((local / "INBOX" / "cur").iterdir()) + list((local / "INBOX" / "new").iterdir())
    assert len(inbox_new) == 1
    assert (local / "Archive").is_dir()
    # local change: flag a message seen and add one to Archive, then sync up
    f = inbox_new[0]
    f.rename(local / "INBOX" / "cur" / (f.name.split(":2,")[0] + ":2,FS"))
    (local / "Archive" / "new" / "1.local.host").write_bytes(message(7))
    sync()
    m = imap(server)
    m.select("INBOX", readonly=True)
    flags = m.fetch("1", "(FLAGS)")[1][0]
    assert b"\\Seen" in flags and b"\\Flagged" in flags
    m.select("Archive", readonly=True)
    assert m.search(None, "SUBJECT", '"test 7"')[1] == [b"2"]
    # server-side delete propagates down
    m.select("Archive")
    m.store("1", "+FLAGS", "\\Deleted")
    m.expunge()
    m.logout()
    sync()
    remaining = list((local / "Archive" / "cur").iterdir()) + list((local / "Archive" / "new").iterdir())
    assert len(remaining) == 1


@pytest.mark.skipif(not have("getmail"), reason="getmail6 not installed")
def test_getmail_imap(server, tmp_path):
    server.deliver("alice", message(1))
    server.deliver("alice", message(2))
    g = Getmail(
        tmp_path,
        f"""\
        [retriever]
        type = SimpleIMAPRetriever
        server = 127.0.0.1
        port = {server.ports['imap']}
        username = alice
        password = {PW}
        mailboxes = ("INBOX",)
        """,
    )
    assert g.run() == 2
    assert g.run() == 2  # already seen: nothing fetched twice
    server.deliver("alice", message(3))
    assert g.run() == 3


@pytest.mark.skipif(not have("fetchmail"), reason="fetchmail not installed")
def test_fetchmail_imap_keep_marks_seen(server, tmp_path):
    server.deliver("alice", message(1))
    out = tmp_path / "fetched"
    out.mkdir()
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f"""set no bouncemail
poll 127.0.0.1 protocol imap port {server.ports['imap']}
  user "alice" password "{PW}" keep
  sslproto '' no sslcertck
  mda "/bin/sh -c 'cat > {out}/msg.$$'"
"""
    )
    os.chmod(rc, 0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    r = subprocess.run(["fetchmail", "-f", str(rc), "--nodetach", "--nosyslog"], capture_output=True, timeout=120,
                       env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(list(out.iterdir())) == 1
    m = imap(server)
    m.select("INBOX", readonly=True)
    assert b"\\Seen" in m.fetch("1", "(FLAGS)")[1][0]
    m.logout()


def test_many_clients_in_parallel(server):
    """Bounded stress: 8 concurrent sessions append and fetch; nothing is lost."""
    errors = []

    def worker(n):
        try:
            m = imap(server)
            for i in range(10):
                m.append("INBOX", None, None, message(n * 100 + i).replace(b"\n", b"\r\n"))
            m.select("INBOX")
            m.fetch("1:*", "(FLAGS)")
            m.logout()
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    m = imap(server)
    assert m.select("INBOX")[1] == [b"80"]
    m.logout()
