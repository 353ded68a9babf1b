# ruff: noqa: E501  captured wire data: one answer per line, as Dovecot sent it
"""Tricky messages for the IMAP content layer (mime, fetchdata, search) and
Dovecot 2.3.19's answers for them (see test_fetchdata.py).  A data module:
its length is the captured answers, one per message and FETCH item."""

from __future__ import annotations

# name -> raw message bytes (stored form; some LF-only, some CRLF)
TRICKY: dict[str, bytes] = {
    "plain_noct": (
        b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\n"
        b"From: Fred Foobar <foobar@Blurdybloop.COM>\n"
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus\n"
        b"  M\xc3\xbcnchen\n"
        b"To: mooch@owatagu.siam.edu, \"Quoted \\\"Name\\\"\" <q@example.com>\n"
        b"Cc: undisclosed-recipients:;\n"
        b"Bcc: Team: a@example.com, B <b@example.com>;, c@example.com\n"
        b"Message-Id: <B27397-0100000@Blurdybloop.COM>\n"
        b"X-Repeat: one\n"
        b"x-repeat: two\n"
        b"\tfolded\n"
        b"\n"
        b"Hello Joe, do you think we can meet at 3:30 tomorrow?\n"
        b"Second line\n"
    ),
    "comments_8bit": (
        b"From: foo@example.com (Foo Bar), J\xc3\xbcrgen <j@example.de>\r\n"
        b"Sender: nodomain\r\n"
        b"Reply-To: <@route.example:r@example.org>\r\n"
        b"Subject: caf\xc3\xa9 \"quoted\" back\\slash\r\n"
        b"In-Reply-To: <a@b>\r\n"
        b"Content-Type: TEXT/Plain; charset=\"UTF-8\"; format=flowed\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n"
        b"caf\xc3\xa9\r\n"
        b"no final newline"
    ),
    "nested": (
        b"From: a@example.com\n"
        b"To: b@example.com\n"
        b"Subject: nested\n"
        b"MIME-Version: 1.0\n"
        b"Content-Type: multipart/mixed; boundary=\"outer\"\n"
        b"\n"
        b"This is the preamble.\n"
        b"--outer\n"
        b"Content-Type: multipart/alternative; boundary=inner\n"
        b"\n"
        b"--inner\n"
        b"Content-Type: text/plain; charset=us-ascii\n"
        b"\n"
        b"plain text\n"
        b"two lines\n"
        b"--inner\n"
        b"Content-Type: text/html; charset=utf-8\n"
        b"Content-Transfer-Encoding: quoted-printable\n"
        b"\n"
        b"<p>caf=C3=A9</p>\n"
        b"--inner--\n"
        b"--outer\n"
        b"Content-Type: message/rfc822\n"
        b"Content-Description: forwarded\n"
        b"\n"
        b"From: c@example.com\n"
        b"Subject: inner msg\n"
        b"Content-Type: multipart/mixed; boundary=\"b2\"\n"
        b"\n"
        b"--b2\n"
        b"\n"
        b"inner part one\n"
        b"--b2\n"
        b"Content-Type: application/octet-stream; name=\"x.bin\"\n"
        b"Content-Transfer-Encoding: base64\n"
        b"Content-Disposition: attachment; filename=\"x.bin\"\n"
        b"\n"
        b"AAECAw==\n"
        b"--b2--\n"
        b"--outer\n"
        b"Content-Type: application/pdf; name=doc.pdf\n"
        b"Content-ID: <cid1@example.com>\n"
        b"Content-Disposition: attachment; filename=doc.pdf\n"
        b"Content-Language: en, de\n"
        b"Content-Location: http://example.com/doc.pdf\n"
        b"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n"
        b"Content-Transfer-Encoding: base64\n"
        b"\n"
        b"JVBERi0=\n"
        b"--outer--\n"
        b"epilogue\n"
    ),
    "rfc822_single": (
        b"From: a@example.com\r\n"
        b"Subject: fwd\r\n"
        b"Content-Type: message/rfc822\r\n"
        b"\r\n"
        b"From: inner@example.com\r\n"
        b"Subject: inner\r\n"
        b"\r\n"
        b"inner body\r\n"
    ),
    "no_boundary": (
        b"From: a@example.com\n"
        b"Content-Type: multipart/mixed\n"
        b"\n"
        b"--foo\n"
        b"\n"
        b"body\n"
    ),
    "boundary_absent": (
        b"From: a@example.com\n"
        b"Content-Type: multipart/mixed; boundary=zzz\n"
        b"\n"
        b"no parts here\n"
    ),
    "header_only": (
        b"From: a@example.com\n"
        b"Subject: no body"
    ),
    "empty_header": (
        b"\n"
        b"just a body\n"
    ),
    "bad_ct": (
        b"From: <>\n"
        b"To: ,,, x@y,\n"
        b"Content-Type: text\n"
        b"Subject:\n"
        b"\n"
        b"body\n"
    ),
    "digest": (
        b"From: list@example.com\n"
        b"Content-Type: multipart/digest; boundary=d\n"
        b"\n"
        b"--d\n"
        b"\n"
        b"From: one@example.com\n"
        b"Subject: one\n"
        b"\n"
        b"first\n"
        b"--d\n"
        b"Content-Type: text/plain\n"
        b"\n"
        b"not a message\n"
        b"--d--\n"
    ),
}


