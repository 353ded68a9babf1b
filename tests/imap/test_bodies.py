"""mailsrv.imap.bodies: which payload a body gets (file range, converted
bytes, stream), byte-exact partials, and the fallback to open_message for a
folder without files or a file that moved."""

from __future__ import annotations

import io
import os

import pytest

from mailsrv.imap import bodies
from mailsrv.imap.bodies import Body, BodyStream
from mailsrv.store.interfaces import MessageGone, MessageInfo
from mailsrv.wire import FileRange

LF = b"Subject: x\n\nline one\n.dot line\nlast\n"
CRLF = LF.replace(b"\n", b"\r\n")


class Files:
    """A folder whose messages are files (the Maildir store's shape)."""

    def __init__(self, tmp: str, messages: dict[int, bytes]) -> None:
        self.paths: dict[int, str] = {}
        self.opened: list[int] = []
        for uid, data in messages.items():
            self.paths[uid] = os.path.join(tmp, str(uid))
            with open(self.paths[uid], "wb") as f:
                f.write(data)

    def message_path(self, uid: int) -> str:
        if uid not in self.paths:
            raise MessageGone(str(uid))
        return self.paths[uid]

    def open_message(self, uid: int) -> io.BufferedReader:
        self.opened.append(uid)
        return open(self.paths[uid], "rb")


class NoFiles:
    """A folder of another backend: no message_path."""

    def __init__(self, messages: dict[int, bytes]) -> None:
        self.messages = messages

    def open_message(self, uid: int) -> io.BytesIO:
        if uid not in self.messages:
            raise MessageGone(str(uid))
        return io.BytesIO(self.messages[uid])


def info(uid: int, size: int) -> MessageInfo:
    return MessageInfo(uid, "k%d" % uid, size, 0.0)


def payload_bytes(b: Body) -> bytes:
    p = b.payload
    if isinstance(p, FileRange):
        return os.pread(p.fd, p.length, p.offset)
    assert isinstance(p, (bytes, memoryview))
    return bytes(p)


@pytest.mark.parametrize("stored", [LF, CRLF])
@pytest.mark.parametrize("sendfile", [False, True])
@pytest.mark.parametrize("partial", [None, (0, 5), (3, 1000), (len(CRLF) - 2, 9), (len(CRLF) + 4, 3)])
def test_payload_is_the_crlf_form_whole_or_partial(tmp_path, stored, sendfile, partial):
    folder = Files(str(tmp_path), {1: stored})
    b = bodies.whole(folder, info(1, len(CRLF)), b"BODY[] ", partial, sendfile)  # type: ignore[arg-type]
    want = CRLF if partial is None else CRLF[partial[0]:partial[0] + partial[1]]
    assert b.head == b"BODY[] {%d}\r\n" % len(want)
    assert payload_bytes(b) == want
    if sendfile and stored == CRLF:
        assert isinstance(b.payload, FileRange)  # straight from the file
    else:
        assert not isinstance(b.payload, FileRange)
    b.close()


def test_a_file_that_moved_and_a_folder_without_files_use_open_message(tmp_path):
    folder = Files(str(tmp_path), {1: LF})
    folder.paths[1] = str(tmp_path / "moved-away")
    with pytest.raises(FileNotFoundError):  # open_message is asked, and it cannot find it either
        bodies.whole(folder, info(1, len(CRLF)), b"BODY[] ", None, True)  # type: ignore[arg-type]
    assert folder.opened == [1]
    b = bodies.whole(NoFiles({1: LF}), info(1, len(CRLF)), b"RFC822 ", (2, 4), True)  # type: ignore[arg-type]
    assert b.head == b"RFC822 {4}\r\n" and payload_bytes(b) == CRLF[2:6]
    with pytest.raises(MessageGone):
        bodies.whole(NoFiles({}), info(2, 10), b"BODY[] ", None, False)  # type: ignore[arg-type]


def test_big_messages_needing_conversion_stream(tmp_path, monkeypatch):
    monkeypatch.setattr(bodies, "STREAM_MIN", 10)
    folder = Files(str(tmp_path), {1: LF, 2: CRLF})
    b = bodies.whole(folder, info(1, len(CRLF)), b"BODY[] ", (4, 7), True)  # type: ignore[arg-type]
    assert isinstance(b.payload, BodyStream) and (b.payload.origin, b.payload.length) == (4, 7)
    assert bodies.response_pieces(1, [b]) is None  # written by write_stream
    assert b.head == b"BODY[] {7}\r\n"
    b.close()
    assert b.payload.file.closed
    b = bodies.whole(folder, info(2, len(CRLF)), b"BODY[] ", None, True)  # type: ignore[arg-type]
    assert isinstance(b.payload, FileRange)  # stored with CRLF: sendfile whatever the size
    b.close()
    assert b.payload.fd == -1


def test_response_pieces_keep_the_body_apart(tmp_path):
    folder = Files(str(tmp_path), {1: CRLF})
    b = bodies.whole(folder, info(1, len(CRLF)), b"BODY[] ", None, True)  # type: ignore[arg-type]
    built = bodies.response_pieces(7, [b"UID 1", b, b"FLAGS (\\Seen)"])
    assert built is not None
    pieces, total = built
    assert pieces[0] == b"* 7 FETCH (UID 1 BODY[] {%d}\r\n" % len(CRLF)
    assert pieces[1] is b.payload
    assert pieces[2] == b" FLAGS (\\Seen))\r\n"
    assert total == len(pieces[0]) + len(CRLF) + len(pieces[2])
    b.close()
