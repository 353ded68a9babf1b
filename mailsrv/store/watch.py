"""Instant notice of changes made outside the server, through inotify.

Postfix's ``virtual`` delivery, Dovecot on the same Maildir, ``mailsrv
deliver`` or a script renaming files all change ``new/`` and ``cur/``
behind the server's back.  Folders that have listeners (selected IMAP
sessions, IDLE) get an inotify watch on both directories; an event there
schedules one :meth:`~mailsrv.store.folder.Folder.refresh` a few
milliseconds later (a burst of events is one refresh, and a refresh that
is running when more events come is followed by exactly one more), which
tells the listeners.  Nothing else changes: a folder without a watch
(inotify missing, its watch limit reached) is still refreshed by the
per-command check and the IDLE poll, as before.

Twisted's :class:`~twisted.internet.inotify.INotify` closes its whole
descriptor when any watched directory is deleted (``IN_DELETE_SELF``): one
deleted folder would silence every other.  :class:`_Notifier` reads the
events itself and only forgets that one watch.
"""

from __future__ import annotations

import struct
from typing import Any

from twisted.logger import Logger
from twisted.python.filepath import FilePath

log = Logger(namespace="mailsrv.store")

DELAY = 0.005  # seconds from the first event to the refresh: one refresh per burst
SUBDIRS = ("new", "cur")
_Q_OVERFLOW_WD = 0xFFFFFFFF


def _inotify() -> Any:
    """twisted.internet.inotify, or None where it cannot work (not Linux)."""
    try:
        from twisted.internet import inotify
    except (ImportError, OSError):
        return None
    return inotify


