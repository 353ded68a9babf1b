"""POP3 service: RFC 1939 with CAPA, STLS, AUTH PLAIN and response codes."""

from mailsrv.pop3.factory import POP3Factory
from mailsrv.pop3.protocol import POP3Server

__all__ = ["POP3Factory", "POP3Server"]
