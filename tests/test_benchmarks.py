"""The benchmark harness: its load generator against a real server, its report, and the whole run on the fixtures."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import corpus, lm_cost, report
from benchmarks.load import offline_clients, stream_clients
from benchmarks.server_process import server_command
from funasr_wss.server.session import SessionLimits
from tests.harness import ServerThread, fixture_settings
from tests.paths import AUDIO, LM_DIR, MODELS

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


def test_servers_under_test_run_without_the_lm_unless_given_one():
    """The server's default LM is a ModelScope id: left alone, every section would measure it (or a download)."""
    plain = server_command(MODELS, "offline", False, 1, 1234)
    assert plain[plain.index("--lm-dir") + 1] == "none"
    with_lm = server_command(MODELS, "offline", False, 1, 1234, lm_dir=LM_DIR)
    assert with_lm[with_lm.index("--lm-dir") + 1] == str(LM_DIR.resolve())


def test_lm_search_cost_in_process_on_the_fixtures():
    """The lm section's in-process half: graph figures and search ÷ Paraformer per VAD segment."""
    from funasr_wss.models.ngram_lm import load_lm_dir

    r = lm_cost.in_process(MODELS, False, LM_DIR, SHORT, repeat=2, log=lambda line: None)
    g, lm = r["graph"], load_lm_dir(LM_DIR)
    assert (g["states"], g["arcs"]) == (lm.graph.num_states, lm.graph.num_arcs)
    assert g["file_bytes"] == (LM_DIR / "TLG.fst").stat().st_size
    assert g["load_lm_dir_s"] > 0 and g["decoder_s"] > 0
    assert g["memory_over_file"] == pytest.approx(g["memory_bytes"] / g["file_bytes"], abs=0.001)
    assert 0.5 < g["memory_over_file"] <= 1.5 and g["meets_target"]
    # 20 multi-character words, every one spelt by the lexicon, the same each run
    assert len(r["hotwords"]) == 20 and all(len(w) >= 2 and v == 20 for w, v in r["hotwords"].items())
    assert r["search"]["hotword_problems"] == 0
    assert r["hotwords"] == lm_cost.in_process(MODELS, False, LM_DIR, SHORT[:1], repeat=1, log=lambda line: None)["hotwords"]
    s = r["search"]
    assert s["segments"] == len(s["rows"]) >= len(SHORT)
    for row in s["rows"]:
        assert row["paraformer_s"] > 0 and row["search_s"] > 0 and row["search_hotwords_s"] > 0
        assert row["tokens"] > 1 and row["words"] > 0
    for key, col in (("no_hotwords", "search_s"), ("hotwords", "search_hotwords_s")):
        ratios = [row[col] / row["paraformer_s"] for row in s["rows"]]
        summary = s[key]
        assert summary["median"] <= summary["p95"] <= summary["max"] == pytest.approx(max(ratios), abs=1e-4)
        assert min(ratios) - 1e-4 <= summary["total"] <= max(ratios) + 1e-4
        assert summary["max"] < 3  # the search is not slower than the (tiny) model by any margin that matters
        assert summary["meets_target"] == (summary["max"] <= 0.10)


def _lm_results(with_lm_1=9.5):
    conn = {"connections": 50, "rss_before_mib": 1300.0, "rss_with_them_mib": 1301.0, "per_connection_kib": 20.5}
    summary = {"median": 0.012, "p95": 0.031, "max": 0.048, "total": 0.015, "meets_target": True}
    return {
        "graph": {"directory": "LM", "states": 2081013, "arcs": 5617818, "file_bytes": 114857310, "load_lm_dir_s": 1.19,
                  "decoder_s": 0.18, "memory_bytes": 98209148, "memory_over_file": 0.855, "meets_target": True},
        "hotwords": {f"w{i}": 20 for i in range(20)},
        "search": {"segments": 40, "speech_seconds": 100.0, "repeat": 3, "no_hotwords": summary,
                   "hotwords": dict(summary, max=0.125, meets_target=False), "rows": []},
        "server": {"files": 17, "audio_seconds": 118.5, "repeat": 3, "connections": 50, "lm_minus_none_idle_mib": 150.0,
                   "server_rss": {"lm": {"idle_mib": 1300.0, "start_s": 9.0, "after_load_mib": 1400.0, "idle_connections": conn},
                                  "none": {"idle_mib": 1150.0, "start_s": 7.5, "after_load_mib": 1230.0,
                                           "idle_connections": dict(conn, rss_before_mib=1150.0, rss_with_them_mib=1150.5)}},
                   "throughput": [{"concurrency": c, "with_lm": w, "without_lm": 10.0, "ratio": w / 10.0,
                                   "meets_target": w / 10.0 >= 0.9} for c, w in ((1, with_lm_1), (2, 18.0))]},
    }


