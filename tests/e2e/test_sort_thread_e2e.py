"""SORT, THREAD, ESORT/SEARCHRES, BINARY and CATENATE end to end: the real
``twistd mailsrv`` driven by imapclient (a client library real programs
use) over a real socket."""

from __future__ import annotations

import imapclient
import pytest

from tests.e2e.test_pop3_clients import PW

MSGS = [
    b"Message-ID: <a@x>\nFrom: Zed <zed@example.org>\nSubject: plans\nDate: Mon, 3 Jan 2022 10:00:00 +0000\n\none\n",
    b"Message-ID: <b@x>\nReferences: <a@x>\nFrom: anna@example.org\nSubject: Re: plans\n"
    b"Date: Tue, 4 Jan 2022 10:00:00 +0000\n\ntwo, a little longer\n",
    b"Message-ID: <c@x>\nFrom: bob@example.org\nSubject: [list] other\nDate: Sun, 2 Jan 2022 10:00:00 +0000\n\n3\n",
    b"Message-ID: <d@x>\nIn-Reply-To: <b@x>\nFrom: carl@example.org\nSubject: Re: Re: plans\n"
    b"Date: Wed, 5 Jan 2022 10:00:00 +0000\n\nfour\n",
]


@pytest.fixture
def client(server):
    for m in MSGS:
        server.deliver("alice", m)
    c = imapclient.IMAPClient("127.0.0.1", port=server.ports["imap"], ssl=False, timeout=30)
    c.login("alice", PW)
    c.select_folder("INBOX")
    yield c
    c.logout()


def test_sort(client) -> None:
    typ, data = client._imap.capability()  # imapclient keeps what the greeting said
    caps = data[0].split()
    assert typ == "OK" and b"SORT" in caps and b"THREAD=REFERENCES" in caps and b"ESORT" in caps
    assert client.sort("DATE") == [3, 1, 2, 4]
    assert client.sort(["REVERSE", "SIZE"]) == [2, 4, 1, 3]  # 144, 133, 109, 108 octets
    assert client.sort("FROM") == [2, 3, 4, 1]
    assert client.sort(["SUBJECT", "REVERSE DATE"]) == [3, 4, 2, 1]
    assert client.sort("DATE", ["FROM", "example.org", "NOT", "SUBJECT", "other"]) == [1, 2, 4]


def test_thread(client) -> None:
    assert client.thread("REFERENCES") == ((3,), (1, 2, 4))
    assert client.thread("ORDEREDSUBJECT") == ((3,), (1, (2,), (4,)))  # "(1 (2)(4))": flat under the first
    client.use_uid = False
    assert client.thread("REFS") == ((3,), (1, 2, 4))


def test_esort_searchres_binary_catenate(client) -> None:
    typ, data = client._imap._simple_command("SORT", "RETURN", "(MIN MAX COUNT SAVE)", "(DATE)", "UTF-8", "ALL")
    assert typ == "OK"
    assert b"MIN 3 MAX 4 COUNT 4" in client._imap.untagged_responses.pop("ESEARCH")[0]
    typ, data = client._imap.fetch("$", "(BINARY.SIZE[1])")  # imapclient takes only numbers for a set
    assert typ == "OK" and data == [b"1 (BINARY.SIZE[1] 5)", b"2 (BINARY.SIZE[1] 22)", b"3 (BINARY.SIZE[1] 3)",
                                    b"4 (BINARY.SIZE[1] 6)"]
    typ, _ = client._imap._simple_command("APPEND", "Sent", "CATENATE",
                                          '(URL "/INBOX/;uid=1/;section=HEADER" URL "/INBOX/;uid=2/;section=TEXT")')
    assert typ == "OK"
    client.select_folder("Sent")
    body = client.fetch("1", ["BODY.PEEK[]"])[1][b"BODY[]"]
    assert body.startswith(b"Message-ID: <a@x>\r\n") and body.endswith(b"\r\n\r\ntwo, a little longer\r\n")
