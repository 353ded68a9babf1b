"""The ``mailsrv`` admin command end to end, as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from mailsrv.auth import PasswdFile, verify_password

TIMEOUT = 60


def run(args, stdin=b"", env=None, code=None):
    """Run ``python -m mailsrv.cli ARGS`` (or ``python -c CODE ARGS``)."""
    cmd = [sys.executable] + (["-c", code] if code else ["-m", "mailsrv.cli"]) + list(args)
    return subprocess.run(cmd, input=stdin, capture_output=True, timeout=TIMEOUT, env=env)


def assert_one_line_error(result, code):
    err = result.stderr.decode()
    assert result.returncode == code, (result.returncode, err, result.stdout)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mailsrv: "), err
    return lines[0]


@pytest.fixture
def data(tmp_path):
    return str(tmp_path / "data")


@pytest.fixture
def fast(tmp_path, data):
    """A config using a cheap (but real) scheme, to keep multi-user tests quick."""
    path = tmp_path / "fast.ini"
    path.write_text(f"[server]\ndata = {data}\n[auth]\nscheme = SSHA512\n")
    return str(path)


def users(data):
    return PasswdFile(os.path.join(data, "passwd")).users()


def stored(data, name):
    return PasswdFile(os.path.join(data, "passwd")).lookup(name).password


def test_add_hashes_password_and_creates_maildir(data):
    r = run(["--data", data, "user", "add", "alice"], stdin=b"s3cret pw\n")
    assert r.returncode == 0, r.stderr
    assert r.stderr == b""
    value = stored(data, "alice")
    assert value.startswith("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$")
    assert verify_password(value, "s3cret pw")
    assert not verify_password(value, "s3cret pw\n")
    assert os.stat(os.path.join(data, "passwd")).st_mode & 0o777 == 0o600
    for sub in ("cur", "new", "tmp"):
        assert os.path.isdir(os.path.join(data, "alice", "Maildir", sub))


def test_global_options_after_subcommand_and_config_file(tmp_path, data, fast):
    r = run(["user", "add", "bob", "--data", data], stdin=b"pw\r\n")
    assert r.returncode == 0, r.stderr
    assert verify_password(stored(data, "bob"), "pw")
    r = run(["--config", fast, "user", "add", "carol"], stdin=b"pw2")  # no newline at EOF
    assert r.returncode == 0, r.stderr
    assert stored(data, "carol").startswith("{SSHA512}")
    assert verify_password(stored(data, "carol"), "pw2")
    r = run(["user", "list", "--config", fast])
    assert r.stdout.decode().split() == ["bob", "carol"]
    # --data overrides the config file's data folder, in either position
    other = str(tmp_path / "other")
    os.makedirs(other)
    r = run(["--data", other, "user", "list", "--config", fast])
    assert r.returncode == 0 and r.stdout == b""
    # ... and a data folder that does not exist is said to be missing (issue 11)
    line = assert_one_line_error(run(["user", "list", "--config", fast, "--data", other + "-missing"]), 1)
    assert f"{other}-missing does not exist" in line


def test_passwd_del_list(data, fast):
    os.makedirs(data)
    with open(os.path.join(data, "passwd"), "w") as f:
        f.write("# kept\ndave:{PLAIN}old:1001:1001::/home/dave::userdb_mail=maildir:~/Maildir\n")
    assert run(["--config", fast, "user", "add", "erin"], stdin=b"e\n").returncode == 0
    r = run(["--config", fast, "user", "passwd", "dave"], stdin=b"new pass\n")
    assert r.returncode == 0, r.stderr
    with open(os.path.join(data, "passwd")) as f:
        text = f.read()
    assert text.startswith("# kept\ndave:{SSHA512}")
    assert ":1001:1001::/home/dave::userdb_mail=maildir:~/Maildir\n" in text
    assert verify_password(stored(data, "dave"), "new pass")
    assert run(["--config", fast, "user", "list"]).stdout == b"dave\nerin\n"

    r = run(["--config", fast, "user", "del", "erin"])
    assert r.returncode == 0, r.stderr
    assert users(data) == ["dave"]
    assert os.path.isdir(os.path.join(data, "erin", "Maildir"))  # mail kept
    assert run(["--config", fast, "user", "add", "erin"], stdin=b"e\n").returncode == 0  # re-add over kept mail
    r = run(["--config", fast, "user", "del", "--purge", "erin"])
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(os.path.join(data, "erin"))
    assert users(data) == ["dave"]


def test_concurrent_adds_lose_nothing(data, fast):
    procs = [
        subprocess.Popen([sys.executable, "-m", "mailsrv.cli", "--config", fast, "user", "add", f"u{i}"],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for i in range(6)
    ]
    for p in procs:
        _, err = p.communicate(b"pw\n", timeout=TIMEOUT)
        assert p.returncode == 0, err
    assert sorted(users(data)) == [f"u{i}" for i in range(6)]


def test_writer_waits_for_the_lock(data, fast):
    import fcntl

    assert run(["--config", fast, "user", "add", "first"], stdin=b"pw\n").returncode == 0
    with open(os.path.join(data, "passwd.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        p = subprocess.Popen([sys.executable, "-m", "mailsrv.cli", "--config", fast, "user", "add", "second"],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        p.stdin.write(b"pw\n")
        p.stdin.close()
        try:
            p.wait(timeout=1.5)
        except subprocess.TimeoutExpired:
            pass
        assert p.returncode is None, "wrote the passwd file without holding the lock"
        assert users(data) == ["first"]
    assert p.wait(timeout=TIMEOUT) == 0, p.stderr.read()
    p.stderr.close()
    assert users(data) == ["first", "second"]


@pytest.mark.parametrize(
    "args, stdin",
    [
        (["user", "add", "alice"], b"again\n"),  # exists
        (["user", "add", "a:b"], b"pw\n"),
        (["user", "add", ".hidden"], b"pw\n"),
        (["user", "add", "../escape"], b"pw\n"),
        (["user", "add", "x" * 256], b"pw\n"),
        (["user", "add", "tls"], b"pw\n"),  # reserved: the server keeps DIR/tls
        (["user", "add", "bob"], b""),  # no password
        (["user", "add", "bob"], b"\n"),  # empty password
        (["user", "add", "bob"], b"\xff\xfe\n"),  # not UTF-8
        (["user", "passwd", "nobody"], b"pw\n"),
        (["user", "del", "nobody"], b""),
        (["user", "del", "a/b"], b""),
        (["--config", "/nonexistent/mailsrv.ini", "user", "list"], b""),
    ],
)
def test_errors_are_one_line(data, fast, args, stdin):
    assert run(["--config", fast, "user", "add", "alice"], stdin=b"pw\n").returncode == 0
    before = open(os.path.join(data, "passwd")).read()
    assert_one_line_error(run(["--config", fast] + args, stdin=stdin), 1)
    assert open(os.path.join(data, "passwd")).read() == before
    assert not os.path.exists(os.path.join(data, "bob"))


def test_config_problems_are_one_line(tmp_path, data):
    bad = tmp_path / "bad.ini"
    bad.write_text("[auth]\nplaintext = maybe\n")
    line = assert_one_line_error(run(["--config", str(bad), "--data", data, "user", "list"]), 1)
    assert "plaintext" in line
    bad.write_text("not an ini file\n")
    assert_one_line_error(run(["--config", str(bad), "user", "list"]), 1)
    bad.write_text("[auth]\nscheme = SHA512-CRYPT\n")
    line = assert_one_line_error(run(["--config", str(bad), "--data", data, "user", "add", "x"], stdin=b"pw\n"), 1)
    assert "SHA512-CRYPT" in line
    assert not os.path.exists(os.path.join(data, "passwd"))


def test_data_folder_is_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_one_line_error(run(["--data", str(blocker), "user", "add", "x"], stdin=b"pw\n"), 1)


@pytest.mark.parametrize(
    "args, code",
    [
        ([], 2),
        (["frobnicate"], 2),
        (["user"], 2),
        (["user", "add"], 2),
        (["user", "list", "extra"], 2),
        (["--data"], 2),
        (["deliver"], 64),
        (["deliver", "alice", "--bogus"], 64),
    ],
)
def test_usage_errors(data, args, code):
    assert_one_line_error(run(["--data", data] + args if args[:1] != ["--data"] else args), code)


@pytest.mark.parametrize(
    "args",
    [[], ["user"], ["user", "add"], ["user", "passwd"], ["user", "del"], ["user", "list"], ["deliver"],
     ["config"], ["config", "check"]],
)
def test_help(args):
    r = run(args + ["--help"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"usage: mailsrv")


FAKE_DELIVERY = textwrap.dedent(
    """
    import json, sys, types
    mod = types.ModuleType("mailsrv.delivery")
    def deliver_command(config, name, folder, flags, stdin):
        print(json.dumps({"data": config.data_dir, "name": name, "folder": folder, "flags": flags,
                          "body": stdin.read().decode("latin-1")}))
        return 67 if name == "ghost" else 0
    mod.deliver_command = deliver_command
    sys.modules["mailsrv.delivery"] = mod
    from mailsrv.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)
