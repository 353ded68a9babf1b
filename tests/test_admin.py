"""Admin tools: mbox reading, ``import`` (byte-exact), ``mailbox list``,
``mailbox reindex`` and ``check`` (findings and repairs)."""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import random
import sqlite3
import subprocess
import sys
import time
from email import policy

import pytest

from mailsrv import admin, mbox
from mailsrv.config import Config
from mailsrv.store import cache, layout, maildir, uidlist
from mailsrv.store.diskfolder import DiskFolder
from mailsrv.store.filename import flag_chars, split_filename

MAKE_MBOX = "/work/shared/reference/make-mbox.py"


# -- helpers -----------------------------------------------------------------------


def make_config(tmp_path, users=("alice",)) -> Config:
    from mailsrv.auth import PasswdFile, hash_password

    data = tmp_path / "data"
    data.mkdir()
    pf = PasswdFile(str(data / "passwd"))
    for u in users:
        pf.add_user(u, hash_password("pw", "SSHA512"))
    return Config(data_dir=str(data))


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    admin.register(p.add_subparsers(required=True))
    return p.parse_args(list(argv))


def run(config: Config, *argv: str):
    """(exit code, stdout) of a command called as mailsrv.cli calls it."""
    args = parse(*argv)
    out = io.StringIO()
    saved = sys.stdout
    sys.stdout = out
    try:
        code = args.func(args, config)
    finally:
        sys.stdout = saved
    return code, out.getvalue()


def stored(folder_dir: str):
    """[(uid, bytes, flags, mtime)] ascending by UID."""
    ul, _ = uidlist.read_uidlist(folder_dir)
    where = {}
    for sub in ("new", "cur"):
        for fn in os.listdir(os.path.join(folder_dir, sub)):
            key, info = split_filename(fn)
            where[key] = (os.path.join(folder_dir, sub, fn), info)
    out = []
    for key, uid in sorted(ul.uids.items(), key=lambda kv: kv[1]):
        path, info = where[key]
        with open(path, "rb") as f:
            out.append((uid, f.read(), flag_chars(info), os.stat(path).st_mtime))
    return out


def messages_of(data: bytes):
    return [(m.body.read(), m.flags, m.internaldate) for m in mbox.iter_mbox(io.BytesIO(data))]


# -- mbox reading ------------------------------------------------------------------


def test_from_quoting_mboxrd():
    data = (b"From a@example.org Mon Jan  2 08:00:00 2023\n"
            b"Subject: one\n\n>From the start\n>From quoted once\n>>From quoted twice\n> From not quoting\n"
            b"\n"
            b"From b@example.org Mon Jan  2 09:00:00 2023\n"
            b"Subject: two\n\nlast line without newline")
    msgs = messages_of(data)
    assert [m[0] for m in msgs] == [
        b"Subject: one\n\nFrom the start\nFrom quoted once\n>From quoted twice\n> From not quoting\n",
        b"Subject: two\n\nlast line without newline",
    ]
    assert msgs[0][2] == 1672646400.0 and msgs[1][2] == 1672650000.0


def test_crlf_mbox_keeps_crlf_and_drops_separator():
    data = (b"From a@example.org Mon Jan  2 08:00:00 2023\r\n"
            b"Subject: one\r\n\r\nbody\r\n>From x\r\n\r\n\r\n"
            b"From b@example.org Mon Jan  2 09:00:00 2023\r\n"
            b"Subject: two\r\n\r\nbody two\r\n\r\n")
    msgs = messages_of(data)
    # message one ended with a blank line of its own: only the separator goes
    assert msgs[0][0] == b"Subject: one\r\n\r\nbody\r\nFrom x\r\n\r\n"
    assert msgs[1][0] == b"Subject: two\r\n\r\nbody two\r\n"


def test_unquoted_from_inside_paragraph_is_body():
    data = (b"From a@example.org Mon Jan  2 08:00:00 2023\n"
            b"Subject: s\n\nline\nFrom here on, no date\n\n")
    msgs = messages_of(data)
    assert len(msgs) == 1 and msgs[0][0] == b"Subject: s\n\nline\nFrom here on, no date\n"


