"""``mailsrv deliver`` (mailsrv.delivery.deliver_command): exit codes and what lands on disk."""

from __future__ import annotations

import io
import os

import pytest

from mailsrv.config import Config
from mailsrv.delivery import (
    EX_DATAERR,
    EX_NOUSER,
    EX_OK,
    EX_TEMPFAIL,
    EX_USAGE,
    DeliveryFailed,
    deliver_command,
    find_user,
    normalize_flags,
    spool_message,
)
from mailsrv.store import layout

MSG = b"From: a@example.org\nSubject: hello\n\nbody\n"


@pytest.fixture
def cfg(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "passwd").write_text("# users\nalice:{PLAIN}x::::::\nBob:{PLAIN}y\n\n")
    return Config(data_dir=str(data), lmtp_max_size=10_000)


def run(cfg, name, data, folder=None, flags=()):
    err = io.StringIO()
    code = deliver_command(cfg, name, folder, list(flags), io.BytesIO(data), stderr=err)
    return code, err.getvalue()


def files(path, sub):
    d = os.path.join(path, sub)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


# -- no store needed ------------------------------------------------------


def test_unknown_user(cfg):
    assert run(cfg, "nobody", MSG) == (EX_NOUSER, "mailsrv deliver: unknown user 'nobody'\n")


def test_missing_password_file_is_temporary(cfg, tmp_path):
    cfg.passwd_file = str(tmp_path / "nope")
    code, err = run(cfg, "alice", MSG)
    assert code == EX_TEMPFAIL and "no password file" in err


def test_user_name_forms(cfg):
    assert find_user(cfg.passwd_path, "alice") == "alice"
    assert find_user(cfg.passwd_path, "ALICE") == "alice"
    assert find_user(cfg.passwd_path, "bob") == "Bob"
    assert find_user(cfg.passwd_path, "alice+lists@example.org") == "alice"
    with pytest.raises(DeliveryFailed):
        find_user(cfg.passwd_path, "users")  # the comment line is no user


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty message"),
        (b"\n\n  \n", "empty message"),
        (b"From sender Mon Jan  1 00:00:00 2024\n", "empty message"),
        (b"\x00\x01\x02binary garbage\n", "message does not start with a header field"),
        (b"just some text\n\nmore\n", "message does not start with a header field"),
        (b"Subject: a\x00b\n\nbody\n", "NUL byte in the message header"),
        (b"Subject: x\n\n" + b"y" * 10_000, "message too large (over 10000 bytes)"),
    ],
)
def test_bad_input(cfg, data, reason):
    assert run(cfg, "alice", data) == (EX_DATAERR, f"mailsrv deliver: {reason}\n")


def test_bad_flags(cfg):
    code, err = run(cfg, "alice", MSG, flags=["\\Recent"])
    assert code == EX_USAGE and "\\Recent" in err
    assert run(cfg, "alice", MSG, flags=["bad(kw"])[0] == EX_USAGE
    assert normalize_flags(["\\seen \\FLAGGED", "$Label1,\\Seen"]) == ["\\Seen", "\\Flagged", "$Label1"]


def test_spool_streams_and_strips_from_line():
    data = b"From someone Mon Jan  1 00:00:00 2024\nSubject: x\n\n" + b"z" * 3_000_000
    with spool_message(io.BytesIO(data), limit=0) as f:
        assert f._rolled  # past 1 MiB it is on disk, not in memory
        assert f.read() == data[data.index(b"\n") + 1 :]


def test_unreadable_stdin_is_temporary(cfg):
    class Broken(io.RawIOBase):
        def readinto(self, b):
            raise OSError(5, "Input/output error")

    err = io.StringIO()
    assert deliver_command(cfg, "alice", None, [], Broken(), stderr=err) == EX_TEMPFAIL
    assert "Input/output error" in err.getvalue()


# -- with the real store (mailsrv.store.maildir.deliver) ---------------------


def test_delivered_byte_exact(cfg):
    data = MSG + b"\r\nmixed\r\nline ends\n" + bytes(range(256))
    assert run(cfg, "alice", data) == (EX_OK, "")
    inbox = layout.folder_dir(cfg.data_dir, "alice", "INBOX")
    (name,) = files(inbox, "new")
    with open(os.path.join(inbox, "new", name), "rb") as f:
        assert f.read() == data
    assert files(inbox, "tmp") == []


def test_flags_go_to_cur(cfg):
    assert run(cfg, "Bob", MSG, flags=["\\Seen", "\\Flagged"]) == (EX_OK, "")
    inbox = layout.folder_dir(cfg.data_dir, "Bob", "INBOX")
    (name,) = files(inbox, "cur")
    assert name.endswith(":2,FS")


def test_missing_folder_falls_back_to_inbox(cfg):
    code, err = run(cfg, "alice", MSG, folder="Nope")
    assert code == EX_OK and "does not exist; delivered to INBOX" in err
    assert run(cfg, "alice", MSG, folder="../../etc*")[0] == EX_OK  # invalid: cannot exist
    assert len(files(layout.folder_dir(cfg.data_dir, "alice", "INBOX"), "new")) == 2
    assert run(cfg, "alice", MSG, folder="inbox") == (EX_OK, "")


def test_existing_folder(cfg):
    lists = layout.folder_dir(cfg.data_dir, "alice", "Lists")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(lists, sub))
    assert run(cfg, "alice", MSG, folder="Lists") == (EX_OK, "")
    assert len(files(lists, "new")) == 1
    assert files(layout.folder_dir(cfg.data_dir, "alice", "INBOX"), "new") == []


def test_disk_trouble_is_temporary(cfg):
    inbox = layout.folder_dir(cfg.data_dir, "alice", "INBOX")
    os.makedirs(os.path.join(inbox, "cur"))
    os.makedirs(os.path.join(inbox, "new"))
    with open(os.path.join(inbox, "tmp"), "w"):
        pass  # tmp/ is a file: the write fails (permissions would not stop root)
    code, err = run(cfg, "alice", MSG)
    assert code == EX_TEMPFAIL and err.startswith("mailsrv deliver: ") and err.count("\n") == 1
    assert files(inbox, "new") == []
