"""Any-state and not-authenticated commands: greeting, CAPABILITY, NOOP,
LOGOUT, ID, LOGIN, AUTHENTICATE, STARTTLS, error handling, pipelining."""

import base64

from twisted.cred.credentials import IUsernamePassword

from mailsrv.config import Config
from tests.imap.harness import Client, tagged


def test_greeting_and_capability_before_login():
    c = Client()
    assert c.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    out = c.cmd("a CAPABILITY")
    assert b"AUTH=PLAIN" in out and b"LOGINDISABLED" not in out and b"STARTTLS" not in out
    assert tagged(out, "a") == b"a OK CAPABILITY completed\r\n"


def test_logindisabled_from_remote_peer_without_tls():
    c = Client(peer="192.0.2.7", tls_context=object())
    out = c.cmd("a CAPABILITY")
    assert b"LOGINDISABLED" in out and b"STARTTLS" in out and b"AUTH=" not in out
    assert b"b NO [PRIVACYREQUIRED]" in c.cmd("b LOGIN joe secret")
    assert b"c NO [PRIVACYREQUIRED]" in c.cmd("c AUTHENTICATE PLAIN " + base64.b64encode(b"\0joe\0secret").decode())


def test_plaintext_yes_allows_remote_login():
    c = Client(peer="192.0.2.7", config=Config(plaintext_auth="yes", auth_fail_delay=0))
    assert b"a OK" in c.cmd("a LOGIN joe secret")


def test_login_ok_and_fail():
    c = Client()
    assert b"a NO [AUTHENTICATIONFAILED]" in c.cmd("a LOGIN joe wrong")
    out = c.cmd('b LOGIN "joe" {6+}\r\nsecret')
    assert b"b OK [CAPABILITY IMAP4rev1" in out and b"IDLE" in out and b"UIDPLUS" in out
    assert b"c BAD" in c.cmd("c LOGIN joe secret")  # wrong state now


def test_commands_need_authentication():
    c = Client()
    for line in ("a SELECT INBOX", "b LIST \"\" *", "c FETCH 1 FLAGS"):
        assert b" BAD " in c.cmd(line)


def test_authenticate_plain_with_initial_response():
    c = Client()
    out = c.cmd("a AUTHENTICATE PLAIN " + base64.b64encode(b"\0joe\0secret").decode())
    assert tagged(out, "a").startswith(b"a OK [CAPABILITY")


def test_authenticate_plain_with_continuation_and_cancel():
    c = Client()
    assert c.cmd("a AUTHENTICATE PLAIN") == b"+ \r\n"
    assert b"a BAD" in c.cmd("*")
    assert c.cmd("b AUTHENTICATE PLAIN") == b"+ \r\n"
    assert b"b BAD" in c.cmd("!!notbase64")
    assert c.cmd("c AUTHENTICATE PLAIN") == b"+ \r\n"
    assert b"c NO [AUTHENTICATIONFAILED]" in c.cmd(base64.b64encode(b"\0joe\0nope").decode())
    assert c.cmd("d AUTHENTICATE PLAIN") == b"+ \r\n"
    assert b"d OK" in c.cmd(base64.b64encode(b"joe\0joe\0secret").decode())


def test_authenticate_plain_other_authzid_refused():
    c = Client()
    out = c.cmd("a AUTHENTICATE PLAIN " + base64.b64encode(b"root\0joe\0secret").decode())
    assert b"a NO [AUTHORIZATIONFAILED]" in out


def test_authenticate_login():
    c = Client()
    assert c.cmd("a AUTHENTICATE LOGIN") == b"+ VXNlcm5hbWU6\r\n"
    assert c.cmd(base64.b64encode(b"joe").decode()) == b"+ UGFzc3dvcmQ6\r\n"
    assert b"a OK" in c.cmd(base64.b64encode(b"secret").decode())


def test_authenticate_unknown_mechanism():
    assert b"a NO [CANNOT]" in Client().cmd("a AUTHENTICATE CRAM-MD5")


def test_authenticate_pipelined_response_in_same_packet():
    c = Client()
    out = c.send(b"a AUTHENTICATE PLAIN\r\n" + base64.b64encode(b"\0joe\0secret") + b"\r\nb NOOP\r\n")
    assert out.startswith(b"+ \r\na OK") and out.endswith(b"b OK NOOP completed\r\n")


def test_noop_id_logout():
    c = Client()
    assert c.cmd("a NOOP") == b"a OK NOOP completed\r\n"
    out = c.cmd('b ID ("name" "test")')
    assert out.startswith(b'* ID ("name" "mailsrv"') and b"b OK" in out
    out = c.cmd("c LOGOUT")
    assert out == b"* BYE Logging out\r\nc OK LOGOUT completed\r\n"
    assert c.transport.disconnecting