def test_flags_from_status_headers():
    data = (b"From a Mon Jan  2 08:00:00 2023\n"
            b"Status: RO\nX-Status: AFTD\nX-Keywords: $Junk, work\nSubject: s\n\nX-Status: A in body\n\n"
            b"From b Mon Jan  2 08:00:00 2023\n"
            b"X-Mozilla-Status: 0005\nSubject: t\n\nx\n\n"
            b"From c Mon Jan  2 08:00:00 2023\nStatus: O\nSubject: u\n\nx\n")
    msgs = messages_of(data)
    assert set(msgs[0][1]) == {"\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted", "$Junk", "work"}
    assert set(msgs[1][1]) == {"\\Seen", "\\Flagged"}
    assert msgs[2][1] == []
    # bytes stay exact: the Status headers are kept
    assert msgs[0][0].startswith(b"Status: RO\nX-Status: AFTD\n")


def test_from_line_dates():
    assert mbox.parse_from_date(b"From x Mon Jan  2 08:00:00 2023\n") == 1672646400.0
    assert mbox.parse_from_date(b"From x Mon Jan 2 10:00:00 2023 +0200\n") == 1672646400.0
    assert mbox.parse_from_date(b"From x Mon, Jan  2 08:00 2023\r\n") == 1672646400.0
    assert mbox.parse_from_date(b"From x garbage\n") is None
    data = b"From MAILER-DAEMON\nDate: Mon, 02 Jan 2023 09:00:00 +0100\nSubject: s\n\nx\n"
    assert messages_of(data)[0][2] == 1672646400.0


def test_long_lines_split_into_pieces(monkeypatch):
    monkeypatch.setattr(mbox, "PIECE", 7)
    monkeypatch.setattr(mbox, "LINE_HEAD", 40)
    body = b"Subject: s\n\n" + b"x" * 50 + b"From inside a long line\n>From quoted\n"
    data = b"From a Mon Jan  2 08:00:00 2023\n" + body + b"\nFrom b Mon Jan  2 08:00:00 2023\nS: t\n\ny\n"
    msgs = messages_of(data)
    assert msgs[0][0] == body.replace(b">From quoted", b"From quoted") and msgs[1][0] == b"S: t\n\ny\n"


def test_not_an_mbox():
    with pytest.raises(mbox.MboxError):
        messages_of(b"Subject: hi\n\nno From_ line\n")


# -- import --------------------------------------------------------------------------


def reference_messages(count: int = 1000, seed: int = 42, min_size: int = 1024, max_size: int = 200 * 1024):
    """The messages make-mbox.py writes, before its From_ quoting: the
    generator's own loop, replayed."""
    spec = importlib.util.spec_from_file_location("make_mbox", MAKE_MBOX)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    random.seed(seed)
    g = mod.Gen(seed, min_size, max_size)
    pol = policy.default.clone(linesep="\n")
    out = []
    for i in range(1, count + 1):
        kind, target = g.pick()
        for attempt in range(8):
            msg, when = g.build(i, kind, target)
            raw = msg.as_bytes(policy=pol)
            size = len(raw) + raw.count(b"\n")
            if min_size <= size <= max_size or attempt == 7:
                break
            g.sent.pop()
            if size > max_size:
                target = int(target * max_size * 0.97 / size)
            else:
                target = int(target * min_size * 1.1 / size) + 64
        if not raw.endswith(b"\n"):
            raw += b"\n"
        out.append(raw)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if not os.path.exists(MAKE_MBOX):
        pytest.skip("reference make-mbox.py not available")
    path = tmp_path_factory.mktemp("mbox") / "corpus.mbox"
    subprocess.run([sys.executable, MAKE_MBOX, "-o", str(path)], check=True, capture_output=True, timeout=300)
    return str(path), reference_messages()


