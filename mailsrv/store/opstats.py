"""How long the store's disk operations take, for whoever wants to know.

The worker-thread side of each folder operation (open, sync, add, flags,
expunge...) is wrapped by :func:`timed`; when a sink is installed (the
server's metrics, :mod:`mailsrv.ops.metrics`) each run reports
``(operation, seconds)`` to it, from the worker thread.  Without a sink the
wrapper costs one global lookup.  Backend-neutral: nothing here knows about
Maildir or Prometheus.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
Sink = Callable[[str, float], None]

_sink: Sink | None = None


def set_sink(sink: Sink | None) -> None:
    """Report every timed operation to ``sink`` (None: stop).  The sink is
    called from worker threads and must be thread-safe."""
    global _sink
    _sink = sink


def timed(operation: str) -> Callable[[F], F]:
    """Decorate a (blocking) store operation so its duration is reported."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            sink = _sink
            if sink is None:
                return fn(*args, **kwargs)
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                sink(operation, time.perf_counter() - started)
        return run  # type: ignore[return-value]
    return wrap
