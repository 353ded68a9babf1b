"""SORT and UID SORT (RFC 5256, SORT=DISPLAY of RFC 5957, ESORT of RFC
5267): every key, REVERSE, ties, search criteria, return options and every
error path; and the property that SORT answers a permutation of what
SEARCH answers with the same criteria."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsrv.imap import sortcolumns as K
from tests.imap.harness import Client, tagged

T0 = 1641000000.0  # 2021-12-31 01:20 UTC, before every Date: below
# (raw message, internal date, flags): each key orders these differently
MSGS = [
    (b"From: Zed <zed@example.org>\nTo: bob@example.org\nCc: carol@x.org\n"
     b"Subject: Re: beta\nDate: Mon, 3 Jan 2022 10:00:00 +0000\n\nsmall\n", T0 + 3000, ()),
    (b"From: \"Anna\" <anna@example.org>\nTo: Xavier <yves@example.org>\n"
     b"Subject: alpha\nDate: Sat, 1 Jan 2022 10:00:00 +0100\n\na longer body here\n", T0 + 1000, ("\\Seen",)),
    (b"From: mike@example.org\nTo: =?utf-8?q?=C3=84rger?= <aaa@example.org>\nCc: alice@x.org\n"
     b"Subject: [list] Gamma (fwd)\nDate: not a date\n\nthe longest body of all of them, really\n", T0 + 2000, ()),
    (b"From: bob@example.org\nSubject: Fwd: ALPHA\nDate: Sun, 2 Jan 2022 10:00:00 -0500\n\nmid body\n",
     T0 + 2000, ("\\Seen",)),
]


@pytest.fixture
def c() -> Client:
    client = Client()
    client.login()
    inbox = client.account.folders["INBOX"]
    for raw, when, flags in MSGS:
        inbox.add(raw, flags, internaldate=when)
    client.select()
    return client


def sort_line(out: bytes) -> list[int]:
    m = re.search(rb"\* SORT((?: \d+)*)\r\n", out)
    assert m, out
    return [int(n) for n in m.group(1).split()]


@pytest.mark.parametrize("criteria,expected", [
    ("ARRIVAL", [2, 3, 4, 1]),  # 3 and 4 arrived together: sequence order
    ("REVERSE ARRIVAL", [1, 3, 4, 2]),  # ties stay in sequence order when reversed
    ("DATE", [3, 2, 4, 1]),  # 3 has no usable Date: its internal date (the earliest) counts
    ("SIZE", [4, 1, 2, 3]),  # 94, 133, 140, 177 octets
    ("REVERSE SIZE", [3, 2, 1, 4]),
    ("SUBJECT", [2, 4, 1, 3]),  # ALPHA, ALPHA, BETA, GAMMA
    ("FROM", [2, 4, 3, 1]),  # anna bob mike zed (the mailbox part)
    ("TO", [4, 3, 1, 2]),  # none first, then aaa bob yves
    ("CC", [2, 4, 3, 1]),  # none, none, alice, carol
    ("DISPLAYFROM", [2, 4, 3, 1]),  # Anna, bob@..., mike@..., Zed
    ("DISPLAYTO", [4, 3, 1, 2]),  # "", Ärger (decoded), bob@..., Xavier
    ("SUBJECT DATE", [2, 4, 1, 3]),
    ("SUBJECT REVERSE DATE", [4, 2, 1, 3]),
    ("REVERSE SUBJECT ARRIVAL", [3, 1, 2, 4]),
    ("CC REVERSE SIZE", [2, 4, 3, 1]),  # no Cc: 2 (140) before 4 (94)
])
def test_every_key(c: Client, criteria: str, expected: list[int]) -> None:
    out = c.cmd(f"s SORT ({criteria}) UTF-8 ALL")
    assert sort_line(out) == expected
    assert tagged(out, "s") == b"s OK SORT completed\r\n"


def test_rankings_give_the_same_answers(c: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """The big-folder paths (rankings, packed columns, the whole-folder
    order) answer exactly as the plain value sort."""
    crits = ["ARRIVAL", "DATE", "REVERSE DATE", "SIZE", "SUBJECT", "REVERSE SUBJECT", "FROM", "TO", "CC",
             "DISPLAYFROM", "DISPLAYTO", "SUBJECT REVERSE DATE", "REVERSE CC SIZE", "DATE SUBJECT"]
    plain = {cr: sort_line(c.cmd(f"s SORT ({cr}) UTF-8 ALL")) for cr in crits}
    subset = {cr: sort_line(c.cmd(f"s SORT ({cr}) UTF-8 NOT 2")) for cr in crits}
    monkeypatch.setattr(K, "PACK_MIN", 1)
    for _ in range(2):  # rankings built, then used
        K.forget(c.account.folders["INBOX"])
        for cr in crits:
            assert sort_line(c.cmd(f"s SORT ({cr}) UTF-8 ALL")) == plain[cr], cr
            assert sort_line(c.cmd(f"s SORT ({cr}) UTF-8 NOT 2")) == subset[cr], cr
    assert c.account.folders["INBOX"].folder_cache  # packed along the way


def test_uid_sort_and_search_criteria(c: Client) -> None:
    c.account.folders["INBOX"].drop_external(b"Subject: aardvark\n\n")  # uid 5, seen by the next command
    c.cmd("n NOOP")
    assert sort_line(c.cmd("u UID SORT (SUBJECT) US-ASCII ALL")) == [5, 2, 4, 1, 3]
    assert sort_line(c.cmd("s SORT (SUBJECT) UTF-8 UNSEEN")) == [5, 1, 3]
    assert sort_line(c.cmd("s SORT (REVERSE DATE) UTF-8 OR FROM zed SUBJECT alpha")) == [1, 4, 2]
    assert c.cmd("s SORT (DATE) UTF-8 SUBJECT nothing-like-this") == b"* SORT\r\ns OK SORT completed\r\n"


def test_sort_is_served_from_the_cache_not_the_files(c: Client) -> None:
    inbox = c.account.folders["INBOX"]
    c.cmd("s SORT (SUBJECT) UTF-8 ALL")
    opened = inbox.opens
    for key in ("DATE", "FROM", "TO", "CC", "DISPLAYFROM", "DISPLAYTO", "SUBJECT"):
        c.cmd(f"s SORT ({key}) UTF-8 ALL")
    assert inbox.opens == opened  # one header read per message computed every key


@pytest.mark.parametrize("line", [
    "s SORT (DATE) ALL",  # no charset: ALL is taken as one, then no search key
    "s SORT DATE UTF-8 ALL",
    "s SORT () UTF-8 ALL",
    "s SORT (NEWEST) UTF-8 ALL",
    "s SORT (REVERSE) UTF-8 ALL",
    "s SORT (DATE) UTF-8",
    "s SORT (DATE) UTF-8 NOSUCHKEY",
    "s SORT RETURN (BOGUS) (DATE) UTF-8 ALL",
    "s SORT RETURN (PARTIAL 1:*) (DATE) UTF-8 ALL",
    "s SORT RETURN (PARTIAL 0:3) (DATE) UTF-8 ALL",
    "s SORT RETURN (PARTIAL 1:2 ALL) (DATE) UTF-8 ALL",
    "s SORT RETURN (PARTIAL 1:2 PARTIAL 3:4) (DATE) UTF-8 ALL",
])
def test_syntax_errors_are_bad(c: Client, line: str) -> None:
    out = c.cmd(line)
    assert out.startswith(b"s BAD "), out


def test_unsupported_charset_is_no_badcharset(c: Client) -> None:
    assert c.cmd("s SORT (DATE) KOI8-R ALL") == (
        b"s NO [BADCHARSET (UTF-8 US-ASCII)] SORT Unsupported charset\r\n")


def test_sort_needs_a_selected_mailbox() -> None:
    client = Client()
    client.login()
    assert client.cmd("s SORT (DATE) UTF-8 ALL").startswith(b"s BAD SORT is not permitted")
    assert client.cmd("t THREAD REFERENCES UTF-8 ALL").startswith(b"t BAD THREAD is not permitted")


def test_esort_return_options(c: Client) -> None:
    assert c.cmd("e SORT RETURN (MIN MAX COUNT ALL) (SUBJECT) UTF-8 ALL") == (
        b'* ESEARCH (TAG "e") MIN 2 MAX 3 COUNT 4 ALL 2,4,1,3\r\ne OK SORT completed\r\n')
    assert c.cmd("e SORT RETURN () (ARRIVAL) UTF-8 ALL") == (
        b'* ESEARCH (TAG "e") ALL 2:4,1\r\ne OK SORT completed\r\n')  # only ascending runs become ranges
    assert c.cmd("e UID SORT RETURN (COUNT) (DATE) UTF-8 SUBJECT nothing") == (
        b'* ESEARCH (TAG "e") UID COUNT 0\r\ne OK SORT completed\r\n')
    assert c.cmd("e SORT RETURN (MIN MAX) (DATE) UTF-8 SUBJECT nothing") == (
        b'* ESEARCH (TAG "e")\r\ne OK SORT completed\r\n')


def test_partial(c: Client) -> None:
    assert c.cmd("p SORT RETURN (PARTIAL 2:3) (SUBJECT) UTF-8 ALL") == (
        b'* ESEARCH (TAG "p") PARTIAL (2:3 4,1)\r\np OK SORT completed\r\n')
    assert c.cmd("p SORT RETURN (PARTIAL 3:2) (REVERSE SUBJECT) UTF-8 ALL") == (
        b'* ESEARCH (TAG "p") PARTIAL (2:3 1:2)\r\np OK SORT completed\r\n')  # 3, [1, 2], 4
    assert c.cmd("p SORT RETURN (PARTIAL 4:10 COUNT) (ARRIVAL) UTF-8 ALL") == (
        b'* ESEARCH (TAG "p") PARTIAL (4:10 1) COUNT 4\r\np OK SORT completed\r\n')
    assert c.cmd("p UID SORT RETURN (PARTIAL 5:6) (ARRIVAL) UTF-8 ALL") == (
        b'* ESEARCH (TAG "p") UID PARTIAL (5:6 NIL)\r\np OK SORT completed\r\n')


def test_capabilities_are_advertised(c: Client) -> None:
    caps = c.cmd("c CAPABILITY").split(b"\r\n")[0].split()
    for cap in (b"SORT", b"SORT=DISPLAY", b"ESORT", b"CONTEXT=SEARCH", b"CONTEXT=SORT", b"SEARCHRES",
                b"THREAD=REFERENCES", b"THREAD=REFS", b"THREAD=ORDEREDSUBJECT"):
        assert cap in caps


# ---------------------------------------------------------------- property

SUBJECTS = [b"Re: a", b"a", b"[x] b", b"B", b"Fwd: c (fwd)", b""]
ADDRS = [b"a@x", b"B <b@x>", b"=?utf-8?q?=C3=A9?= <e@x>", b"", b"group: z@x;"]
KEYS = ["ALL", "SEEN", "UNSEEN", "SUBJECT a", "FROM x", "LARGER 60", "1:3", "OR SEEN SUBJECT b", "NOT 2"]
CRITERIA = ["ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"]

message = st.tuples(st.sampled_from(SUBJECTS), st.sampled_from(ADDRS), st.sampled_from(ADDRS),
                    st.integers(1, 28), st.booleans(), st.integers(0, 3), st.integers(0, 40))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(message, min_size=0, max_size=8),
       st.lists(st.tuples(st.booleans(), st.sampled_from(CRITERIA)), min_size=1, max_size=3),
       st.sampled_from(KEYS), st.booleans())
def test_sort_answers_a_permutation_of_search(msgs: list, criteria: list, key: str, uid: bool) -> None:
    client = Client()
    client.login()
    inbox = client.account.folders["INBOX"]
    for subject, frm, to, day, seen, when, pad in msgs:
        raw = (b"Subject: %s\nFrom: %s\nTo: %s\nDate: %d Feb 2021 12:00:00 +0000\n\n%s\n"
               % (subject, frm, to, day, b"x" * pad))
        inbox.add(raw, ("\\Seen",) if seen else (), internaldate=T0 + 1000 * when)
    client.select()
    prefix = "UID " if uid else ""
    crit = " ".join(("REVERSE " if rev else "") + name for rev, name in criteria)
    searched = re.search(rb"\* SEARCH((?: \d+)*)\r\n", client.cmd(f"a {prefix}SEARCH {key}"))
    assert searched
    out = client.cmd(f"b {prefix}SORT ({crit}) UTF-8 {key}")
    assert tagged(out, "b") == b"b OK SORT completed\r\n"
    sorted_numbers = sort_line(out)
    assert sorted(sorted_numbers) == [int(n) for n in searched.group(1).split()]