@pytest.mark.parametrize("line_end", ["LF", "CRLF"])
def test_import_1000_messages_byte_exact(tmp_path, corpus, line_end):
    path, refs = corpus
    if line_end == "CRLF":
        crlf = tmp_path / "crlf.mbox"
        with open(path, "rb") as src, open(crlf, "wb") as dst:
            for line in src:
                dst.write(line[:-1] + b"\r\n" if line.endswith(b"\n") else line)
        path = str(crlf)
        refs = [r.replace(b"\n", b"\r\n") for r in refs]
    assert sum(r.count(b"\nFrom ") for r in refs) > 100  # the corpus exercises From_ quoting
    config = make_config(tmp_path)
    code, out = run(config, "import", "alice", "--mbox", path)
    assert code == 0, out
    assert out.startswith("imported 1000 messages") and "UIDs 1-1000" in out
    got = stored(layout.folder_dir(config.data_dir, "alice", "INBOX"))
    assert [g[0] for g in got] == list(range(1, 1001))
    mismatched = [g[0] for g, ref in zip(got, refs, strict=True) if g[1] != ref]
    assert mismatched == []
    with open(path, "rb") as f:
        first = f.readline()
    assert got[0][3] == mbox.parse_from_date(first)  # internal date from the From_ line


def test_import_into_new_folder_with_flags(tmp_path):
    config = make_config(tmp_path)
    src = tmp_path / "small.mbox"
    src.write_bytes(b"From a Mon Jan  2 08:00:00 2023\nStatus: RO\nX-Status: F\nSubject: 1\n\nx\n\n"
                    b"From b Mon Jan  2 08:00:00 2023\nSubject: 2\n\ny\n")
    code, out = run(config, "import", "alice", "--mbox", str(src), "--folder", "Archive/2023")
    assert code == 0 and "alice/Archive/2023 (new folder)" in out and "1 \\Seen" in out
    root = layout.maildir_root(config.data_dir, "alice")
    assert "Archive/2023" in layout.read_subscriptions(root)
    got = stored(layout.folder_dir(config.data_dir, "alice", "Archive/2023"))
    assert [(g[1], g[2]) for g in got] == [(b"Status: RO\nX-Status: F\nSubject: 1\n\nx\n", "FS"),
                                           (b"Subject: 2\n\ny\n", "")]
    code, out = run(config, "mailbox", "list", "alice")
    assert code == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("Archive/2023"))
    assert line.split()[1:3] == ["2", "1"]  # messages, unseen


def test_import_errors_are_one_line(tmp_path, capsys):
    config = make_config(tmp_path)
    bad = tmp_path / "bad.mbox"
    bad.write_bytes(b"not an mbox\n")
    for argv, code in ((("import", "bob", "--mbox", str(bad)), 67),
                       (("import", "alice", "--mbox", str(bad)), 1),
                       (("import", "alice", "--mbox", str(tmp_path / "missing")), 1),
                       (("import", "alice", "--mbox", str(bad), "--folder", "a//b"), 1)):
        got, _ = run(config, *argv)
        err = capsys.readouterr().err
        assert got == code
        assert err.startswith("mailsrv: ") and err.count("\n") == 1 and "Traceback" not in err


# -- check / reindex ------------------------------------------------------------------------


def damaged_folder(config: Config):
    """INBOX with one of each problem check knows."""
    path = layout.folder_dir(config.data_dir, "alice", "INBOX")
    for i in range(3):
        maildir.deliver(path, b"Subject: %d\n\nbody\n" % i)
    DiskFolder(path).sync()
    ul, _ = uidlist.read_uidlist(path)
    keys = list(ul.uids)
    raw = open(os.path.join(path, uidlist.UIDLIST), "rb").read().decode()
    raw += f"9 :{keys[0]}\n" + "10 :gone-message-key\n"  # duplicate key, dead entry
    open(os.path.join(path, uidlist.UIDLIST), "w").write(raw)
    maildir.deliver(path, b"Subject: unlisted\n\nx\n")  # no UID yet
    old = os.path.join(path, "tmp", "1.old.host")
    open(old, "wb").write(b"partial")
    os.utime(old, (time.time() - 40 * 3600,) * 2)
    open(os.path.join(path, "tmp", "fresh.host"), "wb").write(b"in flight")
    open(os.path.join(path, "cur", "1.bad.host:1,weird"), "wb").write(b"x")
    # the same key in new/ and cur/: a crash between link and unlink
    assert keys[1] in os.listdir(os.path.join(path, "new"))
    os.link(os.path.join(path, "new", keys[1]), os.path.join(path, "cur", keys[1] + ":2,"))
    db = sqlite3.connect(os.path.join(path, cache.CACHE_FILE))
    db.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT)")
    db.execute("INSERT INTO meta VALUES ('uidvalidity', '1')")
    db.commit()
    db.close()
    return path, ul.uidvalidity


