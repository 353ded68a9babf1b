import os
import subprocess
import sys
import time

import pytest

from mailsrv.store.diskfolder import STATE_FILES
from mailsrv.store.fsutil import atomic_write, clean_stale_temps
from mailsrv.store.uidlist import (
    CorruptUidList,
    DotLock,
    LockTimeout,
    parse_uidlist,
    read_keywords,
    read_uidlist,
    write_keywords,
    write_uidlist,
)

SAMPLE = (b"3 V1795677385 N9 G3896800ec9dc076b8d2a000083ecc375 Xfuture\n"
          b"1 :1795677385.M239334P10893.vm,S=113,W=119\n"
          b"2 W125 P00000002ab :1795677385.M245550P10893.vm\n"
          b"5 Zunknown G0123 :odd name with spaces\n")


def test_roundtrip_keeps_unknown_extensions():
    ul = parse_uidlist(SAMPLE)
    assert (ul.uidvalidity, ul.uidnext, ul.guid) == (1795677385, 9, "3896800ec9dc076b8d2a000083ecc375")
    assert ul.uids == {"1795677385.M239334P10893.vm,S=113,W=119": 1, "1795677385.M245550P10893.vm": 2,
                       "odd name with spaces": 5}
    assert ul.exts["1795677385.M245550P10893.vm"] == {"W": "125", "P": "00000002ab"}
    assert ul.exts["odd name with spaces"] == {"Z": "unknown", "G": "0123"}
    assert ul.serialize() == SAMPLE
    assert parse_uidlist(ul.serialize()) == ul


def test_tolerant_parsing():
    data = (b"3 V7 N2\n"
            b"1 :a:2,S\n"          # old writers stored flags: stripped
            b"garbage line\n"
            b"3 W5\n"               # no filename
            b"2 :a\n"               # duplicate key
            b"1 :b\n"               # uid not ascending
            b"10 :c\n")
    ul = parse_uidlist(data)
    assert ul.uids == {"a": 1, "c": 10}
    assert ul.bad_lines == 4
    assert ul.uidnext == 11  # never below max uid + 1


def test_version1_and_corrupt_headers():
    ul = parse_uidlist(b"1 42 7\n3 foo\n")
    assert (ul.uidvalidity, ul.uidnext, ul.uids) == (42, 7, {"foo": 3})
    for bad in (b"", b"\n1 :x\n", b"3 N5\n", b"9 V1 N1\n", b"3 V0 N1\n"):
        with pytest.raises(CorruptUidList):
            parse_uidlist(bad)


def test_write_is_atomic_and_leftover_temp_is_harmless(tmp_path):
    ul = parse_uidlist(SAMPLE)
    write_uidlist(str(tmp_path), ul)
    # a crash during the next replace leaves a half-written temp file
    (tmp_path / "dovecot-uidlist.1234.deadbeef.tmp").write_bytes(b"3 V1 N")
    got, _st = read_uidlist(str(tmp_path))
    assert got == ul
    old = time.time() - 7200
    os.utime(tmp_path / "dovecot-uidlist.1234.deadbeef.tmp", (old, old))
    (tmp_path / "dovecot-keywords.99.cafe.tmp").write_bytes(b"0 in fli")  # a replace in progress
    clean_stale_temps(str(tmp_path), STATE_FILES)
    assert sorted(os.listdir(tmp_path)) == ["dovecot-keywords.99.cafe.tmp", "dovecot-uidlist"]
    assert read_uidlist(str(tmp_path / "missing")) == (None, None)


def test_atomic_write_replaces_inode(tmp_path):
    p = str(tmp_path / "f")
    atomic_write(p, b"one")
    ino = os.stat(p).st_ino
    atomic_write(p, b"two")
    assert open(p, "rb").read() == b"two" and os.stat(p).st_ino != ino


