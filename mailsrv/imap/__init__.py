"""IMAP4rev1 server (RFC 3501 plus IDLE, UIDPLUS, MOVE and friends)."""

from mailsrv.imap.factory import IMAPFactory

__all__ = ["IMAPFactory"]