NO_DELIVERY = ("import sys; sys.modules['mailsrv.delivery'] = None\n"
               "from mailsrv.cli import main\nsys.exit(main(sys.argv[1:]))")


def test_deliver_dispatch(data):
    r = run(["deliver", "alice", "--data", data, "--folder", "Lists/py", "--flags", "\\Seen \\Flagged",
             "--flags", "$Junk"], stdin=b"Subject: hi\r\n\r\nbody\xff\r\n", code=FAKE_DELIVERY)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got == {"data": data, "name": "alice", "folder": "Lists/py", "flags": ["\\Seen", "\\Flagged", "$Junk"],
                   "body": "Subject: hi\r\n\r\nbody\xff\r\n"}
    r = run(["--data", data, "deliver", "ghost"], stdin=b"x\n", code=FAKE_DELIVERY)
    assert r.returncode == 67
    assert json.loads(r.stdout)["folder"] == "INBOX"


def test_deliver_error_codes(tmp_path, data):
    line = assert_one_line_error(run(["--data", data, "deliver", "alice"], stdin=b"x\n", code=NO_DELIVERY), 75)
    assert "delivery" in line
    assert_one_line_error(run(["--data", data, "deliver", "a/b"], stdin=b"x\n", code=FAKE_DELIVERY), 67)
    assert_one_line_error(run(["--config", str(tmp_path / "missing.ini"), "deliver", "alice"], stdin=b"x\n",
                              code=FAKE_DELIVERY), 78)


