"""Issue 12's administration: ``mailsrv quota get`` and ``quota recalc``,
the quota line of ``mailbox list``, ``shared create`` and ``shared list``,
and the warning lines the log gets when usage crosses the configured
thresholds."""

from __future__ import annotations

import argparse
import io
import os
import sys

from twisted.logger import Logger, formatEvent

from mailsrv import admin
from mailsrv.admin import quota as admin_quota
from mailsrv.admin import shared as admin_shared
from mailsrv.config import Config
from mailsrv.store import acl, layout, maildir, quota
from mailsrv.store.sharedfiles import public_root

PASSWD = ("alice:{PLAIN}pw::::::userdb_quota_rule=*:storage=10K userdb_quota_rule2=*:messages=4\n"
          "bob:{PLAIN}pw::::::\n")


def run(config: Config, *argv: str) -> tuple[int, str]:
    """(exit code, stdout) of a command called as mailsrv.cli calls it."""
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(required=True)
    for module in (admin, admin_quota, admin_shared):
        module.register(sub)
    args = p.parse_args(list(argv))
    out = io.StringIO()
    saved, sys.stdout = sys.stdout, out
    try:
        code = args.func(args, config)
    finally:
        sys.stdout = saved
    return code, out.getvalue()


def make_config(tmp_path) -> Config:
    data = tmp_path / "data"
    data.mkdir()
    (data / "passwd").write_text(PASSWD)
    cfg = Config(data_dir=str(data))
    cfg.quota_rules = {"quota_rule": "*:storage=1M"}
    cfg.quota_warnings = [50, 90]
    return cfg


def deliver(cfg: Config, user: str, size: int) -> None:
    maildir.deliver(layout.folder_dir(cfg.data_dir, user, "INBOX"), b"Subject: x\r\n\r\n" + b"y" * (size - 14))


def test_quota_get_recalc_and_mailbox_list(tmp_path):
    cfg = make_config(tmp_path)
    deliver(cfg, "alice", 2048)
    deliver(cfg, "bob", 1000)
    code, out = run(cfg, "quota", "get")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("alice  2.0 KiB of 10.0 KiB (20%)") and lines[0].endswith("1 of 4 messages"), lines
    assert lines[1].startswith("bob  ") and "of 1.0 MiB (0%)" in lines[1] and lines[1].endswith("1 of - messages")
    root = layout.maildir_root(cfg.data_dir, "alice")
    with open(os.path.join(root, "maildirsize"), encoding="ascii") as f:
        assert f.read() == "10240S,4C\n2048 1\n"  # Dovecot's maildir backend format, limits from the passwd file
    deliver(cfg, "alice", 1024)  # written behind the tracker's back (an MTA's own delivery)
    code, out = run(cfg, "quota", "get", "alice")
    assert "2.0 KiB of 10.0 KiB" in out  # the incremental sum does not see it ...
    code, out = run(cfg, "quota", "recalc", "alice")
    assert code == 0 and out == "alice: recounted 3.0 KiB in 2 messages\n"
    code, out = run(cfg, "mailbox", "list", "alice")
    quota_lines = [ln for ln in out.splitlines() if ln.startswith("quota: ")]
    assert code == 0 and quota_lines == ["quota: alice  3.0 KiB of 10.0 KiB (30%)  2 of 4 messages"], out


def test_quota_warnings_in_the_log(tmp_path, monkeypatch):
    events: list[dict] = []
    monkeypatch.setattr(quota, "log", Logger(namespace="mailsrv.quota", observer=events.append))
    root = tmp_path / "Maildir"
    for d in ("cur", "new", "tmp"):
        (root / d).mkdir(parents=True)
    t = quota.QuotaTracker(str(root), "alice", lambda: quota.parse_rules(["*:bytes=1000", "*:messages=10"]),
                           warnings=[80, 95])
    t.change("INBOX", 700, 1, check=True)
    assert events == []
    t.change("INBOX", 100, 1, check=True)  # 800 of 1000: 80 % crossed
    t.change("INBOX", 100, 1, check=True)  # 900: nothing new
    t.change("INBOX", 60, 1, check=True)  # 960: 95 %
    t.change("INBOX", -500, -1, check=False)
    t.change("INBOX", 400, 1, check=True)  # back up across 80 %: said again
    lines = [formatEvent(e) for e in events]
    assert lines == ["quota warning: alice reached 80% of the storage limit (800 of 1000)",
                     "quota warning: alice reached 95% of the storage limit (960 of 1000)",
                     "quota warning: alice reached 80% of the storage limit (860 of 1000)"], lines
    assert all(e["log_level"].name == "warn" for e in events)


def test_shared_create_and_list(tmp_path):
    cfg = make_config(tmp_path)
    code, out = run(cfg, "shared", "create", "info", "--grant", "alice=lrswipkxte", "--grant", "bob=lrc")
    assert code == 0
    assert out == "public mailbox Public/info: alice=lrswipkxte, bob=lrkx, anyone=p\n"
    path = layout.folder_path(public_root(cfg.data_dir), "info")
    with open(os.path.join(path, acl.ACL_FILE), encoding="utf-8") as f:
        assert f.read() == "user=alice lrswipkxte\nuser=bob lrkx\nanyone p\n"
    code, out = run(cfg, "shared", "list")
    assert out == "Public/info  alice=lrswipkxte, bob=lrkx, anyone=p\n"
