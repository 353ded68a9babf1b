"""Credentials for the POP3 login commands (RFC 1939 APOP, RFC 5034 AUTH PLAIN)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from twisted.mail import pop3 as _twisted_pop3


class APOPCredentials(_twisted_pop3.APOPCredentials):
    """Twisted's APOP credentials with a working ``checkPassword``.

    Twisted compares a ``str`` hex digest with the ``bytes`` the client sent,
    which never matches on Python 3; this one compares bytes, in constant time.
    ``magic``, ``username`` and ``digest`` are bytes, as Twisted documents.
    """

    def checkPassword(self, password: bytes) -> bool:
        if isinstance(password, str):
            password = password.encode("utf-8")
        mine = hashlib.md5(self.magic + password).hexdigest().encode("ascii")
        return hmac.compare_digest(mine, self.digest.lower())


def is_apop_digest(digest: bytes) -> bool:
    """32 hex digits, as RFC 1939 requires."""
    return len(digest) == 32 and all(c in b"0123456789abcdefABCDEF" for c in digest)


def decode_plain(response: bytes) -> tuple[bytes, bytes, bytes]:
    """(authzid, authcid, password) from a base64 PLAIN response; ValueError if malformed."""
    if response == b"=":
        response = b""
    try:
        raw = base64.b64decode(response, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("invalid base64") from None
    parts = raw.split(b"\0")
    if len(parts) != 3 or not parts[1]:
        raise ValueError("malformed PLAIN response")
    return parts[0], parts[1], parts[2]
