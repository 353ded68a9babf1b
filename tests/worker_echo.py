"""A minimal worker for tests/test_workers.py: adopts the parent's
sockets through mailsrv.workers.run_worker and answers every connection
(after blocking for a moment, as a busy worker would) with its pid and
the peer address it sees (the real client's, behind the PROXY protocol)."""

from __future__ import annotations

import os
import time

from twisted.application import service
from twisted.internet import protocol

from mailsrv.workers import run_worker


class Hello(protocol.Protocol):
    def connectionMade(self) -> None:
        time.sleep(0.05)  # busy on purpose: meanwhile the other workers take the next connections
        peer = self.transport.getPeer()
        host = getattr(peer, "host", "unix")
        self.transport.write(f"{self.factory.kind} {os.getpid()} {host}\n".encode())
        self.transport.loseConnection()


def build(reactor, config, index):
    def factory_for(listener):
        f = protocol.Factory.forProtocol(Hello)
        f.kind = listener.kind
        return f

    return service.MultiService(), factory_for


if __name__ == "__main__":
    run_worker(build)
