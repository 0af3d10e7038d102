"""Where a stream's CPU goes: the stage clock, its /metrics counter, the cost benchmark, and the
cheaper VAD stepping that the benchmark found (one model call per piece, events per 50 ms step)."""
from __future__ import annotations

import json
import threading
import time
import urllib.request

import numpy as np
import pytest
from websockets.sync.client import connect

from benchmarks import report, stage_cost
from funasr_wss.models.audio import load_audio_file
from funasr_wss.models.stage_clock import cpu_seconds, stage
from funasr_wss.models.vad import FsmnVadModel
from tests.harness import ServerThread, fixture_settings_2pass
from tests.helpers import fixture_pcm
from tests.paths import AUDIO, MODELS, VAD_DIR


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_stage_is_charged_its_own_cpu_and_not_its_nested_stages():
    before = cpu_seconds()
    with stage("test_outer"):
        _burn(0.03)
        with stage("test_inner"):
            _burn(0.05)
        time.sleep(0.05)  # waiting is not CPU
    spent = {k: v - before.get(k, 0.0) for k, v in cpu_seconds().items()}
    assert spent["test_inner"] == pytest.approx(0.05, abs=0.015)
    assert spent["test_outer"] == pytest.approx(0.03, abs=0.015)


def test_every_thread_adds_to_the_process_totals():
    before = cpu_seconds().get("test_threads", 0.0)

    def work():
        with stage("test_threads"):
            _burn(0.02)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cpu_seconds()["test_threads"] - before == pytest.approx(0.06, abs=0.02)


@pytest.mark.parametrize("quantized", [True, False], ids=["int8", "fp32"])
@pytest.mark.parametrize("cut", [800, 960, 9600, 37])
def test_vad_steps_in_one_call_give_each_step_its_own_events(cut, quantized):
    """accept_steps(piece, sizes) == accept() of each size in turn, events and all, final call included
    (the int8 model's scores depend on the frames of each call, the fp32 model's do not)."""
    vad = FsmnVadModel(VAD_DIR, quantized=quantized)
    assert vad.cut_invariant is not quantized
    wave = load_audio_file(AUDIO / "long02_vad_30s_48k.wav")
    step_by_step, batched = vad.new_stream(), vad.new_stream()
    rng = np.random.default_rng(cut)
    i, events = 0, 0
    while i < wave.size:
        sizes = [int(s) for s in rng.integers(1, 3 * cut, size=int(rng.integers(1, 20)))]
        piece = wave[i : i + sum(sizes)]
        sizes = sizes[: np.searchsorted(np.cumsum(sizes), piece.size) + 1]
        sizes[-1] = piece.size - sum(sizes[:-1])
        final = i + piece.size >= wave.size
        want, offset = [], 0
        for k, size in enumerate(sizes):
            want.append(step_by_step.accept(piece[offset : offset + size], is_final=final and k == len(sizes) - 1))
            offset += size
        got = batched.accept_steps(piece, sizes, is_final=final)
        assert got == want, i
        events += sum(len(e) for e in got)
        i += piece.size
    assert events >= 4  # the clip has speech segments: the comparison saw events, not only silence


def test_metrics_count_cpu_by_stage(tmp_path):
    with ServerThread(fixture_settings_2pass()) as server:
        def stages():
            with urllib.request.urlopen(server.http_url + "/metrics", timeout=10) as r:
                text = r.read().decode()
            return {line.split('stage="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines() if line.startswith("funasr_stage_cpu_seconds_total{")}

        before = stages()
        with connect(server.url) as ws:
            ws.send(json.dumps({"mode": "2pass", "wav_name": "cost", "chunk_size": [5, 10, 5]}))
            pcm = fixture_pcm()
            for i in range(0, len(pcm), 19200):
                ws.send(pcm[i : i + 19200])
            ws.send(json.dumps({"is_speaking": False}))
            while not json.loads(ws.recv(timeout=60)).get("is_final"):
                pass
        after = stages()
    grew = {k for k in after if after[k] > before.get(k, 0.0)}
    assert {"vad", "online_frontend", "online_encoder", "offline_asr", "punctuation", "live_stream"} <= grew


def test_the_cost_section_splits_the_process_cpu_by_stage():
    result = stage_cost.run(MODELS, quantize=True, files=[AUDIO / "zh01_asr_example_zh.wav"], speed=4.0,
                            log=lambda line: None)
    rows = {r["mode"]: r for r in result["rows"]}
    assert set(rows) == {"2pass", "online", "offline"}
    for mode, row in rows.items():
        stages = row["stages"]
        assert stages["vad"] > 0 and stage_cost.REST in stages, mode
        # the stages and the rest add up to the process's CPU (each rounded to 0.1 ms per audio second)
        assert sum(stages.values()) == pytest.approx(row["core_s_per_audio_s"], abs=0.002), mode
    assert "online_encoder" in rows["online"]["stages"] and "offline_asr" not in rows["online"]["stages"]
    assert "offline_asr" in rows["offline"]["stages"] and "online_encoder" not in rows["offline"]["stages"]
    assert result["two_pass_floor_streams"] == pytest.approx(
        result["cores"] / rows["2pass"]["core_s_per_audio_s"], rel=0.01)
    table = report.cost_table(result).splitlines()
    assert table[0] == "| stage | 2pass | online | offline |"
    assert {line.split(" | ")[0].lstrip("| ") for line in table[2:]} == (
        {s for r in rows.values() for s in r["stages"]} | {"**total**"})
