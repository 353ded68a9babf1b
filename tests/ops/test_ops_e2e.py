"""Operations against the real ``twistd mailsrv``: the log lines and
fail2ban, JSON logs, metrics, ``mailsrv who``/``kick``, the abuse limits,
POP3's long-line close, inotify during IDLE, the POP3 lock across
processes, the demo password kept until changed."""

from __future__ import annotations

import imaplib
import json
import os
import poplib
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from mailsrv.embedded import TWISTD, add_user
from mailsrv.store import layout
from tests.e2e.harness import Server, mailsrv_cli

TIMEOUT = 30
MSG = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"


def make_server(tmp_path, kinds=("pop3", "imap", "lmtp"), limits="", extra=(), users=("alice", "bob")):
    data = str(tmp_path / "data")
    for u in users:
        add_user(data, u, f"{u}-pw")
    args = list(extra)
    if limits:
        ini = tmp_path / "ops.ini"
        ini.write_text("[limits]\n" + limits)
        args += ["--config", str(ini)]
    return Server(data, kinds=kinds, extra=args)


@pytest.fixture
def server(tmp_path):
    srv = make_server(tmp_path).start()
    yield srv
    srv.stop()


def imap(srv, login=None):
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=TIMEOUT)
    if login:
        m.login(login, f"{login}-pw")
    return m


def pop(srv, login=None):
    p = poplib.POP3("127.0.0.1", srv.ports["pop3"], timeout=TIMEOUT)
    if login:
        p.user(login)
        p.pass_(f"{login}-pw")
    return p


def raw(srv, kind):
    s = socket.create_connection(("127.0.0.1", srv.ports[kind]), timeout=TIMEOUT)
    return s, s.makefile("rb")


def read_to_eof(f) -> bytes:
    out = b""
    while True:
        chunk = f.read1(65536) if hasattr(f, "read1") else f.read(65536)
        if not chunk:
            return out
        out += chunk


