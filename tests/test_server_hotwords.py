"""Hotwords over the protocol steer a contextual / SeACo Paraformer exactly as FunASR's runtime does.

The client's hotwords (JSON object or plain words) merged with the server's ``--hotword`` list
are embedded once per connection and used by every offline pass: the offline profile and
the 2pass profile's ``2pass-offline`` messages.  Words the model cannot spell are reported.
"""
from __future__ import annotations

import json
from typing import List

import numpy as np
import pytest
from websockets.sync.client import connect

from funasr_wss.models.audio import pcm16_to_float
from funasr_wss.models.paraformer import DecodeOptions
from funasr_wss.server import recognizer as bridge
from tests.harness import ServerThread, fixture_settings, fixture_settings_2pass
from tests.helpers import pcm_of
from tests.paths import ASR_CONTEXTUAL_DIR, ASR_SEACO_DIR
from tests.test_server_2pass import model_events, stream
from tests.test_server_offline import assert_silent, recv_json, send_utterance

#: In the tiny models' vocabulary (128 tokens); on these clips they change the decoded text.
WORDS = ["腊棉", "孔眙铟", "敉春罍窳", "砦秕"]
#: Single-VAD-segment clips on which WORDS change each model's tokens.
CLIP = {ASR_CONTEXTUAL_DIR: "zh15_sr_chinese.flac", ASR_SEACO_DIR: "zh07_BAC009S0764W0121.wav"}
OOV = "阿里巴巴"  # none of these characters is in the tiny vocabulary


def hotword_server(model_dir, **settings) -> ServerThread:
    return ServerThread(fixture_settings(model_dir=str(model_dir), punc_dir="", **settings))


def offline_text(server: ServerThread, pcm: bytes, **config) -> dict:
    with connect(server.url) as ws:
        send_utterance(ws, pcm, itn=False, **config)
        return recv_json(ws)


def oracle_texts(model_dir, pieces: List[np.ndarray], words: List[str]) -> List[str]:
    """funasr-onnx's own ContextualParaformer / SeacoParaformer on each segment, these hotwords."""
    funasr_onnx = pytest.importorskip("funasr_onnx")
    cls = funasr_onnx.SeacoParaformer if model_dir == ASR_SEACO_DIR else funasr_onnx.ContextualParaformer
    oracle = cls(str(model_dir), batch_size=1, intra_op_num_threads=1)
    out = []
    for piece in pieces:
        preds = oracle(piece, " ".join(words))[0]["preds"]
        # its timestamp path spaces every token ("嘿 嘿 忱"); Chinese text has none
        out.append(preds.replace(" ", "") if isinstance(preds, str) else preds[0])
    return out


@pytest.fixture(scope="module", params=[ASR_CONTEXTUAL_DIR, ASR_SEACO_DIR], ids=["contextual", "seaco"])
def server_on(request):
    with hotword_server(request.param) as server:
        yield request.param, server


def _segments(server, pcm):
    waveform = pcm16_to_float(pcm)
    segments = server.models.speech_segments(waveform)
    return [waveform[s * 16 : e * 16] for s, e in segments]


@pytest.mark.parametrize("form", ["json", "plain", "comma"])
def test_hotwords_change_the_offline_result_exactly_as_funasr_onnx(server_on, form):
    model_dir, server = server_on
    pcm = pcm_of(CLIP[model_dir])
    pieces = _segments(server, pcm)
    assert len(pieces) == 1
    value = {"json": json.dumps({w: 20 for w in WORDS}, ensure_ascii=False), "plain": " ".join(WORDS), "comma": ",".join(WORDS)}[form]
    with_words = offline_text(server, pcm, hotwords=value)
    without = offline_text(server, pcm)
    assert "warning" not in with_words
    text = with_words["text"].replace(" ", "") if model_dir == ASR_SEACO_DIR else with_words["text"]
    assert text == "".join(oracle_texts(model_dir, pieces, WORDS))
    # Without hotwords the model gets the blank entry alone (FunASR's C++ runtime; funasr-onnx has no
    # such call: its hotwords="" adds an all-zero row), which is what the model does by itself.
    assert without["text"] == server.models.transcribe(pcm16_to_float(pcm), use_itn=False).text
    assert with_words["text"] != without["text"], "these hotwords steer the decoding on this clip"


def test_words_outside_the_vocabulary_are_reported_and_the_rest_used(server_on):
    model_dir, server = server_on
    pcm = pcm_of(CLIP[model_dir])
    msg = offline_text(server, pcm, hotwords=json.dumps({OOV: 30, **{w: 20 for w in WORDS}}, ensure_ascii=False))
    assert OOV in msg["warning"] and "vocabulary" in msg["warning"]
    assert f"{len(WORDS)} other hotwords" in msg["warning"]
    assert msg["text"] == offline_text(server, pcm, hotwords=" ".join(WORDS))["text"]


