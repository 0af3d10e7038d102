"""The 8 kHz telephone Paraformer: its frontend follows ``frontend_conf.fs``, the 16 kHz VAD hears
the audio at its own rate, and the tokens agree with FunASR's own runtime."""
from __future__ import annotations

import json

import numpy as np
import pytest

from funasr_wss.models.audio import load_audio_file, resample
from funasr_wss.models.live_stream import LiveRecognizer
from funasr_wss.models.offline_pipeline import OfflinePipeline
from funasr_wss.models.paraformer import OfflineParaformer
from funasr_wss.models.vad import FsmnVadModel
from tests.paths import ASR_8K_DIR, AUDIO, GOLDEN, VAD_DIR

GOLD = json.loads((GOLDEN / "asr_8k.json").read_text("utf-8"))


@pytest.fixture(scope="module")
def vad():
    return FsmnVadModel(VAD_DIR)


@pytest.fixture(scope="module", params=["fp32", "quant"])
def pipeline(request, vad):
    asr = OfflineParaformer(ASR_8K_DIR, quantized=request.param == "quant")
    return request.param, OfflinePipeline(asr=asr, vad=vad)


def test_frontend_follows_the_config_rate():
    asr = OfflineParaformer(ASR_8K_DIR)
    assert asr.sample_rate == 8000 and asr.frontend.cfg.fs == 8000
    # 25 ms windows of 200 samples every 80 samples: one second of 8 kHz audio is 98 fbank frames, 17 LFR frames.
    assert asr.features(np.zeros(8000, dtype=np.float32) + 0.01).shape == (17, 560)


@pytest.mark.parametrize("name", sorted(GOLD))
def test_pipeline_matches_oracle(pipeline, name):
    variant, pipe = pipeline
    gold = GOLD[name][variant]
    audio8 = load_audio_file(AUDIO / name, 8000)
    segments = pipe.speech_segments(audio8)
    assert [list(s) for s in segments] == [g["segment"] for g in gold]
    results = pipe.recognize_segments(audio8, segments)
    assert [r.token_ids for r in results] == [g["token_ids"] for g in gold]
    assert [r.text for r in results] == [g["text"] for g in gold]
    transcript = pipe.transcribe(audio8, use_itn=False)
    assert transcript.raw_text == "".join(g["text"] for g in gold)


def test_live_against_funasr_onnx():
    funasr_onnx = pytest.importorskip("funasr_onnx")
    oracle = funasr_onnx.Paraformer(str(ASR_8K_DIR), batch_size=1, intra_op_num_threads=1)
    ours = OfflineParaformer(ASR_8K_DIR)
    vocab = json.loads((ASR_8K_DIR / "tokens.json").read_text("utf-8"))
    base = load_audio_file(AUDIO / "zh04_triton_long.wav", 8000)
    rng = np.random.default_rng(8)
    for _ in range(4):
        start = int(rng.integers(0, base.size // 2))
        piece = (base[start : start + int(rng.integers(4000, 30000))] * rng.uniform(0.3, 1.5)).astype(np.float32)
        feats, lens = oracle.extract_feat([piece])
        out = oracle.infer(feats, lens)
        theirs = oracle.decode(out[0], out[1])[0]
        assert [vocab[i] for i in ours.recognize([piece])[0].token_ids] == theirs


def test_sixteen_khz_input_is_brought_down_to_the_model_rate(pipeline):
    """The same speech given at 16 kHz and resampled gives the 8 kHz model the same tokens."""
    _, pipe = pipeline
    audio8 = load_audio_file(AUDIO / "k8_BAC009S0764W0121_8k.wav", 8000)
    again = resample(resample(audio8, 8000, 16000), 16000, 8000)
    assert abs(again.size - audio8.size) <= 1
    assert pipe.transcribe(again[: audio8.size], use_itn=False).segments == pipe.transcribe(audio8, use_itn=False).segments


def test_two_pass_decodes_segments_at_the_offline_model_rate(vad):
    """2pass streams run at the VAD's 16 kHz; each closed segment is resampled for the 8 kHz model."""
    pipe = OfflinePipeline(asr=OfflineParaformer(ASR_8K_DIR), vad=vad)
    recognizer = LiveRecognizer(pipe, vad)
    assert recognizer.sample_rate == 16000
    audio16 = load_audio_file(AUDIO / "long02_vad_30s_48k.wav", 16000)
    stream = recognizer.new_stream(online=False, offline=True, use_itn=False)
    events = []
    for i in range(0, audio16.size, 9600):
        events += stream.accept(audio16[i : i + 9600], is_final=i + 9600 >= audio16.size)
    assert len(events) >= 2
    for ev in events:
        piece = resample(audio16[ev.start_ms * 16 : ev.end_ms * 16], 16000, 8000)
        expected = pipe.asr.recognize([piece])[0]
        assert ev.transcript.raw_text == expected.text
