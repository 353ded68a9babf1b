"""Auth: password schemes (Dovecot-compatible), passwd file, checker, realm."""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import subprocess
import tempfile

from twisted.cred.credentials import CramMD5Credentials, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, task
from twisted.mail.pop3 import APOPCredentials
from twisted.trial import unittest
from zope.interface import Interface

from mailsrv.auth import (
    AuthUnavailable,
    InvalidUsername,
    MailRealm,
    NoSuchUser,
    PasswdFile,
    PasswdFileChecker,
    UnsupportedScheme,
    UserExists,
    ensure_demo_user,
    hash_password,
    hashing,
    is_plaintext,
    make_portal,
    plaintext_allowed,
    validate_username,
    verify_password,
)
from mailsrv.auth.hashing import DEFAULT_ARGON2, HASH_SCHEMES, Argon2Params
from mailsrv.config import Config, ConfigError
from mailsrv.store.interfaces import IAccount
from tests.fakestore import FakeStore


def tmpdir(case):
    """A fresh directory outside the source tree (trial's mktemp is relative
    to the working directory, which under pytest is the repository)."""
    path = tempfile.mkdtemp(prefix="mailsrv-auth-")
    case.addCleanup(shutil.rmtree, path, True)
    return path


CHEAP = Argon2Params(time_cost=1, memory_cost=64, parallelism=1)

# Generated with Dovecot 2.3: `doveadm pw -s SCHEME -p secret`.
DOVECOT = {
    "ARGON2ID": "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$BhGo/9ghkrx2Jg13wjZ7MA$"
                "7FYAeFtLwjCS1ARCsgQe9XGIaL10dbv21Or2v3GfLRI",
    "ARGON2I": "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$3KKMy2ql+DohkqdebTv0yA$"
               "VANdf+bdXBVMD70Qfb1FrQGcfVajDHcSSjHychvGVDM",
    "SSHA512": "{SSHA512}03nshp2LWSs6PMWjf+IBCUz9MPfcVv4w1BpYlfimuFKcLW3jD1QpB2QCm8DNjOEjQqgM0B6xkyW6ofG3hFyW80juZRo=",
    "SSHA256": "{SSHA256}hm4+NUgBIsvHDKK+CV0cvhNAWlDDTs0IWF8ARtgsRrGKLjRP",
    "SHA256": "{SHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=",
}
DOVECOT_CRYPT = {
    "SHA512-CRYPT": "{SHA512-CRYPT}$6$yIFd2g036Mtt7chO$"
                    "mFc//vxDnjkAcoQz09N/GylODrWjz8zpB7pu4OWaSFkPFmw4bZ8.KgPEvy/a7vQWFWOoQUP6VX8lCtfNUtY7./",
    "SHA256-CRYPT": "{SHA256-CRYPT}$5$6tYBEibK8ETss1ZO$CPcgtMrtFj18obinZCG0HCLfksq/03d6eVSCUv3twpC",
}


