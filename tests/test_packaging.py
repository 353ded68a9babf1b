"""`twistd mailsrv` and `mailsrv` are found after `pip install .` and `pip install -e .`
in a fresh virtualenv, run from outside the checkout (plugin discovery and
editable installs are a known trap)."""

from __future__ import annotations

import shutil
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _install(tmp_path: Path, *pip_args: str) -> Path:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    r = subprocess.run([str(env_dir / "bin" / "pip"), "install", "-q", *pip_args],
                       capture_output=True, timeout=600, cwd=tmp_path)
    if r.returncode != 0:
        pytest.fail(f"pip install {' '.join(pip_args)} failed:\n{r.stderr.decode(errors='replace')[-3000:]}")
    return env_dir / "bin"


def _check(bin_dir: Path, cwd: Path) -> None:
    out = subprocess.run([str(bin_dir / "twistd"), "mailsrv", "--help"], capture_output=True, timeout=120, cwd=cwd)
    assert out.returncode == 0, out.stderr
    assert b"--imaps" in out.stdout and b"--pop3" in out.stdout
    out = subprocess.run([str(bin_dir / "mailsrv"), "--help"], capture_output=True, timeout=120, cwd=cwd)
    assert out.returncode == 0 and b"user" in out.stdout, out.stderr
    out = subprocess.run([str(bin_dir / "python"), "-c", "import mailsrv, sys; print(mailsrv.__file__)"],
                         capture_output=True, timeout=60, cwd=cwd)
    assert out.returncode == 0, out.stderr


def test_pip_install_then_twistd_finds_plugin(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "mailsrv-data",
                                                              "__pycache__", ".hypothesis", "tests.*", "_trial_temp*"))
    bin_dir = _install(tmp_path, str(src))
    shutil.rmtree(src)  # the installed copy must stand alone
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _check(bin_dir, elsewhere)
    plugin = list((bin_dir.parent / "lib").glob("python*/site-packages/twisted/plugins/mailsrv_plugin.py"))
    assert plugin, "the plugin file is not installed into twisted/plugins"


def test_pip_install_editable_then_twistd_finds_plugin(tmp_path):
    bin_dir = _install(tmp_path, "-e", str(ROOT))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _check(bin_dir, elsewhere)
