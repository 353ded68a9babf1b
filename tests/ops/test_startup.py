"""Start-up failures of the real ``twistd -n mailsrv``: each is one
``mailsrv: ...`` line on stderr, a non-zero (sysexits) code, no traceback
(unless asked for), and nothing bound."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile

import pytest

from mailsrv.tls import make_self_signed
from tests.e2e.harness import twistd_command

TIMEOUT = 60


def start(tmp_path, *args, env=None, data=None, twistd=()):
    """Run twistd mailsrv in the foreground; it must exit on its own."""
    data = data if data is not None else str(tmp_path / "data")
    log = tmp_path / "twistd.log"
    cmd = [*twistd_command(), "-n", "--pidfile=", "--logfile", str(log), *twistd, "mailsrv", "--data", data,
           "--no-demo-user", *args]
    r = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT, env=env, cwd=str(tmp_path))
    r.log = log.read_text() if log.exists() else ""  # type: ignore[attr-defined]
    return r


def one_line(r, code):
    err = r.stderr.decode()
    assert r.returncode == code, (r.returncode, err, r.log[-2000:])
    assert "Traceback" not in err and "Traceback" not in r.stdout.decode()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mailsrv: "), err
    assert "listening on" not in r.log  # checked before anything binds
    return lines[0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listeners(port=None, **only):
    """Listener options on free loopback ports (imap on ``port`` if given)."""
    out = []
    for kind in ("pop3", "pop3s", "imap", "imaps"):
        spec = only.get(kind) or f"tcp:{port if (kind == 'imap' and port) else 0}:interface=127.0.0.1"
        out += [f"--{kind}", spec]
    return out


def test_port_in_use_names_listener_and_port(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_line(start(tmp_path, *listeners(port)), 69)
    assert f"cannot listen for imap on tcp:{port}:interface=127.0.0.1" in line
    assert f"127.0.0.1:{port} is already in use" in line


@pytest.mark.parametrize("spec, says", [
    ("tcp:notaport", "port 'notaport' is not a number"),
    ("1143", "a bare port number is not an endpoint: write tcp:1143"),
    ("tcp:143:bogus=1", "unknown option 'bogus'"),
    ("ssl:2993", "ssl: needs privateKey=FILE"),
    ("frob:1", "unknown endpoint type 'frob'"),
])
def test_bad_listener_string(tmp_path, spec, says):
    line = one_line(start(tmp_path, *listeners(imap=spec)), 78)
    assert f"bad imap listener {spec!r}: {says}" in line


def test_bad_listener_in_config_file(tmp_path):
    ini = tmp_path / "m.ini"
    ini.write_text("[listeners]\npop3 = tcp:0:interface=127.0.0.1\nimap = tcp:notaport\n")
    line = one_line(start(tmp_path, "--config", str(ini)), 78)
    assert "bad imap listener 'tcp:notaport'" in line


def _pair(directory, name="localhost"):
    os.makedirs(directory, exist_ok=True)
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    make_self_signed(cert, key, name)
    return cert, key


def test_missing_certificate(tmp_path):
    _, key = _pair(str(tmp_path / "a"))
    missing = str(tmp_path / "nope.pem")
    line = one_line(start(tmp_path, *listeners(), "--tls-cert", missing, "--tls-key", key), 78)
    assert f"cannot read TLS certificate {missing}: No such file or directory" in line


def test_unusable_certificate(tmp_path):
    _, key = _pair(str(tmp_path / "a"))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    line = one_line(start(tmp_path, *listeners(), "--tls-cert", str(garbage), "--tls-key", key), 78)
    assert f"TLS certificate {garbage} is unusable" in line


def test_mismatched_certificate_and_key(tmp_path):
    cert, _ = _pair(str(tmp_path / "a"))
    _, other_key = _pair(str(tmp_path / "b"))
    line = one_line(start(tmp_path, *listeners(), "--tls-cert", cert, "--tls-key", other_key), 78)
    assert f"TLS key {other_key} does not match certificate {cert}" in line


def test_cert_without_key_is_said_not_reused(tmp_path):
    cert, _ = _pair(str(tmp_path / "a"))
    line = one_line(start(tmp_path, *listeners(), "--tls-cert", cert), 78)
    assert f"TLS certificate {cert} is given without a key, and it holds none" in line
    assert "--tls-key" in line


def test_cert_and_key_in_one_file_still_work(tmp_path):
    """The other side of the rule above: a PEM holding both is fine alone."""
    cert, key = _pair(str(tmp_path / "a"))
    both = tmp_path / "both.pem"
    both.write_bytes(open(cert, "rb").read() + open(key, "rb").read())
    from mailsrv.tls import check_pair

    assert check_pair(str(both), str(both))[0] == []


def test_data_folder_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = one_line(start(tmp_path, *listeners(), data=str(blocker / "data")), 73)
    assert f"cannot create data folder {blocker / 'data'}: {blocker} is not a folder" in line


def test_data_folder_is_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = one_line(start(tmp_path, *listeners(), data=str(blocker)), 73)
    assert f"data folder {blocker} exists and is not a folder" in line


def test_bad_config_file(tmp_path):
    ini = tmp_path / "m.ini"
    ini.write_text("[limits]\nuserip_connections = many\n")
    line = one_line(start(tmp_path, *listeners(), "--config", str(ini)), 78)
    assert "bad value in config" in line


def test_two_listeners_on_one_port(tmp_path):
    port = free_port()
    line = one_line(start(tmp_path, *listeners(imap=f"tcp:{port}", pop3=f"tcp:{port}:interface=127.0.0.1")), 69)
    assert f"cannot listen for imap on tcp:{port}: 0.0.0.0:{port} is already in use" in line \
        or f"cannot listen for pop3 on tcp:{port}:interface=127.0.0.1: 127.0.0.1:{port} is already in use" in line


def test_password_file_that_is_not_a_file(tmp_path):
    (tmp_path / "data" / "passwd").mkdir(parents=True)
    line = one_line(start(tmp_path, *listeners()), 78)
    assert f"password file {tmp_path / 'data' / 'passwd'} is not a file" in line


def test_unexpected_failure_is_one_line_and_debug_shows_the_traceback(tmp_path):
    """DATA/tls is a file: making the self-signed certificate fails inside
    the service; the line says where, --debug (or MAILSRV_TRACEBACK=1)
    adds the traceback."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tls").write_text("in the way")
    line = one_line(start(tmp_path, *listeners()), 73)
    assert "cannot start:" in line and "tls" in line
    for extra, env in ((["--debug"], None), ([], {**os.environ, "MAILSRV_TRACEBACK": "1"})):
        r = start(tmp_path, *listeners(), *extra, env=env)
        err = r.stderr.decode()
        assert r.returncode == 73 and "Traceback (most recent call last)" in err, err
        assert err.splitlines()[-1].startswith("mailsrv: cannot start:")


