"""The demo's scenarios: the classic POP3-versus-IMAP comparisons, each run
as real sessions against a real server.

Each scenario returns a :class:`Result`: rows for the side-by-side table,
``figures`` (the raw numbers, asserted by the tests) and the transcript of
what went over the sockets.
"""

from __future__ import annotations

import email.policy
import imaplib
import poplib
import random
import smtplib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from mailsrv.demo import imapdata
from mailsrv.demo.wire import CountingIMAP, CountingLMTP, CountingPOP3, Transcript, WireStats
from mailsrv.embedded import EmbeddedServer

DEMO_FOLDER = "Invoices"
ATTACHMENT_BYTES = 10 * 1024 * 1024
WAIT_SECONDS = 10.0


class ScenarioError(Exception):
    """Something the scenario needs is missing or answered wrongly."""


def readable(e: BaseException | bytes | str | Any) -> str:
    """A failure as a sentence: a server's answer decoded (no b'...'), an
    OSError by its strerror, anything else by its text."""
    if isinstance(e, bytes):
        return e.decode("utf-8", "replace").strip()
    if isinstance(e, list):
        return " ".join(readable(x) for x in e if x is not None) or "no answer"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    if isinstance(e, BaseException):
        arg = e.args[0] if e.args else None
        if isinstance(arg, (bytes, str)) and arg:
            return readable(arg)
        return str(e) or type(e).__name__
    return str(e)


@dataclass
class Target:
    """Where the demo connects and how it logs in."""

    host: str
    pop3_port: int | None
    imap_port: int | None
    lmtp_port: int | None
    user: str
    password: str
    server: EmbeddedServer | None = None  # None: an existing server
    rcpt_domain: str = "localhost"

    @property
    def delivery(self) -> str:
        """How the demo delivers mail here: LMTP when there is a listener
        (the embedded server always has one), else IMAP APPEND."""
        return "LMTP" if self.lmtp_port else "IMAP APPEND"

    def restart(self) -> bool:
        """Restart the embedded server (False for an existing server)."""
        if self.server is None:
            return False
        self.server.restart()
        ports = self.server.ports
        self.pop3_port, self.imap_port, self.lmtp_port = ports.get("pop3"), ports.get("imap"), ports.get("lmtp")
        return True


@dataclass
class Row:
    metric: str
    pop3: str
    imap: str


@dataclass
class Result:
    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)  # numbers, flags, codes: what tests assert
    transcript: Transcript = field(default_factory=Transcript)
    errors: list[str] = field(default_factory=list)


# -- messages -------------------------------------------------------------------

def make_message(n: int, subject: str, body: str, attachment: bytes | None = None) -> bytes:
    """A reproducible message (fixed date and Message-ID), CRLF line ends."""
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@example.org>"
    msg["To"] = "Demo User <demo@example.org>"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 02 Jan 2023 08:%02d:00 +0000" % (n % 60)
    msg["Message-ID"] = f"<demo.{n}@mailsrv.example>"
    msg.set_content(body)
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="holiday-photos.zip")
    return msg.as_bytes(policy=email.policy.SMTP)


def attachment_data(size: int = ATTACHMENT_BYTES) -> bytes:
    return random.Random(10).randbytes(size)


# -- sessions ---------------------------------------------------------------------

class Session:
    """Opens counted sessions for one scenario and keeps their stats."""

    def __init__(self, target: Target, transcript: Transcript) -> None:
        self.target = target
        self.transcript = transcript

    def pop3(self, label: str, login: bool = True) -> CountingPOP3:
        if not self.target.pop3_port:
            raise ScenarioError("no POP3 port")
        p = CountingPOP3(self.target.host, self.target.pop3_port, label, self.transcript)
        if login:
            p.user(self.target.user)
            p.pass_(self.target.password)
        return p

    def imap(self, label: str) -> CountingIMAP:
        if not self.target.imap_port:
            raise ScenarioError("no IMAP port")
        m = CountingIMAP(self.target.host, self.target.imap_port, label, self.transcript)
        m.login(self.target.user, self.target.password)
        return m

    def deliver(self, message: bytes, label: str = "mta", counted: bool = True) -> WireStats:
        """Deliver like an MTA: LMTP when there is a listener (the embedded
        server always has one), else IMAP APPEND."""
        t = self.target
        transcript = self.transcript if counted else None
        if t.lmtp_port:
            rcpt = t.user if "@" in t.user else f"{t.user}@{t.rcpt_domain}"
            lm = CountingLMTP(t.host, t.lmtp_port, label, transcript)
            try:
                lm.sendmail("alice@example.org", [rcpt], message)
                return lm.stats
            finally:
                lm.quit()
        m = CountingIMAP(t.host, t.imap_port or 0, label, transcript)
        try:
            m.login(t.user, t.password)
            typ, data = m.append("INBOX", None, None, message)
            if typ != "OK":
                raise ScenarioError(f"APPEND failed: {readable(data)}")
            return m.stats
        finally:
            _logout(m)


