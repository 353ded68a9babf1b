"""Commands valid in any state, and the not-authenticated ones
(CAPABILITY NOOP LOGOUT ID STARTTLS LOGIN AUTHENTICATE)."""

from __future__ import annotations

import base64
import binascii

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin

from mailsrv.auth.cred import AuthUnavailable
from mailsrv.imap import commands as C
from mailsrv.imap import render
from mailsrv.imap.context import Context, Handlers
from mailsrv.imap.results import ANY_STATE, AUTHENTICATED, NOT_AUTHENTICATED_ONLY, Result, bad, no, ok
from mailsrv.store.interfaces import IAccount

PLAINTEXT_REFUSED = "Plaintext authentication disallowed on non-secure connections"


async def capability(ctx: Context, cmd: C.Simple) -> Result:
    ctx.send(render.untagged("CAPABILITY " + " ".join(ctx.capabilities())))
    return ok()


async def noop(ctx: Context, cmd: C.Simple) -> Result:
    return ok()


async def unauthenticate(ctx: Context, cmd: C.Simple) -> Result:
    """UNAUTHENTICATE (RFC 8437): the tagged OK is the first response of
    the not-authenticated session (no CAPABILITY code: the client asks)."""
    ctx.unauthenticate()
    return ok()


async def logout(ctx: Context, cmd: C.Simple) -> None:
    """BYE, then the tagged OK, then the connection closes (RFC 3501 6.1.3)."""
    ctx.send(render.untagged("BYE Logging out"))
    ctx.send(render.tagged(cmd.tag, "OK", "LOGOUT completed"))
    ctx.logout()


async def id_(ctx: Context, cmd: C.Id) -> Result:
    ctx.send(render.untagged('ID ("name" "mailsrv" "vendor" "mailsrv")'))
    return ok()


async def starttls(ctx: Context, cmd: C.Simple) -> Result | None:
    """The tagged OK goes out in plaintext, then the handshake starts;
    input the client pipelined after STARTTLS is refused, never carried
    over into the TLS session (RFC 2595 3.1, CVE-2011-0411)."""
    if ctx.tls_active:
        return bad("TLS is already active")
    if ctx.tls_context is None:
        return bad("TLS is not available")
    if ctx.compressed:
        return bad("TLS cannot start under COMPRESS (RFC 4978)")
    if ctx.input_pending():
        return bad("STARTTLS must be the last command of a pipeline")
    ctx.send(render.tagged(cmd.tag, "OK", "Begin TLS negotiation now"))
    ctx.start_tls()
    return None


async def _authenticate(ctx: Context, user: str, password: str, method: str) -> Result | None:
    if await ctx.ops.before_auth() is not None:  # this address failed too often: banned for a while
        ctx.ops.auth_failed(user, method, ctx.tls_active, "banned")
        return no("Too many failed logins from your address; try again later", "UNAVAILABLE")
    try:
        iface, avatar, logout_ = await ctx.portal.login(
            UsernamePassword(user.encode("utf-8"), password.encode("utf-8")), None, IAccount)
    except UnauthorizedLogin:
        ctx.ops.auth_failed(user, method, ctx.tls_active)
        return no("Authentication failed", "AUTHENTICATIONFAILED")
    except AuthUnavailable:  # password file unreadable, store down
        ctx.ops.auth_failed(user, method, ctx.tls_active, "unavailable")
        return no("Authentication is temporarily unavailable", "UNAVAILABLE")
    if ctx.closed:
        logout_()
        return None
    refusal = ctx.ops.authenticated(user, method, ctx.tls_active)
    if refusal is not None:
        logout_()
        return no(refusal, "LIMIT")
    ctx.login_succeeded(IAccount(avatar), logout_)
    return ok("completed", "CAPABILITY " + " ".join(ctx.capabilities()))


async def login(ctx: Context, cmd: C.Login) -> Result | None:
    if not ctx.plaintext_allowed():
        return no(PLAINTEXT_REFUSED, "PRIVACYREQUIRED")
    return await _authenticate(ctx, cmd.user, cmd.password, "PLAIN")


def _b64(data: bytes) -> bytes | None:
    if data == b"=":
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


async def _challenge(ctx: Context, prompt: bytes) -> tuple[bytes, None] | tuple[None, Result]:
    """Send a continuation, read the client's line: (decoded, None) or
    (None, result) when the client cancelled or sent garbage."""
    ctx.send(b"+ " + base64.b64encode(prompt) + b"\r\n")
    line = await ctx.next_line()
    if line is None:
        return None, bad("Response line too long")
    if line.strip() == b"*":
        return None, bad("Authentication cancelled")
    decoded = _b64(line.strip())
    if decoded is None:
        return None, bad("Invalid base64 data")
    return decoded, None


async def _plain(ctx: Context, initial: bytes | None) -> Result | None:
    """SASL PLAIN (RFC 4616): authzid NUL authcid NUL password."""
    if initial is None:
        initial, err = await _challenge(ctx, b"")
        if initial is None:
            return err
    parts = initial.split(b"\0")
    if len(parts) != 3:
        return no("Malformed PLAIN response", "AUTHENTICATIONFAILED")
    authz, user, password = (p.decode("utf-8", "replace") for p in parts)
    if authz and authz != user:
        return no("Proxy authentication is not supported", "AUTHORIZATIONFAILED")
    return await _authenticate(ctx, user, password, "PLAIN")


async def _login_mech(ctx: Context, initial: bytes | None) -> Result | None:
    """SASL LOGIN: user name, then password, each after a prompt."""
    user_b = initial
    if user_b is None:
        user_b, err = await _challenge(ctx, b"Username:")
        if user_b is None:
            return err
    pw_b, err = await _challenge(ctx, b"Password:")
    if pw_b is None:
        return err
    return await _authenticate(ctx, user_b.decode("utf-8", "replace"), pw_b.decode("utf-8", "replace"), "LOGIN")


async def authenticate(ctx: Context, cmd: C.Authenticate) -> Result | None:
    mech = cmd.mechanism
    if mech not in ("PLAIN", "LOGIN"):
        return no("Unsupported authentication mechanism", "CANNOT")
    if not ctx.plaintext_allowed():
        return no(PLAINTEXT_REFUSED, "PRIVACYREQUIRED")
    initial = None
    if cmd.initial is not None:
        initial = _b64(cmd.initial)
        if initial is None:
            return bad("Invalid base64 data")
    if mech == "PLAIN":
        return await _plain(ctx, initial)
    return await _login_mech(ctx, initial)


HANDLERS: Handlers = {
    "CAPABILITY": (capability, ANY_STATE),
    "NOOP": (noop, ANY_STATE),
    "LOGOUT": (logout, ANY_STATE),
    "ID": (id_, ANY_STATE),
    "STARTTLS": (starttls, NOT_AUTHENTICATED_ONLY),
    "LOGIN": (login, NOT_AUTHENTICATED_ONLY),
    "AUTHENTICATE": (authenticate, NOT_AUTHENTICATED_ONLY),
    "UNAUTHENTICATE": (unauthenticate, AUTHENTICATED),
}
