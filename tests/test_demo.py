"""``mailsrv demo`` end to end: the real server in a subprocess, real
sessions, and assertions on the counts the sockets measured."""

from __future__ import annotations

import argparse
import io
import socket
import subprocess
import sys
import threading

import pytest

from mailsrv import demo
from mailsrv.demo import imapdata, report
from mailsrv.demo.wire import CountingSocket, Transcript, render_transcript


def demo_args(**kw) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    demo.register(sub)
    ns = p.parse_args(["demo"])
    for k, v in kw.items():
        setattr(ns, k, v)
    return ns


@pytest.fixture(scope="module")
def results():
    """Every scenario, once, against one embedded server."""
    rs = demo.run_scenarios(list(demo.SCENARIOS), demo_args())
    return {r.name: r for r in rs}


def errors_of(r, proto: str) -> list:
    return [e for e in r.errors if e.startswith(proto + ":")]


def test_two_devices_pop3_b_finds_nothing(results):
    r = results["two-devices"]
    assert not errors_of(r, "POP3")
    f = r.figures
    assert f["pop3_a_count"] == f["messages"] == 3
    assert f["pop3_b_count"] == 0


def test_two_devices_imap_b_sees_seen(results):
    r = results["two-devices"]
    assert not errors_of(r, "IMAP")
    f = r.figures
    assert f["imap_b_count"] == f["messages"] == 3
    assert f["imap_b_seen"] == 3


def test_hotel_pop3_downloads_everything(results):
    f = results["hotel"].figures
    assert f["pop3_retr_ok"] and f["pop3_top_ok"]
    # RETR: the whole message (its CRLF form plus headers the LMTP server adds) came over the socket
    assert f["pop3_retr_received"] > f["message_bytes"]
    assert f["pop3_top_received"] < 20_000


def test_hotel_imap_reads_text_for_under_2_percent(results):
    r = results["hotel"]
    assert not errors_of(r, "IMAP"), r.errors
    f = r.figures
    assert f["imap_ok"]
    assert f["imap_received"] < 0.02 * f["pop3_retr_received"]
    assert f["imap_received"] < 20_000


def test_folders_search_pop3_downloads_all(results):
    r = results["folders-search"]
    assert not errors_of(r, "POP3"), r.errors
    f = r.figures
    assert f["pop3_found"] == f["wanted"] == 3


def test_folders_search_imap_searches_on_server(results):
    r = results["folders-search"]
    assert not errors_of(r, "IMAP"), r.errors
    f = r.figures
    assert f["imap_found"] == f["imap_moved"] == f["wanted"]
    assert f["imap_search_received"] < f["pop3_search_received"]
    assert f["pop3_visible_after"] == f["messages"] - f["wanted"]


def test_concurrent_idle_told_at_once(results):
    r = results["concurrent"]
    assert not errors_of(r, "IMAP"), r.errors
    f = r.figures
    assert f["idle_notified"] is True
    assert f["idle_latency_ms"] < 1000
    assert f["imap_two_sessions"] is True


def test_concurrent_second_pop3_login_refused_in_use(results):
    f = results["concurrent"].figures
    assert f["pop3_second_refused"] is True
    assert f["pop3_refusal_code"] == "IN-USE"


def test_offline_uidl_stable_across_sessions_and_restart(results):
    f = results["offline"].figures
    assert f["restarted"] is True
    assert f["pop3_ids"] == 3
    assert f["pop3_stable_sessions"] is True and f["pop3_stable_restart"] is True


def test_offline_uid_and_uidvalidity_stable(results):
    r = results["offline"]
    assert not errors_of(r, "IMAP"), r.errors
    f = r.figures
    assert f["imap_ids"] == 3
    assert f["imap_stable_sessions"] is True and f["imap_stable_restart"] is True


def test_reports_render_every_scenario(results):
    rs = list(results.values())
    text = "\n".join(report.text_table(rs))
    md = report.markdown_report(rs, quiet=False)
    html = report.html_report(rs, quiet=False)
    for name in demo.SCENARIOS:
        assert name in text and f"## {name}" in md and f"<h2>{name}" in html
    assert "\x1b[" not in text and "\x1b[" not in md
    assert "********" in md  # passwords redacted in transcripts
    assert demo.DEMO_PASSWORD not in md and demo.DEMO_PASSWORD not in html


def test_cli_quiet_markdown_file(tmp_path):
    out = io.StringIO()
    target = tmp_path / "report.md"
    code = demo.run(demo_args(scenario=["offline"], quiet=True, format="markdown", output=str(target)), out)
    printed = out.getvalue()
    # issue 11: with --output, stdout says where the report went, nothing else
    assert printed == f"markdown report written to {target}\n"
    assert "C:" not in printed
    assert "\x1b[" not in printed  # not a tty, no --color
    body = target.read_text()
    assert body.startswith("# POP3 versus IMAP") and "| offline |" in body and "```" in body
    assert code == 0