def wait_for(predicate, timeout=TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# -- logs and fail2ban ---------------------------------------------------------


def _fail2ban_regex() -> str:
    tool = shutil.which("fail2ban-regex")
    if tool is None or not os.path.exists("/etc/fail2ban/filter.d/common.conf"):
        if os.environ.get("MAILSRV_REQUIRE_TOOLS"):
            pytest.fail("fail2ban-regex is required (Debian package fail2ban)")
        pytest.skip("fail2ban-regex is not installed (Debian package fail2ban)")
    return tool


def test_login_lines_and_fail2ban_filter(tmp_path):
    """fail2ban's check of etc/fail2ban/filter.d/mailsrv.conf against the
    lines this very test made the server write: every failed login
    matches, with the client's address; nothing else does."""
    tool = _fail2ban_regex()
    srv = make_server(tmp_path).start()
    try:
        for pw in ("wrong", "worse"):
            with pytest.raises(imaplib.IMAP4.error):
                imap(srv).login("alice", pw)
        p = pop(srv)
        p.user("bob")
        with pytest.raises(poplib.error_proto):
            p.pass_("nope")
        p.quit()
        m = imap(srv, "alice")
        m.select("INBOX")
        m.logout()
        pop(srv, "bob").quit()
        wait_for(lambda: srv.log().count("Disconnected") >= 5, what="session-end lines")
    finally:
        srv.stop()
    log = srv.log()
    assert re.search(r"imap-login: Login: user=<alice>, method=PLAIN, rip=127\.0\.0\.1, rport=\d+, "
                     r"lip=127\.0\.0\.1, lport=\d+, session=<[\w-]{12}>", log)
    # CAPABILITY LOGIN SELECT LOGOUT
    assert re.search(r"imap\(alice\)<[\w-]{12}>: Disconnected: Logged out in=\d+ out=\d+ commands=4 ", log)
    assert re.search(r"pop3\(bob\)<[\w-]{12}>: Disconnected: Logged out in=\d+ out=\d+ commands=\d+ "
                     r"deleted=0 retrieved=0", log)
    assert re.search(r"imap-login: Disconnected \(auth failed, 1 attempts in \d+ secs\): rip=127\.0\.0\.1", log)
    conf = tmp_path / "f2b" / "filter.d"
    conf.mkdir(parents=True)
    shutil.copy("/etc/fail2ban/filter.d/common.conf", conf)
    shutil.copy(os.path.join(os.path.dirname(__file__), "..", "..", "etc", "fail2ban", "filter.d", "mailsrv.conf"),
                conf)
    r = subprocess.run([tool, "--print-all-matched", srv.log_path, str(conf / "mailsrv.conf")],
                       capture_output=True, timeout=120)
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    matched = re.search(r"Lines: \d+ lines, \d+ ignored, (\d+) matched", out)
    assert matched and int(matched.group(1)) == 3, out
    assert out.count("Login failed (auth failed): user=<alice>") == 2
    assert "Login failed (auth failed): user=<bob>, method=PLAIN" in out
    assert re.search(r"\[3\] \^Login failed", out) and "127.0.0.1" in out


def test_json_logger_carries_the_fields(tmp_path):
    """``twistd --logger mailsrv.ops.logjson.observer``: the login event's
    fields arrive as JSON data."""
    data = str(tmp_path / "data")
    add_user(data, "alice", "alice-pw")
    out = tmp_path / "log.json"
    env = {**os.environ, "MAILSRV_JSON_LOG": str(out)}
    proc = subprocess.Popen([sys.executable, "-c", TWISTD, "-n", "--pidfile=", "--logger",
                             "mailsrv.ops.logjson.observer", "mailsrv", "--data", data, "--no-demo-user",
                             "--auth-fail-delay", "0", "--imap", "tcp:0:interface=127.0.0.1"],
                            env=env, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def events():
            if not out.exists():
                return []
            return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]

        listening = wait_for(lambda: [e for e in events() if e.get("kind") == "imap" and "where" in e],
                             what="the listening event")
        port = int(listening[0]["where"].rsplit(":", 1)[1])
        m = imaplib.IMAP4("127.0.0.1", port, timeout=TIMEOUT)
        m.login("alice", "alice-pw")
        m.logout()
        login = wait_for(lambda: [e for e in events() if e.get("event") == "login"], what="the login event")[0]
        assert login["user"] == "alice" and login["method"] == "PLAIN" and login["rip"] == "127.0.0.1"
        assert login["protocol"] == "imap" and login["tls"] is False and len(login["session"]) == 12
        assert login["log_namespace"] == "mailsrv.login"
        end = wait_for(lambda: [e for e in events() if e.get("event") == "disconnected"], what="the end event")[0]
        assert end["bytes_in"] > 0 and end["bytes_out"] > 0 and end["commands"] == 3  # CAPABILITY LOGIN LOGOUT
    finally:
        proc.terminate()
        proc.wait(TIMEOUT)


# -- metrics -------------------------------------------------------------------------


def scrape(srv, accept=None):
    req = urllib.request.Request(f"http://127.0.0.1:{srv.ports['metrics']}/metrics")
    if accept:
        req.add_header("Accept", accept)
    with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
        return r.headers.get("Content-Type"), r.read().decode()


def samples(text):
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found, name, **labels):
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_endpoint_moves_with_traffic(tmp_path):
    srv = make_server(tmp_path, extra=["--metrics", "tcp:0:interface=127.0.0.1"])
    srv.kinds = ("pop3", "imap", "lmtp", "metrics")
    srv.start()
    try:
        _, text = scrape(srv)
        before = samples(text)
        assert value(before, "mailsrv_logins_total", protocol="imap", result="ok") == 0
        assert value(before, "process_resident_memory_bytes") > 0
        assert value(before, "process_open_fds") > 0
        m = imap(srv, "alice")
        m.select("INBOX")
        m.noop()
        with pytest.raises(imaplib.IMAP4.error):
            imap(srv).login("bob", "wrong")
        import smtplib

        lmtp = smtplib.LMTP("127.0.0.1", srv.ports["lmtp"], timeout=TIMEOUT)
        lmtp.sendmail("x@example.org", ["alice@localhost"], MSG)
        lmtp.quit()
        m.noop()
        during = samples(scrape(srv)[1])
        assert value(during, "mailsrv_connections_open", protocol="imap", tls="no") == 1
        assert value(during, "mailsrv_sessions_logged_in", protocol="imap") == 1
        assert value(during, "mailsrv_folders_loaded") >= 1
        m.logout()
        p = pop(srv, "bob")
        p.stat()
        p.quit()
        after = samples(scrape(srv)[1])
    finally:
        srv.stop()
    assert value(after, "mailsrv_logins_total", protocol="imap", result="ok") == 1
    assert value(after, "mailsrv_logins_total", protocol="imap", result="failed") == 1
    assert value(after, "mailsrv_logins_total", protocol="pop3", result="ok") == 1
    assert value(after, "mailsrv_connections_total", protocol="imap", tls="no") == 2
    assert value(after, "mailsrv_command_duration_seconds_count", protocol="imap", command="SELECT") == 1
    assert value(after, "mailsrv_command_duration_seconds_count", protocol="imap", command="NOOP") == 2
    assert value(after, "mailsrv_command_duration_seconds_count", protocol="pop3", command="STAT") == 1
    assert value(after, "mailsrv_deliveries_total", outcome="saved") == 1
    assert value(after, "mailsrv_received_bytes_total", protocol="imap") > 0
    assert value(after, "mailsrv_sent_bytes_total", protocol="pop3") > 0
    assert value(after, "mailsrv_store_operation_duration_seconds_count", operation="open") >= 1
    assert value(after, "mailsrv_connections_open", protocol="imap", tls="no") == 0
    assert ("mailsrv_auth_checks", (("state", "waiting"),)) in after
    assert ("mailsrv_threadpool_queue", ()) in after


