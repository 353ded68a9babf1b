import io
import os

import pytest

from mailsrv.store import layout
from mailsrv.store.filename import (
    FLAG_CHARS,
    TooManyKeywords,
    filename_size,
    flags_from_info,
    info_for,
    join_filename,
    size_of,
    split_filename,
)
from mailsrv.store.flags import InvalidFlag, normalize_flags
from mailsrv.store.interfaces import SYSTEM_FLAGS, InvalidFolderName
from mailsrv.store.maildir import deliver, ensure_keywords
from mailsrv.store.uidlist import read_keywords

KW = ["$Important", None, "NonJunk"]


def test_flags_from_filename_info():
    assert flags_from_info("2,DFPRSTac", KW) == {"\\Draft", "\\Flagged", "\\Answered", "\\Seen",
                                                  "\\Deleted", "$Important", "NonJunk"}
    assert flags_from_info("2,", KW) == frozenset()
    assert flags_from_info(None, KW) == frozenset()
    assert flags_from_info("1,S", KW) == frozenset()  # experimental info: no flags
    assert flags_from_info("2,Sbz", KW) == {"\\Seen"}  # letters without a keyword are not flags


def test_info_sorted_and_preserving_unknown():
    assert info_for(frozenset({"\\Seen", "\\Answered", "nonjunk", "\\Deleted"}), KW, None) == "2,RSTc"
    # P (passed) and keyword letters with no keyword survive a flag change
    assert info_for(frozenset({"\\Seen"}), KW, "2,PRSaz") == "2,PSz"
    assert info_for(frozenset(), KW, "2,S") == "2,"
    with pytest.raises(TooManyKeywords):
        info_for(frozenset({"Unknown"}), KW, None)


def test_one_list_of_system_flags():
    assert set(FLAG_CHARS) == set(SYSTEM_FLAGS)
    assert normalize_flags([f.upper() for f in SYSTEM_FLAGS]) == frozenset(SYSTEM_FLAGS)


def test_normalize_flags():
    assert normalize_flags(["\\SEEN", "\\recent", "$Junk"]) == {"\\Seen", "$Junk"}
    for bad in (["\\Bogus"], ["a b"], ["(x"], ["caf\u00e9"], [""]):
        with pytest.raises(InvalidFlag):
            normalize_flags(bad)


def test_filename_fields():
    assert split_filename("123.M1P2.host,S=10,W=12:2,S") == ("123.M1P2.host,S=10,W=12", "2,S")
    assert split_filename("123.V1I2.host") == ("123.V1I2.host", None)
    assert filename_size("123.M1P2.host,S=10,W=12") == 12
    assert filename_size("123.M1P2.host,S=10,W=12", "S") == 10
    assert filename_size("123.V1I2.host") is None
    assert filename_size("123.host,W=x") is None
    assert size_of("123.M1P2.host,S=10,W=12") == 12
    assert size_of("123.M1P2.host,W=12,S=10") == 12
    assert size_of("123.V1I2.host") is None
    for name in ("123.M1P2.host,S=10,W=12:2,S", "123.V1I2.host", "k:"):
        assert join_filename(*split_filename(name)) == name


def test_ensure_keywords_fills_holes_and_limits(tmp_path):
    (tmp_path / "dovecot-keywords").write_bytes(b"0 $Important\n2 NonJunk\n")
    kws = ensure_keywords(str(tmp_path), ["nonjunk", "$New", "$Other"])
    assert kws == ["$Important", "$New", "NonJunk", "$Other"]
    assert read_keywords(str(tmp_path)) == kws
    with pytest.raises(TooManyKeywords):
        ensure_keywords(str(tmp_path), [f"k{i}" for i in range(30)])


def test_sync_deliver(tmp_path):
    folder = str(tmp_path / "INBOX")
    p = deliver(folder, b"Subject: a\n\nbody\n")
    assert os.path.dirname(p) == os.path.join(folder, "new")
    key = os.path.basename(p)
    assert key.endswith(",S=17,W=20") and ":" not in key
    assert open(p, "rb").read() == b"Subject: a\n\nbody\n"
    p2 = deliver(folder, io.BytesIO(b"x\r\n" * 100000), flags=["\\Seen", "$Label"])
    assert os.path.dirname(p2) == os.path.join(folder, "cur")
    assert p2.endswith(",S=300000,W=300000:2,Sa")
    assert os.listdir(os.path.join(folder, "tmp")) == []
    assert read_keywords(folder) == ["$Label"]


@pytest.mark.parametrize("bad", ["", "/a", "a/", "a//b", "a.b", "a\x01", "a\x7f", "*", "a%", " a", "a/b "])
def test_invalid_folder_names(bad):
    with pytest.raises(InvalidFolderName):
        layout.canonical(bad)


def test_folder_name_codec(tmp_path):
    assert layout.canonical("inbox") == "INBOX"
    assert layout.canonical("Inbox/Sub") == "INBOX/Sub"
    for name in ("Entwürfe/Ärger", "a&b", "日本語", "Lists/python"):
        enc = layout.encode_name(name)
        assert enc.isascii() and layout.decode_name(enc) == name
    assert layout.encode_name("Entwürfe/Ärger") == "Entw&APw-rfe.&AMQ-rger"
    assert layout.decode_name("bad&name") is None
    assert layout.folder_dir(str(tmp_path), "u", "INBOX") == str(tmp_path / "u" / "Maildir")
    assert layout.folder_dir(str(tmp_path), "u", "a/b") == str(tmp_path / "u" / "Maildir" / ".a.b")
    assert not layout.user_exists_dir(str(tmp_path), "u")
    with pytest.raises(ValueError):
        layout.folder_dir(str(tmp_path), "../x", "INBOX")


def test_subscriptions_file_roundtrip(tmp_path):
    layout.write_subscriptions(str(tmp_path), ["Lists/python", "Entwürfe/Ärger"])
    assert (tmp_path / "subscriptions").read_bytes() == b"V\t2\n\nLists\tpython\nEntw&APw-rfe\t&AMQ-rger\n"
    assert layout.read_subscriptions(str(tmp_path)) == ["Lists/python", "Entwürfe/Ärger"]
    (tmp_path / "subscriptions").write_bytes(b"Old/style\nOld/style\n")
    assert layout.read_subscriptions(str(tmp_path)) == ["Old/style"]