def _logout(m: imaplib.IMAP4) -> None:
    try:
        m.logout()
    except (imaplib.IMAP4.error, OSError):
        pass


def _quit(p: poplib.POP3) -> None:
    try:
        p.quit()
    except (poplib.error_proto, OSError):
        p.close()


def _ok(typ: str, data: Any, what: str) -> list[Any]:
    if typ != "OK":
        raise ScenarioError(f"{what} failed: {readable(data)}")
    return data


def reset_mailbox(target: Target) -> None:
    """Empty INBOX and remove the demo's folder, outside any transcript."""
    s = Session(target, Transcript())
    if target.imap_port:
        m = s.imap("reset")
        try:
            typ, data = m.list('""', "*")
            names = [ln.decode("utf-8", "replace") for ln in data if isinstance(ln, bytes)]
            if any(f'"{DEMO_FOLDER}"' in n or n.endswith(f" {DEMO_FOLDER}") for n in names):
                m.delete(DEMO_FOLDER)
            _ok(*m.select("INBOX"), "SELECT")
            if _exists(m):
                _ok(*m.store("1:*", "+FLAGS.SILENT", "(\\Deleted)"), "STORE")
                _ok(*m.expunge(), "EXPUNGE")
        finally:
            _logout(m)
    elif target.pop3_port:
        p = s.pop3("reset")
        try:
            count, _ = p.stat()
            for i in range(1, count + 1):
                p.dele(i)
        finally:
            _quit(p)


def _exists(m: imaplib.IMAP4) -> int:
    typ, data = m.response("EXISTS")
    try:
        return int((data or [b"0"])[-1] or 0)
    except ValueError:
        return 0


def _run_half(result: Result, name: str, fn: Callable[[], None]) -> None:
    """Run one protocol's half; a failure becomes an error row, not a crash."""
    try:
        fn()
    except (ScenarioError, imaplib.IMAP4.error, poplib.error_proto, smtplib.SMTPException, OSError, EOFError) as e:
        msg = readable(e)
        result.errors.append(f"{name}: {msg}")
        result.transcript.note(f"{name} failed: {msg}")
    except Exception as e:  # a demo reports a client-side bug as a row, never a traceback
        msg = f"{type(e).__name__}: {e}"
        result.errors.append(f"{name}: {msg}")
        result.transcript.note(f"{name} failed: {msg}")


def _get(d: dict[str, Any], key: str, fmt: Callable[[Any], str] = str) -> str:
    return fmt(d[key]) if key in d else "n/a"


# -- scenarios ------------------------------------------------------------------

