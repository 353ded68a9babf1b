"""POP3 end to end: the real ``twistd mailsrv`` driven by real clients over real sockets."""

from __future__ import annotations

import os
import poplib
import socket
import ssl
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.e2e.harness import have

PW = "alice-secret"


def message(i: int, size: int = 200, lf: bool = True) -> bytes:
    body = b"".join(b"line %d of message %d\n" % (n, i) for n in range(max(1, size // 24)))
    body += b".starts with a dot\n..two dots\n"
    msg = b"From: sender@example.org\nTo: alice@localhost\nSubject: test %d\nMessage-ID: <m%d@test>\n\n" % (i, i) + body
    return msg if lf else msg.replace(b"\n", b"\r\n")


def insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def fill(server, n=3):
    for i in range(1, n + 1):
        server.deliver("alice", message(i, lf=i % 2 == 1))


def pop(server) -> poplib.POP3:
    p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    p.user("alice")
    p.pass_(PW)
    return p


def test_poplib_full_session(server):
    fill(server, 3)
    p = pop(server)
    count, total = p.stat()
    assert count == 3
    resp, listing, _ = p.list()
    sizes = [int(line.split()[1]) for line in listing]
    assert sum(sizes) == total
    for i in range(1, 4):
        resp, lines, octets = p.retr(i)
        got = b"\r\n".join(lines) + b"\r\n"
        assert got == message(i).replace(b"\n", b"\r\n")
        assert len(got) == sizes[i - 1]
    uidls = [line.split()[1] for line in p.uidl()[1]]
    assert len(set(uidls)) == 3
    resp, top, _ = p.top(2, 0)
    assert top[-1] == b"" and b"Subject: test 2" in top
    p.dele(1)
    assert p.stat()[0] == 2
    p.quit()
    p = pop(server)
    assert p.stat()[0] == 2
    assert [line.split()[1] for line in p.uidl()[1]] == uidls[1:]
    p.quit()


def test_second_login_in_use_and_drop_deletes_nothing(server):
    fill(server, 2)
    first = pop(server)
    second = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    second.user("alice")
    with pytest.raises(poplib.error_proto, match=r"IN-USE"):
        second.pass_(PW)
    second.close()
    first.dele(1)
    assert first.stat()[0] == 1  # first session unharmed
    first.sock.shutdown(socket.SHUT_RDWR)  # dropped, no QUIT
    first.close()
    p = None
    for _ in range(50):  # the server notices the drop and releases the lock
        try:
            p = pop(server)
            break
        except poplib.error_proto:
            time.sleep(0.1)
    assert p is not None and p.stat()[0] == 2
    p.quit()


def test_wrong_password_is_auth_error(server):
    p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    p.user("alice")
    with pytest.raises(poplib.error_proto, match=r"AUTH"):
        p.pass_("wrong")
    p.quit()


def test_pop3s_and_stls(server):
    fill(server, 1)
    p = poplib.POP3_SSL("127.0.0.1", server.ports["pop3s"], context=insecure(), timeout=30)
    assert "STLS" not in p.capa()
    p.user("alice")
    p.pass_(PW)
    assert p.stat()[0] == 1
    p.quit()
    p = poplib.POP3("127.0.0.1", server.ports["pop3"], timeout=30)
    assert "STLS" in p.capa()
    p.stls(context=insecure())
    assert "STLS" not in p.capa()
    p.user("alice")
    p.pass_(PW)
    assert p.retr(1)[1][-2:] == [b".starts with a dot", b"..two dots"]
    p.quit()


@pytest.mark.skipif(not have("curl"), reason="curl not installed")
def test_curl_pop3_and_pop3s(server):
    fill(server, 2)
    url = f"pop3://127.0.0.1:{server.ports['pop3']}/"
    out = subprocess.run(["curl", "-sS", "--user", f"alice:{PW}", url], capture_output=True, timeout=60, check=True)
    assert [line.split()[0] for line in out.stdout.splitlines()] == [b"1", b"2"]
    out = subprocess.run(["curl", "-sS", "--user", f"alice:{PW}", url + "2"], capture_output=True, timeout=60,
                         check=True)
    assert out.stdout == message(2, lf=False)
    url = f"pop3s://127.0.0.1:{server.ports['pop3s']}/1"
    out = subprocess.run(["curl", "-sSk", "--user", f"alice:{PW}", url], capture_output=True, timeout=60, check=True)
    assert out.stdout == message(1).replace(b"\n", b"\r\n")


def _fetchmail(tmp_path, server, keep: bool):
    rc = tmp_path / "fetchmailrc"
    out = tmp_path / "fetched"
    out.mkdir(exist_ok=True)
    rc.write_text(
        textwrap.dedent(
            f"""\
            set no bouncemail
            poll 127.0.0.1 protocol pop3 port {server.ports['pop3']} uidl
              user "alice" password "{PW}" {'keep' if keep else 'nokeep'}
              sslproto '' no sslcertck
              mda "/bin/sh -c 'cat > {out}/msg.$$'"
            """
        )
    )
    os.chmod(rc, 0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    r = subprocess.run(
        ["fetchmail", "-f", str(rc), "--idfile", str(tmp_path / "ids"), "--nodetach", "--nosyslog", "-v"],
        capture_output=True, timeout=120, env=env,
    )
    return r, sorted(out.iterdir())


@pytest.mark.skipif(not have("fetchmail"), reason="fetchmail not installed")
def test_fetchmail_keep_then_delete(server, tmp_path):
    fill(server, 3)
    r, files = _fetchmail(tmp_path, server, keep=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(files) == 3
    for f in files:
        f.unlink()
    r, files = _fetchmail(tmp_path, server, keep=True)
    assert r.returncode == 1, r.stdout + r.stderr  # 1: no new mail
    assert files == []
    server.deliver("alice", message(4))
    (tmp_path / "ids").unlink()
    r, files = _fetchmail(tmp_path, server, keep=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(files) == 4
    p = pop(server)
    assert p.stat()[0] == 0
    p.quit()


def getmail_maildir(tmp_path):
    """A destination Maildir; getmail refuses to deliver as root, so as root it is
    handed to 'nobody' in a folder that user can reach."""
    if os.geteuid() != 0:
        dest = tmp_path / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (dest / sub).mkdir(parents=True)
        return dest, ""
    import pwd
    import tempfile

    nobody = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="getmail-dest-")
    os.chmod(base, 0o755)
    dest = Path(base) / "Maildir"
    for sub in ("", "cur", "new", "tmp"):
        (dest / sub).mkdir(exist_ok=True)
        os.chown(dest / sub, nobody.pw_uid, nobody.pw_gid)
    return dest, "user = nobody"


class Getmail:
    """getmail6 with a retriever section, delivering into a fresh Maildir."""

    def __init__(self, tmp_path, retriever: str) -> None:
        self.dest, user_line = getmail_maildir(tmp_path)
        self.dir = tmp_path / "getmail"
        self.dir.mkdir()
        self.rc = self.dir / "getmailrc"
        self.rc.write_text(
            textwrap.dedent(retriever)
            + textwrap.dedent(
                f"""
                [destination]
                type = Maildir
                path = {self.dest}/
                {user_line}

                [options]
                read_all = false
                delete = false
                """
            )
        )

    def run(self) -> int:
        """One getmail run; the number of messages in the destination afterwards."""
        r = subprocess.run(["getmail", "--getmaildir", str(self.dir), "--rcfile", str(self.rc)],
                           capture_output=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        return len(os.listdir(self.dest / "new"))


@pytest.mark.skipif(not have("getmail"), reason="getmail6 not installed")
def test_getmail_uidl_tracking(server, tmp_path):
    fill(server, 2)
    g = Getmail(
        tmp_path,
        f"""\
        [retriever]
        type = SimplePOP3Retriever
        server = 127.0.0.1
        port = {server.ports['pop3']}
        username = alice
        password = {PW}
        """,
    )
    assert g.run() == 2
    assert g.run() == 2  # UIDL tracking: nothing fetched twice
    server.deliver("alice", message(3))
    assert g.run() == 3
