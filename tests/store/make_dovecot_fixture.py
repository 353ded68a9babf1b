#!/usr/bin/env python3
"""Produce tests/fixtures/dovecot-maildir with the reference Dovecot (run as root).

Starts a private Dovecot (own base dir and ports), drives it with imaplib and
poplib, copies the Maildir it wrote and records what Dovecot itself reports
(UIDs, UIDVALIDITY, flags, keywords, POP3 UIDLs) in dovecot-maildir.json.
Run once; the ordinary tests only read the result.
"""

from __future__ import annotations

import imaplib
import json
import os
import poplib
import re
import shutil
import subprocess
import sys
import time

import twisted.mail.imap4  # noqa: F401  (registers the imap4-utf-7 codec)

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures")
REF = "/work/shared/reference"
BASE = "/tmp/mailsrv-store-fixture-dovecot"
IMAP_PORT, POP3_PORT, IMAPS_PORT, POP3S_PORT = 24143, 24110, 24993, 24995
USER, PASSWORD = "testuser", "pass"

MESSAGES = [
    b"From: Alice <alice@example.com>\r\nTo: testuser@example.com\r\n"
    b"Subject: first\r\nMessage-ID: <m1@example.com>\r\n\r\nHello one.\r\n",
    b"From: Bob <bob@example.com>\r\nTo: testuser@example.com\r\n"
    b"Subject: second\r\nMessage-ID: <m2@example.com>\r\n\r\nHello two.\r\nLine 2.\r\n",
    b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.com>\r\nTo: testuser@example.com\r\n"
    b"Subject: =?utf-8?q?dritte_Nachricht?=\r\nMessage-ID: <m3@example.com>\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    + "Grüße\r\n".encode() ,
    b"From: Carol <carol@example.com>\r\nSubject: doomed\r\nMessage-ID: <m4@example.com>\r\n\r\nbye\r\n",
    b"From: Dave <dave@example.com>\r\nSubject: fifth\r\nMessage-ID: <m5@example.com>\r\n\r\n"
    + b"x" * 3000 + b"\r\n",
]
FOLDER_ASCII = "Lists/python"
FOLDER_UTF8 = "Entwürfe/Ärger"


def env() -> dict:
    e = dict(os.environ)
    e.update(DOVECOT_BASE=BASE, IMAP_PORT=str(IMAP_PORT), POP3_PORT=str(POP3_PORT),
             IMAPS_PORT=str(IMAPS_PORT), POP3S_PORT=str(POP3S_PORT), WIPE_MAIL="1", N_USERS="1")
    return e


def q(name: str) -> str:
    return '"' + name.encode("imap4-utf-7").decode("ascii") + '"'