def two_devices(target: Target) -> Result:
    """Device A reads the mail; what does device B find?"""
    r = Result("two-devices", "Two devices: a phone reads the mail, then the laptop looks")
    s = Session(target, r.transcript)
    f = r.figures
    msgs = [make_message(i, f"Two devices #{i}", f"Message {i} for both of your devices.\n") for i in range(1, 4)]
    n = f["messages"] = len(msgs)

    def pop3_half() -> None:
        reset_mailbox(target)
        for m in msgs:
            s.deliver(m, counted=False)
        r.transcript.note(f"POP3: {n} messages wait in INBOX. Device A downloads them and, "
                          "as POP3 clients do by default, deletes them.")
        a = s.pop3("A")
        count, _ = a.stat()
        for i in range(1, count + 1):
            a.retr(i)
            a.dele(i)
        a.quit()
        f["pop3_a_count"] = count
        r.transcript.note("Device B (the laptop) checks the same account over POP3.")
        b = s.pop3("B")
        f["pop3_b_count"], _ = b.stat()
        b.quit()

    def imap_half() -> None:
        reset_mailbox(target)
        for m in msgs:
            s.deliver(m, counted=False)
        r.transcript.note(f"IMAP: the same {n} messages. Device A reads them (FETCH BODY[] sets \\Seen on the server).")
        a = s.imap("A")
        _ok(*a.select("INBOX"), "SELECT")
        _ok(*a.fetch("1:*", "(BODY[])"), "FETCH")
        a.logout()
        r.transcript.note("Device B logs in over IMAP: the mail is still there, and B sees A's \\Seen flags.")
        b = s.imap("B")
        _ok(*b.select("INBOX"), "SELECT")
        data = _ok(*b.fetch("1:*", "(FLAGS)"), "FETCH")
        lines = [d for d in data if isinstance(d, bytes)]
        f["imap_b_count"] = len(lines)
        f["imap_b_seen"] = sum(1 for d in lines if b"\\Seen" in d)
        b.logout()

    _run_half(r, "POP3", pop3_half)
    _run_half(r, "IMAP", imap_half)
    r.rows = [
        Row("device A downloaded", _get(f, "pop3_a_count", lambda v: f"{v} messages"),
            f"{n} messages (read in place)" if "imap_b_count" in f else "n/a"),
        Row("device B then finds", _get(f, "pop3_b_count", lambda v: f"{v} messages"),
            f"{f['imap_b_count']} messages, {f['imap_b_seen']} \\Seen" if "imap_b_count" in f else "n/a"),
    ]
    return r


def hotel(target: Target) -> Result:
    """A short text with a 10 MiB attachment over a slow hotel link."""
    r = Result("hotel", "The hotel and the 10 MiB attachment: read a short text part")
    s = Session(target, r.transcript)
    f = r.figures
    text = "Hi! The photos from the trip are attached. See you on Monday.\n"
    message = make_message(100, "Holiday photos", text, attachment_data())
    f["message_bytes"] = len(message)

    def pop3_half() -> None:
        reset_mailbox(target)
        s.deliver(message, counted=False)
        r.transcript.note(f"POP3: the only way to read the text is RETR: all {len(message):,} bytes.")
        p = s.pop3("pop3")
        _, lines, _ = p.retr(1)
        p.quit()
        f["pop3_retr_ok"] = text.strip().encode() in b"\n".join(lines)
        f["pop3_retr_received"], f["pop3_retr_round_trips"] = p.stats.received, p.stats.round_trips
        f["pop3_retr_seconds"] = p.stats.seconds
        r.transcript.note("POP3's best effort: TOP 1 40 (headers and the first 40 body lines; "
                          "the client must guess how many).")
        p = s.pop3("pop3")
        _, lines, _ = p.top(1, 40)
        p.quit()
        f["pop3_top_ok"] = text.strip().encode() in b"\n".join(lines)
        f["pop3_top_received"], f["pop3_top_round_trips"] = p.stats.received, p.stats.round_trips

    def imap_half() -> None:
        reset_mailbox(target)
        s.deliver(message, counted=False)
        r.transcript.note("IMAP: ask for the structure first, then fetch only the text part.")
        m = s.imap("imap")
        _ok(*m.select("INBOX"), "SELECT")
        parts = imapdata.bodystructure(_ok(*m.fetch("1", "(BODYSTRUCTURE)"), "FETCH BODYSTRUCTURE"))
        part = imapdata.first_part(parts, "text/plain")
        if part is None:
            raise ScenarioError("no text/plain part in BODYSTRUCTURE")
        r.transcript.note("BODYSTRUCTURE: " + ", ".join(f"part {p.number} {p.mime} {p.size:,} B" for p in parts)
                          + f"; the client fetches part {part.number} only.")
        body = imapdata.literal(_ok(*m.fetch("1", f"(BODY.PEEK[{part.number}])"), "FETCH BODY.PEEK"))
        m.logout()
        f["imap_ok"] = body is not None and text.strip().encode() in body
        f["imap_received"], f["imap_round_trips"] = m.stats.received, m.stats.round_trips
        f["imap_seconds"] = m.stats.seconds

    _run_half(r, "POP3", pop3_half)
    _run_half(r, "IMAP", imap_half)
    ratio = ""
    if "imap_received" in f and "pop3_retr_received" in f:
        f["imap_over_pop3"] = f["imap_received"] / max(1, f["pop3_retr_received"])
        ratio = f" ({100 * f['imap_over_pop3']:.3f}% of RETR)"
    r.rows = [
        Row("bytes received to read the text", _get(f, "pop3_retr_received", lambda v: f"{v:,} (RETR)"),
            _get(f, "imap_received", lambda v: f"{v:,}{ratio}")),
        Row("  POP3 best effort", _get(f, "pop3_top_received", lambda v: f"{v:,} (TOP 1 40)"), ""),
        Row("round trips", _get(f, "pop3_retr_round_trips"), _get(f, "imap_round_trips")),
        Row("time on loopback", _get(f, "pop3_retr_seconds", lambda v: f"{v * 1000:.0f} ms"),
            _get(f, "imap_seconds", lambda v: f"{v * 1000:.0f} ms")),
        Row("at 1 Mbit/s hotel Wi-Fi", _get(f, "pop3_retr_received", lambda v: f"{v * 8 / 1e6:.0f} s"),
            _get(f, "imap_received", lambda v: f"{v * 8 / 1e6:.2f} s")),
    ]
    return r


