"""Authentication: Dovecot-compatible passwd file, password schemes,
the twisted.cred checker and realm, and the plaintext-login policy.

Names are loaded lazily so the ``mailsrv`` admin command, which only needs
the passwd file and hashing, does not pay for importing twisted.cred.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "mailsrv.auth.cred": (
        "AuthUnavailable", "MailRealm", "PasswdFileChecker", "is_loopback", "make_portal", "plaintext_allowed",
    ),
    "mailsrv.auth.hashing": (
        "DEFAULT_ARGON2", "Argon2Params", "UnsupportedScheme", "hash_password", "is_plaintext", "verify_password",
    ),
    "mailsrv.auth.passwd": (
        "AuthError", "InvalidUsername", "NoSuchUser", "PasswdEntry", "PasswdFile", "UserExists",
        "ensure_demo_user", "validate_username",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mailsrv.auth' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(list(globals()) + __all__)
