"""DiskFolder.add when the uid list changed under it: the full scan it
falls back to keeps the result's order aligned with its entries, even for
a file someone removed between its rename and the scan."""

import os

from mailsrv.store.diskfolder import DiskFolder, NewFile
from mailsrv.store.maildir import write_tmp


def test_order_stays_aligned_when_a_placed_file_vanishes(tmp_path, monkeypatch):
    path = str(tmp_path / "INBOX")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub))
    disk = DiskFolder(path)
    disk.sync()
    items = []
    for body in (b"Subject: a\n\nx\n", b"Subject: b\n\ny\n", b"Subject: c\n\nz\n"):
        tmp, size, vsize = write_tmp(path, body)
        items.append(NewFile(tmp, "rename", frozenset({"\\Seen"}), size, vsize))
    monkeypatch.setattr(disk.uids, "reload", lambda: True)  # another process's hand: full scan
    real_scan = disk._sync_locked

    def scan_after_a_removal():
        cur = os.path.join(path, "cur")
        (victim,) = [n for n in os.listdir(cur) if open(os.path.join(cur, n), "rb").read().startswith(b"Subject: b")]
        os.unlink(os.path.join(cur, victim))  # mutt, rm: no lock
        return real_scan()

    monkeypatch.setattr(disk, "_sync_locked", scan_after_a_removal)
    res = disk.add(items)
    assert res.full is not None
    assert res.order == [0, 2] and len(res.entries) == 2
    bodies = [open(os.path.join(path, e.sub, f"{e.key}:{e.info}"), "rb").read() for e in res.entries]
    assert bodies == [b"Subject: a\n\nx\n", b"Subject: c\n\nz\n"]