class HashingTests(unittest.TestCase):
    def test_round_trip_every_scheme(self):
        for scheme in HASH_SCHEMES:
            stored = hash_password("s\u00e9cret pass", scheme, CHEAP)
            self.assertTrue(stored.startswith("{%s}" % scheme), stored)
            self.assertTrue(verify_password(stored, "s\u00e9cret pass"), scheme)
            self.assertTrue(verify_password(stored, "s\u00e9cret pass".encode("utf-8")), scheme)
            self.assertFalse(verify_password(stored, "s\u00e9cret pasS"), scheme)
            self.assertFalse(verify_password(stored, ""), scheme)

    def test_salted_hashes_differ(self):
        for scheme in ("ARGON2ID", "SSHA512", "SSHA256"):
            self.assertNotEqual(hash_password("x", scheme, CHEAP), hash_password("x", scheme, CHEAP))

    def test_argon2id_is_a_dovecot_phc_string_with_dovecot_default_cost(self):
        self.assertEqual(DEFAULT_ARGON2, Argon2Params(time_cost=3, memory_cost=65536, parallelism=1))
        stored = hash_password("secret")
        self.assertTrue(stored.startswith("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$"), stored)
        self.assertIn("m=64,t=1,p=1", hash_password("secret", "ARGON2ID", CHEAP))

    def test_dovecot_generated_hashes(self):
        for scheme, stored in DOVECOT.items():
            self.assertTrue(verify_password(stored, "secret"), scheme)
            self.assertFalse(verify_password(stored, "Secret"), scheme)

    def test_dovecot_crypt_hashes(self):
        for scheme, stored in DOVECOT_CRYPT.items():
            if hashing._crypt is None:
                self.assertRaises(UnsupportedScheme, verify_password, stored, "secret")
                continue
            self.assertTrue(verify_password(stored, "secret"), scheme)
            self.assertFalse(verify_password(stored, "secreT"), scheme)
            # Dovecot's default scheme for prefix-less entries is CRYPT
            self.assertTrue(verify_password(stored.split("}", 1)[1], "secret"), scheme)

    def test_dovecot_accepts_our_hashes(self):
        doveadm = shutil.which("doveadm")
        if not doveadm:
            raise unittest.SkipTest("doveadm not installed")
        for scheme in ("ARGON2ID", "ARGON2I", "SSHA512", "SSHA256", "SHA256", "PLAIN"):
            stored = hash_password("s\u00e9cret", scheme, CHEAP)
            out = subprocess.run(
                [doveadm, "pw", "-t", stored, "-p", "s\u00e9cret"], capture_output=True, text=True, timeout=30
            )
            self.assertIn("(verified)", out.stdout + out.stderr, scheme)

    def test_encodings_and_plaintext(self):
        hexed = "{SHA256.HEX}" + hashlib.sha256(b"secret").hexdigest()
        self.assertTrue(verify_password(hexed, "secret"))
        self.assertTrue(verify_password("{PLAIN-MD5}" + hashlib.md5(b"secret").hexdigest(), "secret"))
        self.assertTrue(is_plaintext("{PLAIN}x"))
        self.assertTrue(is_plaintext("{CLEARTEXT}x"))
        self.assertFalse(is_plaintext(DOVECOT["SSHA512"]))

    def test_unsupported_and_malformed(self):
        self.assertRaises(UnsupportedScheme, verify_password, "{NOPE}abc", "x")
        self.assertRaises(UnsupportedScheme, verify_password, "nobrace", "x")
        self.assertRaises(UnsupportedScheme, verify_password, "{SHA256}!!!", "x")
        self.assertRaises(UnsupportedScheme, verify_password, "{ARGON2ID}$argon2id$garbage", "x")
        self.assertRaises(UnsupportedScheme, hash_password, "x", "SHA512-CRYPT")
        self.assertRaises(UnsupportedScheme, hash_password, "x", "NOPE")
        self.assertRaises(ValueError, hash_password, "a:b", "PLAIN")
        self.assertRaises(ValueError, hash_password, "a\nb", "PLAIN")


class UsernameTests(unittest.TestCase):
    def test_valid(self):
        for name in ("alice", "a.b", "user@example.com", "j\u00f6rg", "x" * 255, "Bob_1-2"):
            self.assertEqual(validate_username(name), name)

    def test_invalid(self):
        for name in ("", "a:b", "a/b", "../x", ".hidden", "a\x00b", "a\nb", "a\x7fb", "a b", "a\tb", "x" * 256,
                     "a\\b"):
            self.assertRaises(InvalidUsername, validate_username, name)


