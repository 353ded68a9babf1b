"""LMTP (RFC 2033) delivery listener: Postfix ``lmtp:`` transport into the store."""

from mailsrv.lmtp.protocol import LMTPFactory, LMTPServer

__all__ = ["LMTPFactory", "LMTPServer"]