def _write_pair(directory, hostname="localhost"):
    from mailsrv.tls import make_self_signed

    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    make_self_signed(cert, key, hostname)
    return cert, key


def test_config_check(tmp_path, data):
    cert, key = _write_pair(str(tmp_path / "a"))
    _, other_key = _write_pair(str(tmp_path / "b"))
    ini = tmp_path / "m.ini"
    ini.write_text(f"[server]\ndata = {data}\n[tls]\ncert = {cert}\nkey = {key}\n"
                   "[listeners]\npop3 = tcp:0:interface=127.0.0.1\nimaps = tcp6:0:interface=\\:\\:1\n")
    r = run(["config", "check", "--config", str(ini)])
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "listen pop3: tcp:0:interface=127.0.0.1" in out
    assert "listen imaps: tcp6:0:interface=\\:\\:1" in out
    assert "listen imap: none" in out
    assert "CN=localhost" in out

    r = run(["--data", data, "config", "check"])  # no config: defaults listed
    assert r.returncode == 0, r.stderr
    assert "listen pop3: tcp:1110:interface=127.0.0.1 (default)" in r.stdout.decode()

    ini.write_text(f"[tls]\ncert = {cert}\nkey = {other_key}\n")
    line = assert_one_line_error(run(["--data", data, "config", "check", "--config", str(ini)]), 1)
    assert "key" in line
    ini.write_text(f"[tls]\ncert = {tmp_path / 'nope.pem'}\nkey = {key}\n")
    line = assert_one_line_error(run(["--data", data, "config", "check", "--config", str(ini)]), 1)
    assert "nope.pem" in line
    ini.write_text("[listeners]\npop3 = tcp:notaport\n")
    line = assert_one_line_error(run(["--data", data, "config", "check", "--config", str(ini)]), 1)
    assert "notaport" in line


def _tty_session(args, answers):
    """Run the CLI on a pseudo-terminal, answering each prompt; (exit code, output)."""
    import pty
    import select
    import time

    pid, fd = pty.fork()
    if pid == 0:  # child: exec at once
        os.execv(sys.executable, [sys.executable, "-m", "mailsrv.cli"] + args)
    out = b""
    deadline = time.monotonic() + TIMEOUT
    pending = list(answers)
    try:
        while time.monotonic() < deadline:
            if pending and out.count(b"password: ") > len(answers) - len(pending):
                os.write(fd, pending.pop(0))
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 1024)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out


def test_terminal_prompts_twice_without_echo(data):
    code, out = _tty_session(["--data", data, "user", "add", "tina"], [b"t0p secret\n", b"t0p secret\n"])
    assert code == 0, out
    assert b"New password: " in out and b"Retype new password: " in out
    assert b"t0p" not in out  # not echoed
    assert verify_password(stored(data, "tina"), "t0p secret")
    code, out = _tty_session(["--data", data, "user", "passwd", "tina"], [b"one\n", b"two\n"])
    assert code == 1
    assert b"mailsrv: passwords do not match" in out
    assert verify_password(stored(data, "tina"), "t0p secret")
