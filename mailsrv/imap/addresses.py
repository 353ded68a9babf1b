"""RFC 5322 address lists (From, To, Cc, ...) parsed as Dovecot 2.3 parses
them, for ENVELOPE and for the FROM/TO/CC/BCC search keys.

Real mail is full of broken address headers, and what a server makes of
them is visible to clients: ENVELOPE shows every address it found, and
``SEARCH FROM x`` finds a message only if ``x`` is in what the parser
made of the header.  Clients compare servers; this module gives the same
answer as Dovecot on hostile input (groups with comments, empty groups,
unterminated quotes and angle brackets, stray specials), verified against
a recorded corpus (``tests/fixtures/dovecot-addresses.json``).

The parser is a recursive descent over RFC 5322 ``address-list`` with the
obsolete forms (routes, dots in phrases) and Dovecot's recovery: each
step answers ``ERR`` (syntax error here), ``END`` (the value is used up)
or ``MORE``; a mailbox that fails to parse still yields an address with
``MISSING_MAILBOX`` / ``MISSING_DOMAIN`` / ``SYNTAX_ERROR`` where parts are
missing, and the list goes on after the next comma.

An :data:`Address` is ``(name, route, mailbox, domain)``; a group is
bracketed by ``(None, None, group-name, None)`` and ``(None, None, None,
None)`` as in ENVELOPE (RFC 3501 7.4.2).
"""

from __future__ import annotations

Address = tuple[bytes | None, bytes | None, bytes | None, bytes | None]
GROUP_END: Address = (None, None, None, None)

ERR, END, MORE = -1, 0, 1

# atext (RFC 5322 3.2.3) plus every 8-bit byte, as Dovecot reads raw UTF-8
_ATEXT = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~"
) | frozenset(range(0x80, 0x100))
_ATEXT_OR_DOT = _ATEXT | {0x2E}
_LWSP = frozenset(b" \t\r\n")

MISSING_MAILBOX = b"MISSING_MAILBOX"
MISSING_DOMAIN = b"MISSING_DOMAIN"
SYNTAX_ERROR = b"SYNTAX_ERROR"
INVALID_ROUTE = b"INVALID_ROUTE"


