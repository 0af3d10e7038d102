"""``python -m benchmarks --sections http``: HTTP and WebSocket offline throughput on one server, same files."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.paths import AUDIO, MODELS

ROOT = Path(__file__).resolve().parents[1]
SHORT = [AUDIO / "zh03_triton_mid.wav", AUDIO / "zh15_sr_chinese.flac"]


def test_the_http_section_measures_both_paths_on_the_fixture_models(tmp_path):
    cmd = [sys.executable, "-m", "benchmarks", "--model-root", str(MODELS), "--out", str(tmp_path),
           "--sections", "http", "--concurrency", "1,2", "--repeat", "1", "--offline-audio", *map(str, SHORT)]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    section = json.loads((tmp_path / "results.json").read_text("utf-8"))["http"]
    assert section["errors"] == 0 and section["files"] == [p.name for p in SHORT]
    assert [r["concurrency"] for r in section["rows"]] == [1, 2]
    for r in section["rows"]:
        assert r["websocket"] > 0 and r["http"] > 0
        assert r["http_over_websocket"] == round(r["http"] / r["websocket"], 3)
    text = (tmp_path / "report.md").read_text("utf-8")
    assert "## HTTP API vs WebSocket" in text and "| 2 |" in text