def imap_state(m: imaplib.IMAP4, mailbox: str) -> dict:
    typ, data = m.select(q(mailbox))
    assert typ == "OK", data
    typ, data = m.response("UIDVALIDITY")
    uidvalidity = int(data[0])
    typ, data = m.status(q(mailbox), "(UIDNEXT)")
    uidnext = int(re.search(rb"UIDNEXT (\d+)", data[0]).group(1))
    msgs = []
    typ, data = m.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE)")
    for item in data:
        if not item:
            continue
        line = item if isinstance(item, bytes) else item[0]
        uid = int(re.search(rb"UID (\d+)", line).group(1))
        flags = re.search(rb"FLAGS \(([^)]*)\)", line).group(1).decode().split()
        size = int(re.search(rb"RFC822.SIZE (\d+)", line).group(1))
        msgs.append({"uid": uid, "flags": sorted(f for f in flags if f != "\\Recent"), "size": size})
    m.close()
    return {"uidvalidity": uidvalidity, "uidnext": uidnext, "messages": sorted(msgs, key=lambda x: x["uid"])}


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root (dovecot-up.sh needs it)")
    subprocess.run([f"{REF}/dovecot-down.sh"], env=env(), check=False)
    subprocess.run([f"{REF}/dovecot-up.sh"], env=env(), check=True)
    try:
        maildir = f"{BASE}/mail/{USER}/Maildir"
        m = imaplib.IMAP4("127.0.0.1", IMAP_PORT, timeout=10)
        m.login(USER, PASSWORD)
        for i, msg in enumerate(MESSAGES):
            date = imaplib.Time2Internaldate(1700000000 + i * 3600)
            typ, data = m.append("INBOX", None, date, msg)
            assert typ == "OK", data
        m.create(q(FOLDER_ASCII))
        m.create(q(FOLDER_UTF8))
        m.subscribe(q(FOLDER_ASCII))
        m.subscribe(q(FOLDER_UTF8))
        m.select("INBOX")
        m.uid("STORE", "1", "+FLAGS", "(\\Seen \\Flagged $Important)")
        m.uid("STORE", "2", "+FLAGS", "(\\Answered \\Seen)")
        m.uid("STORE", "3", "+FLAGS", "(\\Draft NonJunk)")
        m.uid("STORE", "4", "+FLAGS", "(\\Deleted)")
        m.expunge()
        m.close()
        typ, data = m.append(q(FOLDER_ASCII), "(\\Seen)", imaplib.Time2Internaldate(1700100000),
                             b"Subject: list mail\r\n\r\nlist body\r\n")
        assert typ == "OK", data
        typ, data = m.append(q(FOLDER_UTF8), None, imaplib.Time2Internaldate(1700200000),
                             b"Subject: draft\r\n\r\nEntwurf\r\n")
        assert typ == "OK", data
        # an "external" delivery: a bare-LF file dropped into new/ the way Postfix does
        ext = "1700300000.V801I1234M5678.mx.example.com"
        with open(os.path.join(maildir, "tmp", ext), "wb") as f:
            f.write(b"From: Erin <erin@example.com>\nSubject: external\n\nLF only body\nline 2\n")
        os.utime(os.path.join(maildir, "tmp", ext), (1700300000, 1700300000))
        os.rename(os.path.join(maildir, "tmp", ext), os.path.join(maildir, "new", ext))
        record = {"user": USER, "folders": {}}
        for mailbox in ("INBOX", FOLDER_ASCII, FOLDER_UTF8):
            record["folders"][mailbox] = imap_state(m, mailbox)
        typ, data = m.lsub('""', "*")
        record["subscriptions"] = sorted(
            d.rsplit(b" ", 1)[1].strip(b'"').decode("imap4-utf-7") for d in data if d)
        m.logout()
        p = poplib.POP3("127.0.0.1", POP3_PORT, timeout=10)
        p.user(USER)
        p.pass_(PASSWORD)
        resp, lines, _ = p.uidl()
        record["pop3_uidl"] = [line.decode().split(None, 1)[1] for line in lines]
        resp, lines, _ = p.list()
        record["pop3_sizes"] = [int(line.split()[1]) for line in lines]
        p.quit()
        time.sleep(0.3)
        dest = os.path.join(FIXTURES, "dovecot-maildir")
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(maildir, dest, ignore=shutil.ignore_patterns(
            "dovecot.index*", "dovecot.list.index*", "dovecot-uidvalidity*"))
        for root, dirs, _files in os.walk(dest):
            for d in ("cur", "new", "tmp"):
                if d in dirs and not os.listdir(os.path.join(root, d)):
                    open(os.path.join(root, d, ".keep"), "w").close()
        with open(os.path.join(FIXTURES, "dovecot-maildir.json"), "w") as f:
            json.dump(record, f, indent=1, sort_keys=True, ensure_ascii=False)
            f.write("\n")
        print(json.dumps(record, indent=1, ensure_ascii=False))
    finally:
        subprocess.run([f"{REF}/dovecot-down.sh"], env=env(), check=False)


if __name__ == "__main__":
    main()
