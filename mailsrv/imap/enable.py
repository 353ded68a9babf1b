"""ENABLE (RFC 5161): which capabilities a session may switch on, and what
switching each on does.

:data:`ENABLERS` maps a capability to a function that switches it on for
the session and says whether it did; the ENABLE handler answers ``ENABLED``
with those that were switched on now (one already on is not repeated).
An extension that can be enabled adds one entry.
"""

from __future__ import annotations

from collections.abc import Callable

from mailsrv.imap import rev2, utf8
from mailsrv.imap.context import Context

ENABLERS: dict[str, Callable[[Context], bool]] = {
    rev2.CAPABILITY.upper(): rev2.enable,
    utf8.CAPABILITY: utf8.enable,
}
CANONICAL = {rev2.CAPABILITY.upper(): rev2.CAPABILITY}


def enable(ctx: Context, capabilities: list[str]) -> list[str]:
    """Switch on what can be (names upper-case, as parsed); returns the
    names switched on now, as advertised."""
    done: list[str] = []
    for cap in capabilities:
        name = CANONICAL.get(cap, cap)
        fn = ENABLERS.get(cap)
        if fn is None or name in ctx.enabled:
            continue
        if fn(ctx):
            ctx.enabled.add(name)
            done.append(name)
    return done
