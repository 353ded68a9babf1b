"""Argon2 verification through the system libsodium, when it is there.

Why: argon2-cffi ships libargon2's portable reference code, which takes
about twice as long per hash as libsodium's SSSE3/AVX2 code (what Dovecot
uses).  A login is one hash at Dovecot's cost (64 MiB, t=3), so this is
most of a login's time.  Only strings libsodium is known to accept exactly
are sent there (its -1 means "mismatch" and "cannot" alike); anything else
returns None and the caller uses argon2-cffi.  The call releases the GIL
(ctypes), so pool threads hash in parallel as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import threading
from typing import Any

# v=19 only, one lane, salt >= 8 bytes, hash >= 16 bytes (libsodium's limits)
_PHC = re.compile(r"\$argon2(id|i)\$v=19\$m=(\d{1,10}),t=(\d{1,10}),p=1\$[A-Za-z0-9+/]{11,}\$[A-Za-z0-9+/]{22,}\Z")
_STRBYTES = 128  # crypto_pwhash_STRBYTES: the string must fit, NUL included
_MAX_MEMORY_KIB = 1 << 22  # 4 GiB: anything above is not a hash we wrote
_NAMES = ("libsodium.so.23", "libsodium.so.26", "libsodium.so")

_lock = threading.Lock()
_lib: Any = None
_tried = False


def _load() -> Any:
    global _lib, _tried
    with _lock:
        if not _tried:
            _tried = True
            lib = None
            for name in _NAMES + (None,):
                if name is None:  # slow (runs ldconfig): only if the usual names fail
                    name = ctypes.util.find_library("sodium")
                    if name is None:
                        break
                try:
                    lib = ctypes.CDLL(name)
                    fn = lib.crypto_pwhash_str_verify
                except (OSError, AttributeError):
                    lib = None
                    continue
                break
            if lib is not None and lib.sodium_init() >= 0:
                fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong]
                fn.restype = ctypes.c_int
                _lib = lib
        return _lib


def available() -> bool:
    """True if libsodium could be loaded."""
    return _load() is not None


def verify(phc: str, secret: bytes) -> bool | None:
    """Check ``secret`` against an Argon2 PHC string with libsodium: True or
    False, or None when libsodium is missing or the string is one it might
    refuse (the caller then verifies another way)."""
    if len(phc) >= _STRBYTES:
        return None
    m = _PHC.match(phc)
    if m is None:
        return None
    kind, memory, time_cost = m.group(1), int(m.group(2)), int(m.group(3))
    if not 8 <= memory <= _MAX_MEMORY_KIB or time_cost < (3 if kind == "i" else 1):
        return None
    lib = _load()
    if lib is None:
        return None
    return lib.crypto_pwhash_str_verify(phc.encode("ascii"), secret, len(secret)) == 0