class _Parser:
    """One header value; ``pos`` moves forward only.  ``comment`` is the
    text of the last comment skipped (a name for ``addr (Name)``)."""

    def __init__(self, data: bytes, fill_missing: bool) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.comment = b""
        self.fill = fill_missing
        self.out: list[Address] = []
        self._reset()

    def _reset(self) -> None:
        self.name: bytes | None = None
        self.route: bytes | None = None
        self.mailbox: bytes | None = None
        self.domain: bytes | None = None
        self.invalid = False

    def _at(self, ch: int) -> bool:
        return self.pos < self.end and self.data[self.pos] == ch

    def _more(self) -> int:
        return MORE if self.pos < self.end else END

    # -- lexical (RFC 5322 3.2) -------------------------------------------------------

    def skip_comment(self) -> int:
        """At '(': skip a (nested) comment.  Its text, quoted-pairs
        unescaped, becomes ``comment`` - as far as it got when the comment
        is unterminated."""
        d = self.data
        depth = 1
        self.pos += 1
        text = bytearray()
        self.comment = b""
        start = self.pos
        while self.pos < self.end:
            c = d[self.pos]
            if c == 0x28:
                depth += 1
            elif c == 0x29:
                depth -= 1
                if depth == 0:
                    text += d[start:self.pos]
                    self.comment = bytes(text)
                    self.pos += 1
                    return self._more()
            elif c == 0x5C:
                self.pos += 1
                if self.pos >= self.end:
                    return ERR
                text += d[start:self.pos - 1]
                self.comment = bytes(text)
                start = self.pos
            self.pos += 1
        return ERR

    def skip_cfws(self) -> int:
        d = self.data
        while self.pos < self.end:
            c = d[self.pos]
            if c in _LWSP:
                self.pos += 1
            elif c == 0x28:
                if self.skip_comment() == ERR:
                    return ERR
            else:
                break
        return self._more()

    def _run(self, allowed: frozenset[int]) -> bytes:
        d, p = self.data, self.pos
        while p < self.end and d[p] in allowed:
            p += 1
        run, self.pos = d[self.pos:p], p
        return run

    def dot_atom(self, out: bytearray) -> int:
        """dot-atom, with CFWS allowed around the dots (RFC 822); a dot must
        be followed by an atom (``a@b.`` has no valid domain)."""
        if self.pos >= self.end or self.data[self.pos] not in _ATEXT:
            return ERR
        while True:
            out += self._run(_ATEXT)
            if self.pos >= self.end:
                return END
            ret = self.skip_cfws()
            if ret <= END:
                return ret
            if not self._at(0x2E):
                return MORE
            self.pos += 1
            out += b"."
            if self.skip_cfws() <= END or self.data[self.pos] not in _ATEXT:
                return ERR

    def atom(self, out: bytearray) -> int:
        if self.pos >= self.end or self.data[self.pos] not in _ATEXT:
            return ERR
        out += self._run(_ATEXT)
        return self.skip_cfws() if self.pos < self.end else END

    def loose_dot_atom(self, out: bytearray) -> int:
        """A local part with dots anywhere (``.a..b.``), as real mail has."""
        ret = ERR
        while True:
            while self._at(0x2E):
                out += b"."
                self.pos += 1
                if self.pos >= self.end:
                    return END  # the @domain is missing, the local part is fine
                ret = MORE
            if self._at(0x40):
                return ret
            ret = self.atom(out)
            if ret <= END or not self._at(0x2E):
                return ret

    def quoted(self, out: bytearray) -> int:
        """At '"': the quoted string's content, unescaped, folding removed."""
        d = self.data
        self.pos += 1
        start = self.pos
        while self.pos < self.end:
            c = d[self.pos]
            if c == 0x22:
                out += d[start:self.pos]
                self.pos += 1
                return self.skip_cfws()
            if c == 0x0A:
                stop = self.pos - 1 if self.pos > start and d[self.pos - 1] == 0x0D else self.pos
                out += d[start:stop]
                start = self.pos + 1
            elif c == 0x5C:
                self.pos += 1
                if self.pos >= self.end:
                    return ERR
                out += d[start:self.pos - 1]
                start = self.pos
            self.pos += 1
        return ERR

    def phrase(self, out: bytearray) -> int:
        """phrase / obs-phrase: words (and dots) joined by one space."""
        if self.pos >= self.end:
            return END
        if self._at(0x2E):
            return ERR
        while True:
            if self._at(0x22):
                ret = self.quoted(out)
            else:
                out += self._run(_ATEXT_OR_DOT)
                ret = self.skip_cfws() if self.pos < self.end else END
            if ret <= END:
                return ret
            c = self.data[self.pos]
            if c not in _ATEXT_OR_DOT and c != 0x22:
                break
            out += b" "
        return self.skip_cfws()

    def domain_literal(self, out: bytearray) -> int:
        """At '[': the literal as written, brackets and escapes kept."""
        d = self.data
        start = self.pos
        while self.pos < self.end:
            c = d[self.pos]
            if c == 0x5C:
                self.pos += 1
                if self.pos >= self.end:
                    break
            elif c == 0x5D:
                self.pos += 1
                out += d[start:self.pos]
                return self.skip_cfws()
            self.pos += 1
        return ERR

    def lex_domain(self, out: bytearray) -> int:
        """At '@': the domain after it."""
        self.pos += 1
        if self.skip_cfws() <= END:
            return ERR
        if self._at(0x5B):
            return self.domain_literal(out)
        return self.dot_atom(out)

    # -- addresses (RFC 5322 3.4) ------------------------------------------------------

    def local_part(self, out: bytearray) -> int:
        ret = self.quoted(out) if self._at(0x22) else self.loose_dot_atom(out)
        if ret == ERR:
            return ERR
        self.mailbox = bytes(out)
        return ret

    def parse_domain(self) -> int:
        out = bytearray()
        ret = self.lex_domain(out)
        if ret == ERR:
            return ERR
        self.domain = bytes(out)
        return ret

    def domain_list(self) -> int:
        """obs-domain-list: '@a,@b' before the ':' of a route."""
        out = bytearray()
        while True:
            if self.pos >= self.end:
                return END
            if not self._at(0x40):
                break
            if out:
                out += b","
            out += b"@"
            ret = self.lex_domain(out)
            if ret <= END:
                return ret
            while self.skip_cfws() > END and self._at(0x2C):
                self.pos += 1
        self.route = bytes(out)
        return MORE

    def angle_addr(self) -> int:
        """At '<': [route ':'] local-part ['@' domain] '>'; a broken route
        is marked and parsing goes on."""
        self.pos += 1
        if self.skip_cfws() <= END:
            return ERR
        if self._at(0x40):
            if self.domain_list() > END and self._at(0x3A):
                self.pos += 1
            else:
                if self.fill:
                    self.route = INVALID_ROUTE
                if self.pos >= self.end:
                    return ERR
            if self.skip_cfws() <= END:
                return ERR
        if not self._at(0x3E):  # else '<>': no address at all
            if self.local_part(bytearray()) <= END:
                return ERR
            if self._at(0x40) and self.parse_domain() <= END:
                return ERR
        if not self._at(0x3E):
            return ERR
        self.pos += 1
        return self.skip_cfws()

    def name_addr(self) -> int:
        out = bytearray()
        if self.phrase(out) <= END or not self._at(0x3C):
            return ERR
        self.name = bytes(out) or None
        if self.angle_addr() == ERR:
            if self.fill:
                self.domain = SYNTAX_ERROR
            self.invalid = True
        return self._more()

    def addr_spec(self) -> int:
        """local-part ['@' domain]; a lone word is a mailbox without a
        domain, several words a display name without an address."""
        self.comment = b""
        quoted = self._at(0x22)
        text = bytearray()
        ret = self.local_part(text)
        if ret <= END:
            self.invalid = True
        tried_domain = False
        if ret != END and self._at(0x40):
            tried_domain = True
            ret2 = self.parse_domain()
            if ret2 <= END:
                ret = ret2
        if self.comment:
            self.name = self.comment
        elif not tried_domain:
            text += b" "
            before = len(text)
            self.phrase(text)
            if len(text) != before:
                self.mailbox = None
                self.name = bytes(text)
            elif not quoted:
                self.domain = b""
            self.invalid = True
            ret = ERR
        return ret

    def add(self, addr: Address) -> None:
        self.out.append(addr)
        self._reset()

    def add_fixed(self) -> None:
        """The address being built, its missing parts filled in."""
        mailbox = self.mailbox if self.mailbox is not None else (MISSING_MAILBOX if self.fill else b"")
        domain = self.domain if self.domain else (MISSING_DOMAIN if self.fill else b"")
        self.add((self.name, self.route, mailbox, domain))

    def mailbox_(self) -> int:
        start = self.pos
        ret = self.name_addr()
        if ret == ERR:
            self.pos = start
            self._reset()
            ret = self.addr_spec()
            if self.invalid and self.name is None and self.mailbox is not None and self.domain is None:
                self.name, self.mailbox = self.mailbox, None  # a lone quoted word: a name
        self.add_fixed()
        return ret

    def group(self) -> int:
        out = bytearray()
        if self.phrase(out) <= END or not self._at(0x3A):
            return ERR
        # a group from here on, whatever follows
        self.pos += 1
        ret = self.skip_cfws()
        self.add((None, None, bytes(out), None))
        if ret > END and not self._at(0x3B):
            while True:
                self.mailbox_()  # a broken mailbox: go on with the next
                if not self._at(0x2C):
                    break
                self.pos += 1
                if self.skip_cfws() <= END:
                    ret = ERR
                    break
        if ret >= END:
            if not self._at(0x3B):
                ret = ERR
            else:
                self.pos += 1
                ret = self.skip_cfws()
        self.add(GROUP_END)
        return END if ret == END else MORE

    def address(self) -> int:
        start = self.pos
        ret = self.group()
        if ret == ERR:
            self.pos = start
            self._reset()
            ret = self.mailbox_()
        return ret

    def address_list(self) -> None:
        while True:
            if self.address() == END:
                return
            if not self._at(0x2C):
                return
            self.pos += 1
            ret = self.skip_cfws()
            if ret <= END:
                if ret == ERR:
                    self.add_fixed()  # ends with garbage
                return


