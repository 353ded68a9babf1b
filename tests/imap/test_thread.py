"""THREAD and UID THREAD (RFC 5256): REFERENCES as Dovecot resolves the
RFC's open points (the cases of imaptest's thread groups, written anew),
ORDEREDSUBJECT, REFS, errors, a thousand-deep chain, the worker thread, and
the property that every matching message appears exactly once."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, threads
from twisted.trial import unittest

from mailsrv.imap import sortcolumns as K
from mailsrv.imap import thread as T
from tests.imap.harness import Client, tagged

T0 = 1641000000


def msg(msgid: str | None = None, refs: str | None = None, irt: str | None = None, subject: str | None = None,
        date: int | None = None) -> bytes:
    head = b""
    if msgid is not None:
        head += b"Message-ID: <%s>\n" % msgid.encode()
    if refs is not None:
        head += b"References: %s\n" % refs.encode()
    if irt is not None:
        head += b"In-Reply-To: %s\n" % irt.encode()
    if subject is not None:
        head += b"Subject: %s\n" % subject.encode()
    if date is not None:
        head += b"Date: %s\n" % time_text(date)
    return head + b"\nbody\n"


def time_text(t: int) -> bytes:
    import email.utils
    return email.utils.formatdate(t, usegmt=True).encode()


def client(*msgs: bytes, when: int = T0) -> Client:
    c = Client()
    c.login()
    inbox = c.account.folders["INBOX"]
    for raw in msgs:
        inbox.add(raw, internaldate=float(when))
    c.select()
    return c


def thread(c: Client, line: str = "THREAD REFERENCES UTF-8 ALL") -> bytes:
    out = c.cmd("t " + line)
    assert tagged(out, "t") == b"t OK THREAD completed\r\n", out
    m = re.match(rb"\* THREAD ?(.*)\r\n", out)
    assert m, out
    return m.group(1)


def test_a_reference_loop_is_broken_and_the_last_reference_wins() -> None:
    # imaptest "thread": 2 names 1 and 3 as ancestors, 3 names 2 as parent
    c = client(msg("a@b", date=T0 + 7200), msg("b@b", refs="<a@b> <c@b>"), msg("c@b", refs="<b@b>", date=T0 + 3602))
    assert thread(c) == b"(3 2)(1)"
    c.cmd("s STORE 1 +FLAGS (\\Deleted)")
    c.cmd("x EXPUNGE")
    assert thread(c) == b"(2 1)"


def test_references_first_then_in_reply_to() -> None:
    c = client(msg("p@x"), msg("q@x", irt="<p@x>"), msg("r@x", refs="<nothing>", irt="<q@x>"),
               msg("s@x", refs="<p@x>", irt="<r@x>"))
    assert thread(c) == b"(1 (2 3)(4))"


def test_duplicate_message_ids() -> None:
    # imaptest "thread7": the second <b@b> gets a node of its own, and after
    # the first one goes the later one owns the id
    c = client(msg("a@b"), msg("b@b", refs="<a@b>"), msg("c@b", refs="<b@b>"), msg("b@b", refs="<a@b>"))
    assert thread(c) == b"(1 (2 3)(4))"
    c.cmd("s STORE 2 +FLAGS (\\Deleted)")
    c.cmd("x EXPUNGE")
    assert thread(c) == b"(1 3 2)"


def test_dummy_parents() -> None:
    # two replies to a message that is not there: a dummy root with two children
    c = client(msg("r1@x", refs="<gone@x>"), msg("r2@x", refs="<gone@x>"))
    assert thread(c) == b"((1)(2))"
    # a dummy with one child is replaced by it
    c = client(msg("r1@x", refs="<gone@x>"), msg("other@x"))
    assert thread(c) == b"(1)(2)"


def test_siblings_and_roots_by_date_then_uid() -> None:
    c = client(msg("p@x", date=T0), msg("late@x", refs="<p@x>", date=T0 + 50),
               msg("early@x", refs="<p@x>", date=T0 + 10), msg("nodate@x", refs="<p@x>"),
               msg("root2@x", date=T0 - 100), when=T0 + 20)
    # 4 has no Date: its internal date (T0+20) sorts it between 3 and 2
    assert thread(c) == b"(5)(1 (3)(4)(2))"
    assert thread(c, "UID THREAD REFERENCES UTF-8 ALL") == b"(5)(1 (3)(4)(2))"


def test_subject_merging() -> None:
    c = client(msg("a@x", subject="Lunch", date=T0), msg("b@x", subject="Re: lunch", date=T0 + 10),
               msg("c@x", subject="lunch", date=T0 + 20), msg("d@x", subject="Other", date=T0 + 30),
               msg("e@x", subject="", date=T0 + 40), msg("f@x", subject="", date=T0 + 50))
    # the reply goes under the original (a lone child follows its parent
    # unbracketed); two non-replies meet under a dummy; empty subjects are
    # never merged
    assert thread(c) == b"((1 2)(3))(4)(5)(6)"


def test_a_reply_root_goes_under_a_dummy_root_with_the_subject() -> None:
    c = client(msg("r1@x", refs="<gone@x>", subject="Plans", date=T0),
               msg("r2@x", refs="<gone@x>", subject="Re: Plans", date=T0 + 5),
               msg("later@x", subject="Re: plans", date=T0 + 10))
    assert thread(c) == b"((1)(2)(3))"


def test_orderedsubject() -> None:
    c = client(msg(subject="b", date=T0 + 5), msg(subject="Re: a", date=T0 + 3), msg(subject="a", date=T0 + 1),
               msg(subject="B (fwd)", date=T0 + 2), msg(subject="a", date=T0 + 4), msg(subject="c", date=T0))
    # threads by their first message's date; inside by date
    assert thread(c, "THREAD ORDEREDSUBJECT UTF-8 ALL") == b"(6)(3 (2)(5))(4 1)"
    assert thread(c, "UID THREAD ORDEREDSUBJECT UTF-8 NOT 6") == b"(3 (2)(5))(4 1)"


def test_refs_orders_threads_by_their_newest_message() -> None:
    c = client(msg("old@x", date=T0), msg("other@x", date=T0 + 10), msg("reply@x", refs="<old@x>", date=T0 + 20),
               msg("orphan@x", refs="<gone@x>", subject="x", date=T0 + 5))
    assert thread(c, "THREAD REFERENCES UTF-8 ALL") == b"(1 3)(4)(2)"
    assert thread(c, "THREAD REFS UTF-8 ALL") == b"(4)(2)(1 3)"  # newest: T0+5, T0+10, T0+20


def test_search_criteria_and_sequence_numbers() -> None:
    c = client(msg("a@x"), msg("b@x", refs="<a@x>"), msg("c@x", refs="<b@x>"))
    c.cmd("s STORE 2 +FLAGS (\\Seen)")
    # only matching messages are threaded: without 2's References, <b@x>
    # is a parentless dummy and 3 a thread of its own
    assert thread(c, "THREAD REFERENCES UTF-8 UNSEEN") == b"(1)(3)"
    assert thread(c, "THREAD REFERENCES UTF-8 SUBJECT nothing") == b""


@pytest.mark.parametrize("line", [
    "t THREAD",
    "t THREAD REFERENCES",
    "t THREAD REFERENCES UTF-8",
    "t THREAD NEWEST UTF-8 ALL",
    "t THREAD (REFERENCES) UTF-8 ALL",
    "t THREAD REFERENCES UTF-8 BOGUS",
])
def test_syntax_errors_are_bad(line: str) -> None:
    c = client(msg("a@x"))
    assert c.cmd(line).startswith(b"t BAD "), line


def test_unsupported_charset() -> None:
    c = client(msg("a@x"))
    assert c.cmd("t THREAD REFERENCES ISO-2022-JP ALL") == (
        b"t NO [BADCHARSET (UTF-8 US-ASCII)] THREAD Unsupported charset\r\n")


def test_a_thousand_deep_chain_costs_no_stack() -> None:
    n = 3000
    msgs = [msg("m0@x")] + [msg(f"m{i}@x", refs=f"<m{i - 1}@x>") for i in range(1, n)]
    c = client(*msgs)
    out = c.cmd("t THREAD REFERENCES UTF-8 ALL")
    for _ in range(10000):  # computing 3,000 messages' keys gives the reactor turns
        if b"t OK" in out:
            break
        c.clock.advance(0)
        out += c.take()
    assert out == b"* THREAD (" + b" ".join(b"%d" % i for i in range(1, n + 1)) + b")\r\nt OK THREAD completed\r\n"


def test_the_same_question_is_answered_from_memory() -> None:
    c = client(msg("a@x"), msg("b@x", refs="<a@x>"))
    first = thread(c)
    inbox = c.account.folders["INBOX"]
    inbox.cache.clear()
    K.forget(inbox)
    opens = inbox.opens
    assert thread(c) == first and inbox.opens == opens
    assert thread(c, "UID THREAD REFERENCES UTF-8 ALL") == first and inbox.opens > opens  # another question


def test_big_threads_are_built_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(T, "WORKER_MIN", 1)
    used: list[bool] = []

    def fake_defer(fn, *args):  # type: ignore[no-untyped-def]
        used.append(True)
        return defer.succeed(fn(*args))

    monkeypatch.setattr(threads, "deferToThread", fake_defer)
    c = client(msg("a@x"), msg("b@x", refs="<a@x>"), msg("c@x"))
    assert thread(c) == b"(1 2)(3)" and used


def test_big_answers_are_kept_for_a_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(K, "PACK_MIN", 2)
    c = client(msg("a@x"), msg("b@x", refs="<a@x>"), msg("c@x"))
    first = thread(c)
    inbox = c.account.folders["INBOX"]
    assert inbox.folder_cache["thread:REFERENCES:seq"].endswith(first)
    T._LAST.clear()
    K.forget(inbox)
    inbox.cache.clear()
    opens = inbox.opens
    assert thread(c) == first and inbox.opens == opens


# ---------------------------------------------------------------- property

IDS = [f"id{i}@x" for i in range(6)]
message = st.tuples(st.sampled_from([None, *IDS]), st.lists(st.sampled_from(IDS), max_size=3),
                    st.sampled_from([None, *IDS]), st.sampled_from(["a", "Re: a", "b", "", "Fwd: b"]),
                    st.integers(0, 5), st.booleans())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(message, max_size=10), st.sampled_from(["REFERENCES", "REFS", "ORDEREDSUBJECT"]),
       st.sampled_from(["ALL", "SEEN", "UNSEEN", "NOT 1"]), st.booleans())
def test_every_matching_message_appears_exactly_once(msgs: list, algorithm: str, key: str, uid: bool) -> None:
    c = Client()
    c.login()
    inbox = c.account.folders["INBOX"]
    for msgid, refs, irt, subject, day, seen in msgs:
        raw = msg(msgid, " ".join(f"<{r}>" for r in refs) if refs else None, f"<{irt}>" if irt else None,
                  subject, T0 + 86400 * day if day else None)
        inbox.add(raw, ("\\Seen",) if seen else (), internaldate=float(T0))
    c.select()
    prefix = "UID " if uid else ""
    searched = re.search(rb"\* SEARCH((?: \d+)*)\r\n", c.cmd(f"s {prefix}SEARCH {key}"))
    assert searched
    body = thread(c, f"{prefix}THREAD {algorithm} UTF-8 {key}")
    assert re.fullmatch(rb"[() 0-9]*", body)
    assert body.count(b"(") == body.count(b")")
    numbers = sorted(int(n) for n in re.findall(rb"\d+", body))
    assert numbers == [int(n) for n in searched.group(1).split()]


class WorkerThread(unittest.TestCase):
    """The real deferToThread (not a stand-in) runs the build."""

    def test_build_runs_in_the_thread_pool(self) -> defer.Deferred[None]:
        d = threads.deferToThread(T.build, "REFERENCES", [1, 2], {1: b"", 2: b""}, {1: 1, 2: 2},
                                  {1: b"-a@x", 2: b"-b@x\x00a@x"}, int)
        return d.addCallback(self.assertEqual, b"(1 2)")
