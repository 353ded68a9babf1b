"""twistd plugin: ``twistd mailsrv``.  Nothing but a pointer to mailsrv.tap."""

from twisted.application.service import ServiceMaker

mailsrv = ServiceMaker(
    "mailsrv",
    "mailsrv.tap",
    "POP3 + IMAP4 mail-access server over a shared Maildir++ store",
    "mailsrv",
)