def test_parse_errors_are_bad_and_connection_survives():
    c = Client()
    assert c.cmd("a FROB") == b"a BAD Error in IMAP command: unknown command FROB\r\n"
    assert c.cmd("???").startswith(b"??? BAD")
    assert c.cmd("(x NOOP").startswith(b"* BAD")
    assert c.cmd("b NOOP") == b"b OK NOOP completed\r\n"


def test_too_many_bad_commands_hang_up():
    c = Client()
    out = c.send(b"x FROB\r\n" * 25)
    assert b"* BYE Too many invalid" in out and c.transport.disconnecting


def test_pipelined_commands_answered_in_order():
    c = Client()
    out = c.send(b"a NOOP\r\nb LOGIN joe secret\r\nc CAPABILITY\r\nd NOOP\r\n")
    tags = [line.split(b" ")[0] for line in out.split(b"\r\n") if line and not line.startswith(b"*")]
    assert tags == [b"a", b"b", b"c", b"d"]


def test_starttls_refused_with_pipelined_data():
    c = Client(tls_context=object())
    out = c.send(b"a STARTTLS\r\nb LOGIN joe secret\r\n")
    assert tagged(out, "a").startswith(b"a BAD")


def test_starttls_without_context_is_bad():
    assert Client().cmd("a STARTTLS").startswith(b"a BAD")


def test_starttls_discards_buffered_plaintext_and_switches():
    c = Client(tls_context="ctx")
    started = []
    c.transport.startTLS = lambda ctx: started.append(ctx)
    out = c.cmd("a STARTTLS")
    assert out == b"a OK Begin TLS negotiation now\r\n" and started == ["ctx"]
    assert c.proto.ctx.tls_active and b"STARTTLS" not in c.cmd("b CAPABILITY")
    assert b"c BAD" in c.cmd("c STARTTLS")


def test_autologout_timeout():
    c = Client(config=Config(imap_timeout=60, auth_fail_delay=0))
    c.clock.advance(61)
    assert b"* BYE Autologout" in c.take() and c.transport.disconnecting


def test_logout_calls_avatar_logout_on_disconnect():
    c = Client()
    c.login()
    c.proto.connectionLost(None)
    assert c.portal.realm.logouts == 1



def test_logout_unregisters_producer_and_closes_for_sure():
    """twisted#7926: a registered producer keeps TLS from sending its close
    alert; mbsync waited for our EOF and both sides hung."""
    from tests.imap.harness import Client

    c = Client()
    aborted = []
    c.transport.abortConnection = lambda: aborted.append(True)
    assert c.transport.producer is not None
    c.proto.dataReceived(b"a LOGOUT\r\n")
    assert b"a OK" in c.take()
    assert c.transport.producer is None
    assert c.transport.disconnecting
    c.clock.advance(9)
    assert not aborted
    c.clock.advance(2)
    assert aborted  # the peer never went: cut after the grace period


def test_overlong_sasl_response_does_not_swallow_the_next_command():
    c = Client()
    assert c.cmd("a AUTHENTICATE PLAIN") == b"+ \r\n"
    assert c.send(b"x" * 70000) == b"a BAD AUTHENTICATE Response line too long\r\n"
    assert c.send(b"xx\r\nb NOOP\r\n") == b"b OK NOOP completed\r\n"


def test_password_file_unavailable_is_a_clean_no():
    from twisted.cred.portal import Portal
    from twisted.internet import defer

    from mailsrv.auth.cred import AuthUnavailable
    from mailsrv.store.interfaces import IAccount

    class Broken:
        credentialInterfaces = (IUsernamePassword,)

        def requestAvatarId(self, credentials):
            return defer.fail(AuthUnavailable("cannot read the password file"))

    c = Client()
    c.proto.ctx.portal = Portal(c.portal.realm, [Broken()])
    assert c.cmd("a LOGIN joe secret") == b"a NO [UNAVAILABLE] LOGIN Authentication is temporarily unavailable\r\n"
    assert c.proto.ctx.state.name == "NOT_AUTHENTICATED"
    assert IAccount.providedBy(c.account)


def test_append_refused_by_state_still_closes_its_literals(monkeypatch):
    from mailsrv.imap import commands as C

    closed = []
    monkeypatch.setattr(C.Append, "close", lambda self: closed.append(self.mailbox))
    c = Client()
    assert c.send(b"a APPEND INBOX {5+}\r\nhello\r\n") == b"a BAD APPEND is not permitted in this state\r\n"
    assert closed == ["INBOX"]