def test_report_renders_the_lm_section_with_its_targets():
    results = _results([(1, True)])
    results["lm"] = _lm_results(with_lm_1=8.0)
    text = report.markdown(results)
    assert "## n-gram LM (`--lm-dir`)" in text and "## Offline throughput" in text and "## Memory" in text
    assert "| TLG.fst | 2,081,013 states, 5,617,818 arcs, 109.5 MiB | |" in text
    assert "| search graph in memory ÷ TLG file | 0.85 (93.7 MiB) | ≤ 1.5 ✓ |" in text
    assert "1300 − 1150 = 150 MiB" in text
    assert "with LM +1.0 MiB (20 KiB each); without +0.5 MiB" in text
    assert ("| search ÷ Paraformer call per segment, no hotwords | median 1.2%, p95 3.1%, max 4.8%; whole corpus 1.5% "
            "| each ≤ 10% ✓ |") in text
    assert "| same, 20 hotwords | median 1.2%, p95 3.1%, max 12.5%; whole corpus 1.5% | each ≤ 10% ✗ |" in text
    assert "| throughput, 1 client: with LM ÷ without | 8.00× ÷ 10.00× = 0.80 | ≥ 0.9 ✗ |" in text
    assert "| throughput, 2 clients: with LM ÷ without | 18.00× ÷ 10.00× = 1.80 | ≥ 0.9 ✓ |" in text
    # the lm section alone: no empty memory table
    alone = {k: v for k, v in results.items() if k not in ("offline", "streaming")}
    text = report.markdown(alone)
    assert "## n-gram LM" in text and "## Memory" not in text and "## Offline" not in text


def test_the_whole_benchmark_runs_on_the_fixture_models(tmp_path):
    """``python -m benchmarks`` end to end (tiny models, short audio): JSON, Markdown and PNG, figures consistent."""
    cmd = [sys.executable, "-m", "benchmarks", "--model-root", str(MODELS), "--out", str(tmp_path),
           "--sections", "offline,streaming,lm", "--lm-connections", "3",
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
    lm = results["lm"]  # selectable with the others; the figures of its server half
    assert lm["graph"]["directory"] == str(MODELS / "speech_ngram_lm_zh-cn-ai-wesp-fst")  # the default --lm-dir
    srv = lm["server"]
    assert srv["errors"] == 0 and [r["concurrency"] for r in srv["throughput"]] == [1, 2]
    for r in srv["throughput"]:
        assert r["with_lm"] > 0 and r["without_lm"] > 0 and len(r["samples"]["lm"]) == len(r["samples"]["none"]) == 2
    rss = srv["server_rss"]
    assert rss["lm"]["idle_mib"] > rss["none"]["idle_mib"] > 0  # two servers: one holds the graph, one does not
    assert rss["lm"]["idle_connections"]["connections"] == 3
    assert "## n-gram LM" in text
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_scale_section_runs_replicas_behind_haproxy_on_the_fixture_models(tmp_path):
    """``--sections scale``: 1 replica straight, 1 and 2 behind HAProxy; every set-up measured, the ratios
    are the rows' figures, the report has its table."""
    cmd = [sys.executable, "-m", "benchmarks", "--model-root", str(MODELS), "--out", str(tmp_path),
           "--sections", "scale", "--replicas", "2", "--scale-streams", "1", "--scale-concurrency", "2",
           "--repeat", "1", "--offline-audio", *map(str, SHORT), "--stream-audio", str(SHORT[0])]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    scale = json.loads((tmp_path / "results.json").read_text("utf-8"))["scale"]
    rows = scale["rows"]
    assert [(r["replicas"], r["proxy"]) for r in rows] == [(1, False), (1, True), (2, True)]
    for r in rows:
        assert r["offline_errors"] == 0 and r["offline_throughput"] > 0 and r["max_realtime_streams"] >= 1
        assert [s["streams"] for s in r["stream_rows"]][0] == 1
    direct, proxied, scaled = rows
    assert scale["proxy_cost"]["offline"] == pytest.approx(proxied["offline_throughput"] / direct["offline_throughput"], abs=0.001)
    assert scale["scale_out"]["streams"] == pytest.approx(scaled["max_realtime_streams"] / direct["max_realtime_streams"], abs=0.001)
    text = (tmp_path / "report.md").read_text("utf-8")
    assert "## Scaling out: replicas behind HAProxy" in text and "| 2 replicas, HAProxy |" in text
