"""The benchmark harness: its load generator against a real server, its report, and the whole run on the fixtures."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import corpus, report
from benchmarks.load import offline_clients, stream_clients
from server.session import SessionLimits
from tests.harness import ServerThread, fixture_settings
from tests.paths import AUDIO, MODELS

ROOT = Path(__file__).resolve().parents[1]
SHORT = [AUDIO / "zh03_triton_mid.wav", AUDIO / "zh11_cosy_zero_shot.wav", AUDIO / "zh15_sr_chinese.flac"]


def test_offline_load_sends_every_file_and_times_each_result(offline_server):
    waves = corpus.load(SHORT)
    pcms = [corpus.pcm16(w) for w in waves]
    jobs = corpus.work_list(waves, 2)
    assert jobs[:3] == [0, 1, 2] and len(jobs) == 6  # longest first, twice
    load = asyncio.run(offline_clients(offline_server.url, pcms, jobs, 2))
    assert load.files == 6 and load.errors == 0
    assert load.audio_seconds == pytest.approx(2 * sum(w.size for w in waves) / 16000, abs=0.01)
    assert 0 < load.latency_p50 <= load.latency_p95 <= load.wall_seconds
    assert load.throughput == pytest.approx(load.audio_seconds / load.wall_seconds)


def test_offline_load_against_the_2pass_profile_ends_on_the_final_message(two_pass_server):
    """There an offline request gets a 2pass-offline message per segment, the last with is_final."""
    waves = corpus.load(SHORT[:2])
    load = asyncio.run(offline_clients(two_pass_server.url, [corpus.pcm16(w) for w in waves], [0, 1, 0], 2))
    assert load.files == 3 and load.errors == 0 and load.latency_p50 > 0


def test_offline_load_counts_error_replies():
    with ServerThread(fixture_settings(), limits=SessionLimits(max_utterance_seconds=2)) as server:
        waves = corpus.load(SHORT)
        load = asyncio.run(offline_clients(server.url, [corpus.pcm16(w) for w in waves], [0, 1, 2], 1))
    assert load.files == 3 and load.errors == 2  # the 5.0 s and 3.5 s clips are refused, the 1.0 s one is not


def test_streaming_load_measures_every_delta(two_pass_server):
    audio = corpus.stream_audio([AUDIO / "zh03_triton_mid.wav"])[: 16000 * 3]
    row = asyncio.run(stream_clients(two_pass_server.url, corpus.pcm16(audio), 0, 2, stagger=True))
    assert row["streams"] == 2 and row["deltas_per_stream"] > 0
    assert 0 <= row["chunk_lag_p50"] <= row["chunk_lag_p95"] <= row["chunk_lag_p99"]
    assert row["first_delta_p50"] >= 0.6  # nothing can come back before 600 ms of audio has been sent
    assert row["final_after_end_p50"] is not None and row["realtime"]


def _results(rows_realtime):
    rows = [{"streams": n, "first_delta_p50": 0.7, "chunk_lag_p50": 0.1, "chunk_lag_p95": 0.2, "chunk_lag_p99": 0.3,
             "worst_stream_chunk_lag_p95": 0.25 if ok else 1.5, "final_after_end_p50": 0.6, "final_after_end_p95": 0.7,
             "realtime": ok} for n, ok in rows_realtime]
    return {
        "machine": {"cpu": "cpu", "cores": 2, "memory_gib": 4, "os": "os", "python": "3", "onnxruntime": "1"},
        "model_root": "M", "quantize": True, "decoder_threads": 2, "command": "python -m benchmarks --model-root M",
        "offline": {"files": ["a"], "audio_seconds": 10.0, "rows": [
            {"concurrency": 1, "server": 10.0, "server_rtf": 0.1, "latency_p50": 0.5, "latency_p95": 0.9}],
            "server_rss": {"idle_mib": 100.0, "peak_mib": 150.0}},
        "streaming": {"audio_seconds": 30.0, "start": "staggered", "rows": rows,
                      "max_realtime_streams": max([n for n, ok in rows_realtime if ok], default=0),
                      "limit_found": not all(ok for _, ok in rows_realtime),
                      "realtime_rule": "every stream's p95 chunk lag < 1.0 s",
                      "last_segment": {"seconds": 0.5, "segment_seconds": 7.7}, "final_over_last_segment_decode": 1.2,
                      "server_rss": {"idle_mib": 100.0, "peak_mib": 120.0, "idle_connection": None}},
    }


def test_report_says_whether_the_stream_limit_was_reached():
    found = report.markdown(_results([(1, True), (4, True), (6, False)]))
    assert "**4**" in found and "at least" not in found
    assert "| 6 | 0.70 s | 0.10 / 0.20 / 0.30 s | 1.50 s | 0.60 s / 0.70 s | no |" in found
    open_ended = report.markdown(_results([(1, True), (4, True)]))
    assert "**at least 4**" in open_ended
    # without peers the ratio columns are dashes, not made-up numbers
    assert "| 1 | 10.00× | 0.1000 | 0.50 / 0.90 s | – | – | – | – |" in found


def test_the_whole_benchmark_runs_on_the_fixture_models(tmp_path):
    """``python -m benchmarks`` end to end (tiny models, short audio): JSON, Markdown and PNG, figures consistent."""
    cmd = [sys.executable, "-m", "benchmarks", "--model-root", str(MODELS), "--out", str(tmp_path),
           "--concurrency", "1,2", "--repeat", "2", "--streams", "1,2", "--idle-connections", "5",
           "--offline-audio", *map(str, SHORT), "--stream-audio", str(SHORT[0])]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text("utf-8"))
    rows = results["offline"]["rows"]
    assert [r["concurrency"] for r in rows] == [1, 2]
    for r in rows:
        assert r["errors"] == 0 and r["server"] > 0 and r["funasr_onnx"] > 0 and r["floor"] > 0
        assert r["workers"] == r["concurrency"]  # min(clients, 2 decoder threads)
        assert {k: len(v) for k, v in r["samples"].items()} == {"server": 2, "funasr_onnx": 2, "floor": 2}
        assert r["floor"] == max(r["samples"]["floor"]) and r["funasr_onnx"] == max(r["samples"]["funasr_onnx"])
        assert r["server_over_floor"] == pytest.approx(r["server"] / r["floor"], abs=0.001)
        assert r["server_over_funasr_onnx"] == pytest.approx(r["server"] / r["funasr_onnx"], abs=0.001)
    assert results["offline"]["files"] == [p.name for p in SHORT]
    st = results["streaming"]
    assert [r["streams"] for r in st["rows"]] == [1, 2] and st["max_realtime_streams"] == 2
    assert st["server_rss"]["idle_connection"]["connections"] == 5
    assert st["server_rss"]["peak_mib"] >= st["server_rss"]["idle_mib"] > 0
    text = (tmp_path / "report.md").read_text("utf-8")
    assert text.strip() == run.stdout.strip()  # the report is also printed
    assert "## Offline throughput" in text and "## 2pass streaming" in text and "## Memory" in text
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