def test_limits_are_reported_not_fatal(server_on):
    model_dir, server = server_on
    pcm = pcm_of(CLIP[model_dir])
    bad = {"一二三四五六七八九十一": 20, WORDS[0]: -1, WORDS[1]: "heavy", WORDS[2]: 20}
    msg = offline_text(server, pcm, hotwords=json.dumps(bad, ensure_ascii=False))
    warning = msg["warning"]
    assert "longer than 10 characters" in warning
    assert "weight -1 is not between 0 and 100" in warning
    assert 'weight "heavy" is not an integer' in warning
    assert msg["text"] == offline_text(server, pcm, hotwords=WORDS[2])["text"]


def test_the_embedding_is_computed_once_per_connection(server_on, monkeypatch):
    model_dir, server = server_on
    pcm = pcm_of(CLIP[model_dir])
    embedder = server.models.asr.hotwords
    calls = []
    real = type(embedder).embed
    monkeypatch.setattr(embedder, "embed", lambda words: calls.append(list(words)) or real(embedder, words))
    bridge._embed_cached.cache_clear()
    with connect(server.url) as ws:
        for _ in range(3):
            send_utterance(ws, pcm, itn=False, hotwords=" ".join(WORDS))
            recv_json(ws)
    assert calls == [WORDS]
    # a second connection with the same list reuses the embedding
    offline_text(server, pcm, hotwords=" ".join(WORDS))
    assert calls == [WORDS]
    bridge._embed_cached.cache_clear()


def test_the_server_hotword_file_applies_to_every_connection(tmp_path):
    model_dir = ASR_CONTEXTUAL_DIR
    hotword_file = tmp_path / "hotwords.txt"
    hotword_file.write_text("".join(f"{w} 20\n" for w in WORDS), encoding="utf-8")
    from funasr_wss.server.hotwords import parse_hotword_file

    with hotword_server(model_dir) as plain_server:
        pcm = pcm_of(CLIP[model_dir])
        expected = offline_text(plain_server, pcm, hotwords=" ".join(WORDS))["text"]
        nothing = offline_text(plain_server, pcm)["text"]
    settings = fixture_settings(model_dir=str(model_dir), punc_dir="")
    server = ServerThread(settings)
    server_words = parse_hotword_file(hotword_file)
    with server:
        server.server.server_hotwords = server_words
        assert offline_text(server, pcm)["text"] == expected != nothing
        # the client's own words are added to the server's
        merged = offline_text(server, pcm, hotwords=OOV)
        assert merged["text"] == expected and OOV in merged["warning"]


def test_2pass_offline_pass_uses_the_connection_hotwords():
    model_dir = ASR_SEACO_DIR
    with ServerThread(fixture_settings_2pass(model_dir=str(model_dir))) as server:
        pcm = pcm_of("long02_vad_30s_48k.wav")
        run = stream(server.url, pcm, "2pass", hotwords=json.dumps({w: 20 for w in WORDS}, ensure_ascii=False))
        texts = [m["text"] for m in run.of_mode("2pass-offline") if "start_time" in m]
        bias = server.models.pipeline.asr.hotwords.embed(WORDS).bias
        rec = server.models
        waveform = pcm16_to_float(pcm)
        s = rec.new_stream(online=True, offline=True, options=DecodeOptions(hotword_bias=bias))
        events = s.accept(waveform) + s.accept(np.zeros(0, np.float32), is_final=True)
        want = [ev.transcript.text for ev in events if hasattr(ev, "transcript")]
        plain = [ev.transcript.text for ev in model_events(server, pcm, "2pass") if hasattr(ev, "transcript")]
        assert texts == want
        assert texts != plain, "the hotwords changed at least one segment"


def test_a_model_without_hotword_support_ignores_them_silently():
    with ServerThread(fixture_settings(punc_dir="")) as server:
        pcm = pcm_of("zh15_sr_chinese.flac")
        with connect(server.url) as ws:
            send_utterance(ws, pcm, itn=False, hotwords=json.dumps({OOV: 20}, ensure_ascii=False))
            msg = recv_json(ws)
            assert_silent(ws)
        assert "warning" not in msg
        assert msg["text"] == offline_text(server, pcm)["text"]


def test_unusable_words_of_the_server_list_are_logged_at_start_up(caplog):
    import asyncio
    import logging

    from funasr_wss.server.cli import _check_server_hotwords
    from funasr_wss.server.model_loader import load_models

    models = load_models(fixture_settings(model_dir=str(ASR_CONTEXTUAL_DIR), punc_dir=""))
    with caplog.at_level(logging.INFO):
        asyncio.run(_check_server_hotwords(models, {OOV: 20, WORDS[0]: 20}))
    text = caplog.text
    assert f"--hotword: '{OOV}' is not used: not in the model's vocabulary" in text
    assert "1 of 2 hotwords embedded" in text
    caplog.clear()
    plain = load_models(fixture_settings(punc_dir=""))
    with caplog.at_level(logging.INFO):
        asyncio.run(_check_server_hotwords(plain, {WORDS[0]: 20}))
    assert "this model does not take hotwords" in caplog.text
