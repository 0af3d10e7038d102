"""ruff and mypy, configured in pyproject.toml, as part of the test suite: ``python -m pytest`` (the
README's command, and .ci/run's) checks them, on the ruff and mypy the ``test`` extra installs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "server", "client")


def run(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing():
    done = run("ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing(tmp_path):
    # The code imports itself as funasr_wss.models / .server / .client (the installed names); mypy does
    # not run the editable install's import hook, so give it a copy of that tree: funasr_wss/<package>.
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / "funasr_wss" / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc"))
    done = run("mypy", "--config-file", str(ROOT / "pyproject.toml"), "--no-incremental", "--cache-dir", os.devnull,
               "-p", "funasr_wss", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found in" in done.stdout
    checked = int(done.stdout.split("Success: no issues found in")[1].split()[0])
    assert checked >= sum(len(list((ROOT / p).rglob("*.py"))) for p in PACKAGES)  # every module, not a stray few
