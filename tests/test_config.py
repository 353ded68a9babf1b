"""Configuration: ini file, twistd options on top, defaults."""

import pytest
from twisted.python import usage

from mailsrv import config as configmod
from mailsrv.tap import Options


def parse(*argv):
    o = Options()
    o.parseOptions(list(argv))
    return o["cfg"]


def test_defaults_are_loopback_unprivileged():
    cfg = parse()
    assert cfg.data_dir == "mailsrv-data"
    assert cfg.listeners["pop3"] == ["tcp:1110:interface=127.0.0.1"]
    assert cfg.listeners["imaps"] == ["tcp:1993:interface=127.0.0.1"]
    assert cfg.passwd_path.endswith("mailsrv-data/passwd")
    assert cfg.plaintext_auth == "loopback" and cfg.auth_fail_delay == 2.0


def test_listener_options_repeat_and_replace_defaults():
    cfg = parse("--data", "/x", "--pop3", "tcp:1:interface=127.0.0.1", "--pop3", "tcp:2", "--imaps", "tcp:3")
    assert cfg.data_dir == "/x"
    assert cfg.listeners == {"pop3": ["tcp:1:interface=127.0.0.1", "tcp:2"], "imaps": ["tcp:3"]}


def test_example_config_parses_and_options_override(tmp_path):
    cfg = parse("--config", "etc/mailsrv.ini", "--data", str(tmp_path), "--auth-fail-delay", "0")
    assert cfg.data_dir == str(tmp_path)
    assert cfg.listeners["imap"] == ["tcp:143"]
    assert cfg.plaintext_auth == "no"
    assert cfg.auth_fail_delay == 0.0
    assert cfg.local_domains == ["example.org", "example.net"]
    assert cfg.tls_cert.endswith("fullchain.pem")


@pytest.mark.parametrize(
    "text, message",
    [
        ("[listeners]\nsmtp = tcp:25\n", "unknown listener kind"),
        ("[auth]\nplaintext = maybe\n", "plaintext must be"),
        ("[pop3]\ntimeout = soon\n", "bad value"),
        ("[pop3]\ntimeout = 60\n", "at least 600"),
        ("not an ini", "bad config"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, text, message):
    p = tmp_path / "bad.ini"
    p.write_text(text)
    with pytest.raises(configmod.ConfigError, match=message):
        configmod.load(str(p))
    with pytest.raises(usage.UsageError):
        parse("--config", str(p))


def test_missing_config_file(tmp_path):
    with pytest.raises(configmod.ConfigError, match="cannot read config"):
        configmod.load(str(tmp_path / "nope.ini"))


def test_a_workers_copy_of_the_config_is_the_same_config(tmp_path):
    """--workers hands each worker its parent's Config as JSON; nested
    settings ([limits]) must come back as objects, not dicts."""
    import dataclasses
    import json

    ini = tmp_path / "m.ini"
    ini.write_text("[limits]\nconnections_per_ip = 7\nuserip_connections = 3\n")
    cfg = configmod.load(str(ini), data_dir=str(tmp_path))
    copy = configmod.from_spec(json.loads(json.dumps(dataclasses.asdict(cfg))))
    assert copy == cfg
    assert copy.limits.connections_per_ip == 7
