"""Offline Paraformer: token ids, timestamps and words agree with FunASR's own runtime."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

from funasr_wss.models.audio import load_audio_file
from funasr_wss.models.cif_timestamps import TimestampMismatch, cif_token_spans
from funasr_wss.models.paraformer import OfflineParaformer
from funasr_wss.models.tokens import join_words, tokens_to_words
from tests.paths import ASR_PLAIN_DIR, ASR_TIMESTAMP_DIR, AUDIO, GOLDEN, audio_clips

GOLD = json.loads((GOLDEN / "asr.json").read_text("utf-8"))


@pytest.fixture(scope="module")
def ts_model():
    return OfflineParaformer(ASR_TIMESTAMP_DIR)


@pytest.fixture(scope="module")
def plain_model():
    return OfflineParaformer(ASR_PLAIN_DIR)


def _pieces(name):
    waveform = load_audio_file(AUDIO / name, 16000)
    return [waveform[s * 16 : e * 16] for s, e in (x["segment"] for x in GOLD[name]["segments"])]


def test_golden_covers_every_clip():
    assert sorted(GOLD) == sorted(p.name for p in audio_clips())


@pytest.mark.parametrize("name", sorted(GOLD))
def test_timestamp_model_matches_oracle_segment_by_segment(ts_model, name):
    for piece, gold in zip(_pieces(name), GOLD[name]["segments"]):
        result = ts_model.recognize([piece])[0]
        assert result.token_ids == gold["timestamp_model"]["token_ids"]
        assert [list(s) for s in result.word_spans] == gold["timestamp_model"]["timestamp"]


@pytest.mark.parametrize("name", sorted(GOLD))
def test_plain_model_matches_oracle(plain_model, name):
    for piece, gold in zip(_pieces(name), GOLD[name]["segments"]):
        result = plain_model.recognize([piece])[0]
        assert result.token_ids == gold["plain_model"]["token_ids"]
        assert result.word_spans is None
        assert result.text == gold["plain_model"]["text"]


@pytest.mark.parametrize("model_dir", [ASR_TIMESTAMP_DIR, ASR_PLAIN_DIR])
def test_batched_segments_stay_with_their_own_results(model_dir):
    """Batching keeps each segment's result its own.

    The export lets padding nudge CIF sums by ~1e-6 (see models/paraformer.py),
    which on random weights can move ``token_num`` by one; anything more than
    that (rows swapped, padding decoded) fails here; most must be identical.
    """
    key = "timestamp_model" if model_dir == ASR_TIMESTAMP_DIR else "plain_model"
    batched = OfflineParaformer(model_dir, batch_size=16).recognize(
        [p for name in sorted(GOLD) for p in _pieces(name)]
    )
    golds = [g[key]["token_ids"] for name in sorted(GOLD) for g in GOLD[name]["segments"]]
    assert len(batched) == len(golds) > 10
    identical = 0
    for result, gold in zip(batched, golds):
        assert abs(len(result.token_ids) - len(gold)) <= 1
        identical += result.token_ids == gold
    assert identical >= 0.75 * len(golds)


def test_batch_limits_split_calls_without_changing_tokens(ts_model):
    pieces = _pieces("long02_vad_30s_48k.wav")
    small = OfflineParaformer(ASR_TIMESTAMP_DIR, batch_size=8, max_batch_frames=50)
    assert [r.token_ids for r in small.recognize(pieces)] == [r.token_ids for r in ts_model.recognize(pieces)]


def test_empty_and_tiny_inputs(ts_model):
    results = ts_model.recognize([np.zeros(0, np.float32), np.zeros(100, np.float32), np.zeros(16000, np.float32)])
    assert results[0].text == "" and results[0].token_ids == []
    assert results[1].text == ""
    assert all(isinstance(r.text, str) for r in results)


def test_quantized_model_is_used_when_asked():
    model = OfflineParaformer(ASR_TIMESTAMP_DIR, quantized=True)
    assert model.model_path.name == "model_quant.onnx"
    assert OfflineParaformer(ASR_TIMESTAMP_DIR).model_path.name == "model.onnx"


def test_live_against_funasr_onnx(ts_model):
    """Direct comparison with the installed oracle, on fresh random-ish audio."""
    funasr_onnx = pytest.importorskip("funasr_onnx")
    oracle = funasr_onnx.Paraformer(str(ASR_TIMESTAMP_DIR), batch_size=1, intra_op_num_threads=1)
    vocab = json.loads((ASR_TIMESTAMP_DIR / "tokens.json").read_text("utf-8"))
    rng = np.random.default_rng(7)
    base = load_audio_file(AUDIO / "zh04_triton_long.wav")
    for _k in range(4):
        start = int(rng.integers(0, base.size // 2))
        piece = (base[start : start + int(rng.integers(8000, 60000))] * rng.uniform(0.3, 1.5)).astype(np.float32)
        ours = ts_model.recognize([piece])[0]
        theirs = oracle(piece)[0]
        assert [vocab[i] for i in ours.token_ids] == theirs["raw_tokens"]
        assert [list(s) for s in ours.word_spans] == theirs["timestamp"]


# --- token post-processing and CIF timestamps, against the oracle's functions ---

def test_word_building_agrees_with_funasr_onnx_on_random_token_sequences():
    post = pytest.importorskip("funasr_onnx.utils.postprocess_utils")
    pool = ["中", "国", "1", "2", "a", "b", "per", "and@@", "do@@", "ing", "k", "<s>", "</s>", "<unk>", "it's"]
    rnd = random.Random(0)
    checked = 0
    for _ in range(3000):
        toks = [rnd.choice(pool) for _ in range(rnd.randint(0, 8))]
        spans = [(10 * i, 10 * i + 10) for i in range(len(toks))]
        _, their_spans, _ = post.sentence_postprocess(toks, [list(s) for s in spans])
        their_text, _ = post.sentence_postprocess(toks)
        words, our_spans = tokens_to_words(toks, spans)
        assert [list(s) for s in our_spans] == their_spans, toks
        kept = [t for t in toks if t not in ("<s>", "</s>", "<unk>")]
        if not any("@@" in t for t in kept):
            # Spacing differs only around dangling "xx@@" pieces, where funasr-onnx keeps stray spaces.
            assert join_words(words) == their_text, toks
        checked += 1
    assert checked == 3000


def test_join_words_spacing():
    assert join_words(["我", "爱", "new", "york", "城"]) == "我爱new york城"
    assert join_words([]) == ""
    words, _ = tokens_to_words(["a", "i", "很", "好"])
    assert words == ["AI", "很", "好"]
    words, _ = tokens_to_words(["he@@", "llo", "world"])
    assert join_words(words) == "hello world"


def test_cif_spans_against_oracle_function():
    ts_utils = pytest.importorskip("funasr_onnx.utils.timestamp_utils")
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(30, 400))
        peaks = np.zeros(n, np.float32)
        fire = np.sort(rng.choice(np.arange(2, n), size=int(rng.integers(2, min(20, n - 2))), replace=False))
        peaks[fire] = 1.0
        tokens = ["中"] * (len(fire) - 1)
        _, expected = ts_utils.time_stamp_lfr6_onnx(peaks, list(tokens))
        assert [list(s) for s in cif_token_spans(peaks, len(tokens))] == expected


def test_cif_mismatch_is_reported():
    with pytest.raises(TimestampMismatch):
        cif_token_spans(np.ones(10, np.float32), 3)


def test_a_failing_segment_in_a_batch_costs_only_itself():
    """A batched onnxruntime call that raises is retried one segment at a time (models.batching.run_or_isolate)."""
    pieces = _pieces("long02_vad_30s_48k.wav")[:4]
    assert len(pieces) >= 3
    model = OfflineParaformer(ASR_TIMESTAMP_DIR, batch_size=1)
    alone = [r.token_ids for r in model.recognize(pieces)]  # what the retry decodes: each segment on its own
    model.batch_size = 16
    real_session, bad = model.session, model.features(pieces[1]).shape[0]

    class Flaky:
        def __getattr__(self, name):
            return getattr(real_session, name)

        def run(self, names, feed):
            if bad in feed[model._input_names[1]].tolist():
                raise RuntimeError("boom")
            return real_session.run(names, feed)

    model.session = Flaky()
    got = model.recognize(pieces)
    assert got[1].token_ids == [] and got[1].word_spans == []
    assert [r.token_ids for i, r in enumerate(got) if i != 1] == [t for i, t in enumerate(alone) if i != 1]
