"""Shared bits of the store tests."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

from twisted.trial import unittest

from mailsrv.store import Store

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")


class Recorder:
    """An IFolderListener that writes down what it is told."""

    def __init__(self) -> None:
        self.events = []

    def messages_added(self, folder, uids):
        self.events.append(("added", list(uids)))

    def flags_changed(self, folder, uids):
        self.events.append(("flags", list(uids)))

    def messages_expunged(self, folder, uids):
        self.events.append(("expunged", list(uids)))

    def take(self):
        ev, self.events = self.events, []
        return ev


class StoreCase(unittest.TestCase):
    """A fresh data dir and Store per test; caches flushed at the end."""

    def setUp(self) -> None:
        self.data = tempfile.mkdtemp(prefix="mailsrv-store-test-")
        self.addCleanup(shutil.rmtree, self.data, True)
        self.store = Store(self.data)
        self.addCleanup(self.store.close)

    def fresh_store(self) -> Store:
        """A second process's view: a new Store on the same data dir."""
        s = Store(self.data)
        self.addCleanup(s.close)
        return s

    def install_fixture(self, user: str = "testuser") -> str:
        dest = os.path.join(self.data, user, "Maildir")
        shutil.copytree(os.path.join(FIXTURES, "dovecot-maildir"), dest)
        for root, _dirs, files in os.walk(dest):
            for f in files:
                if f == ".keep":
                    os.unlink(os.path.join(root, f))
        # Internal dates are file mtimes, which git does not keep: put back Dovecot's.
        with open(os.path.join(FIXTURES, "dovecot-maildir.mtimes.json"), encoding="utf-8") as fh:
            for rel, mtime in json.load(fh).items():
                os.utime(os.path.join(dest, rel), (mtime, mtime))
        return dest


def files_in(folder_dir: str, sub: str = "cur") -> list:
    return sorted(n for n in os.listdir(os.path.join(folder_dir, sub)) if not n.startswith("."))