def test_keywords_file(tmp_path):
    (tmp_path / "dovecot-keywords").write_bytes(b"0 $Important\n2 NonJunk\nbad\n30 TooFar\n")
    assert read_keywords(str(tmp_path)) == ["$Important", None, "NonJunk"]
    write_keywords(str(tmp_path), ["$Important", None, "NonJunk", "$Label1"])
    assert (tmp_path / "dovecot-keywords").read_bytes() == b"0 $Important\n2 NonJunk\n3 $Label1\n"
    assert read_keywords(str(tmp_path / "none")) == []


def test_dotlock_exclusive_and_stale(tmp_path):
    target = str(tmp_path / "dovecot-uidlist")
    with DotLock(target):
        assert os.path.exists(target + ".lock")
        with pytest.raises(LockTimeout):
            DotLock(target, timeout=0.05).acquire()
    assert not os.path.exists(target + ".lock")
    # a lock left by a process that died is broken at once
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    import socket
    with open(target + ".lock", "w") as f:
        f.write(f"{dead}:{socket.gethostname()}")
    with DotLock(target, timeout=1):
        pass
    # a lock whose content we cannot judge is stale once old enough
    with open(target + ".lock", "w") as f:
        f.write("3 V1 N1\n")
    old = time.time() - 600
    os.utime(target + ".lock", (old, old))
    with DotLock(target, timeout=1):
        pass
    assert not os.path.exists(target + ".lock")


def test_appended_records_and_torn_tail(tmp_path):
    from mailsrv.store.uidlist import append_uidlist, peek_uidlist, read_appended

    ul = parse_uidlist(SAMPLE)
    st = write_uidlist(str(tmp_path), ul)
    mine, _ = read_uidlist(str(tmp_path))
    # another process appends two records; a crash leaves half a third
    ul.uids["k6"] = 9
    ul.uids["k7"] = 10
    ul.exts["k7"] = {"W": "12"}
    st2 = append_uidlist(str(tmp_path), ul, ["k6", "k7"], st.st_ino)
    assert st2.st_ino == st.st_ino
    with open(tmp_path / "dovecot-uidlist", "ab") as f:
        f.write(b"11 :k")
    data = (tmp_path / "dovecot-uidlist").read_bytes()
    assert data.startswith(SAMPLE)  # appended, header N left as it was
    assert data[len(SAMPLE):] == b"9 :k6\n10 W12 :k7\n11 :k"
    assert read_appended(str(tmp_path), mine, os.stat(tmp_path / "dovecot-uidlist"))
    assert mine == parse_uidlist(data)
    assert (mine.uids["k7"], mine.exts["k7"], mine.uidnext) == (10, {"W": "12"}, 11)
    peeked, _st = peek_uidlist(str(tmp_path), tail_bytes=40)
    assert (peeked.uidnext, peeked.valid_size) == (11, len(data) - len(b"11 :k"))
    peeked.uids["k8"] = 11
    assert append_uidlist(str(tmp_path), peeked, ["k8"], st.st_ino) is not None
    data = (tmp_path / "dovecot-uidlist").read_bytes()
    assert data.endswith(b"10 W12 :k7\n11 :k8\n")
    assert parse_uidlist(data).uids["k8"] == 11
    # a rewritten header (new UIDVALIDITY) is not merged as an append
    other = parse_uidlist(data)
    other.uidvalidity += 1
    atomic_write(str(tmp_path / "dovecot-uidlist"), other.serialize() + b"12 :k9\n")
    assert not read_appended(str(tmp_path), mine, os.stat(tmp_path / "dovecot-uidlist"))


def test_atomic_write_mode_and_owner(tmp_path):
    p = str(tmp_path / "f")
    atomic_write(p, b"x", fsync=False)
    assert os.stat(p).st_mode & 0o777 == 0o600
    if os.geteuid() == 0:
        atomic_write(p, b"y", owner=(65534, 65534))
        st = os.stat(p)
        assert (st.st_uid, st.st_gid) == (65534, 65534) and open(p, "rb").read() == b"y"
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []
