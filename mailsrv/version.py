"""The version, as ``mailsrv --version`` and ``twistd mailsrv --version`` print it."""

from __future__ import annotations

import platform


def version() -> str:
    """The installed distribution's version (setup.cfg's), or "unknown"
    when running from a source tree that was never installed."""
    from importlib import metadata

    try:
        return metadata.version("mailsrv")
    except metadata.PackageNotFoundError:
        return "unknown"


def version_line(program: str = "mailsrv") -> str:
    """``mailsrv 0.1.0 (Twisted 24.3.0, Python 3.11.7)``."""
    import twisted

    return f"{program} {version()} (Twisted {twisted.__version__}, Python {platform.python_version()})"
