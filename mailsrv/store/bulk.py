"""Building 100,000 objects at once without paying the cyclic garbage
collector for it.

Opening a big folder allocates two objects per message (its scanned
:class:`~mailsrv.store.entry.Entry` and its message object) in a few tens
of milliseconds.  Each 700 allocations start a collection, and a growing
heap makes some of them full ones that walk every live object again: for
a 100k folder that was half the time of an open.  None of these objects
form reference cycles, so the collector is paused while they are built
and resumes afterwards (a deferred collection, not a skipped one).

The pause is process-wide (CPython has one collector), counted, so
overlapping bulk builds in several threads resume it only when the last
one ends, and it never turns on a collector someone else had turned off.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_resume = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the ``with`` block."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()
