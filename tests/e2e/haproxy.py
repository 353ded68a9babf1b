"""A throw-away HAProxy in front of mailsrv nodes, for the two-node tests:
the same shape as etc/haproxy.cfg (PROXY protocol v2 to the nodes,
protocol health checks) on free loopback ports.

Each protocol gets one frontend with three ports: ``main`` balances over
the nodes; ``pin[i]`` sends the connection to node ``i`` (``use-server``
on the destination port), so a test can put a session on a given node
while still going through the balancer.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

CHECKS = {
    "imap": ["tcp-check connect default", "tcp-check expect string *\\ OK", "tcp-check send a1\\ LOGOUT\\r\\n",
             "tcp-check expect string *\\ BYE"],
    "pop3": ["tcp-check connect default", "tcp-check expect string +OK", "tcp-check send QUIT\\r\\n",
             "tcp-check expect string +OK"],
    "lmtp": ["tcp-check connect default", "tcp-check expect string 220", "tcp-check send LHLO\\ check\\r\\n",
             "tcp-check expect string 250", "tcp-check send QUIT\\r\\n", "tcp-check expect string 221"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def have_haproxy() -> bool:
    return shutil.which("haproxy") is not None


class HAProxy:
    """``nodes``: one ``{kind: port}`` per node.  ``ports[kind]["main"]``,
    ``ports[kind]["pin"][i]`` are where clients connect."""

    def __init__(self, workdir: str, nodes: list[dict[str, int]], kinds: tuple[str, ...] = ("imap", "pop3", "lmtp")):
        self.workdir = workdir
        self.nodes = nodes
        self.kinds = kinds
        self.stats = os.path.join(workdir, "haproxy.sock")
        self.cfg = os.path.join(workdir, "haproxy.cfg")
        self.log = os.path.join(workdir, "haproxy.log")
        self.ports = {k: {"main": free_port(), "pin": [free_port() for _ in nodes]} for k in kinds}
        self.proc: subprocess.Popen | None = None

    def config(self) -> str:
        out = ["global", f"    stats socket {self.stats} level admin", "    maxconn 2000", "",
               "defaults", "    mode tcp", "    timeout connect 2s", "    timeout client 5m",
               "    timeout server 5m", "    timeout check 1s", "    retries 3", "    option redispatch",
               "    default-server inter 200ms fall 2 rise 1 send-proxy-v2 check check-send-proxy", ""]
        for kind in self.kinds:
            p = self.ports[kind]
            out.append(f"frontend {kind}")
            out.append(f"    bind 127.0.0.1:{p['main']}")
            out.extend(f"    bind 127.0.0.1:{pin}" for pin in p["pin"])
            out.append(f"    default_backend {kind}")
            out.append(f"backend {kind}")
            out.append("    balance roundrobin")
            out.append("    option tcp-check")
            out.extend("    " + c for c in CHECKS[kind])
            for i, pin in enumerate(p["pin"]):
                out.append(f"    use-server node{i} if {{ dst_port {pin} }}")
            for i, node in enumerate(self.nodes):
                out.append(f"    server node{i} 127.0.0.1:{node[kind]}")
            out.append("")
        return "\n".join(out) + "\n"

    def start(self, timeout: float = 20.0) -> HAProxy:
        with open(self.cfg, "w", encoding="utf-8") as f:
            f.write(self.config())
        check = subprocess.run(["haproxy", "-c", "-q", "-f", self.cfg], capture_output=True, text=True, timeout=30)
        if check.returncode:
            raise RuntimeError(f"haproxy config rejected: {check.stderr or check.stdout}")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(["haproxy", "-db", "-f", self.cfg], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        self.wait(lambda states: all(v == "UP" for v in states.values()), timeout)
        return self

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.stats)
            s.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        return b"".join(chunks).decode()

    def states(self) -> dict[str, str]:
        """``{"imap/node0": "UP", ...}`` from HAProxy's stats."""
        out = {}
        lines = self.command("show stat").splitlines()
        if not lines:
            return out
        head = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(head, line.split(","), strict=False))
            if row.get("svname", "").startswith("node"):
                out[f"{row['pxname']}/{row['svname']}"] = row.get("status", "").split(" ")[0]
        return out

    def wait(self, pred, timeout: float = 20.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError("haproxy exited: " + open(self.log, encoding="utf-8", errors="replace").read())
            try:
                states = self.states()
            except OSError:
                states = {}
            if states and pred(states):
                return states
            time.sleep(0.1)
        raise RuntimeError(f"haproxy servers not as expected within {timeout}s: {states}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
