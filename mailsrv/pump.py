"""One command pump for every protocol (IMAP, POP3, LMTP).

Each protocol has a sans-IO source that turns received bytes into events
(commands, continuation lines, parse errors) and keeps the bytes it has not
consumed.  The pump pulls one event at a time and hands it to the
protocol's ``run``; while the command that event started is still running
(a store call, a password check, a streamed body), no further command is
pulled, so pipelined commands are answered in order.  A running command
that needs the client's next line (a SASL response, IMAP's ``DONE``) asks
for it with :meth:`CommandPump.next_event`.

Input back-pressure: when more than ``high_water`` bytes wait unparsed, the
transport stops reading; it reads again once the backlog is under half of
that.  A client that pipelines faster than we answer costs bounded memory.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

HIGH_WATER = 1 << 20


class EventSource(Protocol):
    """What the pump reads from: a sans-IO parser."""

    def next_event(self) -> Any | None:
        """The next complete event, or None when more input is needed."""

    def buffered(self) -> int:
        """Bytes received and not yet consumed."""


class Reading(Protocol):
    """The part of a transport the pump steers."""

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...


Run = Callable[[Any], "Coroutine[Any, Any, Any] | defer.Deferred[Any] | None"]


class CommandPump:
    """Serialises a protocol's commands over its event source."""

    def __init__(self, source: EventSource, run: Run, transport: Reading,
                 high_water: int = HIGH_WATER) -> None:
        self.source = source
        self.transport = transport
        self._run = run
        self.high_water = high_water
        self.busy = False
        self.closed = False
        self._pumping = False
        self._paused = False
        self._waiter: defer.Deferred[Any] | None = None

    def pump(self) -> None:
        """Dispatch what can be dispatched now; call after input arrives."""
        if self._pumping or self.closed:
            return
        self._pumping = True
        try:
            while not self.closed and (not self.busy or self._waiter is not None):
                ev = self.source.next_event()
                if ev is None:
                    break
                if self._waiter is not None:
                    d, self._waiter = self._waiter, None
                    d.callback(ev)
                else:
                    self._start(ev)
        finally:
            self._pumping = False
        self._flow_control()

    def next_event(self) -> defer.Deferred[Any]:
        """For the running command: fires with the next event from the
        source (the caller has put the source in the right mode first)."""
        if self._waiter is not None:
            raise RuntimeError("already waiting for an event")
        d: defer.Deferred[Any] = defer.Deferred()
        self._waiter = d
        self.pump()
        return d

    def close(self) -> None:
        """The connection is gone: a command waiting for input gets
        ConnectionError, nothing more is dispatched."""
        self.closed = True
        if self._waiter is not None:
            d, self._waiter = self._waiter, None
            d.errback(ConnectionError("connection lost"))

    def _start(self, ev: Any) -> None:
        result = self._run(ev)
        if result is None:
            return
        d = result if isinstance(result, defer.Deferred) else defer.ensureDeferred(result)
        self.busy = True
        d.addErrback(self._unhandled)
        d.addBoth(self._finished)  # at once if it already fired: the loop in pump() goes on

    def _finished(self, _: object) -> None:
        self.busy = False
        self.pump()  # a no-op while pump() is on the stack

    def _unhandled(self, failure: Failure) -> None:
        log.failure("command failed outside its protocol's error handling", failure)

    def _flow_control(self) -> None:
        if self.closed:
            return
        waiting = self.source.buffered()
        if waiting > self.high_water and not self._paused:
            self._paused = True
            self.transport.pauseProducing()
        elif waiting <= self.high_water // 2 and self._paused:
            self._paused = False
            self.transport.resumeProducing()