def test_version():
    r = subprocess.run([*twistd_command(), "mailsrv", "--version"], capture_output=True, timeout=TIMEOUT)
    assert r.returncode == 0 and r.stdout.decode().startswith("twistd mailsrv 0."), r
    r = subprocess.run([*twistd_command()[:1], "-m", "mailsrv.cli", "--version"], capture_output=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0 and r.stdout.decode().startswith("mailsrv 0.")


@pytest.fixture
def world_readable_dir():
    """pytest's tmp folders are root-only: --uid tests need a reachable one."""
    top = tempfile.mkdtemp(prefix="mailsrv-ops-")
    os.chmod(top, 0o755)
    yield top
    shutil.rmtree(top, ignore_errors=True)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="--uid needs a root start")


@needs_root
def test_uid_cannot_use_existing_data_folder_says_what_to_chown(tmp_path, world_readable_dir):
    nobody = pwd.getpwnam("nobody")
    data = os.path.join(world_readable_dir, "data")
    os.mkdir(data, 0o700)  # root's
    line = one_line(start(tmp_path, *listeners(), data=data, twistd=("--uid", str(nobody.pw_uid))), 77)
    assert f"{data} belongs to root:root" in line
    assert f"chown -R nobody:{_group(nobody.pw_gid)} {data}" in line


@needs_root
def test_uid_cannot_reach_data_folder(tmp_path, world_readable_dir):
    nobody = pwd.getpwnam("nobody")
    closed = os.path.join(world_readable_dir, "closed")
    os.mkdir(closed, 0o700)
    data = os.path.join(closed, "data")
    line = one_line(start(tmp_path, *listeners(), data=data, twistd=("--uid", str(nobody.pw_uid))), 77)
    assert f"cannot reach it after --uid: {closed} is mode 0700 root:root" in line
    assert not os.path.exists(data)


@needs_root
def test_uid_created_data_folder_belongs_to_that_user(tmp_path, world_readable_dir):
    """The folder is made before privileges drop, for the user the server runs as."""
    from mailsrv.embedded import LISTEN_RE

    nobody = pwd.getpwnam("nobody")
    data = os.path.join(world_readable_dir, "data")
    log = os.path.join(world_readable_dir, "twistd.log")
    cmd = [*twistd_command(), "-n", "--pidfile=", "--logfile", log, "--uid", str(nobody.pw_uid), "mailsrv",
           "--data", data, "--no-demo-user", *listeners()]
    proc = subprocess.Popen(cmd, cwd=world_readable_dir)
    try:
        import time

        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            text = open(log).read() if os.path.exists(log) else ""
            if len(LISTEN_RE.findall(text)) >= 4:
                break
            assert proc.poll() is None, text
            time.sleep(0.05)
        st = os.stat(data)
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
        tls = os.stat(os.path.join(data, "tls", "key.pem"))
        assert tls.st_uid == nobody.pw_uid
    finally:
        proc.terminate()
        proc.wait(30)


def _group(gid):
    import grp

    return grp.getgrgid(gid).gr_name