def test_metrics_speak_openmetrics_when_asked(tmp_path):
    srv = make_server(tmp_path, kinds=("imap",), extra=["--metrics", "tcp:0:interface=127.0.0.1"])
    srv.kinds = ("imap", "metrics")
    srv.start()
    try:
        ctype, text = scrape(srv, "application/openmetrics-text; version=1.0.0")
        assert ctype.startswith("application/openmetrics-text") and text.rstrip().endswith("# EOF")
        ctype, _ = scrape(srv)
        assert ctype.startswith("text/plain")
    finally:
        srv.stop()


# -- who and kick ---------------------------------------------------------------


def test_who_and_kick_against_a_live_server(server):
    sock_path = os.path.join(server.data, ".mailsrv-admin.sock")
    assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
    m = imap(server, "alice")
    m.select("INBOX")
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    assert m.readline().startswith(b"+")
    p = pop(server, "bob")
    r = mailsrv_cli(server.data, "who")
    rows = [line.split() for line in r.stdout.decode().splitlines()]
    assert rows[0] == ["USER", "PROTO", "FROM", "SINCE", "MAILBOX", "IDLE", "TLS"]
    assert ["alice", "imap"] == rows[1][:2] and rows[1][4:] == ["INBOX", "yes", "no"]
    assert ["bob", "pop3"] == rows[2][:2] and rows[2][4:] == ["INBOX", "no", "no"]
    sessions = json.loads(mailsrv_cli(server.data, "who", "--json").stdout)
    assert {s["user"] for s in sessions} == {"alice", "bob"} and all(s["rip"] == "127.0.0.1" for s in sessions)
    r = mailsrv_cli(server.data, "kick", "alice", "--protocol", "pop3")
    assert r.stdout == b"alice has no pop3 session\n"
    r = mailsrv_cli(server.data, "kick", "alice")
    assert r.stdout == b"kicked 1 session of alice\n"
    assert m.readline() == b"* BYE Disconnected by the administrator.\r\n"
    assert m.readline() == b""  # closed
    wait_for(lambda: len(json.loads(mailsrv_cli(server.data, "who", "--json").stdout)) == 1, what="alice gone")
    assert p.stat() == (0, 0)  # bob was not touched
    p.quit()
    assert re.search(r"imap\(alice\)<[\w-]+>: Disconnected: Kicked by the administrator", server.log())


