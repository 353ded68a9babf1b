"""Mail in, end to end: LMTP through ``twistd mailsrv --lmtp`` and ``mailsrv deliver``
while the server runs, seen at once by IMAP (selected and IDLE) sessions."""

from __future__ import annotations

import imaplib
import os
import poplib
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from tests.e2e.harness import Server, have
from tests.e2e.test_imap_clients import imap
from tests.e2e.test_pop3_clients import PW, message, pop

KINDS = ("pop3", "imap", "lmtp")


@pytest.fixture
def lmtp_server(tmp_path, store_dsn):
    srv = Server(str(tmp_path / "data"), kinds=KINDS, dsn=store_dsn)
    srv.add_user("alice", PW)
    srv.add_user("bob", "bob-secret")
    srv.start()
    yield srv
    srv.stop()
    assert "blocking database read" not in srv.log()  # the PostgreSQL store never waited in the reactor


def read_until(m, pred, timeout=20.0):
    m.sock.settimeout(timeout)
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = m.readline()
        lines.append(line)
        if pred(line):
            return lines
    raise AssertionError(f"not seen in {timeout}s: {lines}")


def test_lmtp_multiple_recipients_and_idle_sees_it_at_once(lmtp_server):
    watcher = imap(lmtp_server)
    watcher.select("INBOX")
    tag = watcher._new_tag()
    watcher.send(tag + b" IDLE\r\n")
    assert watcher.readline().startswith(b"+")
    lmtp = smtplib.LMTP("127.0.0.1", lmtp_server.ports["lmtp"], timeout=30)
    refused = lmtp.sendmail("sender@example.org", ["alice@localhost", "nobody@localhost", "bob@localhost"],
                            message(1).replace(b"\n", b"\r\n"))
    assert set(refused) == {"nobody@localhost"} and refused["nobody@localhost"][0] == 550
    lmtp.quit()
    read_until(watcher, lambda line: line.strip() == b"* 1 EXISTS")
    watcher.send(b"DONE\r\n")
    read_until(watcher, lambda line: line.startswith(tag))
    body = watcher.fetch("1", "(BODY.PEEK[])")[1][0][1]
    assert body.startswith(b"Return-Path: <sender@example.org>\r\nDelivered-To: alice@localhost\r\n")
    assert body.endswith(message(1).replace(b"\n", b"\r\n"))
    watcher.logout()
    p = poplib.POP3("127.0.0.1", lmtp_server.ports["pop3"], timeout=30)
    p.user("bob")
    p.pass_("bob-secret")
    assert p.stat()[0] == 1
    p.quit()