class FolderWatcher:
    """One inotify descriptor for the process; a watch pair per folder with listeners."""

    def __init__(self, reactor: Any, delay: float = DELAY) -> None:
        self.reactor = reactor
        self.delay = delay
        self._notifier: Any = None
        self._mod = _inotify()
        self._wds: dict[int, Any] = {}  # watch descriptor -> folder
        self._paths: dict[int, list[tuple[int, FilePath[Any]]]] = {}  # id(folder) -> [(wd, path)]
        self._pending: dict[int, Any] = {}  # id(folder) -> DelayedCall
        self._running: set[int] = set()
        self._again: set[int] = set()
        self._said_full = False
        self.events = 0  # inotify events seen (tests, benchmarks)
        self._start()

    def _start(self) -> None:
        if self._mod is None:
            log.info("inotify is not available: outside changes are noticed by polling")
            return
        try:
            self._notifier = _Notifier(self, self.reactor)
            self._notifier.startReading()
        except Exception as e:  # no inotify instance left (fs.inotify.max_user_instances), not Linux
            self._notifier = None
            log.warn("inotify unavailable ({e}): outside changes are noticed by polling", e=e)

    @property
    def available(self) -> bool:
        return self._notifier is not None

    def watching(self, folder: Any) -> bool:
        return id(folder) in self._paths

    def watch(self, folder: Any) -> bool:
        """Watch ``folder``'s new/ and cur/; False if it cannot be watched
        (the folder is then polled as before)."""
        if self._notifier is None or id(folder) in self._paths:
            return self._notifier is not None
        added: list[tuple[int, FilePath[Any]]] = []
        mask = self._mod.IN_CREATE | self._mod.IN_MOVED_TO | self._mod.IN_MOVED_FROM | self._mod.IN_DELETE \
            | self._mod.IN_ONLYDIR
        for sub in SUBDIRS:
            path = FilePath(folder.path).child(sub)
            try:
                wd = self._notifier.watch(path, mask=mask)
            except Exception as e:  # INotifyError: ENOSPC (fs.inotify.max_user_watches), ENOENT
                self._drop(added)
                if not self._said_full:
                    self._said_full = True
                    log.warn("cannot watch {path} ({e}); folders without a watch are polled "
                             "(raise fs.inotify.max_user_watches?)", path=path.path, e=e)
                return False
            added.append((wd, path))
            self._wds[wd] = folder
        self._paths[id(folder)] = added
        folder.instant_notice = True
        return True

    def unwatch(self, folder: Any) -> None:
        if id(folder) in self._paths:
            folder.instant_notice = False
        self._drop(self._paths.pop(id(folder), []))
        call = self._pending.pop(id(folder), None)
        if call is not None and call.active():
            call.cancel()

    def _drop(self, watches: list[tuple[int, FilePath[Any]]]) -> None:
        for wd, path in watches:
            self._wds.pop(wd, None)
            if self._notifier is not None:
                try:
                    self._notifier.ignore(path)
                except (KeyError, OSError, Exception):  # already gone with its directory
                    pass

    def close(self) -> None:
        for call in self._pending.values():
            if call.active():
                call.cancel()
        self._pending.clear()
        if self._notifier is not None:
            self._notifier.loseConnection()
            self._notifier = None

    # -- events ------------------------------------------------------------------

    def event(self, wd: int, mask: int) -> None:
        """From the notifier: something changed in a watched directory."""
        self.events += 1
        if wd == _Q_OVERFLOW_WD:  # the kernel dropped events: look at everything
            for folder in {id(f): f for f in self._wds.values()}.values():
                self._schedule(folder)
            return
        folder = self._wds.get(wd)
        if folder is None:
            return
        if mask & (self._mod.IN_IGNORED | self._mod.IN_DELETE_SELF):
            self._gone(wd, folder)
        self._schedule(folder)

    def _gone(self, wd: int, folder: Any) -> None:
        """The kernel dropped this watch (its directory went away)."""
        self._wds.pop(wd, None)
        watches = self._paths.get(id(folder), [])
        self._notifier.forget(wd)
        self._paths[id(folder)] = [(w, p) for w, p in watches if w != wd]
        folder.instant_notice = False  # half its watches are gone: poll it again

    def _schedule(self, folder: Any) -> None:
        key = id(folder)
        if key in self._running:
            self._again.add(key)
        elif key not in self._pending:
            self._pending[key] = self.reactor.callLater(self.delay, self._refresh, folder)

    def _refresh(self, folder: Any) -> None:
        key = id(folder)
        self._pending.pop(key, None)
        if not folder.has_listeners():
            return
        self._running.add(key)

        def done(result: object) -> None:
            self._running.discard(key)
            if key in self._again:
                self._again.discard(key)
                self._schedule(folder)

        def failed(f: Any) -> None:
            if f.check(OSError):  # the folder went away under us (removed by another program)
                log.warn("refresh of {name} after an inotify event failed: {err}", name=folder.name,
                         err=f.getErrorMessage())
            else:
                log.failure("refresh of {name} after an inotify event failed", f, name=folder.name)

        d = folder.refresh()
        d.addErrback(failed)
        d.addBoth(done)


def _notifier_class() -> Any:
    mod = _inotify()
    return mod.INotify if mod is not None else object


class _Notifier(_notifier_class()):  # type: ignore[misc]
    """INotify that hands raw events to the watcher and survives a deleted
    directory (see the module docstring)."""

    _buffer: bytes

    def __init__(self, watcher: FolderWatcher, reactor: Any) -> None:
        super().__init__(reactor)
        self.watcher = watcher

    def _doRead(self, in_: bytes) -> None:
        self._buffer += in_
        while len(self._buffer) >= 16:
            wd, mask, _cookie, size = struct.unpack("=LLLL", self._buffer[0:16])
            self._buffer = self._buffer[16 + size:]
            self.watcher.event(wd, mask)

    def forget(self, wd: int) -> None:
        """The kernel removed watch ``wd``: forget it without asking the kernel."""
        iwp = self._watchpoints.pop(wd, None)
        if iwp is not None:
            self._watchpaths.pop(iwp.path, None)