def test_who_without_a_server(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    r = mailsrv_cli(str(data), "who", check=False)
    assert r.returncode == 1 and r.stderr.decode().startswith(f"mailsrv: no server is running on {data}")


# -- abuse limits ------------------------------------------------------------------


def test_connection_limit_per_address(tmp_path):
    srv = make_server(tmp_path, limits="connections_per_ip = 3\n").start()
    try:
        held = [raw(srv, "imap") for _ in range(2)] + [raw(srv, "pop3")]
        for _, f in held:
            assert f.readline().startswith((b"* OK", b"+OK"))
        s, f = raw(srv, "imap")
        assert read_to_eof(f) == b"* BYE [LIMIT] Too many connections from your address.\r\n"
        s.close()
        s, f = raw(srv, "pop3")
        assert read_to_eof(f) == b"-ERR [SYS/TEMP] Too many connections from your address.\r\n"
        s.close()
        held[0][1].close()
        held[0][0].close()
        wait_for(lambda: raw_greeting(srv).startswith(b"* OK"), what="a free slot")
    finally:
        srv.stop()
    assert "imap-login: Connection refused (connection limit): rip=127.0.0.1" in srv.log()


def raw_greeting(srv):
    s, f = raw(srv, "imap")
    try:
        return f.readline()
    finally:
        s.close()


def test_sessions_per_user_and_address(tmp_path):
    srv = make_server(tmp_path, limits="userip_connections = 2\n").start()
    try:
        a, b = imap(srv, "alice"), imap(srv, "alice")
        c = imap(srv)
        with pytest.raises(imaplib.IMAP4.error, match=r"\[LIMIT\] LOGIN Too many connections for this user from "
                                                       r"your address \(max 2\)"):
            c.login("alice", "alice-pw")
        imap(srv, "bob").logout()  # another user is fine
        a.logout()
        wait_for(lambda: "imap(alice)" in srv.log(), what="a's end")
        c.login("alice", "alice-pw")
        b.logout()
        c.logout()
    finally:
        srv.stop()
    assert "imap-login: Login failed (user+IP connection limit): user=<alice>" in srv.log()


def test_failed_logins_lead_to_a_short_ban(tmp_path):
    srv = make_server(tmp_path, limits="auth_ban_after = 3\nauth_ban_time = 60\n").start()
    try:
        m = imap(srv)
        for _ in range(3):
            with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
                m.login("alice", "wrong")
        with pytest.raises(imaplib.IMAP4.error, match=r"\[UNAVAILABLE\] LOGIN Too many failed logins"):
            m.login("alice", "alice-pw")  # even the right password, while banned
        s, f = raw(srv, "imap")
        assert read_to_eof(f) == b"* BYE [UNAVAILABLE] Too many failed logins from your address; try again later.\r\n"
        s.close()
        s, f = raw(srv, "pop3")
        assert read_to_eof(f).startswith(b"-ERR [SYS/TEMP] Too many failed logins")
        s.close()
    finally:
        srv.stop()
    assert "imap-login: Banned rip=127.0.0.1 for 60s after 3 failed logins" in srv.log()


def test_failed_logins_slow_down_per_address(tmp_path):
    """The wait doubles per failure from one address, across connections."""
    srv = make_server(tmp_path, extra=["--auth-fail-delay", "0.2"]).start()
    try:
        took = []
        for _ in range(3):
            m = imap(srv)  # a new connection each time: no escape
            t0 = time.monotonic()
            with pytest.raises(imaplib.IMAP4.error):
                m.login("alice", "wrong")
            took.append(time.monotonic() - t0)
            m.shutdown()
    finally:
        srv.stop()
    # fail delay 0.2 each, plus the address's penalty: 0, 0.2, 0.4
    assert took[0] >= 0.2 and took[1] >= 0.4 and took[2] >= 0.6, took
    assert took[2] > took[0] + 0.3, took


def test_unauthenticated_connections_are_closed(tmp_path):
    srv = make_server(tmp_path, limits="login_timeout = 1\n").start()
    try:
        s, f = raw(srv, "imap")
        s2, f2 = raw(srv, "pop3")
        t0 = time.monotonic()
        assert f.readline().startswith(b"* OK")
        assert read_to_eof(f) == b"* BYE Disconnected: no login within 1 seconds.\r\n"
        assert f2.readline().startswith(b"+OK")
        assert read_to_eof(f2) == b"-ERR Disconnected: no login within 1 seconds.\r\n"
        assert 0.8 < time.monotonic() - t0 < 10
        m = imap(srv, "alice")  # logged in: the deadline no longer applies
        time.sleep(1.5)
        m.noop()
        m.logout()
    finally:
        srv.stop()
    assert re.search(r"imap-login: Disconnected \(login timeout, 0 attempts in 1 secs\)", srv.log())


@pytest.mark.parametrize("size", [100 * 1024, 10 * 1024 * 1024])
@pytest.mark.parametrize("logged_in", [False, True])
def test_pop3_long_line_is_answered_and_closed(server, size, logged_in):
    s, f = raw(server, "pop3")
    assert f.readline().startswith(b"+OK")
    if logged_in:
        s.sendall(b"USER alice\r\nPASS alice-pw\r\n")
        assert f.readline() == b"+OK\r\n" and f.readline().startswith(b"+OK Logged in")
    errors = []

    def blast():
        try:
            s.sendall(b"X" * size)  # no CRLF at all
        except OSError as e:  # the server hung up mid-way: that is the point
            errors.append(e)

    t = threading.Thread(target=blast)
    t.start()
    try:
        assert f.readline() == b"-ERR Line too long, closing connection.\r\n"
        assert read_to_eof(f) == b""
    finally:
        t.join(TIMEOUT)
        s.close()


# -- instant notice of outside changes ---------------------------------------------


def test_outside_rename_reaches_idle_within_100ms(server):
    """A file written into tmp/ and moved into new/ by a plain os.rename
    (what Postfix's virtual delivery does) is told to an IDLE session at
    once, not at the next 5 s poll."""
    m = imap(server, "alice")
    m.select("INBOX")
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    assert m.readline().startswith(b"+")
    inbox = layout.folder_dir(server.data, "alice", "INBOX")
    latencies = []
    for i in range(1, 6):
        name = f"{time.time():.6f}.outside{i}.host"
        tmp = os.path.join(inbox, "tmp", name)
        with open(tmp, "wb") as fh:
            fh.write(MSG)
        t0 = time.monotonic()
        os.rename(tmp, os.path.join(inbox, "new", name))
        while True:
            line = m.readline()
            assert line, "connection closed"
            if line == b"* %d EXISTS\r\n" % i:
                break
        latencies.append(time.monotonic() - t0)
        time.sleep(0.05)
    m.send(b"DONE\r\n")
    assert max(latencies) < 0.1, latencies
    # and a flag change by another program (a rename in cur/) as well
    m.readline()
    m.select("INBOX")
    m.send(tag + b"2 IDLE\r\n")
    assert m.readline().startswith(b"+")
    victim = sorted(os.listdir(os.path.join(inbox, "new")))[0]  # a mail reader's move into cur/
    t0 = time.monotonic()
    os.rename(os.path.join(inbox, "new", victim), os.path.join(inbox, "cur", victim + ":2,F"))
    line = m.readline()
    assert re.match(rb"\* \d+ FETCH \(UID \d+ FLAGS \(\\Flagged", line), line
    assert time.monotonic() - t0 < 0.1
    m.send(b"DONE\r\n")


# -- the POP3 lock across processes ---------------------------------------------------


def test_pop3_lock_holds_across_processes_and_dies_with_its_holder(tmp_path):
    first = make_server(tmp_path, kinds=("pop3",)).start()
    second = Server(first.data, kinds=("pop3",))
    second.log_path = os.path.join(first.data, "second.log")
    second.start()
    try:
        a = pop(first, "alice")
        b = poplib.POP3("127.0.0.1", second.ports["pop3"], timeout=TIMEOUT)
        b.user("alice")
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            b.pass_("alice-pw")
        a.quit()
        b = poplib.POP3("127.0.0.1", second.ports["pop3"], timeout=TIMEOUT)
        b.user("alice")
        b.pass_("alice-pw")  # released by the first server's QUIT
        second.proc.send_signal(signal.SIGKILL)  # crash while holding the lock
        second.proc.wait(TIMEOUT)
        a = pop(first, "alice")  # the kernel released it with the process
        a.quit()
    finally:
        first.stop()
        second.stop()
    assert "pop3-login: Login failed (mailbox in use): user=<alice>" in open(second.log_path).read()


# -- the demo password ---------------------------------------------------------------


def test_demo_password_shown_until_changed(tmp_path):
    data = tmp_path / "data"

    def run_once():
        log = tmp_path / "twistd.log"
        if log.exists():
            log.unlink()
        proc = subprocess.Popen([sys.executable, "-c", TWISTD, "-n", "--pidfile=", "--logfile", str(log),
                                 "mailsrv", "--data", str(data), "--imap", "tcp:0:interface=127.0.0.1",
                                 "--pop3", "tcp:0:interface=127.0.0.1", "--pop3s", "tcp:0:interface=127.0.0.1",
                                 "--imaps", "tcp:0:interface=127.0.0.1"], cwd=str(tmp_path))
        try:
            return wait_for(lambda: "mailsrv imaps listening" in (log.read_text() if log.exists() else "")
                            and log.read_text(), what="start")
        finally:
            proc.terminate()
            proc.wait(TIMEOUT)

    first = run_once()
    password = re.search(r"created demo user 'demo' with password '([^']+)'", first).group(1)
    assert stat.S_IMODE(os.stat(data / ".demo-password").st_mode) == 0o600
    second = run_once()
    assert f"still have demo user 'demo' with password '{password}'" in second
    assert "mailsrv --data" in second and "user passwd demo" in second
    mailsrv_cli(str(data), "user", "passwd", "demo", stdin=b"changed\n")
    assert not (data / ".demo-password").exists()
    third = run_once()
    assert password not in third and "demo user" not in third
    msg = next((data / "demo" / "Maildir" / "new").iterdir()).read_bytes()
    assert re.search(rb"^Date: .+\n", msg, re.M) and re.search(rb"^Message-ID: <\w+@localhost>\n", msg, re.M)