def test_existing_server_failures_are_one_readable_line(tmp_path):
    """Pointed at a port nobody listens on, or with a wrong password: one
    line, no Python bytes reprs, no bare 'internal error'."""
    code = ("import sys, argparse; from mailsrv import demo; p = argparse.ArgumentParser(); "
            "demo.register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a, None))")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    r = subprocess.run([sys.executable, "-c", code, "demo", "--host", "127.0.0.1", "--imap-port", str(closed)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr == f"mailsrv: demo: cannot talk to IMAP at 127.0.0.1:{closed}: " \
                                             "Connection refused\n", r.stderr
    from mailsrv.embedded import EmbeddedServer, add_user

    data = str(tmp_path / "data")
    add_user(data, "demo", "right")
    with EmbeddedServer(data, kinds=("imap", "pop3")) as srv:
        r = subprocess.run([sys.executable, "-c", code, "demo", "--host", "127.0.0.1", "--imap-port",
                            str(srv.ports["imap"]), "--password", "wrong"], capture_output=True, text=True,
                           timeout=60)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"mailsrv: demo: IMAP at 127.0.0.1:{srv.ports['imap']}: login as demo failed: "
                               "[AUTHENTICATIONFAILED]"), r.stderr
    assert "b'" not in r.stderr and "internal error" not in r.stderr


def test_delivery_path_named_as_used():
    from mailsrv.demo.scenarios import Target, _idle_text

    assert Target("h", 1, 2, None, "u", "p").delivery == "IMAP APPEND"
    assert Target("h", 1, 2, 3, "u", "p").delivery == "LMTP"
    assert _idle_text(12.0, "IMAP APPEND") == "IDLE: EXISTS 12 ms after the APPEND's OK"
    assert _idle_text(0.2, "LMTP") == "IDLE: EXISTS at once (by the LMTP 250)"


def test_cli_error_is_one_line():
    """An existing-server run without ports: one line on stderr, exit 1."""
    code = ("import sys, argparse; from mailsrv import demo; p = argparse.ArgumentParser(); "
            "demo.register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a, None))")
    r = subprocess.run([sys.executable, "-c", code, "demo", "--host", "127.0.0.1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.startswith("mailsrv: demo: ") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr


# -- the measuring instruments ------------------------------------------------------


def test_counting_socket_counts_bytes_and_round_trips():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def serve():
        conn, _ = srv.accept()
        with conn:
            conn.sendall(b"+OK hello\r\n")
            buf = b""
            while buf.count(b"\r\n") < 3:
                chunk = conn.recv(100)
                if not chunk:
                    return
                buf += chunk
                while b"\r\n" in buf and buf.count(b"\r\n") <= 3:
                    line, buf = buf.split(b"\r\n", 1)
                    conn.sendall(b"+OK " + line + b"\r\n")
                    if line == b"C":
                        return

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    tr = Transcript()
    s = CountingSocket.connect_to("127.0.0.1", port, 5.0, "x", tr)
    f = s.makefile("rb")
    assert f.readline() == b"+OK hello\r\n"
    s.sendall(b"A\r\n")
    assert f.readline() == b"+OK A\r\n"
    s.sendall(b"B\r\nC\r\n")  # pipelined: one wait for both answers
    assert f.readline() == b"+OK B\r\n"
    assert f.readline() == b"+OK C\r\n"
    f.close()
    s.close()
    t.join(5)
    srv.close()
    assert s.stats.sent == 3 + 6
    assert s.stats.received == 11 + 7 + 7 + 7
    assert s.stats.round_trips in (3, 4)  # greeting, A, B+C (C's reply may arrive in its own segment)
    lines = render_transcript(tr, color=False)
    assert any("C: A" in ln for ln in lines) and any("S: +OK hello" in ln for ln in lines)


def test_transcript_elides_long_blocks_and_redacts():
    tr = Transcript()
    tr.record("pop3", "C", b"PASS secret\r\n")
    tr.record("pop3", "S", b"+OK\r\n" + b"x" * 70 + b"\r\n" * 1 + (b"y" * 70 + b"\r\n") * 200_000)
    lines = render_transcript(tr, color=False, max_lines=4)
    assert "secret" not in "\n".join(lines)
    assert lines[-1].strip().startswith("pop3 S: ...") and "more bytes" in lines[-1]
    assert len(lines) == 1 + 4 + 1
    colored = render_transcript(tr, color=True, max_lines=4)
    assert any("\x1b[" in ln for ln in colored)


def test_bodystructure_parser():
    data = [b'1 (BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 64 2 NIL NIL NIL NIL)'
            b'("APPLICATION" "OCTET-STREAM" ("NAME" "a.zip") NIL NIL "BASE64" 14173216 NIL '
            b'("ATTACHMENT" ("FILENAME" "a.zip")) NIL NIL) "MIXED" ("BOUNDARY" "xx") NIL NIL NIL))']
    parts = imapdata.bodystructure(data)
    assert [(p.number, p.mime, p.size) for p in parts] == [
        ("1", "text/plain", 64), ("2", "application/octet-stream", 14173216)]
    single = imapdata.bodystructure(
        [b'2 (UID 5 BODYSTRUCTURE ("TEXT" "PLAIN" NIL NIL NIL "7BIT" 12 1 NIL NIL NIL NIL))'])
    assert single[0].number == "1" and single[0].size == 12
    assert imapdata.response_code(b"-ERR [IN-USE] locked") == ("IN-USE", b"locked")
