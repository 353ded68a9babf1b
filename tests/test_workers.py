"""The worker process manager: N processes share the parent's listening
sockets, a dead worker is replaced, SIGTERM stops them all, a worker whose
parent vanished stops, HAProxy's PROXY header gives the real client
address, and the Maildir backend is refused."""

from __future__ import annotations

import os
import signal
import socket
import sys

from twisted.internet import defer, reactor, task, threads
from twisted.trial import unittest

from mailsrv import workers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ask(port_or_path, header: bytes = b"") -> str:
    family = socket.AF_UNIX if isinstance(port_or_path, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(port_or_path if family == socket.AF_UNIX else ("127.0.0.1", port_or_path))
        if header:
            s.sendall(header)
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(100)
            if not chunk:
                break
            data += chunk
    return data.decode().strip()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@defer.inlineCallbacks
def until(cond, timeout=15.0):
    start = reactor.seconds()
    while not cond():
        if reactor.seconds() - start > timeout:
            raise AssertionError("timed out")
        yield task.deferLater(reactor, 0.05, lambda: None)


class WorkerManagerTests(unittest.TestCase):
    timeout = 90

    def setUp(self):
        self.sock_path = os.path.join(self.mktemp() + "-dir", "lmtp.sock")
        os.makedirs(os.path.dirname(self.sock_path))
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.manager = workers.WorkerManager(
            [("imap", "tcp:0:interface=127.0.0.1"), ("pop3", "haproxy:tcp:0:interface=127.0.0.1"),
             ("lmtp", f"unix:{self.sock_path}:mode=600")],
            2, {"backend": "postgresql"}, argv=[sys.executable, "-m", "tests.worker_echo"], env=env)
        self.manager.privilegedStartService()
        self.manager.startService()
        self.addCleanup(self._stop)
        self.imap = self.manager.sockets[0][1].getsockname()[1]
        self.pop3 = self.manager.sockets[1][1].getsockname()[1]

    def _stop(self):
        if self.manager.running:
            return self.manager.stopService()
        return None

    @defer.inlineCallbacks
    def _pids_seen(self, n=20):
        """Who answered ``n`` connections made at once."""
        from concurrent.futures import ThreadPoolExecutor

        def burst():
            with ThreadPoolExecutor(n) as pool:
                return list(pool.map(lambda _: ask(self.imap), range(n)))

        answers = yield threads.deferToThread(burst)
        return {int(a.split()[1]) for a in answers}

    @defer.inlineCallbacks
    def test_workers_share_sockets_restart_and_stop(self):
        yield until(lambda: len(self.manager.pids()) == 2)
        seen = set()
        for _ in range(10):
            seen |= yield self._pids_seen()
            if len(seen) == 2:
                break
        self.assertEqual(seen, set(self.manager.pids()))  # both take connections
        unix = yield threads.deferToThread(ask, self.sock_path)
        self.assertTrue(unix.startswith("lmtp "))
        victim = self.manager.pids()[0]
        os.kill(victim, signal.SIGKILL)
        yield until(lambda: len(self.manager.pids()) == 2 and victim not in self.manager.pids())
        self.assertEqual(self.manager.restarts, 1)
        pids = list(self.manager.pids())
        yield self.manager.stopService()
        self.assertFalse([p for p in pids if alive(p)])
        self.assertEqual(self.manager.pids(), [])

    @defer.inlineCallbacks
    def test_proxy_protocol_gives_the_client_address(self):
        yield until(lambda: len(self.manager.pids()) == 2)
        answer = yield threads.deferToThread(ask, self.pop3, b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 110\r\n")
        self.assertEqual(answer.split()[0::2], ["pop3", "203.0.113.7"])
        v2 = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + (12).to_bytes(2, "big")
              + socket.inet_aton("198.51.100.9") + socket.inet_aton("127.0.0.1")
              + (41000).to_bytes(2, "big") + (110).to_bytes(2, "big"))
        answer = yield threads.deferToThread(ask, self.pop3, v2)
        self.assertEqual(answer.split()[2], "198.51.100.9")

    @defer.inlineCallbacks
    def test_worker_stops_when_its_parent_vanishes(self):
        yield until(lambda: len(self.manager.pids()) == 2)
        pids = self.manager.pids()
        # what a SIGKILLed parent leaves: the pipes to the workers closed, nobody restarting them
        self.manager._stopping = True
        for p in list(self.manager.procs.values()):
            p.closeStdin()
        yield until(lambda: not any(alive(p) for p in pids))


class RefusalTests(unittest.TestCase):
    def test_maildir_backend_refused_in_one_line(self):
        e = self.assertRaises(workers.WorkerConfigError, workers.check_backend, "maildir")
        self.assertIn("postgresql", str(e))
        self.assertNotIn("\n", str(e))
        workers.check_backend("postgresql")

    def test_only_bindable_endpoints(self):
        self.assertRaises(workers.WorkerConfigError, workers.parse_listener, "imaps", "ssl:993:privateKey=k.pem")
        lst, opts, args = workers.parse_listener("imap", r"haproxy:tcp6:143:interface=\:\:1")
        self.assertTrue(lst.haproxy)
        self.assertEqual((args, opts), (["143"], {"interface": "::1"}))
