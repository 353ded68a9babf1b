"""Prometheus/OpenMetrics exposition: ``twistd mailsrv --metrics ENDPOINT``.

``prometheus_client`` writes the format (text 0.0.4, or OpenMetrics when the
scraper asks for it); this module decides what is measured:

- counted as it happens: connections (``mailsrv_connections_total`` per
  protocol and TLS), logins (``mailsrv_logins_total`` per protocol and
  result), commands with their latency (``mailsrv_command_duration_seconds``
  per protocol and command), LMTP deliveries per outcome, store operations
  with their latency (``mailsrv_store_operation_duration_seconds``, timed in
  the worker threads through :mod:`mailsrv.store.opstats`);
- read when scraped, from the live objects (nothing on the hot path):
  open connections, IDLE sessions, bytes in and out, loaded accounts and
  folders, password checks running and waiting, the worker pool's queue,
  addresses under a login penalty, and the process (RSS, open files, CPU,
  from ``prometheus_client``'s process collector).

Command names come from the protocols' own tables (an unknown command is a
parse error, never a label), so the label sets stay bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from twisted.web import resource, server

from mailsrv.ops.sessions import Registry
from mailsrv.store import opstats

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The counters and histograms; implements :class:`mailsrv.ops.sessions.MetricsSink`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Counter("mailsrv_connections", "Connections accepted", ["protocol", "tls"], registry=r)
        self.logins = Counter("mailsrv_logins", "Login attempts", ["protocol", "result"], registry=r)
        self.deliveries = Counter("mailsrv_deliveries", "LMTP deliveries per recipient", ["outcome"], registry=r)
        self.commands = Histogram("mailsrv_command_duration_seconds", "Commands and how long they took",
                                  ["protocol", "command"], buckets=LATENCY_BUCKETS, registry=r)
        self.store_ops = Histogram("mailsrv_store_operation_duration_seconds",
                                   "Store disk operations (worker threads) and how long they took",
                                   ["operation"], buckets=LATENCY_BUCKETS, registry=r)
        ProcessCollector(registry=r)
        self._command_children: dict[tuple[str, str], Any] = {}
        self._store_children: dict[str, Any] = {}
        self._store_lock = threading.Lock()

    # -- MetricsSink ----------------------------------------------------------

    def connection(self, protocol: str, tls: bool) -> None:
        self.connections.labels(protocol, "yes" if tls else "no").inc()

    def login(self, protocol: str, result: str) -> None:
        self.logins.labels(protocol, result).inc()

    def delivery(self, outcome: str) -> None:
        self.deliveries.labels(outcome).inc()

    def command(self, protocol: str, name: str, seconds: float) -> None:
        child = self._command_children.get((protocol, name))
        if child is None:
            child = self._command_children[(protocol, name)] = self.commands.labels(protocol, name)
        child.observe(seconds)

    def store_operation(self, operation: str, seconds: float) -> None:
        """The opstats sink: called from worker threads."""
        child = self._store_children.get(operation)
        if child is None:
            with self._store_lock:
                child = self._store_children.setdefault(operation, self.store_ops.labels(operation))
        child.observe(seconds)

    # -- wiring -----------------------------------------------------------------

    def watch(self, live: LiveCollector) -> None:
        self.registry.register(live)

    def start_store_timing(self) -> None:
        opstats.set_sink(self.store_operation)

    def stop_store_timing(self) -> None:
        opstats.set_sink(None)


class LiveCollector(Collector):
    """Values read from the server's objects at scrape time."""

    def __init__(self, sessions: Registry, store: Any = None, auth_pending: Callable[[], tuple[int, int]] | None = None,
                 reactor: Any = None) -> None:
        self.sessions = sessions
        self.store = store
        self.auth_pending = auth_pending
        self.reactor = reactor

    def collect(self) -> Iterator[Any]:
        yield from self._sessions()
        yield from self._store()
        yield from self._auth()

    def _sessions(self) -> Iterator[Any]:
        open_ = GaugeMetricFamily("mailsrv_connections_open", "Connections open now", labels=["protocol", "tls"])
        idle = GaugeMetricFamily("mailsrv_idle_sessions", "IMAP sessions in IDLE now")
        users = GaugeMetricFamily("mailsrv_sessions_logged_in", "Sessions logged in now", labels=["protocol"])
        rx = CounterMetricFamily("mailsrv_received_bytes", "Bytes received from clients", labels=["protocol"])
        tx = CounterMetricFamily("mailsrv_sent_bytes", "Bytes sent to clients", labels=["protocol"])
        counts: dict[tuple[str, str], int] = {}
        logged: dict[str, int] = {}
        bytes_: dict[tuple[str, str], int] = dict(self.sessions.closed_bytes)
        idling = 0
        for s in list(self.sessions.sessions.values()):
            detail = s.conn.detail()
            key = (s.protocol, "yes" if detail.get("tls", s.tls) else "no")
            counts[key] = counts.get(key, 0) + 1
            idling += bool(detail.get("idle"))
            if s.user is not None:
                logged[s.protocol] = logged.get(s.protocol, 0) + 1
            for direction, n in (("in", s.bytes_in), ("out", s.bytes_out)):
                bytes_[(s.protocol, direction)] = bytes_.get((s.protocol, direction), 0) + n
        for (protocol, tls), n in sorted(counts.items()):
            open_.add_metric([protocol, tls], n)
        for protocol, n in sorted(logged.items()):
            users.add_metric([protocol], n)
        idle.add_metric([], idling)
        for (protocol, direction), n in sorted(bytes_.items()):
            (rx if direction == "in" else tx).add_metric([protocol], n)
        penalised = GaugeMetricFamily("mailsrv_auth_penalised_addresses",
                                      "Remote addresses with recent failed logins or a ban")
        penalised.add_metric([], self.sessions.limits.tracked())
        yield from (open_, idle, users, rx, tx, penalised)

    def _store(self) -> Iterator[Any]:
        stats = getattr(self.store, "stats", None)
        if stats is None:
            return
        values = stats()
        accounts = GaugeMetricFamily("mailsrv_accounts_loaded", "User accounts held in memory")
        accounts.add_metric([], values.get("accounts", 0))
        folders = GaugeMetricFamily("mailsrv_folders_loaded", "Folders held in memory (open or kept warm)")
        folders.add_metric([], values.get("folders", 0))
        yield from (accounts, folders)

    def _auth(self) -> Iterator[Any]:
        if self.auth_pending is not None:
            running, waiting = self.auth_pending()
            g = GaugeMetricFamily("mailsrv_auth_checks", "Password checks by state", labels=["state"])
            g.add_metric(["running"], running)
            g.add_metric(["waiting"], waiting)
            yield g
        pool = self.reactor.getThreadPool() if self.reactor is not None else None
        if pool is not None:
            q = GaugeMetricFamily("mailsrv_threadpool_queue", "Work waiting for a worker thread")
            q.add_metric([], pool.q.qsize())
            busy = GaugeMetricFamily("mailsrv_threadpool_busy", "Worker threads busy")
            busy.add_metric([], len(pool.working))
            yield from (q, busy)


class MetricsPage(resource.Resource):
    """``GET /metrics`` (any path, really): the exposition, in the format
    the scraper's Accept header asks for."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Any) -> bytes:
        accept = request.getHeader("accept") or ""
        encoder, content_type = choose_encoder(accept)
        request.setHeader(b"Content-Type", content_type.encode("ascii"))
        return bytes(encoder(self.registry))


class _QuietSite(server.Site):
    """A scrape every 15 s is not worth an access-log line."""

    def log(self, request: Any) -> None:
        pass


def site(metrics: Metrics) -> server.Site:
    s = _QuietSite(MetricsPage(metrics.registry))
    s.displayTracebacks = False
    s.noisy = False
    return s
