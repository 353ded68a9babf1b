"""The admin socket: ``DATA/.mailsrv-admin.sock``, what ``mailsrv who`` and
``mailsrv kick`` talk to (``doveadm who``/``doveadm kick`` are the model).

A UNIX socket of mode 0600 in the data folder, so only the server's own
user (and root) can connect; the server also checks the peer's uid
(SO_PEERCRED).  One JSON object per line each way::

    {"command": "who"}                          -> {"sessions": [{...}, ...]}
    {"command": "kick", "user": "alice",
     "protocol": "imap"}                        -> {"kicked": 2}
    anything else                               -> {"error": "..."}

The client side (:func:`request`) is plain blocking sockets: the ``mailsrv``
command has no reactor.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from typing import Any

from twisted.internet import endpoints
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

from mailsrv.ops.sessions import Registry

log = Logger()

SOCKET_NAME = ".mailsrv-admin.sock"
MAX_PATH = 107  # sun_path holds 108 bytes with the NUL
MAX_REQUEST = 64 * 1024


def socket_path(data_dir: str) -> str:
    return os.path.join(os.path.abspath(data_dir), SOCKET_NAME)


def _peer_uid(transport: Any) -> int | None:
    try:
        sock = transport.getHandle()
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (AttributeError, OSError):
        return None
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class AdminProtocol(LineOnlyReceiver):
    """One admin client: requests and answers, a JSON object per line."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_REQUEST
    factory: AdminFactory
    transport: Any

    def connectionMade(self) -> None:
        uid = _peer_uid(self.transport)
        if uid is not None and uid not in (0, os.geteuid()):
            log.warn("admin socket: refused a client running as uid {uid}", uid=uid)
            self.transport.loseConnection()

    def lineReceived(self, line: bytes) -> None:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            answer = self.factory.answer(request)
        except ValueError as e:
            answer = {"error": f"bad request: {e}"}
        self.sendLine(json.dumps(answer).encode("utf-8"))

    def lineLengthExceeded(self, line: bytes) -> None:
        self.sendLine(b'{"error": "request too long"}')
        self.transport.loseConnection()


class AdminFactory(Factory["AdminProtocol"]):
    protocol = AdminProtocol
    noisy = False

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("command")
        if command == "who":
            return {"sessions": self.registry.who()}
        if command == "kick":
            user = request.get("user")
            protocol = request.get("protocol")
            if not isinstance(user, str) or not user:
                return {"error": "kick needs a user"}
            if protocol is not None and not isinstance(protocol, str):
                return {"error": "protocol must be a string"}
            n = self.registry.kick(user, protocol)
            if n:
                log.info("admin: kicked {n} session(s) of {user}", n=n, user=user)
            return {"kicked": n}
        return {"error": f"unknown command {command!r} (who, kick)"}


def server_endpoint(reactor: Any, data_dir: str) -> endpoints.UNIXServerEndpoint:
    """0600, with a PID lock file so a stale socket of a crashed server is
    replaced and a live one (another server on the same data) is not."""
    return endpoints.UNIXServerEndpoint(reactor, socket_path(data_dir), mode=0o600, wantPID=True)


class AdminError(Exception):
    """The admin socket cannot answer (one line for the operator)."""


def request(data_dir: str, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to the server of ``data_dir`` and return its answer."""
    path = socket_path(data_dir)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(path)
        except FileNotFoundError:
            raise AdminError(f"no server is running on {data_dir} (no admin socket {path})") from None
        except ConnectionRefusedError:
            raise AdminError(f"no server is running on {data_dir} ({path} is left from an earlier run)") from None
        except PermissionError:
            raise AdminError(f"permission denied on {path}: run this as the server's user or root") from None
        s.sendall(json.dumps(message).encode("utf-8") + b"\n")
        answer = _read_line(s)
    except TimeoutError:
        raise AdminError(f"the server did not answer within {timeout:.0f}s") from None
    finally:
        s.close()
    if not answer:
        raise AdminError("the server closed the admin connection without an answer")
    result = json.loads(answer)
    if not isinstance(result, dict):
        raise AdminError("the server sent something that is not an answer")
    if "error" in result:
        raise AdminError(str(result["error"]))
    return result


def _read_line(s: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            break
    return b"".join(chunks).strip()
