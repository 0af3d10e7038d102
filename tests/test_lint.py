"""ruff and mypy, configured in pyproject.toml, as part of the test suite: ``python -m pytest`` (the
README's command, and .ci/run's) checks them, on the ruff and mypy the ``test`` extra installs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing():
    done = run("ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing():
    done = run("mypy", "--no-incremental", "--cache-dir", "/dev/null" if sys.platform != "win32" else "nul")
    assert done.returncode == 0, done.stdout + done.stderr