class PasswdFileTests(unittest.TestCase):
    def setUp(self):
        self.dir = tmpdir(self)
        self.path = os.path.join(self.dir, "passwd")

    def write(self, text):
        with open(self.path, "w") as f:
            f.write(text)

    def test_missing_file_is_empty_and_add_creates_0600(self):
        pf = PasswdFile(self.path)
        self.assertEqual(pf.users(), [])
        pf.add_user("alice", "{PLAIN}x")
        self.assertEqual(pf.users(), ["alice"])
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)
        self.assertEqual(sorted(os.listdir(self.dir)), ["passwd", "passwd.lock"])  # no temp left
        self.assertRaises(UserExists, pf.add_user, "alice", "{PLAIN}y")
        self.assertRaises(InvalidUsername, pf.add_user, "a:b", "{PLAIN}y")

    def test_rewrite_keeps_comments_and_extra_fields(self):
        self.write("# users\nalice:{PLAIN}a:1000:1000::/home/alice::userdb_quota_rule=*:storage=1G\n"
                   "\nbob:{PLAIN}b\ncarol:{PLAIN}c:::gecos")  # no final newline
        pf = PasswdFile(self.path)
        pf.set_password("alice", "{PLAIN}new")
        pf.add_user("dave", "{PLAIN}d")
        pf.remove_user("bob")
        with open(self.path) as f:
            self.assertEqual(
                f.read(),
                "# users\nalice:{PLAIN}new:1000:1000::/home/alice::userdb_quota_rule=*:storage=1G\n"
                "\ncarol:{PLAIN}c:::gecos\ndave:{PLAIN}d\n",
            )
        self.assertEqual(pf.users(), ["alice", "carol", "dave"])
        self.assertEqual(pf.lookup("alice").extra[:2], ["1000", "1000"])
        self.assertRaises(NoSuchUser, pf.remove_user, "bob")
        self.assertRaises(NoSuchUser, pf.set_password, "bob", "{PLAIN}x")

    def test_reloaded_after_external_change(self):
        self.write("alice:{PLAIN}a\n")
        pf = PasswdFile(self.path)
        self.assertIsNone(pf.lookup("bob"))
        # same size, in-place edit; mtime moved explicitly for coarse filesystems
        self.write("bobby:{PLAIN}a\n")
        st = os.stat(self.path)
        os.utime(self.path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        self.assertIsNone(pf.lookup("alice"))
        self.assertEqual(pf.lookup("bobby").password, "{PLAIN}a")
        # replaced by another writer (new inode)
        PasswdFile(self.path).add_user("carol", "{PLAIN}c")
        self.assertEqual(pf.lookup("carol").password, "{PLAIN}c")
        os.unlink(self.path)
        self.assertEqual(pf.users(), [])

    def test_demo_user(self):
        cfg = Config(data_dir=self.dir)
        password = ensure_demo_user(cfg, CHEAP)
        self.assertIsInstance(password, str)
        self.assertGreaterEqual(len(password), 16)
        stored = PasswdFile(cfg.passwd_path).lookup("demo").password
        self.assertTrue(stored.startswith("{ARGON2ID}"))
        self.assertNotIn(password, stored)
        self.assertTrue(verify_password(stored, password))
        self.assertIsNone(ensure_demo_user(cfg, CHEAP))
        other = Config(data_dir=os.path.join(self.dir, "other"), demo_user=False)
        self.assertIsNone(ensure_demo_user(other, CHEAP))
        self.assertFalse(os.path.exists(other.passwd_path))


def _sync(f, *args, **kw):
    return defer.maybeDeferred(f, *args, **kw)


class CheckerTests(unittest.TestCase):
    def setUp(self):
        self.dir = tmpdir(self)
        self.config = Config(data_dir=self.dir, auth_fail_delay=2.0)
        pf = PasswdFile(self.config.passwd_path)
        pf.add_user("alice", hash_password("wonderland", "ARGON2ID", CHEAP))
        pf.add_user("plain", "{PLAIN}tanstaaf")
        pf.add_user("disabled", "")
        pf.add_user("weird", "{NOPE}xyz")
        self.clock = task.Clock()
        self.checker = self.make_checker()

    def make_checker(self, **kw):
        kw.setdefault("reactor", self.clock)
        kw.setdefault("run_in_thread", _sync)
        return PasswdFileChecker(self.config.passwd_path, self.config, argon2_params=CHEAP, **kw)

    def login(self, user, password):
        return self.checker.requestAvatarId(UsernamePassword(user, password))

    def assert_delayed_failure(self, d, delay=2.0):
        self.assertNoResult(d)
        self.clock.advance(delay - 0.01)
        self.assertNoResult(d)
        self.clock.advance(0.02)
        self.failureResultOf(d, UnauthorizedLogin)

    def test_success_bytes_and_str(self):
        self.assertEqual(self.successResultOf(self.login(b"alice", b"wonderland")), "alice")
        self.assertEqual(self.successResultOf(self.login("alice", "wonderland")), "alice")
        self.assertEqual(self.successResultOf(self.login(b"plain", b"tanstaaf")), "plain")

    def test_wrong_password_is_delayed(self):
        self.assert_delayed_failure(self.login(b"alice", b"Wonderland"))

    def test_unknown_user_does_equal_work_and_is_delayed(self):
        self.assertIsNone(self.checker._dummy)
        self.assert_delayed_failure(self.login(b"nobody", b"wonderland"))
        self.assertTrue(self.checker._dummy.startswith("{ARGON2ID}$argon2id$"))

    def test_invalid_names_and_disabled_and_unsupported(self):
        for user in (b"\xff\xfe", b"a:b", b"../alice", b"", b"x" * 300, b"disabled", b"weird"):
            self.assert_delayed_failure(self.login(user, b"xyz"))

    def test_no_delay_when_zero(self):
        self.config.auth_fail_delay = 0
        self.failureResultOf(self.login(b"alice", b"nope"), UnauthorizedLogin)

    def test_apop_only_when_enabled_and_plaintext(self):
        magic = b"<1896.697170952@dbc.mtview.ca.us>"
        good = hashlib.md5(magic + b"tanstaaf").hexdigest().encode()
        self.assert_delayed_failure(self.checker.requestAvatarId(APOPCredentials(magic, b"plain", good)))
        self.config.apop = True
        self.assertEqual(self.successResultOf(self.checker.requestAvatarId(APOPCredentials(magic, b"plain", good))),
                         "plain")
        self.assertEqual(
            self.successResultOf(self.checker.requestAvatarId(APOPCredentials(magic, b"plain", good.upper()))),
            "plain")
        bad = hashlib.md5(magic + b"tanstaaF").hexdigest().encode()
        self.assert_delayed_failure(self.checker.requestAvatarId(APOPCredentials(magic, b"plain", bad)))
        # a hashed entry can never do APOP, even with the right digest
        alice = hashlib.md5(magic + b"wonderland").hexdigest().encode()
        self.assert_delayed_failure(self.checker.requestAvatarId(APOPCredentials(magic, b"alice", alice)))
        self.assert_delayed_failure(self.checker.requestAvatarId(APOPCredentials(magic, b"nobody", alice)))

    def test_cram_md5(self):
        self.config.apop = True
        creds = CramMD5Credentials(b"localhost")
        challenge = creds.getChallenge()
        creds.setResponse(b"plain " + hmac.new(b"tanstaaf", challenge, hashlib.md5).hexdigest().encode())
        self.assertEqual(self.successResultOf(self.checker.requestAvatarId(creds)), "plain")
        creds.setResponse(b"plain " + hmac.new(b"wrong", challenge, hashlib.md5).hexdigest().encode())
        self.assert_delayed_failure(self.checker.requestAvatarId(creds))

    def test_new_user_seen_without_restart(self):
        self.assert_delayed_failure(self.login(b"bob", b"builder"))
        PasswdFile(self.config.passwd_path).add_user("bob", hash_password("builder", "SSHA512"))
        self.assertEqual(self.successResultOf(self.login(b"bob", b"builder")), "bob")
        PasswdFile(self.config.passwd_path).set_password("bob", hash_password("digger", "SSHA512"))
        self.assert_delayed_failure(self.login(b"bob", b"builder"))
        self.assertEqual(self.successResultOf(self.login(b"bob", b"digger")), "bob")

    def test_unreadable_passwd_is_unavailable_not_unauthorized(self):
        os.unlink(self.config.passwd_path)
        os.makedirs(self.config.passwd_path)  # reading a directory fails with EISDIR
        self.failureResultOf(self.login(b"alice", b"wonderland"), AuthUnavailable)
        self.flushLoggedErrors(IsADirectoryError)

    def test_bad_scheme_in_config(self):
        self.config.hash_scheme = "SHA512-CRYPT"
        self.assertRaises(ConfigError, self.make_checker)

    def test_real_thread_pool(self):
        checker = PasswdFileChecker(self.config.passwd_path, self.config, argon2_params=CHEAP)
        d = checker.requestAvatarId(UsernamePassword(b"alice", b"wonderland"))
        d.addCallback(self.assertEqual, "alice")
        return d

    def test_portal_and_realm(self):
        store = FakeStore()
        portal = make_portal(store, self.config, reactor=self.clock, run_in_thread=_sync, argon2_params=CHEAP)
        iface, account, logout = self.successResultOf(
            portal.login(UsernamePassword(b"alice", b"wonderland"), None, IAccount))
        self.assertIs(iface, IAccount)
        self.assertEqual(account.user, "alice")
        self.assertEqual(store.views, ["alice"])
        self.assertIsNone(logout())
        d = portal.login(UsernamePassword(b"alice", b"nope"), None, IAccount)
        self.assert_delayed_failure(d)


class IOther(Interface):
    pass


class RealmTests(unittest.TestCase):
    def test_avatar_id_bytes_or_str(self):
        store = FakeStore()
        realm = MailRealm(store)
        for avatar_id in (b"j\xc3\xb6rg", "j\u00f6rg"):
            iface, account, logout = realm.requestAvatar(avatar_id, None, IOther, IAccount)
            self.assertIs(iface, IAccount)
            self.assertEqual(account.user, "j\u00f6rg")
            self.assertTrue(callable(logout))
        self.assertEqual(store.views, ["j\u00f6rg", "j\u00f6rg"])
        self.assertRaises(NotImplementedError, realm.requestAvatar, "alice", None, IOther)


class PlaintextPolicyTests(unittest.TestCase):
    def test_matrix(self):
        loop = ("127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "[::1]")
        remote = ("192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1", "", "localhost", "/tmp/sock")
        for mode in ("yes", "no", "loopback"):
            cfg = Config(plaintext_auth=mode)
            for host in loop + remote:
                self.assertTrue(plaintext_allowed(cfg, host, True), (mode, host))
                expected = mode == "yes" or (mode == "loopback" and host in loop)
                self.assertEqual(plaintext_allowed(cfg, host, False), expected, (mode, host))


class SodiumVerifyTests(unittest.TestCase):
    """The libsodium fast path must answer exactly as argon2-cffi does, and
    step aside (None) for strings it might refuse."""

    def setUp(self) -> None:
        from mailsrv.auth import sodium
        if not sodium.available():
            raise unittest.SkipTest("libsodium not installed")
        self.sodium = sodium

    def test_agrees_with_argon2_cffi(self) -> None:
        import argon2
        for type_, t in ((argon2.Type.ID, 1), (argon2.Type.ID, 3), (argon2.Type.I, 3)):
            h = argon2.PasswordHasher(time_cost=t, memory_cost=64, parallelism=1, type=type_).hash("pw\u00e9")
            self.assertIs(self.sodium.verify(h, "pw\u00e9".encode()), True)
            self.assertIs(self.sodium.verify(h, b"pw"), False)
            self.assertIs(self.sodium.verify(h, b""), False)

    def test_strings_it_might_refuse_fall_back(self) -> None:
        import argon2
        two_lanes = argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=2).hash("pw")
        weak_i = argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1, type=argon2.Type.I).hash("pw")
        for h in (two_lanes, weak_i, "$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "x" * 200):
            self.assertIsNone(self.sodium.verify(h, b"pw"))
        self.assertTrue(hashing.verify_password("{ARGON2ID}" + two_lanes, "pw"))
        self.assertTrue(hashing.verify_password("{ARGON2I}" + weak_i, "pw"))
        self.assertFalse(hashing.verify_password("{ARGON2I}" + weak_i, "px"))

    def test_scheme_and_string_type_must_agree_for_the_fast_path(self) -> None:
        h = hashing.hash_password("pw", "ARGON2ID", CHEAP)
        self.assertTrue(hashing.verify_password(h, "pw"))
        # an {ARGON2I} label on an argon2id string is argon2-cffi's business, as before
        self.assertTrue(hashing.verify_password("{ARGON2I}" + h.split("}", 1)[1], "pw"))
