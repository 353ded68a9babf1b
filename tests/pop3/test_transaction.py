"""TRANSACTION and UPDATE states, command errors, limits, autologout."""

from twisted.trial import unittest

from mailsrv.pop3 import lines
from mailsrv.store.interfaces import StoreError
from tests.pop3.helpers import Session, make_factory

M1 = b"From: a@example\nSubject: one\n\nfirst line\n.dot line\nlast\n"
M2 = b"From: b@example\r\nSubject: two\r\n\r\nbody\r\n"
M3 = b"Subject: three\n\nx\n"


def crlf_len(raw: bytes) -> int:
    return len(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


class Base(unittest.TestCase):
    def setUp(self):
        self.factory = make_factory()
        self.account = self.factory.store.account("alice")
        self.inbox = self.account.inbox
        self.uids = [self.inbox.add(m).uid for m in (M1, M2, M3)]
        self.s = Session(self.factory)
        self.s.login()
        self.sizes = [crlf_len(m) for m in (M1, M2, M3)]

    def cmd(self, line):
        return self.s.cmd(line)


class Listing(Base):
    def test_stat(self):
        self.assertEqual(self.cmd("STAT"), b"+OK 3 %d\r\n" % sum(self.sizes))

    def test_list(self):
        out = self.cmd("LIST")
        body = b"".join(b"%d %d\r\n" % (i + 1, n) for i, n in enumerate(self.sizes))
        self.assertEqual(out, b"+OK 3 messages (%d octets)\r\n" % sum(self.sizes) + body + b".\r\n")

    def test_list_one(self):
        self.assertEqual(self.cmd("LIST 2"), b"+OK 2 %d\r\n" % self.sizes[1])
        self.assertEqual(self.cmd("LIST 02"), b"+OK 2 %d\r\n" % self.sizes[1])

    def test_list_errors(self):
        self.assertEqual(self.cmd("LIST 4"), b"-ERR No such message.\r\n")
        self.assertEqual(self.cmd("LIST 0"), b"-ERR No such message.\r\n")
        self.assertEqual(self.cmd("LIST 99999999999999999999"), b"-ERR No such message.\r\n")
        self.assertEqual(self.cmd("LIST -1"), b"-ERR Invalid message number.\r\n")
        self.assertEqual(self.cmd("LIST x"), b"-ERR Invalid message number.\r\n")
        self.assertEqual(self.cmd("LIST 1 2"), b"-ERR Wrong number of arguments.\r\n")

    def test_uidl(self):
        out = self.cmd("UIDL")
        body = b"".join(b"%d %08x000003e8\r\n" % (i + 1, uid) for i, uid in enumerate(self.uids))
        self.assertEqual(out, b"+OK Unique-ID listing follows.\r\n" + body + b".\r\n")
        self.assertEqual(self.cmd("UIDL 3"), b"+OK 3 %08x000003e8\r\n" % self.uids[2])
        self.assertEqual(self.cmd("UIDL 4"), b"-ERR No such message.\r\n")

    def test_noop(self):
        self.assertEqual(self.cmd("NOOP"), b"+OK\r\n")
        self.assertEqual(self.cmd("noop"), b"+OK\r\n")
        self.assertEqual(self.cmd("NOOP x"), b"-ERR Wrong number of arguments.\r\n")


class Retrieval(Base):
    def test_retr(self):
        out = self.cmd("RETR 1")
        self.assertEqual(
            out,
            b"+OK %d octets\r\nFrom: a@example\r\nSubject: one\r\n\r\nfirst line\r\n..dot line\r\nlast\r\n.\r\n"
            % self.sizes[0],
        )

    def test_retr_crlf_stored(self):
        self.assertEqual(self.cmd("RETR 2"), b"+OK %d octets\r\n" % self.sizes[1] + M2 + b".\r\n")

    def test_retr_errors(self):
        self.assertEqual(self.cmd("RETR 9"), b"-ERR No such message.\r\n")
        self.assertEqual(self.cmd("RETR"), b"-ERR Wrong number of arguments.\r\n")
        self.assertEqual(self.cmd("RETR 1 2"), b"-ERR Wrong number of arguments.\r\n")
        self.assertEqual(self.cmd("RETR +1"), b"-ERR Invalid message number.\r\n")
        self.assertFalse(self.s.closed)

    def test_top(self):
        self.assertEqual(self.cmd("TOP 1 0"), b"+OK\r\nFrom: a@example\r\nSubject: one\r\n\r\n.\r\n")
        self.assertEqual(
            self.cmd("TOP 1 2"), b"+OK\r\nFrom: a@example\r\nSubject: one\r\n\r\nfirst line\r\n..dot line\r\n.\r\n"
        )

    def test_top_huge(self):
        full = self.cmd("RETR 1").split(b"\r\n", 1)[1]
        self.assertEqual(self.cmd("TOP 1 99999999"), b"+OK\r\n" + full)
        self.assertEqual(self.cmd("TOP 1 " + "9" * 200), b"+OK\r\n" + full)

    def test_top_errors(self):
        self.assertEqual(self.cmd("TOP 1"), b"-ERR Wrong number of arguments.\r\n")
        self.assertEqual(self.cmd("TOP 1 -1"), b"-ERR Invalid number of lines.\r\n")
        self.assertEqual(self.cmd("TOP 5 1"), b"-ERR No such message.\r\n")

    def test_expunged_meanwhile(self):
        self.inbox.expunge([self.uids[0]])  # another session expunged it
        self.assertEqual(self.cmd("RETR 1"), b"-ERR Message was expunged by another session.\r\n")
        self.assertEqual(self.cmd("TOP 1 0"), b"-ERR Message was expunged by another session.\r\n")
        self.assertEqual(self.cmd("STAT"), b"+OK 3 %d\r\n" % sum(self.sizes))  # still frozen
        self.assertEqual(self.cmd("UIDL 1"), b"+OK 1 %08x000003e8\r\n" % self.uids[0])
        self.assertTrue(self.cmd("UIDL").startswith(b"+OK Unique-ID listing follows.\r\n1 "))
        self.assertEqual(self.cmd("DELE 1"), b"+OK Marked to be deleted.\r\n")
        self.assertEqual(self.cmd("QUIT"), b"+OK Logging out, 1 messages deleted.\r\n")

    def test_open_raises_message_gone(self):
        self.inbox.get = lambda uid: object()  # listed, but the file is gone
        self.inbox.expunge([self.uids[1]])
        self.assertEqual(self.cmd("RETR 2"), b"-ERR Message was expunged by another session.\r\n")

    def test_store_error_on_open(self):
        self.inbox.fail["open_message"] = StoreError("disk on fire")
        self.assertIn(b"-ERR [SYS/TEMP]", self.cmd("RETR 1"))
        self.assertEqual(self.cmd("NOOP"), b"+OK\r\n")
        self.flushLoggedErrors()

    def test_file_closed_after_retr(self):
        self.cmd("RETR 1")
        self.assertTrue(self.inbox.opened)
        self.assertTrue(all(f.closed for f in self.inbox.opened))

    def test_frozen_view_ignores_new_mail(self):
        self.inbox.add(b"Subject: new\n\n")
        self.assertEqual(self.cmd("STAT"), b"+OK 3 %d\r\n" % sum(self.sizes))
        self.assertEqual(self.cmd("LIST 4"), b"-ERR No such message.\r\n")


class Deletion(Base):
    def test_dele_hides_message(self):
        self.assertEqual(self.cmd("DELE 2"), b"+OK Marked to be deleted.\r\n")
        self.assertEqual(self.cmd("STAT"), b"+OK 2 %d\r\n" % (self.sizes[0] + self.sizes[2]))
        self.assertNotIn(b"\r\n2 ", self.cmd("LIST"))
        self.assertNotIn(b"\r\n2 ", self.cmd("UIDL"))
        for c in ("LIST 2", "UIDL 2", "RETR 2", "TOP 2 1", "DELE 2"):
            self.assertEqual(self.cmd(c), b"-ERR Message is deleted.\r\n", c)
        self.assertEqual(self.inbox.calls_to("expunge"), [])

    def test_rset_undeletes(self):
        self.cmd("DELE 1")
        self.cmd("DELE 3")
        self.assertEqual(self.cmd("RSET"), b"+OK 3 messages (%d octets).\r\n" % sum(self.sizes))
        self.assertEqual(self.cmd("STAT"), b"+OK 3 %d\r\n" % sum(self.sizes))
        self.assertEqual(self.cmd("QUIT"), b"+OK Logging out, 0 messages deleted.\r\n")
        self.assertEqual(self.inbox.calls_to("expunge"), [])

    def test_quit_expunges_in_update(self):
        self.cmd("RETR 1")
        self.cmd("RETR 2")
        self.cmd("TOP 3 1")
        self.cmd("DELE 2")
        self.cmd("DELE 3")
        self.assertEqual(self.cmd("QUIT"), b"+OK Logging out, 2 messages deleted.\r\n")
        self.assertTrue(self.s.closed)
        self.assertEqual(self.inbox.calls_to("expunge"), [([self.uids[1], self.uids[2]],)])
        # \Seen only for messages fully retrieved and kept
        self.assertEqual(self.inbox.calls_to("store_flags"), [([self.uids[0]], ["\\Seen"], "+")])
        self.assertFalse(self.account.pop3_locked)
        self.assertEqual(self.inbox.uids(), [self.uids[0]])

    def test_drop_deletes_nothing(self):
        self.cmd("RETR 1")
        self.cmd("DELE 1")
        self.cmd("DELE 2")
        self.s.drop()
        self.assertEqual(self.inbox.calls_to("expunge"), [])
        self.assertEqual(self.inbox.calls_to("store_flags"), [])
        self.assertEqual(len(self.inbox.uids()), 3)
        self.assertFalse(self.account.pop3_locked)

    def test_timeout_deletes_nothing(self):
        self.cmd("DELE 1")
        clock = self.s.clock
        clock.advance(599)
        self.assertFalse(self.s.closed)
        self.cmd("NOOP")  # activity resets the autologout timer
        clock.advance(599)
        self.assertFalse(self.s.closed)
        clock.advance(2)
        self.assertEqual(self.s.read(), b"-ERR Disconnected for inactivity.\r\n")
        self.assertTrue(self.s.closed)
        self.s.drop()
        self.assertEqual(self.inbox.calls_to("expunge"), [])
        self.assertFalse(self.account.pop3_locked)

    def test_expunge_failure(self):
        self.inbox.fail["expunge"] = StoreError("read-only file system")
        self.cmd("DELE 1")
        self.assertEqual(self.cmd("QUIT"), b"-ERR [SYS/TEMP] Some deleted messages were not removed.\r\n")
        self.assertTrue(self.s.closed)
        self.assertFalse(self.account.pop3_locked)
        self.flushLoggedErrors()

    def test_commands_after_quit_ignored(self):
        out = self.s.send(b"DELE 1\r\nQUIT\r\nDELE 2\r\nNOOP\r\n")
        self.assertEqual(out, b"+OK Marked to be deleted.\r\n+OK Logging out, 1 messages deleted.\r\n")
        self.assertEqual(self.inbox.calls_to("expunge"), [([self.uids[0]],)])


class Timeout(unittest.TestCase):
    def test_configured_timeout_in_authorization(self):
        s = Session(pop3_timeout=900)
        s.read()
        s.clock.advance(899)
        self.assertFalse(s.closed)
        s.clock.advance(1)
        self.assertTrue(s.closed)
        self.assertEqual(s.read(), b"-ERR Disconnected for inactivity.\r\n")

    def test_default_is_ten_minutes(self):
        s = Session()
        self.assertEqual(s.proto.timeOut, 600)


class BadInput(unittest.TestCase):
    def test_unknown_and_malformed_continue(self):
        s = Session()
        self.assertEqual(s.cmd("FOO"), b"-ERR Unknown command.\r\n")
        self.assertEqual(s.cmd(""), b"-ERR Unknown command.\r\n")
        self.assertEqual(s.cmd(" USER a"), b"-ERR Unknown command.\r\n")
        self.assertEqual(s.cmd("USER"), b"-ERR Wrong number of arguments.\r\n")
        self.assertEqual(s.cmd("USER a b"), b"-ERR Wrong number of arguments.\r\n")
        self.assertEqual(s.cmd("PASS"), b"-ERR Wrong number of arguments.\r\n")
        self.assertEqual(s.cmd("QUIT now"), b"-ERR Wrong number of arguments.\r\n")
        self.assertFalse(s.closed)
        self.assertEqual(s.cmd("USER alice"), b"+OK\r\n")

    def test_ten_bad_commands_close(self):
        s = Session()
        s.read()
        for _ in range(9):  # the issue fixes the limit at 10
            self.assertEqual(s.cmd("BOGUS"), b"-ERR Unknown command.\r\n")
            self.assertFalse(s.closed)
        self.assertEqual(s.cmd("BOGUS"), b"-ERR Too many bad commands, closing connection.\r\n")
        self.assertTrue(s.closed)
        self.assertEqual(s.cmd("USER alice"), b"")

    def test_ten_bad_commands_in_one_packet_drop_nothing(self):
        f = make_factory()
        f.store.account("alice").inbox.add(M1)
        s = Session(f)
        s.login()
        s.cmd("DELE 1")
        out = s.send(b"X\r\n" * 20)
        self.assertEqual(out.count(b"\r\n"), 10)
        self.assertTrue(s.closed)
        s.drop()
        self.assertEqual(f.store.account("alice").inbox.calls_to("expunge"), [])

    def test_line_too_long_continues(self):
        s = Session()
        s.read()
        long_cmd = b"USER " + b"a" * 300 + b"\r\n"
        self.assertEqual(s.send(long_cmd), b"-ERR Line too long.\r\n")
        huge = b"X" * (lines.MAX_LINE_LENGTH * 5)
        self.assertEqual(s.send(huge), b"")
        self.assertEqual(s.send(huge + b"\r\nUSER alice\r\n"), b"-ERR Line too long.\r\n+OK\r\n")
        self.assertFalse(s.closed)
        self.assertIn(b"+OK Logged in", s.cmd("PASS secret"))

    def test_bare_lf_lines_accepted(self):
        s = Session()
        s.read()
        self.assertEqual(s.send(b"USER alice\nPASS secret\nSTAT\n")[:4], b"+OK\r")

    def test_split_input(self):
        s = Session()
        s.read()
        out = b"".join(s.send(bytes([c])) for c in b"USER alice\r\nPASS secret\r\nNOOP\r\n")
        self.assertEqual(out, b"+OK\r\n+OK Logged in, 0 messages (0 octets).\r\n+OK\r\n")


def test_flood_without_line_end_is_answered_and_closed():
    """Issue 11: over 64 KiB without CRLF (before or after login) is no
    mistake: -ERR at once, then the connection closes."""
    for login in (False, True):
        s = Session()
        s.read()
        if login:
            s.cmd("USER alice")
            s.cmd("PASS secret")
        out = b""
        for _ in range(lines.FLOOD_LENGTH // 4096 + 2):
            out += s.send(b"X" * 4096)
        assert out == b"-ERR Line too long, closing connection.\r\n"
        assert s.closed


def test_splitter_flood_marker():
    sp = lines.LineSplitter(max_length=10, flood_length=100)
    sp.feed(b"a" * 50)
    assert sp.next_event() is None  # over-long, not yet a flood
    sp.feed(b"a" * 60)
    assert sp.next_event() is lines.FLOOD
    sp = lines.LineSplitter(max_length=10, flood_length=100)
    sp.feed(b"b" * 200 + b"\r\nNOOP\r\n")  # complete, but still a flood
    assert sp.next_event() is lines.FLOOD
    sp = lines.LineSplitter(max_length=10, flood_length=100)
    sp.feed(b"c" * 50 + b"\r\nNOOP\r\n")
    assert [sp.next_event(), sp.next_event()] == [lines.TOO_LONG, b"NOOP"]
