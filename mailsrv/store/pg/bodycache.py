"""This process's copy of bodies and derived values fetched from the
database, so that the store's synchronous reads (``open_message``,
``get_cached``) never wait for the network.

Both are keyed by blob id: a blob's bytes never change, so nothing here
ever needs invalidating, whichever node changed what; entries only fall
out when their byte budget is spent (least recently used first).  Bodies
up to ``inline_max`` are kept in memory; larger ones in files under a
spool directory of this process (removed at close).  Everything runs in
the reactor thread except the file writing, done by the caller's thread
before :meth:`BodyCache.add_file`.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections import OrderedDict
from typing import BinaryIO

MEMORY_BUDGET = 64 << 20
DISK_BUDGET = 512 << 20
VALUE_BUDGET = 64 << 20


class BodyCache:
    """Whole bodies (``bytes`` or a spool file) and body prefixes (the
    first bytes of a message: what a header read needs)."""

    def __init__(self, spool_dir: str | None = None, memory_budget: int = MEMORY_BUDGET,
                 disk_budget: int = DISK_BUDGET) -> None:
        self._parent = spool_dir
        self._dir: str | None = None
        self.memory_budget = memory_budget
        self.disk_budget = disk_budget
        self._mem: OrderedDict[int, tuple[bytes, bool]] = OrderedDict()  # blob -> (bytes, complete)
        self._mem_bytes = 0
        self._files: OrderedDict[int, tuple[str, int]] = OrderedDict()  # blob -> (path, size)
        self._file_bytes = 0

    @property
    def spool_dir(self) -> str:
        """Made on first use, by the process (and user) that uses it: not
        before twistd forks or drops privileges."""
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="mailsrv-bodies-", dir=self._parent)
        return self._dir

    # --- lookups -------------------------------------------------------------------------

    def has_body(self, blob: int) -> bool:
        if blob in self._files:
            return True
        entry = self._mem.get(blob)
        return entry is not None and entry[1]

    def prefix(self, blob: int) -> bytes | None:
        """The start of the body (whole, if complete) if held in memory."""
        entry = self._mem.get(blob)
        if entry is None:
            return None
        self._mem.move_to_end(blob)
        return entry[0]

    def open(self, blob: int) -> BinaryIO | None:
        """A file object on the whole body, or None if not held whole."""
        entry = self._mem.get(blob)
        if entry is not None and entry[1]:
            self._mem.move_to_end(blob)
            return io.BytesIO(entry[0])
        f = self._files.get(blob)
        if f is not None:
            try:
                fh = open(f[0], "rb")
            except FileNotFoundError:
                self._drop_file(blob)
                return None
            self._files.move_to_end(blob)
            return fh
        return None

    # --- filling -------------------------------------------------------------------------

    def add_bytes(self, blob: int, data: bytes, complete: bool) -> None:
        if len(data) > self.memory_budget // 4:
            return
        old = self._mem.get(blob)
        if old is not None:
            if old[1] or not complete and len(old[0]) >= len(data):
                return
            self._mem_bytes -= len(old[0])
        self._mem[blob] = (data, complete)
        self._mem_bytes += len(data)
        while self._mem_bytes > self.memory_budget and self._mem:
            _b, (d, _c) = self._mem.popitem(last=False)
            self._mem_bytes -= len(d)

    def new_spool_path(self, blob: int) -> str:
        """Where a thread may write a body before :meth:`add_file`."""
        return os.path.join(self.spool_dir, f"{blob}.{os.urandom(4).hex()}.tmp")

    def add_file(self, blob: int, path: str, size: int) -> None:
        if blob in self._files or size > self.disk_budget // 2:
            _unlink(path)
            return
        self._files[blob] = (path, size)
        self._file_bytes += size
        while self._file_bytes > self.disk_budget and len(self._files) > 1:
            old = next(iter(self._files))
            self._drop_file(old)

    def _drop_file(self, blob: int) -> None:
        entry = self._files.pop(blob, None)
        if entry is not None:
            self._file_bytes -= entry[1]
            _unlink(entry[0])  # an open handle keeps reading it (POSIX)

    def close(self) -> None:
        self._mem.clear()
        self._files.clear()
        self._mem_bytes = self._file_bytes = 0
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class ValueCache:
    """Derived values (``(blob, kind) -> bytes``), least recently used out."""

    def __init__(self, budget: int = VALUE_BUDGET) -> None:
        self.budget = budget
        self._values: OrderedDict[tuple[int, str], bytes] = OrderedDict()
        self._bytes = 0

    def get(self, blob: int, kind: str) -> bytes | None:
        key = (blob, kind)
        v = self._values.get(key)
        if v is not None:
            self._values.move_to_end(key)
        return v

    def has(self, blob: int, kind: str) -> bool:
        return (blob, kind) in self._values

    def put(self, blob: int, kind: str, value: bytes) -> None:
        key = (blob, kind)
        old = self._values.pop(key, None)
        if old is not None:
            self._bytes -= len(old) + 64
        self._values[key] = value
        self._bytes += len(value) + 64
        while self._bytes > self.budget and self._values:
            _k, v = self._values.popitem(last=False)
            self._bytes -= len(v) + 64


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