def parse(value: bytes, fill_missing: bool = True) -> list[Address]:
    """The addresses of one header value (unfolded or not).  With
    ``fill_missing`` (ENVELOPE) absent parts read MISSING_MAILBOX /
    MISSING_DOMAIN; without, they are empty."""
    p = _Parser(value, fill_missing)
    if p.skip_cfws() <= END:
        return []
    p.address_list()
    return p.out


def _maybe_quoted(s: bytes, dots_ok: bool) -> bytes:
    """A name or local part as RFC 5322 text: bare when it is all atext
    (and dots, for a local part), else quoted, with ``"``, ``\\`` and
    ``'`` escaped."""
    if all(c in _ATEXT or (dots_ok and c == 0x2E) for c in s):
        return s
    return b'"' + bytes(_escaped(s)) + b'"'


def _escaped(s: bytes) -> bytearray:
    out = bytearray()
    for c in s:
        if c in b"\"\\'":
            out.append(0x5C)
        out.append(c)
    return out


def _phrase_text(s: bytes) -> bytes:
    # encoded words may not be quoted: left as they are (obs-phrase)
    return s if b"=?" in s else _maybe_quoted(s, False)


def written(addrs: list[Address]) -> bytes:
    """The list as one line, the way Dovecot writes it for SEARCH FROM/TO/
    CC/BCC: ``"Display Name" <@route:mailbox@domain>``, ``<mailbox@domain>``,
    ``group: <a@b>, <c@d>;``."""
    out = bytearray()
    first, in_group = True, False
    for name, route, mailbox, domain in addrs:
        if not first:
            out += b", "
        first = False
        if domain is None:
            if not in_group:
                out += _phrase_text(mailbox) if mailbox else b'""'
                out += b": "
                first = True
            elif out.endswith(b", "):
                out[-2:] = b";"
            else:
                out[-1:] = b";"
            in_group = not in_group
            continue
        mailbox = mailbox or b""
        if name is not None:
            out += _phrase_text(name)
        if route is not None or mailbox or domain:
            if name:
                out += b" "
            out += b"<" + (route + b":" if route is not None else b"")
            out += _maybe_quoted(mailbox, True) if mailbox else b'""'
            out += (b"@" + domain if domain else b"") + b">"
    return bytes(out)
