"""Operating the server: what an administrator sees and controls at 3 a.m.

Modules, from the start of the process to its sessions:

- checks: the start-up checks (listeners, TLS material, data folder,
  ownership after ``--uid``) that ``twistd mailsrv`` runs before it binds
  anything and ``mailsrv config check`` prints; one line per problem.
- endpoint: reading Twisted endpoint strings well enough to explain a bad
  one and to try a port before the real bind.
- sessions: the live sessions of the process (who, since when, what), the
  login and session-end log lines, the per-session hooks the protocols call
  (:class:`~mailsrv.ops.sessions.SessionHooks`).
- limits: per-address and per-user connection limits, the growing delay
  and short ban after failed logins.
- conn: the wrapping factory every listener gets: bytes counted, limits
  applied at connect, the login deadline, kicks.
- adminsock: the admin UNIX socket (``mailsrv who`` / ``mailsrv kick``).
- metrics: Prometheus/OpenMetrics exposition (``--metrics ENDPOINT``).
- logjson: a JSON-lines log observer for ``twistd --logger``.
- process: the file-descriptor limit, raised at start.

The protocols know only :class:`~mailsrv.ops.sessions.SessionHooks` (a
no-op object unless the connection came through a listener), so protocol
tests that build a protocol on a StringTransport need none of this.
"""