def test_check_dry_run_reports_and_changes_nothing(tmp_path):
    config = make_config(tmp_path)
    path, _ = damaged_folder(config)

    def snapshot():
        return sorted((d, n) for d in ("new", "cur", "tmp") for n in os.listdir(os.path.join(path, d))), \
            open(os.path.join(path, uidlist.UIDLIST), "rb").read()

    before = snapshot()
    code, out = run(config, "check", "--dry-run")
    assert code == 1
    assert snapshot() == before
    for expected in ("listed 2 times", "1 uid list entries without a file", "1 files without a UID",
                     "1 files in tmp/ older than 36 hours", "unparsable flags in name", "duplicate key",
                     "cache is for UIDVALIDITY 1", "need repair"):
        assert expected in out, (expected, out)


def test_check_repairs_then_reports_ok(tmp_path):
    config = make_config(tmp_path)
    path, validity = damaged_folder(config)
    code, out = run(config, "check", "alice")
    assert code == 0, out
    assert "renamed cur/1.bad.host:1,weird to cur/1.bad.host:2, (no flags)" in out
    assert "dropped 1 dead uid list entries" in out
    assert "removed identical copy new/" in out and "removed 1 tmp/ leftovers" in out
    assert "cache removed" in out
    ul, _ = uidlist.read_uidlist(path)
    assert ul.uidvalidity == validity  # repairs never renumber a healthy folder
    uids = sorted(ul.uids.values())
    assert uids[:3] == [1, 2, 3] and uids[3] > 10 and len(uids) == 5  # UIDs 9 and 10 are never reused
    assert f"assigned UIDs {uids[3]}-{uids[4]} to 2 files" in out and ul.bad_lines == 0
    assert os.listdir(os.path.join(path, "tmp")) == ["fresh.host"]
    assert not os.path.exists(os.path.join(path, cache.CACHE_FILE))
    code, out = run(config, "check")
    assert code == 0 and out.strip().endswith("alice/INBOX: ok")


def test_reindex_one_folder(tmp_path):
    config = make_config(tmp_path)
    path = layout.folder_dir(config.data_dir, "alice", "Lists/python")
    maildir.deliver(path, b"Subject: a\n\nx\n")
    open(os.path.join(path, cache.CACHE_FILE), "wb").close()
    code, out = run(config, "mailbox", "reindex", "alice", "Lists/python")
    assert code == 0 and "alice/Lists/python: reindexed" in out and "cache removed" in out
    ul, _ = uidlist.read_uidlist(path)
    assert list(ul.uids.values()) == [1]
    code, _ = run(config, "mailbox", "reindex", "alice", "Nope")
    assert code == 1


def test_mailbox_list_counts(tmp_path):
    config = make_config(tmp_path)
    inbox = layout.folder_dir(config.data_dir, "alice", "INBOX")
    maildir.deliver(inbox, b"Subject: a\n\nx\n", ["\\Seen"])
    maildir.deliver(inbox, b"Subject: b\n\nyy\n")
    DiskFolder(inbox).sync()
    code, out = run(config, "mailbox", "list", "alice")
    assert code == 0
    head, inbox_line = out.splitlines()[:2]
    assert head.split() == ["FOLDER", "MESSAGES", "UNSEEN", "SIZE", "UIDVALIDITY", "UIDNEXT"]
    cols = inbox_line.split()
    ul, _ = uidlist.read_uidlist(inbox)
    size = len(b"Subject: a\r\n\r\nx\r\n") + len(b"Subject: b\r\n\r\nyy\r\n")
    assert cols[:5] == ["INBOX", "2", "1", str(size), "B"] and cols[5:] == [str(ul.uidvalidity), "3"]
