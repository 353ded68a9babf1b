"""JSON-lines logging for ``twistd --logger``.

``twistd -n --logger mailsrv.ops.logjson.observer mailsrv ...`` writes one
JSON object per event instead of text: every field a ``twisted.logger``
event carries (``user``, ``rip``, ``method``, ``session``, ``bytes_in``...
on the login and session lines of :mod:`mailsrv.ops.sessions`) arrives as
data, for Loki, Elasticsearch or ``jq``.  Output goes to the file named by
``MAILSRV_JSON_LOG`` (appended), else to standard output (the journal
under systemd).  The format is Twisted's own (``eventAsJSON``), one event
per line; ``twisted.logger.eventsFromJSONLogFile`` reads it back.
"""

from __future__ import annotations

import os
import sys

from twisted.logger import ILogObserver, jsonFileLogObserver

ENV = "MAILSRV_JSON_LOG"


def observer() -> ILogObserver:
    """The log observer factory twistd's ``--logger`` option names."""
    path = os.environ.get(ENV)
    out = open(path, "a", encoding="utf-8") if path else sys.stdout  # open for the life of the process
    return jsonFileLogObserver(out, recordSeparator="")
