"""Password schemes in Dovecot's ``{SCHEME}value`` notation.

The same passwd file must work for mailsrv and for Dovecot (migration in
both directions), so stored values are exactly what ``doveadm pw`` writes:
Argon2 as a PHC string, salted SHA-2 as base64 of digest+salt, crypt(3)
strings as-is.  New hashes are Argon2id with Dovecot's default cost.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import warnings
from dataclasses import dataclass
from types import ModuleType

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mailsrv.auth import sodium

_crypt: ModuleType | None
try:  # deprecated in 3.11, removed in 3.13; only needed to verify *-CRYPT entries
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt as _crypt
except ImportError:  # pragma: no cover - depends on the Python version
    _crypt = None

Secret = str | bytes

DEFAULT_SCHEME = "ARGON2ID"
# Schemes whose stored value is the password itself: the only ones usable for
# challenge-response mechanisms (APOP, CRAM-MD5), which need the plaintext.
PLAINTEXT_SCHEMES = frozenset({"PLAIN", "CLEARTEXT"})
# Schemes hash_password() can produce.
HASH_SCHEMES = ("ARGON2ID", "ARGON2I", "SSHA512", "SSHA256", "SHA256", "PLAIN", "CLEARTEXT")
CRYPT_SCHEMES = frozenset({"SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT", "BLF-CRYPT", "CRYPT", "DES-CRYPT"})
# scheme -> (hashlib name, salted, default encoding)
_DIGEST_SCHEMES = {
    "SHA": ("sha1", False, "b64"),
    "SHA1": ("sha1", False, "b64"),
    "SSHA": ("sha1", True, "b64"),
    "SHA256": ("sha256", False, "b64"),
    "SSHA256": ("sha256", True, "b64"),
    "SHA512": ("sha512", False, "b64"),
    "SSHA512": ("sha512", True, "b64"),
    "PLAIN-MD5": ("md5", False, "hex"),
    "LDAP-MD5": ("md5", False, "b64"),
    "SMD5": ("md5", True, "b64"),
}
_SALT_LEN = 16


class UnsupportedScheme(ValueError):
    """The stored entry uses a scheme this installation cannot verify or
    produce (e.g. SHA512-CRYPT on a Python without the crypt module)."""


@dataclass(frozen=True)
class Argon2Params:
    """Argon2 cost.  The defaults are Dovecot's (m=64 MiB, t=3, p=1); tests
    pass cheaper ones explicitly, production code never lowers them."""

    time_cost: int = 3
    memory_cost: int = 65536  # KiB
    parallelism: int = 1


DEFAULT_ARGON2 = Argon2Params()


def split_scheme(stored: str) -> tuple[str | None, str]:
    """``'{SHA256}abc'`` -> ``('SHA256', 'abc')``; no prefix -> ``(None, stored)``."""
    if stored.startswith("{"):
        end = stored.find("}")
        if end > 1:
            return stored[1:end].upper(), stored[end + 1:]
    return None, stored


def scheme_of(stored: str) -> str | None:
    """The scheme of a stored value without its encoding suffix, or None if
    it has no ``{SCHEME}`` prefix (then Dovecot's default CRYPT applies)."""
    scheme, value = split_scheme(stored)
    if scheme is None:
        return _guess_scheme(value)
    return scheme.split(".", 1)[0]


def is_plaintext(stored: str) -> bool:
    """True if the entry holds a plaintext-equivalent secret (APOP-capable)."""
    return scheme_of(stored) in PLAINTEXT_SCHEMES


def plaintext_secret(stored: str) -> bytes:
    """The secret of a PLAIN/CLEARTEXT entry as bytes (ValueError otherwise)."""
    scheme, value = split_scheme(stored)
    base, enc = _split_encoding(scheme or "")
    if base not in PLAINTEXT_SCHEMES:
        raise ValueError("not a plaintext entry")
    return _decode(value, enc or "plain")


def _guess_scheme(value: str) -> str | None:
    if value.startswith("$argon2id$"):
        return "ARGON2ID"
    if value.startswith("$argon2i$"):
        return "ARGON2I"
    if value.startswith("$"):
        return "CRYPT"
    return None


def _as_bytes(password: Secret) -> bytes:
    return password.encode("utf-8") if isinstance(password, str) else bytes(password)


def _split_encoding(scheme: str) -> tuple[str, str | None]:
    base, _, enc = scheme.partition(".")
    return base, (enc.lower() or None)


def _decode(value: str, encoding: str) -> bytes:
    if encoding == "hex":
        return binascii.unhexlify(value.strip())
    if encoding == "b64":
        return base64.b64decode(value.strip(), validate=True)
    return value.encode("utf-8", "surrogateescape")


def hash_password(password: Secret, scheme: str = DEFAULT_SCHEME, params: Argon2Params | None = None) -> str:
    """A new stored value ``{SCHEME}...`` for ``password``.

    Slow for Argon2 (tens to hundreds of milliseconds): call it in a thread
    from reactor code.  PLAIN/CLEARTEXT values may not contain ':' or line
    breaks (the passwd file is line- and colon-delimited).
    """
    scheme = scheme.upper()
    secret = _as_bytes(password)
    if scheme in ("ARGON2ID", "ARGON2I"):
        p = params or DEFAULT_ARGON2
        hasher = argon2.PasswordHasher(
            time_cost=p.time_cost,
            memory_cost=p.memory_cost,
            parallelism=p.parallelism,
            hash_len=32,
            salt_len=16,
            type=argon2.Type.ID if scheme == "ARGON2ID" else argon2.Type.I,
        )
        return "{%s}%s" % (scheme, hasher.hash(secret))
    if scheme in ("SSHA512", "SSHA256"):
        salt = os.urandom(_SALT_LEN)
        alg = _DIGEST_SCHEMES[scheme][0]
        digest = hashlib.new(alg, secret + salt).digest()
        return "{%s}%s" % (scheme, base64.b64encode(digest + salt).decode("ascii"))
    if scheme == "SHA256":
        return "{SHA256}%s" % base64.b64encode(hashlib.sha256(secret).digest()).decode("ascii")
    if scheme in PLAINTEXT_SCHEMES:
        text = secret.decode("utf-8", "surrogateescape")
        if any(c in text for c in ":\r\n"):
            raise ValueError("a PLAIN password cannot contain ':' or line breaks")
        return "{%s}%s" % (scheme, text)
    if scheme in CRYPT_SCHEMES or scheme in _DIGEST_SCHEMES:
        raise UnsupportedScheme(f"scheme {scheme} is supported for verification only")
    raise UnsupportedScheme(f"unknown password scheme {scheme}")


def verify_password(stored: str, password: Secret) -> bool:
    """True if ``password`` matches the stored value.

    Constant-time comparison throughout.  Raises :class:`UnsupportedScheme`
    for a scheme that cannot be checked here, so the caller can log it
    (instead of the user silently never being able to log in).
    """
    secret = _as_bytes(password)
    scheme, value = split_scheme(stored)
    if scheme is None:
        scheme = _guess_scheme(value)
        if scheme is None:
            raise UnsupportedScheme("entry has no {SCHEME} prefix and is not a crypt string")
    base, enc = _split_encoding(scheme)
    if base in ("ARGON2ID", "ARGON2I"):
        fast = sodium.verify(value, secret) if value.startswith("$argon2" + base[6:].lower() + "$") else None
        if fast is not None:
            return fast
        try:
            return argon2.PasswordHasher().verify(value, secret)
        except VerifyMismatchError:
            return False
        except (InvalidHashError, VerificationError) as e:
            raise UnsupportedScheme(f"malformed {base} hash: {e}") from None
    if base in PLAINTEXT_SCHEMES:
        try:
            expected = _decode(value, enc or "plain")
        except (binascii.Error, ValueError):
            raise UnsupportedScheme(f"malformed {scheme} value") from None
        return hmac.compare_digest(expected, secret)
    if base in _DIGEST_SCHEMES:
        return _verify_digest(base, enc, value, secret)
    if base in CRYPT_SCHEMES:
        return _verify_crypt(base, value, secret)
    raise UnsupportedScheme(f"unknown password scheme {scheme}")


def _verify_digest(base: str, enc: str | None, value: str, secret: bytes) -> bool:
    alg, salted, default_enc = _DIGEST_SCHEMES[base]
    size = hashlib.new(alg).digest_size
    try:
        raw = _decode(value, enc or default_enc)
    except (binascii.Error, ValueError):
        # Dovecot also accepts hex where base64 is the default.
        try:
            raw = _decode(value, "hex")
        except (binascii.Error, ValueError):
            raise UnsupportedScheme(f"malformed {base} value") from None
    if len(raw) < size or (not salted and len(raw) != size):
        raise UnsupportedScheme(f"malformed {base} value")
    digest, salt = raw[:size], raw[size:]
    return hmac.compare_digest(hashlib.new(alg, secret + salt).digest(), digest)


def _verify_crypt(base: str, value: str, secret: bytes) -> bool:
    if _crypt is None:
        raise UnsupportedScheme(f"{base} needs Python's crypt module, which this Python lacks")
    try:
        text = secret.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if "\0" in text:
        return False
    try:
        result = _crypt.crypt(text, value)
    except OSError as e:  # glibc rejects unknown salt formats with EINVAL
        raise UnsupportedScheme(f"{base} not supported by the system crypt(): {e}") from None
    if not result:
        raise UnsupportedScheme(f"{base} not supported by the system crypt()")
    return hmac.compare_digest(result.encode("utf-8"), value.encode("utf-8"))


def check_scheme(scheme: str) -> str:
    """Normalize a configured scheme name; UnsupportedScheme if it cannot be
    used for new hashes."""
    s = scheme.strip().upper()
    if s not in HASH_SCHEMES:
        raise UnsupportedScheme(
            f"cannot hash new passwords with {scheme!r} (use one of {', '.join(HASH_SCHEMES)})"
        )
    return s