def folders_search(target: Target) -> Result:
    """Server-side folders and search versus download-everything."""
    r = Result("folders-search", "Folders and search: find the invoices and file them")
    s = Session(target, r.transcript)
    f = r.figures
    subjects = ["Invoice 2023-001", "Lunch on Friday?", "Invoice 2023-002", "Build broken", "Invoice 2023-003",
                "Meeting notes"]
    msgs = [make_message(200 + i, subj, f"{subj}\n\n" + "Some text for the message body.\n" * 40)
            for i, subj in enumerate(subjects)]
    wanted = sum(1 for x in subjects if "Invoice" in x)
    f["messages"], f["wanted"] = len(msgs), wanted

    def pop3_half() -> None:
        r.transcript.note("POP3 knows no folders and no search: to find the invoices a client downloads every message.")
        p = s.pop3("pop3")
        count, _ = p.stat()
        found = 0
        for i in range(1, count + 1):
            _, lines, _ = p.retr(i)
            found += any(ln.lower().startswith(b"subject: invoice") for ln in lines)
        p.quit()
        f["pop3_found"] = found
        f["pop3_search_received"], f["pop3_search_round_trips"] = p.stats.received, p.stats.round_trips

    def imap_half() -> None:
        r.transcript.note("IMAP: create a folder, search on the server, move the hits, list the folders.")
        m = s.imap("imap")
        _ok(*m.create(DEMO_FOLDER), "CREATE")
        _ok(*m.select("INBOX"), "SELECT")
        data = _ok(*m.uid("SEARCH", "SUBJECT", "Invoice"), "SEARCH")
        uids = (data[0] or b"").split()
        f["imap_found"] = len(uids)
        search_bytes = m.stats.received
        if uids:
            uid_set = b",".join(uids).decode()
            if "MOVE" in m.capabilities:
                _ok(*m.uid("MOVE", uid_set, DEMO_FOLDER), "MOVE")
            else:
                _ok(*m.uid("COPY", uid_set, DEMO_FOLDER), "COPY")
                _ok(*m.uid("STORE", uid_set, "+FLAGS.SILENT", "(\\Deleted)"), "STORE")
                _ok(*m.expunge(), "EXPUNGE")
        typ, listing = m.list('""', "*")
        f["imap_folders"] = len([x for x in listing if isinstance(x, bytes)])
        _ok(*m.select(DEMO_FOLDER), "SELECT")
        f["imap_moved"] = _exists(m)
        m.logout()
        f["imap_received"], f["imap_round_trips"] = m.stats.received, m.stats.round_trips
        f["imap_search_received"] = search_bytes

    def pop3_after() -> None:
        r.transcript.note("POP3 again: only INBOX exists for it, the filed invoices are out of its sight.")
        p = s.pop3("pop3")
        f["pop3_visible_after"], _ = p.stat()
        p.quit()

    reset_mailbox(target)
    for m in msgs:
        s.deliver(m, counted=False)
    _run_half(r, "POP3", pop3_half)
    _run_half(r, "IMAP", imap_half)
    _run_half(r, "POP3", pop3_after)
    r.rows = [
        Row("find the invoices", _get(f, "pop3_search_received", lambda v: f"download all: {v:,} B"),
            _get(f, "imap_search_received", lambda v: f"SEARCH: {v:,} B (login to result)")),
        Row("invoices found", _get(f, "pop3_found"), _get(f, "imap_found")),
        Row("folders", "INBOX only",
            _get(f, "imap_folders", lambda v: f"{v} (moved {f.get('imap_moved', '?')} to {DEMO_FOLDER})")),
        Row("messages POP3 sees afterwards", _get(f, "pop3_visible_after", lambda v: f"{v} of {len(msgs)}"),
            "all, in their folders"),
    ]
    return r


