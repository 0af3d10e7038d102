"""A server started on each fixture model directory answers the protocol with what its models say.

Every offline recogniser FunASR's guides deploy (plain, timestamp, contextual, SeACo, 8 kHz
Paraformer, SenseVoiceSmall) in both profiles, the large cn-en punctuation model, and the
per-request SenseVoice fields.  Hotwords have their own file (test_server_hotwords.py).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from websockets.sync.client import connect

from funasr_wss.models.audio import load_audio_file, pcm16_to_float, resample
from funasr_wss.models.model_dir import ModelDirError
from funasr_wss.models.paraformer import DecodeOptions
from funasr_wss.server.model_loader import load_models
from tests.harness import ServerThread, fixture_settings, fixture_settings_2pass
from tests.helpers import pcm_of
from tests.paths import (
    ASR_8K_DIR,
    ASR_CONTEXTUAL_DIR,
    ASR_ONLINE_DIR,
    ASR_PLAIN_DIR,
    ASR_SEACO_DIR,
    ASR_TIMESTAMP_DIR,
    AUDIO,
    PUNC_DIR,
    PUNC_LARGE_DIR,
    SENSEVOICE_DIR,
    VAD_DIR,
)
from tests.test_server_2pass import model_events, stream
from tests.test_server_offline import recv_json, send_utterance

RECOGNISERS = [ASR_PLAIN_DIR, ASR_TIMESTAMP_DIR, ASR_CONTEXTUAL_DIR, ASR_SEACO_DIR, ASR_8K_DIR, SENSEVOICE_DIR]
WITH_TIMESTAMPS = {ASR_TIMESTAMP_DIR, ASR_SEACO_DIR}
TAGS = ("language", "emotion", "event")


def offline_result(server: ServerThread, pcm: bytes, rate: int = 16000, **config) -> dict:
    with connect(server.url) as ws:
        send_utterance(ws, pcm, audio_fs=rate, **config)
        return recv_json(ws)


def in_process(server: ServerThread, pcm: bytes, rate: int = 16000, itn: bool = True, **options):
    pipeline = server.models
    waveform = resample(pcm16_to_float(pcm), rate, pipeline.sample_rate)
    return pipeline.transcribe(waveform, use_itn=itn, options=DecodeOptions(**options))


@pytest.fixture(scope="module", params=RECOGNISERS, ids=lambda d: d.name)
def offline_server_on(request):
    with ServerThread(fixture_settings(model_dir=str(request.param))) as server:
        yield request.param, server


@pytest.mark.parametrize("clip,rate", [("zh01_asr_example_zh.wav", 16000), ("k8_BAC009S0764W0121_8k.wav", 8000)])
def test_offline_profile_answers_with_the_models_result(offline_server_on, clip, rate):
    model_dir, server = offline_server_on
    pcm = pcm_of(clip, rate)
    msg = offline_result(server, pcm, rate, wav_name="m")
    want = in_process(server, pcm, rate)
    assert msg["mode"] == "offline" and msg["wav_name"] == "m"
    assert msg["text"] == want.text and msg["text"]
    assert ("timestamp" in msg) == (model_dir in WITH_TIMESTAMPS)
    if model_dir in WITH_TIMESTAMPS:
        assert json.loads(msg["timestamp"]) == [list(s) for s in want.timestamps]
    if model_dir == SENSEVOICE_DIR:
        assert {k: msg[k] for k in TAGS if k in msg} == {k: want.tags[k] for k in TAGS if k in want.tags}
        assert set(TAGS) & set(msg), "SenseVoiceSmall's tags ride on the result"
    else:
        assert not set(TAGS) & set(msg)


def test_the_8k_model_hears_the_audio_at_8k(offline_server_on):
    model_dir, server = offline_server_on
    assert server.models.sample_rate == (8000 if model_dir == ASR_8K_DIR else 16000)


@pytest.fixture(scope="module", params=RECOGNISERS, ids=lambda d: d.name)
def two_pass_server_on(request):
    with ServerThread(fixture_settings_2pass(model_dir=str(request.param))) as server:
        yield request.param, server


def test_2pass_profile_offline_pass_uses_the_given_recogniser(two_pass_server_on):
    model_dir, server = two_pass_server_on
    pcm = pcm_of("long02_vad_30s_48k.wav")
    run = stream(server.url, pcm, "2pass")
    segments = [ev for ev in model_events(server, pcm, "2pass") if hasattr(ev, "transcript")]
    # (the bare final that follows when the last segment closed before the end signal is no segment)
    offline = [m for m in run.of_mode("2pass-offline") if "start_time" in m]
    assert len(offline) == len(segments) >= 2
    assert run.of_mode("2pass-online"), "the online model still streams deltas"
    for msg, seg in zip(offline, segments):
        assert msg["text"] == seg.transcript.text
        assert (msg["start_time"], msg["end_time"]) == (seg.start_ms, seg.end_ms)
        assert ("timestamp" in msg) == (model_dir in WITH_TIMESTAMPS)
        if model_dir == SENSEVOICE_DIR:
            assert {k: msg.get(k) for k in TAGS} == {k: seg.transcript.tags.get(k) for k in TAGS}
    if model_dir == SENSEVOICE_DIR:
        assert any(k in msg for msg in offline for k in TAGS)


# ------------------------------------------------------------------ SenseVoiceSmall per request


@pytest.fixture(scope="module")
def sensevoice_server():
    with ServerThread(fixture_settings(model_dir=str(SENSEVOICE_DIR))) as server:
        yield server


@pytest.mark.parametrize("lang", ["auto", "zh", "en", "yue", "ja", "ko", "nospeech"])
def test_svs_lang_and_svs_itn_reach_the_model(sensevoice_server, lang):
    pcm = pcm_of("zh02_llamacpp_sample.wav")
    for svs_itn in (True, False):
        msg = offline_result(sensevoice_server, pcm, svs_lang=lang, svs_itn=svs_itn, itn=False)
        want = in_process(sensevoice_server, pcm, itn=False, language=lang, text_norm=svs_itn)
        assert msg["text"] == want.text
        assert {k: msg.get(k) for k in TAGS} == {k: want.tags.get(k) for k in TAGS}


def test_with_svs_itn_the_model_punctuates_itself(sensevoice_server):
    """svs_itn: the text is the model's own (no CT-Transformer, no ITN); without it the punctuation model runs."""
    pcm = pcm_of("zh02_llamacpp_sample.wav")
    pipeline = sensevoice_server.models
    waveform = pcm16_to_float(pcm)
    segments = pipeline.speech_segments(waveform)
    own = pipeline.recognize_segments(waveform, segments, options=DecodeOptions(language="zh", text_norm=True))
    msg = offline_result(sensevoice_server, pcm, svs_lang="zh", svs_itn=True)
    assert msg["text"] == "".join(r.text for r in own) or msg["text"] == " ".join(r.text for r in own)
    plain = pipeline.recognize_segments(waveform, segments, options=DecodeOptions(language="zh", text_norm=False))
    raw = "".join(w for r in plain for w in r.words)
    msg = offline_result(sensevoice_server, pcm, svs_lang="zh", svs_itn=False, itn=False)
    assert msg["text"] == pipeline.punctuator.punctuate(pipeline.finish(plain, use_itn=False).raw_text).text.replace("<unk>", "")
    assert msg["text"].replace(" ", "") != raw.replace(" ", "")  # marks were added


