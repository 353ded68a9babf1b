"""Commands valid in any state, and the not-authenticated ones
(CAPABILITY NOOP LOGOUT ID STARTTLS LOGIN AUTHENTICATE)."""

from __future__ import annotations

import base64
import binascii

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin

from mailsrv.imap import commands as C
from mailsrv.imap import render
from mailsrv.imap.server import AUTH, LOGOUT, NOT_AUTH, SELECTED, bad, no, ok
from mailsrv.store.interfaces import IAccount

ANY = (NOT_AUTH, AUTH, SELECTED)


async def capability(server, cmd):
    server.send(render.untagged("CAPABILITY " + " ".join(server.capabilities())))
    return ok()


async def noop(server, cmd):
    return ok()


async def logout(server, cmd):
    server.send(render.untagged("BYE Logging out"))
    server.send(render.tagged(cmd.tag, "OK", "LOGOUT completed"))
    server.state = LOGOUT
    server.close()
    return None


async def id_(server, cmd):
    server.send(render.untagged('ID ("name" "mailsrv" "vendor" "mailsrv")'))
    return ok()


async def starttls(server, cmd):
    if server.tls_active:
        return bad("TLS is already active")
    if server.tls_context is None:
        return bad("TLS is not available")
    if server.parser.buffered():
        return bad("STARTTLS must be the last command of a pipeline")
    server.send(render.tagged(cmd.tag, "OK", "Begin TLS negotiation now"))
    server.parser.discard_buffer()
    transport = server.transport
    transport.unregisterProducer()
    transport.startTLS(server.tls_context)
    transport.registerProducer(server.out, True)
    server.tls_active = True
    return None


async def _authenticate(server, user: str, password: str):
    try:
        iface, avatar, logout_ = await server.portal.login(
            UsernamePassword(user.encode("utf-8"), password.encode("utf-8")), None, IAccount)
    except UnauthorizedLogin:
        return no("Authentication failed", "AUTHENTICATIONFAILED")
    except Exception as e:  # noqa: BLE001  password file unreadable, store down
        if type(e).__name__ != "AuthUnavailable":
            raise
        return no("Authentication is temporarily unavailable", "UNAVAILABLE")
    if server.closed:
        logout_()
        return None
    server.login_succeeded(avatar, logout_)
    return ok("completed", "CAPABILITY " + " ".join(server.capabilities()))


async def login(server, cmd: C.Login):
    if not server.plaintext_allowed():
        return no("Plaintext authentication disallowed on non-secure connections", "PRIVACYREQUIRED")
    return await _authenticate(server, cmd.user, cmd.password)


def _b64(data: bytes) -> bytes | None:
    if data == b"=":
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


async def _challenge(server, prompt: bytes) -> tuple[bytes | None, object | None]:
    """Send a continuation, read the client's line: (decoded, None) or
    (None, result) when the client cancelled or sent garbage."""
    server.send(b"+ " + base64.b64encode(prompt) + b"\r\n")
    line = await server.read_raw_line()
    if line is None:
        return None, bad("Response line too long")
    if line.strip() == b"*":
        return None, bad("Authentication cancelled")
    decoded = _b64(line.strip())
    if decoded is None:
        return None, bad("Invalid base64 data")
    return decoded, None


async def authenticate(server, cmd: C.Authenticate):
    mech = cmd.mechanism
    if mech not in ("PLAIN", "LOGIN"):
        return no("Unsupported authentication mechanism", "CANNOT")
    if not server.plaintext_allowed():
        return no("Plaintext authentication disallowed on non-secure connections", "PRIVACYREQUIRED")
    initial = None
    if cmd.initial is not None:
        initial = _b64(cmd.initial)
        if initial is None:
            return bad("Invalid base64 data")
    if mech == "PLAIN":
        if initial is None:
            initial, err = await _challenge(server, b"")
            if initial is None:
                return err
        parts = initial.split(b"\0")
        if len(parts) != 3:
            return no("Malformed PLAIN response", "AUTHENTICATIONFAILED")
        authz, user, password = (p.decode("utf-8", "replace") for p in parts)
        if authz and authz != user:
            return no("Proxy authentication is not supported", "AUTHORIZATIONFAILED")
        return await _authenticate(server, user, password)
    user_b = initial
    if user_b is None:
        user_b, err = await _challenge(server, b"Username:")
        if user_b is None:
            return err
    pw_b, err = await _challenge(server, b"Password:")
    if pw_b is None:
        return err
    return await _authenticate(server, user_b.decode("utf-8", "replace"), pw_b.decode("utf-8", "replace"))


HANDLERS = {
    "CAPABILITY": (capability, ANY),
    "NOOP": (noop, ANY),
    "LOGOUT": (logout, ANY),
    "ID": (id_, ANY),
    "STARTTLS": (starttls, (NOT_AUTH,)),
    "LOGIN": (login, (NOT_AUTH,)),
    "AUTHENTICATE": (authenticate, (NOT_AUTH,)),
}