def concurrent(target: Target) -> Result:
    """New mail during a session, and two sessions at once."""
    r = Result("concurrent", "Concurrent sessions: push of new mail, and a second login")
    s = Session(target, r.transcript)
    f = r.figures

    def imap_half() -> None:
        reset_mailbox(target)
        r.transcript.note(f"IMAP: the client SELECTs INBOX and IDLEs; the mail arrives by {target.delivery}; "
                          "the server tells the client at once.")
        m = s.imap("idle")
        _ok(*m.select("INBOX"), "SELECT")
        tag = m._new_tag()
        m.tagged_commands.pop(tag, None)
        m.send(tag + b" IDLE\r\n")
        cont = m.readline()
        if not cont.startswith(b"+"):
            raise ScenarioError(f"IDLE refused: {readable(cont)}")
        got: dict[str, float] = {}

        def wait_exists() -> None:
            deadline = time.monotonic() + WAIT_SECONDS
            while time.monotonic() < deadline:
                try:
                    line = m.readline()
                except OSError:
                    return
                if not line:
                    return
                if line.upper().rstrip().endswith(b"EXISTS"):
                    got["t"] = time.monotonic()
                    return

        reader = threading.Thread(target=wait_exists, daemon=True)
        reader.start()
        st = s.deliver(make_message(300, "You have mail", "Delivered while you were idling.\n"))
        delivered = time.monotonic()
        reader.join(WAIT_SECONDS + 1)
        f["idle_notified"] = "t" in got
        if got:
            f["idle_latency_ms"] = (got["t"] - delivered) * 1000.0
        f["delivery_round_trips"] = st.round_trips
        f["delivery"] = target.delivery
        m.send(b"DONE\r\n")
        while True:
            line = m.readline()
            if not line or line.startswith(tag):
                break
        m.logout()
        r.transcript.note("IMAP: a second session on the same mailbox is fine; both see the same state.")
        m1, m2 = s.imap("imap1"), s.imap("imap2")
        _ok(*m1.select("INBOX"), "SELECT")
        _ok(*m2.select("INBOX"), "SELECT")
        f["imap_two_sessions"] = _exists(m1) == _exists(m2) >= 1
        m1.logout()
        m2.logout()

    def pop3_half() -> None:
        r.transcript.note("POP3: a first session holds the maildrop lock; a second login is refused until it QUITs.")
        first = s.pop3("pop3-1")
        second = s.pop3("pop3-2", login=False)
        second.user(target.user)
        try:
            second.pass_(target.password)
            f["pop3_second_refused"] = False
        except poplib.error_proto as e:
            line = e.args[0] if e.args else b""
            f["pop3_second_refused"] = True
            f["pop3_refusal_code"] = imapdata.response_code(line)[0]
        finally:
            second.close()
        first.quit()
        r.transcript.note("POP3 has no push: a client learns of new mail only by logging in again "
                          "(and it must QUIT first).")

    _run_half(r, "IMAP", imap_half)
    _run_half(r, "POP3", pop3_half)
    r.rows = [
        Row("new mail while connected", "not told (must poll)",
            _idle_text(f["idle_latency_ms"], target.delivery) if "idle_latency_ms" in f
            else ("not told within %.0fs" % WAIT_SECONDS if "idle_notified" in f else "n/a")),
        Row("second session at once", ("refused [%s]" % f.get("pop3_refusal_code") if f.get("pop3_second_refused")
                                        else "allowed" if "pop3_second_refused" in f else "n/a"),
            "allowed, same view" if f.get("imap_two_sessions")
            else "n/a" if "imap_two_sessions" not in f else "allowed, views differ"),
    ]
    return r