@pytest.mark.parametrize("bad", ["fr", "", 3, ["zh"]])
def test_a_bad_svs_lang_is_an_error_and_the_connection_recovers(sensevoice_server, bad):
    pcm = pcm_of("zh15_sr_chinese.flac")
    with connect(sensevoice_server.url) as ws:
        ws.send(json.dumps({"mode": "offline", "svs_lang": bad, "is_speaking": True}))
        if bad == "":
            # empty means "auto", as the reference's default
            ws.send(pcm)
            ws.send(json.dumps({"is_speaking": False}))
            assert "error" not in recv_json(ws)
            return
        err = recv_json(ws)
        assert "svs_lang" in err["error"]
        if isinstance(bad, str):
            assert "must be one of auto, zh, en, yue, ja, ko, nospeech, got \"fr\"" in err["error"]
        else:
            assert "must be a string" in err["error"]
        send_utterance(ws, pcm, svs_lang="en")
        msg = recv_json(ws)
        assert "error" not in msg
        assert msg["text"] == in_process(sensevoice_server, pcm, language="en").text


# ------------------------------------------------------------------ the large cn-en punctuation model


def test_offline_server_with_the_large_punctuation_model():
    with ServerThread(fixture_settings(model_dir=str(ASR_PLAIN_DIR), punc_dir=str(PUNC_LARGE_DIR))) as server:
        assert server.models.punctuator.model_dir == PUNC_LARGE_DIR
        pcm = pcm_of("zh03_triton_mid.wav")
        msg = offline_result(server, pcm, itn=False)
        want = in_process(server, pcm, itn=False)
        assert msg["text"] == want.text and want.text != want.raw_text