@pytest.mark.skipif(not have("swaks"), reason="swaks not installed")
def test_swaks_lmtp(lmtp_server):
    r = subprocess.run(
        ["swaks", "--protocol", "LMTP", "--server", "127.0.0.1", "--port", str(lmtp_server.ports["lmtp"]),
         "--from", "x@example.org", "--to", "alice@localhost", "--body", "hello from swaks"],
        capture_output=True, timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    m = imap(lmtp_server)
    m.select("INBOX", readonly=True)
    assert m.search(None, "BODY", "swaks")[1] == [b"1"]
    m.logout()


def test_deliver_command_while_server_runs_is_seen_without_reconnect(lmtp_server):
    m = imap(lmtp_server)
    assert m.select("INBOX")[1] == [b"0"]
    r = subprocess.run([sys.executable, "-m", "mailsrv.cli", *lmtp_server.cli_args, "deliver", "alice",
                        "--flags", "\\Flagged"], input=message(5), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    m.noop()
    assert m.untagged_responses.get("EXISTS")[-1:] == [b"1"]
    assert b"\\Flagged" in m.fetch("1", "(FLAGS)")[1][0]
    r = subprocess.run([sys.executable, "-m", "mailsrv.cli", *lmtp_server.cli_args, "deliver", "nobody"],
                       input=message(6), capture_output=True, timeout=60)
    assert r.returncode == 67 and r.stderr.count(b"\n") == 1
    m.logout()


def test_delivery_races_idle_and_pop3_sessions(lmtp_server):
    """20 LMTP deliveries from 4 clients while a POP3 session holds the maildrop
    and an IMAP session idles: nothing lost, POP3 view stays frozen."""
    lmtp_server.deliver("alice", message(0))
    p = pop(lmtp_server)
    watcher = imap(lmtp_server)
    watcher.select("INBOX")
    tag = watcher._new_tag()
    watcher.send(tag + b" IDLE\r\n")
    assert watcher.readline().startswith(b"+")
    errors = []

    def client(n):
        try:
            c = smtplib.LMTP("127.0.0.1", lmtp_server.ports["lmtp"], timeout=30)
            for i in range(5):
                assert not c.sendmail("s@example.org", ["alice@localhost"], message(n * 10 + i).replace(b"\n", b"\r\n"))
            c.quit()
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    read_until(watcher, lambda line: line.strip() == b"* 21 EXISTS")
    watcher.send(b"DONE\r\n")
    read_until(watcher, lambda line: line.startswith(tag))
    assert p.stat()[0] == 1
    p.dele(1)
    p.quit()
    watcher.noop()
    assert watcher.search(None, "ALL")[1][0].split() == [str(i).encode() for i in range(1, 21)]
    watcher.logout()


def test_default_run_serves_demo_user(tmp_path):
    """README's run command: no options, a demo user with a printed password and a welcome message."""
    for port in (1110, 1143):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                pytest.skip(f"port {port} is taken on this machine")
    from tests.e2e.harness import twistd_command

    log = tmp_path / "twistd.log"
    proc = subprocess.Popen([*twistd_command(), "-n", "--pidfile=", "--logfile", str(log), "mailsrv"], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        password = None
        while time.monotonic() < deadline and password is None:
            text = log.read_text() if log.exists() else ""
            found = re.search(r"created demo user 'demo' with password '([^']+)'", text)
            password = found and found.group(1)
            if password is None and "listening on 127.0.0.1:1143" in text and proc.poll() is not None:
                break
            time.sleep(0.1)
        assert password, log.read_text()
        assert "demo" in (tmp_path / "mailsrv-data" / "passwd").read_text()
        assert password not in (tmp_path / "mailsrv-data" / "passwd").read_text()
        for _ in range(100):
            if "mailsrv imaps listening" in log.read_text():
                break
            time.sleep(0.1)
        p = poplib.POP3("127.0.0.1", 1110, timeout=30)
        p.user("demo")
        p.pass_(password)
        assert b"Welcome to mailsrv" in b"\n".join(p.retr(1)[1])
        p.quit()
        m = imaplib.IMAP4("127.0.0.1", 1143, timeout=30)
        m.login("demo", password)
        assert m.select("INBOX")[1] == [b"1"]
        m.logout()
    finally:
        proc.terminate()
        proc.wait(30)


def test_sighup_reloads_certificate(server):
    """Operations: a renewed certificate is served after SIGHUP, without a restart."""
    from mailsrv import tls

    def served_cert() -> bytes:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", server.ports["imaps"]), timeout=30) as raw:
            with ctx.wrap_socket(raw) as s:
                return s.getpeercert(binary_form=True)

    before = served_cert()
    cert, key = tls.self_signed_paths(server.data)
    tls.make_self_signed(cert, key, "renewed.example")
    assert served_cert() == before  # nothing changes until told
    os.kill(server.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and served_cert() == before:
        time.sleep(0.1)
    assert served_cert() != before
    assert server.proc.poll() is None


@pytest.mark.skipif(os.geteuid() != 0, reason="binding a privileged port needs root")
def test_root_binds_privileged_port_then_serves_as_other_user():
    """Operations: `twistd --uid/--gid` binds below 1024 first, then drops privileges."""
    import pwd
    import tempfile
    from pathlib import Path

    from tests.e2e.harness import mailsrv_cli, twistd_command

    nobody = pwd.getpwnam("nobody")
    top = tempfile.mkdtemp(prefix="mailsrv-priv-")  # pytest's tmp dirs are root-only
    os.chmod(top, 0o755)
    base = Path(top) / "data"
    base.mkdir()
    os.chown(base, nobody.pw_uid, nobody.pw_gid)
    mailsrv_cli(str(base), "user", "add", "u", stdin=b"pw-u\n")
    port = None
    for candidate in range(990, 900, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            port = candidate
            break
    assert port is not None
    log = base / "twistd.log"
    proc = subprocess.Popen([*twistd_command(), "-n", "--pidfile=", "--logfile", str(log),
                             "--uid", str(nobody.pw_uid), "--gid", str(nobody.pw_gid), "mailsrv",
                             "--data", str(base), "--pop3", f"tcp:{port}:interface=127.0.0.1",
                             "--no-demo-user", "--auth-fail-delay", "0"])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and f":{port}" not in (log.read_text() if log.exists() else ""):
            assert proc.poll() is None, log.read_text() if log.exists() else "twistd exited"
            time.sleep(0.1)
        # The "listening" line is logged in privilegedStartService, before
        # twistd switches user: wait (bounded) for the switch itself.
        want = [str(nobody.pw_uid)] * 4  # real, effective, saved, fs
        deadline = time.monotonic() + 30
        while True:
            uids = _status_ids(proc.pid, "Uid:")
            if uids == want or time.monotonic() > deadline:
                break
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)
        assert uids == want
        p = poplib.POP3("127.0.0.1", port, timeout=30)
        p.user("u")
        p.pass_("pw-u")
        assert p.stat() == (0, 0)
        p.quit()
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(top, ignore_errors=True)


def _status_ids(pid: int, field: str) -> list[str]:
    """The four ids (real, effective, saved, fs) of a ``/proc/PID/status`` line."""
    with open(f"/proc/{pid}/status") as f:
        return next(line for line in f if line.startswith(field)).split()[1:]