def _idle_text(ms: float, delivery: str) -> str:
    done = "the LMTP 250" if delivery == "LMTP" else "the APPEND's OK"
    if ms < 1:
        return f"IDLE: EXISTS at once (by {done})"
    return f"IDLE: EXISTS {ms:.0f} ms after {done}"


def offline(target: Target) -> Result:
    """Identifiers an offline client relies on, across sessions and a restart."""
    r = Result("offline", "Offline clients: UIDL and UID/UIDVALIDITY across sessions and a restart")
    s = Session(target, r.transcript)
    f = r.figures

    def uidl() -> list[bytes]:
        p = s.pop3("pop3")
        _, lines, _ = p.uidl()
        p.quit()
        return [ln.split()[1] for ln in lines]

    def uids() -> tuple:
        m = s.imap("imap")
        _ok(*m.select("INBOX"), "SELECT")
        typ, data = m.response("UIDVALIDITY")
        validity = (data or [None])[-1]
        data = _ok(*m.fetch("1:*", "(UID)"), "FETCH")
        got = [d.split(b"UID ")[1].rstrip(b")").split()[0] for d in data if isinstance(d, bytes) and b"UID " in d]
        m.logout()
        return validity, got

    reset_mailbox(target)
    for i in range(1, 4):
        s.deliver(make_message(400 + i, f"Keep me #{i}", "An offline client caches me by my id.\n"), counted=False)
    snapshots: dict[str, dict] = {"first": {}, "second": {}, "restart": {}}

    def take(when: str) -> None:
        _run_half(r, "POP3", lambda: snapshots[when].__setitem__("uidl", uidl()))
        _run_half(r, "IMAP", lambda: snapshots[when].__setitem__("uids", uids()))

    r.transcript.note("First session of each protocol: the client notes the message ids.")
    take("first")
    r.transcript.note("Second session: same ids, so the client knows which messages it already has.")
    take("second")
    if target.restart():
        r.transcript.note("The server was restarted; the ids survive it (they live on disk in dovecot-uidlist).")
        take("restart")
        f["restarted"] = True
    else:
        r.transcript.note("Existing server: restart skipped.")
        f["restarted"] = False
    first = snapshots["first"]
    for proto, key in (("pop3", "uidl"), ("imap", "uids")):
        if key not in first:
            continue
        f[f"{proto}_ids"] = len(first[key][1]) if proto == "imap" else len(first[key])
        f[f"{proto}_stable_sessions"] = snapshots["second"].get(key) == first[key]
        if f["restarted"]:
            f[f"{proto}_stable_restart"] = snapshots["restart"].get(key) == first[key]

    def yn(key: str) -> str:
        return "n/a" if key not in f else ("stable" if f[key] else "CHANGED")

    r.rows = [
        Row("ids across sessions", f"UIDL {yn('pop3_stable_sessions')}",
            f"UIDVALIDITY+UID {yn('imap_stable_sessions')}"),
        Row("ids across a restart", f"UIDL {yn('pop3_stable_restart')}",
            f"UIDVALIDITY+UID {yn('imap_stable_restart')}"),
        Row("what a resync costs", "UIDL of every message", "UID FETCH n:* (only new)"),
    ]
    return r


SCENARIOS: dict[str, Callable[[Target], Result]] = {
    "two-devices": two_devices,
    "hotel": hotel,
    "folders-search": folders_search,
    "concurrent": concurrent,
    "offline": offline,
}