# ------------------------------------------------------------------ start-up errors


def test_a_directory_given_to_the_wrong_flag_stops_the_start(tmp_path):
    with pytest.raises(ModelDirError, match="pass it as --online-model-dir"):
        load_models(fixture_settings(model_dir=str(ASR_ONLINE_DIR)))
    with pytest.raises(ModelDirError, match="pass it as --model-dir"):
        load_models(fixture_settings_2pass(online_model_dir=str(SENSEVOICE_DIR)))
    with pytest.raises(ModelDirError, match="pass it as --punc-dir"):
        load_models(fixture_settings(vad_dir=str(PUNC_DIR)))


def test_a_hotword_model_without_its_embedding_model_stops_the_start(tmp_path):
    import shutil

    broken = tmp_path / "hw"
    shutil.copytree(ASR_SEACO_DIR, broken)
    for name in ("model_eb.onnx", "model_eb_quant.onnx"):
        (broken / name).unlink()
    with pytest.raises(ModelDirError, match="missing model_eb.onnx or model_eb_quant.onnx"):
        load_models(fixture_settings(model_dir=str(broken)))


def test_vad_of_another_rate_than_the_online_model_is_refused(tmp_path):
    import shutil

    odd = tmp_path / "vad8k"
    shutil.copytree(VAD_DIR, odd)
    config = (odd / "config.yaml").read_text("utf-8").replace("fs: 16000", "fs: 8000").replace("sample_rate: 16000", "sample_rate: 8000")
    (odd / "config.yaml").write_text(config, encoding="utf-8")
    with pytest.raises(ModelDirError, match="share one sample rate"):
        load_models(fixture_settings_2pass(vad_dir=str(odd)))


def test_audio_loader_is_unchanged_for_16k():
    """Guard: the fixtures this file relies on are what it thinks they are."""
    assert load_audio_file(AUDIO / "k8_BAC009S0764W0121_8k.wav", 8000).size == pytest.approx(10.28 * 8000, rel=0.01)
    assert np.isfinite(load_audio_file(AUDIO / "zh01_asr_example_zh.wav", 16000)).all()


def test_an_english_model_gets_ascii_punctuation(tmp_path):
    import shutil

    english = tmp_path / "en"
    shutil.copytree(ASR_PLAIN_DIR, english)
    with (english / "config.yaml").open("a", encoding="utf-8") as f:
        f.write("lang: en-bpe\n")
    pcm = pcm_of("zh04_triton_long.wav")
    chinese = load_models(fixture_settings(model_dir=str(ASR_PLAIN_DIR))).transcribe(pcm16_to_float(pcm), use_itn=False).text
    text = load_models(fixture_settings(model_dir=str(english))).transcribe(pcm16_to_float(pcm), use_itn=False).text
    assert set("，。、？") & set(chinese), "the punctuation model wrote marks"
    assert not set("，。、？") & set(text)
    assert text == chinese.replace("，", ",").replace("。", ".").replace("、", ",").replace("？", "?")


def test_sensevoice_hearing_english_gets_ascii_punctuation(sensevoice_server):
    pipeline = sensevoice_server.models
    waveform = pcm16_to_float(pcm_of("en01_libri_1995-1837-0001.wav"))
    segments = pipeline.speech_segments(waveform)
    results = pipeline.recognize_segments(waveform, segments, options=DecodeOptions(language="en", text_norm=False))
    for r in results:
        r.tags["language"] = "en"  # what a trained model says for English speech
    english = pipeline.finish(results, use_itn=False).text
    for r in results:
        r.tags["language"] = "zh"
    chinese = pipeline.finish(results, use_itn=False).text
    assert set("，。、？") & set(chinese)
    assert english == chinese.replace("，", ",").replace("。", ".").replace("、", ",").replace("？", "?")
