"""RFC 5256 base subjects: worked examples, and generated subjects held to
an independent transcription of the RFC's algorithm (regular expressions
straight from its ABNF) and to idempotence."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsrv.imap.basesubject import base_subject, casemap, extract, normalize


@pytest.mark.parametrize("raw,base,reply", [
    (b"Hello", "HELLO", False),
    (b"Re: Hello", "HELLO", True),
    (b"RE: re: Re:Hello", "HELLO", True),
    (b"Fwd: Re: Hello (fwd)", "HELLO", True),
    (b"Hello (fwd) (FWD)  ", "HELLO", True),
    (b"[PATCH] Re: fix", "FIX", True),
    (b"Re: [PATCH] fix", "FIX", True),
    (b"[list] [PATCH v2] fix", "FIX", False),
    (b"[blob]", "[BLOB]", False),  # a blob is kept when nothing would be left
    (b"[a] [b]", "[B]", False),
    (b"Re[2]: Hello", "HELLO", True),
    (b"re [x] : Hello", "HELLO", True),  # the blob takes the space after it
    (b"re x: Hello", "RE X: HELLO", False),
    (b"Fw: x", "X", True),
    (b"FWD: x", "X", True),
    (b"Reply: x", "REPLY: X", False),
    (b"[Fwd: Re: meeting]", "MEETING", True),
    (b"Re: [fwd: [fwd: hi]] (fwd)", "HI", True),
    (b"[Fwd:]", "", True),
    (b"\tRe:\r\n  folded\t subject ", "FOLDED SUBJECT", True),
    (b"=?utf-8?q?Re=3A_caf=C3=A9?=", "CAFE\u0301", True),  # decoded, then casemapped (NFKD)
    (b"=?iso-8859-1?q?r=E9sum=E9?= =?iso-8859-1?q?_final?=", "RE\u0301SUME\u0301 FINAL", False),
    (b"caf\xc3\xa9", "CAFE\u0301", False),  # raw UTF-8
    (b"under_score", "UNDER_SCORE", False),
    (b"", "", False),
    (b"   ", "", False),
    (b"a\x00b", "A", False),  # as a C string, as Dovecot keeps it
])
def test_examples(raw: bytes, base: str, reply: bool) -> None:
    assert base_subject(raw) == (base, reply)


def test_casemap_is_titlecase_then_compatibility_decomposition() -> None:
    assert casemap("abc_[]") == "ABC_[]"  # so '_' sorts after letters, as in Dovecot
    assert casemap("\u01c6") == "Dz\u030c"  # dz with caron: titlecase (one letter Dz), then decomposed
    assert casemap("\ufb01") == "fi"  # no one-letter titlecase, then decomposed (RFC 5051 order)
    assert casemap("stra\u00dfe") == "STRA\u00dfE"  # simple mapping: sharp s stays one letter


# -- an independent transcription of RFC 5256 section 2.1 steps (2)-(7) on
# normalised text (step (1) is normalize()): every rule a regular expression
BLOB = r"\[[^\[\]]*\] ?"  # subj-blob; whitespace is already packed to one space
REFWD = r"(?:RE|FWD|FW) ?(?:" + BLOB + r")?:"
LEADER = re.compile(r"(?:(?:" + BLOB + r")*" + REFWD + r"| )")
TRAILER = re.compile(r"(?:\(FWD\)| )$")


def reference(text: str) -> str:
    while True:
        while (m := TRAILER.search(text)) is not None:  # (2)
            text = text[:m.start()]
        while True:  # (3) to (5)
            m = LEADER.match(text)
            if m is not None:
                text = text[m.end():]
                continue
            m = re.match(BLOB, text)
            if m is not None and text[m.end():]:
                text = text[m.end():]
                continue
            break
        if text.startswith("[FWD:") and text.endswith("]"):  # (6)
            text = text[5:-1]
            continue
        return text  # (7)


TOKENS = ["re", "Re", "RE:", "fw", "Fwd", "fwd:", ":", " ", "  ", "\t", "[", "]", "[x]", "[fwd:", "(fwd)",
          "(FWD)", "hello", "a", "_", "re[1]:", "[PATCH v2]", "[]"]
subjects = st.lists(st.sampled_from(TOKENS), max_size=12).map("".join)


@settings(max_examples=600, deadline=None)
@given(subjects)
def test_matches_the_rfc_algorithm(subject: str) -> None:
    text = normalize(subject.encode())
    assert extract(text)[0] == reference(text)


@settings(max_examples=600, deadline=None)
@given(subjects)
def test_extraction_is_idempotent(subject: str) -> None:
    base, _ = extract(normalize(subject.encode()))
    assert extract(base) == (base, False)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_gives_a_base_subject(text: str) -> None:
    base, reply = base_subject(text.encode("utf-8", "surrogatepass"))
    assert isinstance(base, str) and isinstance(reply, bool)
    assert base == base.strip(" ")
    assert "  " not in base


def test_a_hostile_subject_costs_linear_time() -> None:
    base, reply = base_subject(b"Re: " * 20000 + b"x")
    assert (base, reply) == ("X", True)
