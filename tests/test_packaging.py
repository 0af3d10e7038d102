"""The built wheel installs everything under one namespace, ``funasr_wss``, and works next to other
projects' top-level ``models``, ``server`` and ``client`` packages (names common enough that
site-packages often holds one).

The wheel is built from a copy of what packaging reads (so the checkout gets no ``build/``), installed
with ``pip --target`` into a directory of its own, and run with ``python -S``: no ``.pth`` file is
processed, so the editable install of this checkout cannot answer for ``funasr_wss``; the dependencies
come from this interpreter's site-packages, put on ``PYTHONPATH`` after the wheel and the dummies.
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import pytest
from websockets.sync.client import connect

from tests.helpers import fixture_pcm, free_port
from tests.paths import ASR_TIMESTAMP_DIR, PUNC_DIR, VAD_DIR
from tests.test_cli import NO_HUB, server_process

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "server", "client")
#: What another project's packages say about themselves: the dummies installed beside the wheel.
OTHER = "another project's {}"


@dataclass
class Installed:
    wheel: Path
    site: Path  # where pip --target put the wheel
    env: Dict[str, str]  # PYTHONPATH: the dummies first, then the wheel, then the dependencies
    cwd: Path  # a directory without our folders in it

    def python(self, *argv: str) -> List[str]:
        return [sys.executable, "-S", *argv]


def _run(cmd: List[str], **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.py[co]"))
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(work / "dist"), str(source)])
    (wheel,) = (work / "dist").glob("*.whl")
    target = work / "site"
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)])
    others = work / "others"
    for package in PACKAGES:
        (others / package).mkdir(parents=True)
        (others / package / "__init__.py").write_text(f"OTHER = {OTHER.format(package)!r}\n")
    dependencies = [p for p in site.getsitepackages() + [site.getusersitepackages()] if os.path.isdir(p)]
    env = dict(NO_HUB, PYTHONPATH=os.pathsep.join([str(others), str(target), *dependencies]))
    env.pop("PYTHONHOME", None)
    cwd = work / "elsewhere"
    cwd.mkdir()
    return Installed(wheel, target, env, cwd)


def test_the_wheel_holds_one_top_level_package(installed):
    with zipfile.ZipFile(installed.wheel) as z:
        names = z.namelist()
        entry_points = next(z.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"funasr_wss"}
    for package in PACKAGES:
        assert f"funasr_wss/{package}/__init__.py" in names
    assert {"funasr_wss/server/web/index.html", "funasr_wss/server/web/app.js"} <= set(names)
    assert "funasr-wss-server = funasr_wss.server.cli:main" in entry_points
    assert "funasr-wss-client = funasr_wss.client.cli:main" in entry_points


PROBE = r"""
import importlib, importlib.metadata, json, pkgutil, sys
import funasr_wss
modules = [m.name for m in pkgutil.walk_packages(funasr_wss.__path__, "funasr_wss.")
           if not m.name.endswith(".__main__")]  # those run the commands
files = {name: importlib.import_module(name).__file__ for name in modules}
import models, server, client
dist = importlib.metadata.distribution("funasr-wss-server")
main = next(e for e in dist.entry_points if e.name == "funasr-wss-server").load()
print(json.dumps({
    "files": files,
    "others": [models.OTHER, server.OTHER, client.OTHER],
    "stray": sorted(n for n in sys.modules if n.split(".")[0] in ("models", "server", "client") and "." in n),
    "entry_point": sys.modules[main.__module__].__file__,
}))
"""


def test_every_module_imports_from_the_wheel_and_leaves_the_others_alone(installed):
    report = json.loads(_run(installed.python("-c", PROBE), env=installed.env, cwd=installed.cwd).stdout)
    ours = {p.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
            for package in PACKAGES for p in (ROOT / package).glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    found = {name[len("funasr_wss."):] for name in report["files"]}
    assert ours <= found  # every module of ours, by its installed name
    site_dir = str(installed.site.resolve())
    assert all(str(Path(f).resolve()).startswith(site_dir) for f in report["files"].values())
    assert report["others"] == [OTHER.format(p) for p in PACKAGES]  # their packages are still theirs
    assert report["stray"] == []  # and nothing of ours went looking inside them
    assert str(Path(report["entry_point"]).resolve()).startswith(site_dir)


def test_the_installed_server_serves_a_file_and_its_page(installed, tmp_path):
    port = free_port()
    args = ["-m", "funasr_wss.server", "--model-dir", str(ASR_TIMESTAMP_DIR), "--vad-dir", str(VAD_DIR),
            "--punc-dir", str(PUNC_DIR), "--lm-dir", "none", "--self-signed-dir", str(tmp_path / "certs")]
    with server_process(installed.python(*args), port, env=installed.env, cwd=installed.cwd):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
        with connect(f"ws://127.0.0.1:{port}") as ws:
            ws.send(json.dumps({"mode": "offline", "wav_name": "wheel", "wav_format": "pcm", "audio_fs": 16000}))
            ws.send(fixture_pcm())
            ws.send(json.dumps({"is_speaking": False}))
            msg = json.loads(ws.recv(timeout=60))
        assert msg["wav_name"] == "wheel" and msg["mode"] == "offline" and msg["text"] and msg["timestamp"]