# Dovecot 2.3.19 answers for TRICKY (FETCH item -> response data item), captured
# with BODY.PEEK; the label is rendered without .PEEK.
DOVECOT = {
    ('plain_noct', 'ENVELOPE'):
        b'ENVELOPE ("Mon, 7 Feb 1994 21:52:25 -0800 (PST)" {40}\r\n=?utf-8?q?Gr=C3=BC=C3=9Fe?= aus M\xc3\xbcnchen (("Fred Foobar" NIL "foobar" "Blurdybloop.COM")) (("Fred Foobar" NIL "foobar" "Blurdybloop.COM")) (("Fred Foobar" NIL "foobar" "Blurdybloop.COM")) ((NIL NIL "mooch" "owatagu.siam.edu")({13}\r\nQuoted "Name" NIL "q" "example.com")) ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) ((NIL NIL "Team" NIL)(NIL NIL "a" "example.com")("B" NIL "b" "example.com")(NIL NIL NIL NIL)(NIL NIL "c" "example.com")) NIL "<B27397-0100000@Blurdybloop.COM>")',
    ('plain_noct', 'BODYSTRUCTURE'):
        b'BODYSTRUCTURE ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 68 2 NIL NIL NIL NIL)',
    ('plain_noct', 'BODY'):
        b'BODY ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 68 2)',
    ('plain_noct', 'BODY.PEEK[1.MIME]'):
        b'BODY[1.MIME] {383}\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nFrom: Fred Foobar <foobar@Blurdybloop.COM>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus\r\n  M\xc3\xbcnchen\r\nTo: mooch@owatagu.siam.edu, "Quoted \\"Name\\"" <q@example.com>\r\nCc: undisclosed-recipients:;\r\nBcc: Team: a@example.com, B <b@example.com>;, c@example.com\r\nMessage-Id: <B27397-0100000@Blurdybloop.COM>\r\nX-Repeat: one\r\nx-repeat: two\r\n\tfolded\r\n\r\n',
    ('plain_noct', 'BODY.PEEK[1]'):
        b'BODY[1] {68}\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\nSecond line\r\n',
    ('plain_noct', 'BODY.PEEK[2]'):
        b'BODY[2] {0}\r\n',
    ('plain_noct', 'BODY.PEEK[2.MIME]'):
        b'BODY[2.MIME] {0}\r\n',
    ('plain_noct', 'BODY.PEEK[1.HEADER]'):
        b'BODY[1.HEADER] {0}\r\n',
    ('plain_noct', 'BODY.PEEK[2.HEADER]'):
        b'BODY[2.HEADER] {0}\r\n',
    ('plain_noct', 'BODY.PEEK[2.TEXT]'):
        b'BODY[2.TEXT] {0}\r\n',
    ('plain_noct', 'BODY.PEEK[2.1]'):
        b'BODY[2.1] {0}\r\n',
    ('plain_noct', 'BODY.PEEK[2.2]'):
        b'BODY[2.2] {0}\r\n',
    ('plain_noct', 'BODY.PEEK[2.2.MIME]'):
        b'BODY[2.2.MIME] {0}\r\n',
    ('plain_noct', 'BODY.PEEK[1.1]'):
        b'BODY[1.1] {0}\r\n',
    ('plain_noct', 'BODY.PEEK[1.2]'):
        b'BODY[1.2] {0}\r\n',
    ('plain_noct', 'BODY.PEEK[3]'):
        b'BODY[3] {0}\r\n',
    ('plain_noct', 'BODY.PEEK[3.MIME]'):
        b'BODY[3.MIME] {0}\r\n',
    ('plain_noct', 'BODY.PEEK[9]'):
        b'BODY[9] {0}\r\n',
    ('plain_noct', 'BODY.PEEK[2.HEADER.FIELDS (subject)]'):
        b'BODY[2.HEADER.FIELDS (SUBJECT)] {0}\r\n',
    ('plain_noct', 'BODY.PEEK[HEADER.FIELDS (x-repeat FROM)]'):
        b'BODY[HEADER.FIELDS (X-REPEAT FROM)] {85}\r\nFrom: Fred Foobar <foobar@Blurdybloop.COM>\r\nX-Repeat: one\r\nx-repeat: two\r\n\tfolded\r\n\r\n',
    ('plain_noct', 'BODY.PEEK[HEADER.FIELDS.NOT (x-repeat FROM)]'):
        b'BODY[HEADER.FIELDS.NOT (X-REPEAT FROM)] {300}\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus\r\n  M\xc3\xbcnchen\r\nTo: mooch@owatagu.siam.edu, "Quoted \\"Name\\"" <q@example.com>\r\nCc: undisclosed-recipients:;\r\nBcc: Team: a@example.com, B <b@example.com>;, c@example.com\r\nMessage-Id: <B27397-0100000@Blurdybloop.COM>\r\n\r\n',
    ('plain_noct', 'BODY.PEEK[TEXT]'):
        b'BODY[TEXT] {68}\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\nSecond line\r\n',
    ('plain_noct', 'BODY.PEEK[HEADER]'):
        b'BODY[HEADER] {383}\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nFrom: Fred Foobar <foobar@Blurdybloop.COM>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus\r\n  M\xc3\xbcnchen\r\nTo: mooch@owatagu.siam.edu, "Quoted \\"Name\\"" <q@example.com>\r\nCc: undisclosed-recipients:;\r\nBcc: Team: a@example.com, B <b@example.com>;, c@example.com\r\nMessage-Id: <B27397-0100000@Blurdybloop.COM>\r\nX-Repeat: one\r\nx-repeat: two\r\n\tfolded\r\n\r\n',
    ('plain_noct', 'BODY.PEEK[1.TEXT]'):
        b'BODY[1.TEXT] {0}\r\n',
    ('comments_8bit', 'ENVELOPE'):
        b'ENVELOPE (NIL {25}\r\ncaf\xc3\xa9 "quoted" back\\slash (("Foo Bar" NIL "foo" "example.com")({7}\r\nJ\xc3\xbcrgen NIL "j" "example.de")) ((NIL NIL "nodomain" "MISSING_DOMAIN")) ((NIL "@route.example" "r" "example.org")) NIL NIL NIL "<a@b>" NIL)',
    ('comments_8bit', 'BODYSTRUCTURE'):
        b'BODYSTRUCTURE ("TEXT" "Plain" ("charset" "UTF-8" "format" "flowed") NIL NIL "8bit" 23 1 NIL NIL NIL NIL)',
    ('comments_8bit', 'BODY'):
        b'BODY ("TEXT" "Plain" ("charset" "UTF-8" "format" "flowed") NIL NIL "8bit" 23 1)',
    ('comments_8bit', 'BODY.PEEK[1.MIME]'):
        b'BODY[1.MIME] {266}\r\nFrom: foo@example.com (Foo Bar), J\xc3\xbcrgen <j@example.de>\r\nSender: nodomain\r\nReply-To: <@route.example:r@example.org>\r\nSubject: caf\xc3\xa9 "quoted" back\\slash\r\nIn-Reply-To: <a@b>\r\nContent-Type: TEXT/Plain; charset="UTF-8"; format=flowed\r\nContent-Transfer-Encoding: 8bit\r\n\r\n',
    ('comments_8bit', 'BODY.PEEK[1]'):
        b'BODY[1] {23}\r\ncaf\xc3\xa9\r\nno final newline',
    ('comments_8bit', 'BODY.PEEK[2]'):
        b'BODY[2] {0}\r\n',
    ('comments_8bit', 'BODY.PEEK[2.MIME]'):
        b'BODY[2.MIME] {0}\r\n',
    ('comments_8bit', 'BODY.PEEK[1.HEADER]'):
        b'BODY[1.HEADER] {0}\r\n',
    ('comments_8bit', 'BODY.PEEK[2.HEADER]'):
        b'BODY[2.HEADER] {0}\r\n',
    ('comments_8bit', 'BODY.PEEK[2.TEXT]'):
        b'BODY[2.TEXT] {0}\r\n',
    ('comments_8bit', 'BODY.PEEK[2.1]'):
        b'BODY[2.1] {0}\r\n',
    ('comments_8bit', 'BODY.PEEK[2.2]'):
        b'BODY[2.2] {0}\r\n',
    ('comments_8bit', 'BODY.PEEK[2.2.MIME]'):
        b'BODY[2.2.MIME] {0}\r\n',
    ('comments_8bit', 'BODY.PEEK[1.1]'):
        b'BODY[1.1] {0}\r\n',
    ('comments_8bit', 'BODY.PEEK[1.2]'):
        b'BODY[1.2] {0}\r\n',
    ('comments_8bit', 'BODY.PEEK[3]'):
        b'BODY[3] {0}\r\n',
    ('comments_8bit', 'BODY.PEEK[3.MIME]'):
        b'BODY[3.MIME] {0}\r\n',
    ('comments_8bit', 'BODY.PEEK[9]'):
        b'BODY[9] {0}\r\n',
    ('comments_8bit', 'BODY.PEEK[2.HEADER.FIELDS (subject)]'):
        b'BODY[2.HEADER.FIELDS (SUBJECT)] {0}\r\n',
    ('comments_8bit', 'BODY.PEEK[HEADER.FIELDS (x-repeat FROM)]'):
        b'BODY[HEADER.FIELDS (X-REPEAT FROM)] {59}\r\nFrom: foo@example.com (Foo Bar), J\xc3\xbcrgen <j@example.de>\r\n\r\n',
    ('comments_8bit', 'BODY.PEEK[HEADER.FIELDS.NOT (x-repeat FROM)]'):
        b'BODY[HEADER.FIELDS.NOT (X-REPEAT FROM)] {209}\r\nSender: nodomain\r\nReply-To: <@route.example:r@example.org>\r\nSubject: caf\xc3\xa9 "quoted" back\\slash\r\nIn-Reply-To: <a@b>\r\nContent-Type: TEXT/Plain; charset="UTF-8"; format=flowed\r\nContent-Transfer-Encoding: 8bit\r\n\r\n',
    ('comments_8bit', 'BODY.PEEK[TEXT]'):
        b'BODY[TEXT] {23}\r\ncaf\xc3\xa9\r\nno final newline',
    ('comments_8bit', 'BODY.PEEK[HEADER]'):
        b'BODY[HEADER] {266}\r\nFrom: foo@example.com (Foo Bar), J\xc3\xbcrgen <j@example.de>\r\nSender: nodomain\r\nReply-To: <@route.example:r@example.org>\r\nSubject: caf\xc3\xa9 "quoted" back\\slash\r\nIn-Reply-To: <a@b>\r\nContent-Type: TEXT/Plain; charset="UTF-8"; format=flowed\r\nContent-Transfer-Encoding: 8bit\r\n\r\n',
    ('comments_8bit', 'BODY.PEEK[1.TEXT]'):
        b'BODY[1.TEXT] {0}\r\n',
    ('nested', 'ENVELOPE'):
        b'ENVELOPE (NIL "nested" ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) ((NIL NIL "b" "example.com")) NIL NIL NIL NIL)',
    ('nested', 'BODYSTRUCTURE'):
        b'BODYSTRUCTURE ((("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 1 NIL NIL NIL NIL)("text" "html" ("charset" "utf-8") NIL NIL "quoted-printable" 16 0 NIL NIL NIL NIL) "alternative" ("boundary" "inner") NIL NIL NIL)("message" "rfc822" NIL NIL "forwarded" "7bit" 279 (NIL "inner msg" ((NIL NIL "c" "example.com")) ((NIL NIL "c" "example.com")) ((NIL NIL "c" "example.com")) NIL NIL NIL NIL NIL) (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 14 0 NIL NIL NIL NIL)("application" "octet-stream" ("name" "x.bin") NIL NIL "base64" 8 NIL ("attachment" ("filename" "x.bin")) NIL NIL) "mixed" ("boundary" "b2") NIL NIL NIL) 14 NIL NIL NIL NIL)("application" "pdf" ("name" "doc.pdf") "<cid1@example.com>" NIL "base64" 8 "Q2hlY2sgSW50ZWdyaXR5IQ==" ("attachment" ("filename" "doc.pdf")) ("en" "de") "http://example.com/doc.pdf") "mixed" ("boundary" "outer") NIL NIL NIL)',
    ('nested', 'BODY'):
        b'BODY ((("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 1)("text" "html" ("charset" "utf-8") NIL NIL "quoted-printable" 16 0) "alternative")("message" "rfc822" NIL NIL "forwarded" "7bit" 279 (NIL "inner msg" ((NIL NIL "c" "example.com")) ((NIL NIL "c" "example.com")) ((NIL NIL "c" "example.com")) NIL NIL NIL NIL NIL) (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 14 0)("application" "octet-stream" ("name" "x.bin") NIL NIL "base64" 8) "mixed") 14)("application" "pdf" ("name" "doc.pdf") "<cid1@example.com>" NIL "base64" 8) "mixed")',
    ('nested', 'BODY.PEEK[1.MIME]'):
        b'BODY[1.MIME] {55}\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n',
    ('nested', 'BODY.PEEK[1]'):
        b'BODY[1] {203}\r\n--inner\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nplain text\r\ntwo lines\r\n--inner\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>caf=C3=A9</p>\r\n--inner--\r\n',
    ('nested', 'BODY.PEEK[2]'):
        b'BODY[2] {279}\r\nFrom: c@example.com\r\nSubject: inner msg\r\nContent-Type: multipart/mixed; boundary="b2"\r\n\r\n--b2\r\n\r\ninner part one\r\n--b2\r\nContent-Type: application/octet-stream; name="x.bin"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="x.bin"\r\n\r\nAAECAw==\r\n--b2--\r\n',
    ('nested', 'BODY.PEEK[2.MIME]'):
        b'BODY[2.MIME] {64}\r\nContent-Type: message/rfc822\r\nContent-Description: forwarded\r\n\r\n',
    ('nested', 'BODY.PEEK[1.HEADER]'):
        b'BODY[1.HEADER] {0}\r\n',
    ('nested', 'BODY.PEEK[2.HEADER]'):
        b'BODY[2.HEADER] {89}\r\nFrom: c@example.com\r\nSubject: inner msg\r\nContent-Type: multipart/mixed; boundary="b2"\r\n\r\n',
    ('nested', 'BODY.PEEK[2.TEXT]'):
        b'BODY[2.TEXT] {190}\r\n--b2\r\n\r\ninner part one\r\n--b2\r\nContent-Type: application/octet-stream; name="x.bin"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="x.bin"\r\n\r\nAAECAw==\r\n--b2--\r\n',
    ('nested', 'BODY.PEEK[2.1]'):
        b'BODY[2.1] {14}\r\ninner part one',
    ('nested', 'BODY.PEEK[2.2]'):
        b'BODY[2.2] {8}\r\nAAECAw==',
    ('nested', 'BODY.PEEK[2.2.MIME]'):
        b'BODY[2.2.MIME] {142}\r\nContent-Type: application/octet-stream; name="x.bin"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="x.bin"\r\n\r\n',
    ('nested', 'BODY.PEEK[1.1]'):
        b'BODY[1.1] {21}\r\nplain text\r\ntwo lines',
    ('nested', 'BODY.PEEK[1.2]'):
        b'BODY[1.2] {16}\r\n<p>caf=C3=A9</p>',
    ('nested', 'BODY.PEEK[3]'):
        b'BODY[3] {8}\r\nJVBERi0=',
    ('nested', 'BODY.PEEK[3.MIME]'):
        b'BODY[3.MIME] {276}\r\nContent-Type: application/pdf; name=doc.pdf\r\nContent-ID: <cid1@example.com>\r\nContent-Disposition: attachment; filename=doc.pdf\r\nContent-Language: en, de\r\nContent-Location: http://example.com/doc.pdf\r\nContent-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\nContent-Transfer-Encoding: base64\r\n\r\n',
    ('nested', 'BODY.PEEK[9]'):
        b'BODY[9] {0}\r\n',
    ('nested', 'BODY.PEEK[2.HEADER.FIELDS (subject)]'):
        b'BODY[2.HEADER.FIELDS (SUBJECT)] {22}\r\nSubject: inner msg\r\n\r\n',
    ('nested', 'BODY.PEEK[HEADER.FIELDS (x-repeat FROM)]'):
        b'BODY[HEADER.FIELDS (X-REPEAT FROM)] {23}\r\nFrom: a@example.com\r\n\r\n',
    ('nested', 'BODY.PEEK[HEADER.FIELDS.NOT (x-repeat FROM)]'):
        b'BODY[HEADER.FIELDS.NOT (X-REPEAT FROM)] {106}\r\nTo: b@example.com\r\nSubject: nested\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="outer"\r\n\r\n',
    ('nested', 'BODY.PEEK[TEXT]'):
        b'BODY[TEXT] {958}\r\nThis is the preamble.\r\n--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nplain text\r\ntwo lines\r\n--inner\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>caf=C3=A9</p>\r\n--inner--\r\n--outer\r\nContent-Type: message/rfc822\r\nContent-Description: forwarded\r\n\r\nFrom: c@example.com\r\nSubject: inner msg\r\nContent-Type: multipart/mixed; boundary="b2"\r\n\r\n--b2\r\n\r\ninner part one\r\n--b2\r\nContent-Type: application/octet-stream; name="x.bin"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="x.bin"\r\n\r\nAAECAw==\r\n--b2--\r\n--outer\r\nContent-Type: application/pdf; name=doc.pdf\r\nContent-ID: <cid1@example.com>\r\nContent-Disposition: attachment; filename=doc.pdf\r\nContent-Language: en, de\r\nContent-Location: http://example.com/doc.pdf\r\nContent-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--outer--\r\nepilogue\r\n',
    ('nested', 'BODY.PEEK[HEADER]'):
        b'BODY[HEADER] {127}\r\nFrom: a@example.com\r\nTo: b@example.com\r\nSubject: nested\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="outer"\r\n\r\n',
    ('nested', 'BODY.PEEK[1.TEXT]'):
        b'BODY[1.TEXT] {0}\r\n',
    ('rfc822_single', 'ENVELOPE'):
        b'ENVELOPE (NIL "fwd" ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) NIL NIL NIL NIL NIL)',
    ('rfc822_single', 'BODYSTRUCTURE'):
        b'BODYSTRUCTURE ("message" "rfc822" NIL NIL NIL "7bit" 55 (NIL "inner" ((NIL NIL "inner" "example.com")) ((NIL NIL "inner" "example.com")) ((NIL NIL "inner" "example.com")) NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 12 1 NIL NIL NIL NIL) 4 NIL NIL NIL NIL)',
    ('rfc822_single', 'BODY'):
        b'BODY ("message" "rfc822" NIL NIL NIL "7bit" 55 (NIL "inner" ((NIL NIL "inner" "example.com")) ((NIL NIL "inner" "example.com")) ((NIL NIL "inner" "example.com")) NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 12 1) 4)',
    ('rfc822_single', 'BODY.PEEK[1.MIME]'):
        b'BODY[1.MIME] {67}\r\nFrom: a@example.com\r\nSubject: fwd\r\nContent-Type: message/rfc822\r\n\r\n',
    ('rfc822_single', 'BODY.PEEK[1]'):
        b'BODY[1] {55}\r\nFrom: inner@example.com\r\nSubject: inner\r\n\r\ninner body\r\n',
    ('rfc822_single', 'BODY.PEEK[2]'):
        b'BODY[2] {0}\r\n',
    ('rfc822_single', 'BODY.PEEK[2.MIME]'):
        b'BODY[2.MIME] {0}\r\n',
    ('rfc822_single', 'BODY.PEEK[1.HEADER]'):
        b'BODY[1.HEADER] {43}\r\nFrom: inner@example.com\r\nSubject: inner\r\n\r\n',
    ('rfc822_single', 'BODY.PEEK[2.HEADER]'):
        b'BODY[2.HEADER] {0}\r\n',
    ('rfc822_single', 'BODY.PEEK[2.TEXT]'):
        b'BODY[2.TEXT] {0}\r\n',
    ('rfc822_single', 'BODY.PEEK[2.1]'):
        b'BODY[2.1] {0}\r\n',
    ('rfc822_single', 'BODY.PEEK[2.2]'):
        b'BODY[2.2] {0}\r\n',
    ('rfc822_single', 'BODY.PEEK[2.2.MIME]'):
        b'BODY[2.2.MIME] {0}\r\n',
    ('rfc822_single', 'BODY.PEEK[1.1]'):
        b'BODY[1.1] {12}\r\ninner body\r\n',
    ('rfc822_single', 'BODY.PEEK[1.2]'):
        b'BODY[1.2] {0}\r\n',
    ('rfc822_single', 'BODY.PEEK[3]'):
        b'BODY[3] {0}\r\n',
    ('rfc822_single', 'BODY.PEEK[3.MIME]'):
        b'BODY[3.MIME] {0}\r\n',
    ('rfc822_single', 'BODY.PEEK[9]'):
        b'BODY[9] {0}\r\n',
    ('rfc822_single', 'BODY.PEEK[2.HEADER.FIELDS (subject)]'):
        b'BODY[2.HEADER.FIELDS (SUBJECT)] {0}\r\n',
    ('rfc822_single', 'BODY.PEEK[HEADER.FIELDS (x-repeat FROM)]'):
        b'BODY[HEADER.FIELDS (X-REPEAT FROM)] {23}\r\nFrom: a@example.com\r\n\r\n',
    ('rfc822_single', 'BODY.PEEK[HEADER.FIELDS.NOT (x-repeat FROM)]'):
        b'BODY[HEADER.FIELDS.NOT (X-REPEAT FROM)] {46}\r\nSubject: fwd\r\nContent-Type: message/rfc822\r\n\r\n',
    ('rfc822_single', 'BODY.PEEK[TEXT]'):
        b'BODY[TEXT] {55}\r\nFrom: inner@example.com\r\nSubject: inner\r\n\r\ninner body\r\n',
    ('rfc822_single', 'BODY.PEEK[HEADER]'):
        b'BODY[HEADER] {67}\r\nFrom: a@example.com\r\nSubject: fwd\r\nContent-Type: message/rfc822\r\n\r\n',
    ('rfc822_single', 'BODY.PEEK[1.TEXT]'):
        b'BODY[1.TEXT] {12}\r\ninner body\r\n',
    ('no_boundary', 'ENVELOPE'):
        b'ENVELOPE (NIL NIL ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) NIL NIL NIL NIL NIL)',
    ('no_boundary', 'BODYSTRUCTURE'):
        b'BODYSTRUCTURE (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed" NIL NIL NIL NIL)',
    ('no_boundary', 'BODY'):
        b'BODY (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")',
    ('no_boundary', 'BODY.PEEK[1.MIME]'):
        b'BODY[1.MIME] {0}\r\n',
    ('no_boundary', 'BODY.PEEK[1]'):
        b'BODY[1] {0}\r\n',
    ('no_boundary', 'BODY.PEEK[2]'):
        b'BODY[2] {0}\r\n',
    ('no_boundary', 'BODY.PEEK[2.MIME]'):
        b'BODY[2.MIME] {0}\r\n',
    ('no_boundary', 'BODY.PEEK[1.HEADER]'):
        b'BODY[1.HEADER] {0}\r\n',
    ('no_boundary', 'BODY.PEEK[2.HEADER]'):
        b'BODY[2.HEADER] {0}\r\n',
    ('no_boundary', 'BODY.PEEK[2.TEXT]'):
        b'BODY[2.TEXT] {0}\r\n',
    ('no_boundary', 'BODY.PEEK[2.1]'):
        b'BODY[2.1] {0}\r\n',
    ('no_boundary', 'BODY.PEEK[2.2]'):
        b'BODY[2.2] {0}\r\n',
    ('no_boundary', 'BODY.PEEK[2.2.MIME]'):
        b'BODY[2.2.MIME] {0}\r\n',
    ('no_boundary', 'BODY.PEEK[1.1]'):
        b'BODY[1.1] {0}\r\n',
    ('no_boundary', 'BODY.PEEK[1.2]'):
        b'BODY[1.2] {0}\r\n',
    ('no_boundary', 'BODY.PEEK[3]'):
        b'BODY[3] {0}\r\n',
    ('no_boundary', 'BODY.PEEK[3.MIME]'):
        b'BODY[3.MIME] {0}\r\n',
    ('no_boundary', 'BODY.PEEK[9]'):
        b'BODY[9] {0}\r\n',
    ('no_boundary', 'BODY.PEEK[2.HEADER.FIELDS (subject)]'):
        b'BODY[2.HEADER.FIELDS (SUBJECT)] {0}\r\n',
    ('no_boundary', 'BODY.PEEK[HEADER.FIELDS (x-repeat FROM)]'):
        b'BODY[HEADER.FIELDS (X-REPEAT FROM)] {23}\r\nFrom: a@example.com\r\n\r\n',
    ('no_boundary', 'BODY.PEEK[HEADER.FIELDS.NOT (x-repeat FROM)]'):
        b'BODY[HEADER.FIELDS.NOT (X-REPEAT FROM)] {33}\r\nContent-Type: multipart/mixed\r\n\r\n',
    ('no_boundary', 'BODY.PEEK[TEXT]'):
        b'BODY[TEXT] {15}\r\n--foo\r\n\r\nbody\r\n',
    ('no_boundary', 'BODY.PEEK[HEADER]'):
        b'BODY[HEADER] {54}\r\nFrom: a@example.com\r\nContent-Type: multipart/mixed\r\n\r\n',
    ('no_boundary', 'BODY.PEEK[1.TEXT]'):
        b'BODY[1.TEXT] {0}\r\n',
    ('boundary_absent', 'ENVELOPE'):
        b'ENVELOPE (NIL NIL ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) NIL NIL NIL NIL NIL)',
    ('boundary_absent', 'BODYSTRUCTURE'):
        b'BODYSTRUCTURE (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed" ("boundary" "zzz") NIL NIL NIL)',
    ('boundary_absent', 'BODY'):
        b'BODY (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")',
    ('boundary_absent', 'BODY.PEEK[1.MIME]'):
        b'BODY[1.MIME] {0}\r\n',
    ('boundary_absent', 'BODY.PEEK[1]'):
        b'BODY[1] {0}\r\n',
    ('boundary_absent', 'BODY.PEEK[2]'):
        b'BODY[2] {0}\r\n',
    ('boundary_absent', 'BODY.PEEK[2.MIME]'):
        b'BODY[2.MIME] {0}\r\n',
    ('boundary_absent', 'BODY.PEEK[1.HEADER]'):
        b'BODY[1.HEADER] {0}\r\n',
    ('boundary_absent', 'BODY.PEEK[2.HEADER]'):
        b'BODY[2.HEADER] {0}\r\n',
    ('boundary_absent', 'BODY.PEEK[2.TEXT]'):
        b'BODY[2.TEXT] {0}\r\n',
    ('boundary_absent', 'BODY.PEEK[2.1]'):
        b'BODY[2.1] {0}\r\n',
    ('boundary_absent', 'BODY.PEEK[2.2]'):
        b'BODY[2.2] {0}\r\n',
    ('boundary_absent', 'BODY.PEEK[2.2.MIME]'):
        b'BODY[2.2.MIME] {0}\r\n',
    ('boundary_absent', 'BODY.PEEK[1.1]'):
        b'BODY[1.1] {0}\r\n',
    ('boundary_absent', 'BODY.PEEK[1.2]'):
        b'BODY[1.2] {0}\r\n',
    ('boundary_absent', 'BODY.PEEK[3]'):
        b'BODY[3] {0}\r\n',
    ('boundary_absent', 'BODY.PEEK[3.MIME]'):
        b'BODY[3.MIME] {0}\r\n',
    ('boundary_absent', 'BODY.PEEK[9]'):
        b'BODY[9] {0}\r\n',
    ('boundary_absent', 'BODY.PEEK[2.HEADER.FIELDS (subject)]'):
        b'BODY[2.HEADER.FIELDS (SUBJECT)] {0}\r\n',
    ('boundary_absent', 'BODY.PEEK[HEADER.FIELDS (x-repeat FROM)]'):
        b'BODY[HEADER.FIELDS (X-REPEAT FROM)] {23}\r\nFrom: a@example.com\r\n\r\n',
    ('boundary_absent', 'BODY.PEEK[HEADER.FIELDS.NOT (x-repeat FROM)]'):
        b'BODY[HEADER.FIELDS.NOT (X-REPEAT FROM)] {47}\r\nContent-Type: multipart/mixed; boundary=zzz\r\n\r\n',
    ('boundary_absent', 'BODY.PEEK[TEXT]'):
        b'BODY[TEXT] {15}\r\nno parts here\r\n',
    ('boundary_absent', 'BODY.PEEK[HEADER]'):
        b'BODY[HEADER] {68}\r\nFrom: a@example.com\r\nContent-Type: multipart/mixed; boundary=zzz\r\n\r\n',
    ('boundary_absent', 'BODY.PEEK[1.TEXT]'):
        b'BODY[1.TEXT] {0}\r\n',
    ('header_only', 'ENVELOPE'):
        b'ENVELOPE (NIL "no body" ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) ((NIL NIL "a" "example.com")) NIL NIL NIL NIL NIL)',
    ('header_only', 'BODYSTRUCTURE'):
        b'BODYSTRUCTURE ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)',
    ('header_only', 'BODY'):
        b'BODY ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)',
    ('header_only', 'BODY.PEEK[1.MIME]'):
        b'BODY[1.MIME] {37}\r\nFrom: a@example.com\r\nSubject: no body',
    ('header_only', 'BODY.PEEK[1]'):
        b'BODY[1] {0}\r\n',
    ('header_only', 'BODY.PEEK[2]'):
        b'BODY[2] {0}\r\n',
    ('header_only', 'BODY.PEEK[2.MIME]'):
        b'BODY[2.MIME] {0}\r\n',
    ('header_only', 'BODY.PEEK[1.HEADER]'):
        b'BODY[1.HEADER] {0}\r\n',
    ('header_only', 'BODY.PEEK[2.HEADER]'):
        b'BODY[2.HEADER] {0}\r\n',
    ('header_only', 'BODY.PEEK[2.TEXT]'):
        b'BODY[2.TEXT] {0}\r\n',
    ('header_only', 'BODY.PEEK[2.1]'):
        b'BODY[2.1] {0}\r\n',
    ('header_only', 'BODY.PEEK[2.2]'):
        b'BODY[2.2] {0}\r\n',
    ('header_only', 'BODY.PEEK[2.2.MIME]'):
        b'BODY[2.2.MIME] {0}\r\n',
    ('header_only', 'BODY.PEEK[1.1]'):
        b'BODY[1.1] {0}\r\n',
    ('header_only', 'BODY.PEEK[1.2]'):
        b'BODY[1.2] {0}\r\n',
    ('header_only', 'BODY.PEEK[3]'):
        b'BODY[3] {0}\r\n',
    ('header_only', 'BODY.PEEK[3.MIME]'):
        b'BODY[3.MIME] {0}\r\n',
    ('header_only', 'BODY.PEEK[9]'):
        b'BODY[9] {0}\r\n',
    ('header_only', 'BODY.PEEK[2.HEADER.FIELDS (subject)]'):
        b'BODY[2.HEADER.FIELDS (SUBJECT)] {0}\r\n',
    ('header_only', 'BODY.PEEK[HEADER.FIELDS (x-repeat FROM)]'):
        b'BODY[HEADER.FIELDS (X-REPEAT FROM)] {23}\r\nFrom: a@example.com\r\n\r\n',
    ('header_only', 'BODY.PEEK[HEADER.FIELDS.NOT (x-repeat FROM)]'):
        b'BODY[HEADER.FIELDS.NOT (X-REPEAT FROM)] {16}\r\nSubject: no body',
    ('header_only', 'BODY.PEEK[TEXT]'):
        b'BODY[TEXT] {0}\r\n',
    ('header_only', 'BODY.PEEK[HEADER]'):
        b'BODY[HEADER] {37}\r\nFrom: a@example.com\r\nSubject: no body',
    ('header_only', 'BODY.PEEK[1.TEXT]'):
        b'BODY[1.TEXT] {0}\r\n',
    ('empty_header', 'ENVELOPE'):
        b'ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)',
    ('empty_header', 'BODYSTRUCTURE'):
        b'BODYSTRUCTURE ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 1 NIL NIL NIL NIL)',
    ('empty_header', 'BODY'):
        b'BODY ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 1)',
    ('empty_header', 'BODY.PEEK[1.MIME]'):
        b'BODY[1.MIME] {2}\r\n\r\n',
    ('empty_header', 'BODY.PEEK[1]'):
        b'BODY[1] {13}\r\njust a body\r\n',
    ('empty_header', 'BODY.PEEK[2]'):
        b'BODY[2] {0}\r\n',
    ('empty_header', 'BODY.PEEK[2.MIME]'):
        b'BODY[2.MIME] {0}\r\n',
    ('empty_header', 'BODY.PEEK[1.HEADER]'):
        b'BODY[1.HEADER] {0}\r\n',
    ('empty_header', 'BODY.PEEK[2.HEADER]'):
        b'BODY[2.HEADER] {0}\r\n',
    ('empty_header', 'BODY.PEEK[2.TEXT]'):
        b'BODY[2.TEXT] {0}\r\n',
    ('empty_header', 'BODY.PEEK[2.1]'):
        b'BODY[2.1] {0}\r\n',
    ('empty_header', 'BODY.PEEK[2.2]'):
        b'BODY[2.2] {0}\r\n',
    ('empty_header', 'BODY.PEEK[2.2.MIME]'):
        b'BODY[2.2.MIME] {0}\r\n',
    ('empty_header', 'BODY.PEEK[1.1]'):
        b'BODY[1.1] {0}\r\n',
    ('empty_header', 'BODY.PEEK[1.2]'):
        b'BODY[1.2] {0}\r\n',
    ('empty_header', 'BODY.PEEK[3]'):
        b'BODY[3] {0}\r\n',
    ('empty_header', 'BODY.PEEK[3.MIME]'):
        b'BODY[3.MIME] {0}\r\n',
    ('empty_header', 'BODY.PEEK[9]'):
        b'BODY[9] {0}\r\n',
    ('empty_header', 'BODY.PEEK[2.HEADER.FIELDS (subject)]'):
        b'BODY[2.HEADER.FIELDS (SUBJECT)] {0}\r\n',
    ('empty_header', 'BODY.PEEK[HEADER.FIELDS (x-repeat FROM)]'):
        b'BODY[HEADER.FIELDS (X-REPEAT FROM)] {2}\r\n\r\n',
    ('empty_header', 'BODY.PEEK[HEADER.FIELDS.NOT (x-repeat FROM)]'):
        b'BODY[HEADER.FIELDS.NOT (X-REPEAT FROM)] {2}\r\n\r\n',
    ('empty_header', 'BODY.PEEK[TEXT]'):
        b'BODY[TEXT] {13}\r\njust a body\r\n',
    ('empty_header', 'BODY.PEEK[HEADER]'):
        b'BODY[HEADER] {2}\r\n\r\n',
    ('empty_header', 'BODY.PEEK[1.TEXT]'):
        b'BODY[1.TEXT] {0}\r\n',
    ('bad_ct', 'ENVELOPE'):
        b'ENVELOPE (NIL "" ((NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")) ((NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")) ((NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")) ((NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")(NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")(NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")(NIL NIL "x" "y")) NIL NIL NIL NIL)',
    ('bad_ct', 'BODYSTRUCTURE'):
        b'BODYSTRUCTURE ("text" "" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL)',
    ('bad_ct', 'BODY'):
        b'BODY ("text" "" ("charset" "us-ascii") NIL NIL "7bit" 6 1)',
    ('bad_ct', 'BODY.PEEK[1.MIME]'):
        b'BODY[1.MIME] {56}\r\nFrom: <>\r\nTo: ,,, x@y,\r\nContent-Type: text\r\nSubject:\r\n\r\n',
    ('bad_ct', 'BODY.PEEK[1]'):
        b'BODY[1] {6}\r\nbody\r\n',
    ('bad_ct', 'BODY.PEEK[2]'):
        b'BODY[2] {0}\r\n',
    ('bad_ct', 'BODY.PEEK[2.MIME]'):
        b'BODY[2.MIME] {0}\r\n',
    ('bad_ct', 'BODY.PEEK[1.HEADER]'):
        b'BODY[1.HEADER] {0}\r\n',
    ('bad_ct', 'BODY.PEEK[2.HEADER]'):
        b'BODY[2.HEADER] {0}\r\n',
    ('bad_ct', 'BODY.PEEK[2.TEXT]'):
        b'BODY[2.TEXT] {0}\r\n',
    ('bad_ct', 'BODY.PEEK[2.1]'):
        b'BODY[2.1] {0}\r\n',
    ('bad_ct', 'BODY.PEEK[2.2]'):
        b'BODY[2.2] {0}\r\n',
    ('bad_ct', 'BODY.PEEK[2.2.MIME]'):
        b'BODY[2.2.MIME] {0}\r\n',
    ('bad_ct', 'BODY.PEEK[1.1]'):
        b'BODY[1.1] {0}\r\n',
    ('bad_ct', 'BODY.PEEK[1.2]'):
        b'BODY[1.2] {0}\r\n',
    ('bad_ct', 'BODY.PEEK[3]'):
        b'BODY[3] {0}\r\n',
    ('bad_ct', 'BODY.PEEK[3.MIME]'):
        b'BODY[3.MIME] {0}\r\n',
    ('bad_ct', 'BODY.PEEK[9]'):
        b'BODY[9] {0}\r\n',
    ('bad_ct', 'BODY.PEEK[2.HEADER.FIELDS (subject)]'):
        b'BODY[2.HEADER.FIELDS (SUBJECT)] {0}\r\n',
    ('bad_ct', 'BODY.PEEK[HEADER.FIELDS (x-repeat FROM)]'):
        b'BODY[HEADER.FIELDS (X-REPEAT FROM)] {12}\r\nFrom: <>\r\n\r\n',
    ('bad_ct', 'BODY.PEEK[HEADER.FIELDS.NOT (x-repeat FROM)]'):
        b'BODY[HEADER.FIELDS.NOT (X-REPEAT FROM)] {46}\r\nTo: ,,, x@y,\r\nContent-Type: text\r\nSubject:\r\n\r\n',
    ('bad_ct', 'BODY.PEEK[TEXT]'):
        b'BODY[TEXT] {6}\r\nbody\r\n',
    ('bad_ct', 'BODY.PEEK[HEADER]'):
        b'BODY[HEADER] {56}\r\nFrom: <>\r\nTo: ,,, x@y,\r\nContent-Type: text\r\nSubject:\r\n\r\n',
    ('bad_ct', 'BODY.PEEK[1.TEXT]'):
        b'BODY[1.TEXT] {0}\r\n',
    ('digest', 'ENVELOPE'):
        b'ENVELOPE (NIL NIL ((NIL NIL "list" "example.com")) ((NIL NIL "list" "example.com")) ((NIL NIL "list" "example.com")) NIL NIL NIL NIL NIL)',
    ('digest', 'BODYSTRUCTURE'):
        b'BODYSTRUCTURE (("message" "rfc822" NIL NIL NIL "7bit" 44 (NIL "one" ((NIL NIL "one" "example.com")) ((NIL NIL "one" "example.com")) ((NIL NIL "one" "example.com")) NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 0 NIL NIL NIL NIL) "digest" ("boundary" "d") NIL NIL NIL)',
    ('digest', 'BODY'):
        b'BODY (("message" "rfc822" NIL NIL NIL "7bit" 44 (NIL "one" ((NIL NIL "one" "example.com")) ((NIL NIL "one" "example.com")) ((NIL NIL "one" "example.com")) NIL NIL NIL NIL NIL) ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0) 3)("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 0) "digest")',
    ('digest', 'BODY.PEEK[1.MIME]'):
        b'BODY[1.MIME] {2}\r\n\r\n',
    ('digest', 'BODY.PEEK[1]'):
        b'BODY[1] {44}\r\nFrom: one@example.com\r\nSubject: one\r\n\r\nfirst',
    ('digest', 'BODY.PEEK[2]'):
        b'BODY[2] {13}\r\nnot a message',
    ('digest', 'BODY.PEEK[2.MIME]'):
        b'BODY[2.MIME] {28}\r\nContent-Type: text/plain\r\n\r\n',
    ('digest', 'BODY.PEEK[1.HEADER]'):
        b'BODY[1.HEADER] {39}\r\nFrom: one@example.com\r\nSubject: one\r\n\r\n',
    ('digest', 'BODY.PEEK[2.HEADER]'):
        b'BODY[2.HEADER] {0}\r\n',
    ('digest', 'BODY.PEEK[2.TEXT]'):
        b'BODY[2.TEXT] {0}\r\n',
    ('digest', 'BODY.PEEK[2.1]'):
        b'BODY[2.1] {13}\r\nnot a message',
    ('digest', 'BODY.PEEK[2.2]'):
        b'BODY[2.2] {0}\r\n',
    ('digest', 'BODY.PEEK[2.2.MIME]'):
        b'BODY[2.2.MIME] {0}\r\n',
    ('digest', 'BODY.PEEK[1.1]'):
        b'BODY[1.1] {5}\r\nfirst',
    ('digest', 'BODY.PEEK[1.2]'):
        b'BODY[1.2] {0}\r\n',
    ('digest', 'BODY.PEEK[3]'):
        b'BODY[3] {0}\r\n',
    ('digest', 'BODY.PEEK[3.MIME]'):
        b'BODY[3.MIME] {0}\r\n',
    ('digest', 'BODY.PEEK[9]'):
        b'BODY[9] {0}\r\n',
    ('digest', 'BODY.PEEK[2.HEADER.FIELDS (subject)]'):
        b'BODY[2.HEADER.FIELDS (SUBJECT)] {0}\r\n',
    ('digest', 'BODY.PEEK[HEADER.FIELDS (x-repeat FROM)]'):
        b'BODY[HEADER.FIELDS (X-REPEAT FROM)] {26}\r\nFrom: list@example.com\r\n\r\n',
    ('digest', 'BODY.PEEK[HEADER.FIELDS.NOT (x-repeat FROM)]'):
        b'BODY[HEADER.FIELDS.NOT (X-REPEAT FROM)] {46}\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n',
    ('digest', 'BODY.PEEK[TEXT]'):
        b'BODY[TEXT] {108}\r\n--d\r\n\r\nFrom: one@example.com\r\nSubject: one\r\n\r\nfirst\r\n--d\r\nContent-Type: text/plain\r\n\r\nnot a message\r\n--d--\r\n',
    ('digest', 'BODY.PEEK[HEADER]'):
        b'BODY[HEADER] {70}\r\nFrom: list@example.com\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n',
    ('digest', 'BODY.PEEK[1.TEXT]'):
        b'BODY[1.TEXT] {5}\r\nfirst',
}
