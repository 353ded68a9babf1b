"""Flag searches from the store's flag sets (issue 10) answer exactly what
the general search answers, on any folder and any key of flags."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailsrv.imap import flagsearch
from mailsrv.imap import searchkeys as K
from mailsrv.imap.search import search
from mailsrv.imap.session import SelectedMailbox
from tests.fakestore import FakeFolder

FLAGS = ["\\Seen", "\\Flagged", "\\Deleted", "\\Answered", "$Work", "$work", "Junk"]

flag_key = st.builds(K.Flag, st.sampled_from(FLAGS + ["$WORK", "junk"]), st.booleans())
leaf = st.one_of(flag_key, st.just(K.All()), st.just(K.Recent()), st.just(K.New()), st.just(K.Old()))
keys = st.recursive(leaf, lambda inner: st.one_of(
    st.builds(K.Not, inner), st.builds(K.Or, inner, inner),
    st.builds(lambda ks: K.And(tuple(ks)), st.lists(inner, min_size=1, max_size=3))), max_leaves=8)


@settings(max_examples=300)
@given(st.lists(st.sets(st.sampled_from(FLAGS), max_size=3), max_size=12), st.data())
def test_same_answer_as_the_general_search(flag_sets, data):
    folder = FakeFolder()
    for fl in flag_sets:
        folder.add(b"Subject: x\r\n\r\nx\r\n", fl)
    recent = set(data.draw(st.sets(st.sampled_from(folder.uids()))) if folder.uids() else set())
    folder.claim_recent()
    folder._recent = set(recent)
    sel = SelectedMailbox(folder, readonly=False)
    gone = data.draw(st.sets(st.sampled_from(sel.uids))) if sel.uids else set()
    folder.expunge(sorted(gone))  # expunged by another session; still in this view
    key = data.draw(keys)
    infos = sel.infos()
    want = sorted(s for s in set(search(folder, infos, key, set(sel.recent))) if folder.get(infos[s - 1].uid))
    assert flagsearch.search(sel, key) == want


def test_keys_beyond_flags_go_to_the_general_search():
    sel = SelectedMailbox(FakeFolder(), readonly=False)
    assert flagsearch.search(sel, K.And((K.Flag("\\Seen"), K.Size("LARGER", 3)))) is None
    assert flagsearch.search(sel, K.Not(K.Header("From", "x"))) is None
    assert flagsearch.search(sel, K.Flag("\\Seen")) == []
