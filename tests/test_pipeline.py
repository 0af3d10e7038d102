"""The offline pipeline's text side: joining segments, punctuation, ITN, timestamps, stamp_sents."""
from __future__ import annotations

import json

import numpy as np
import pytest

from funasr_wss.models.audio import load_audio_file
from funasr_wss.models.itn import ChineseItn, ItnError
from funasr_wss.models.offline_pipeline import OfflinePipeline, words_to_unit_spans
from funasr_wss.models.paraformer import AsrResult, OfflineParaformer
from funasr_wss.models.punctuation import Punctuator
from funasr_wss.models.sentences import realign_spans, sentence_pieces, split_units, timed_units
from funasr_wss.models.vad import FsmnVadModel
from tests.paths import ASR_PLAIN_DIR, ASR_TIMESTAMP_DIR, AUDIO, GOLDEN, PUNC_DIR, VAD_DIR


@pytest.fixture(scope="module")
def itn():
    return ChineseItn()


@pytest.fixture(scope="module")
def pipeline(itn):
    return OfflinePipeline(
        asr=OfflineParaformer(ASR_TIMESTAMP_DIR), vad=FsmnVadModel(VAD_DIR), punctuator=Punctuator(PUNC_DIR), itn=itn
    )


def result(words, start=0, step=100):
    spans = [(start + i * step, start + (i + 1) * step) for i in range(len(words))]
    return AsrResult(words=list(words), word_spans=spans)


def test_itn_normalises_numbers(itn):
    assert itn("二零二四年三月") != "二零二四年三月"
    assert "2024" in itn("二零二四年三月")
    assert itn("我有一百二十三个苹果") == "我有123个苹果"
    assert itn("") == ""


def test_itn_dir_must_hold_the_fsts(tmp_path):
    with pytest.raises(ItnError, match="zh_itn_tagger.fst"):
        ChineseItn(tmp_path)


def test_itn_moves_timestamps_onto_the_new_text(pipeline):
    words = list("我有一百二十三个苹果")
    t = pipeline.finish([result(words)], use_itn=True, punctuate=lambda s: s + "。")
    assert t.text == "我有123个苹果。"
    assert timed_units(t.text) == ["我", "有", "1", "2", "3", "个", "苹", "果"]
    assert len(t.timestamps) == 8
    assert t.timestamps[:2] == [(0, 100), (100, 200)]
    # "一百二十三" (200..700 ms) is shared evenly by "1 2 3"
    assert t.timestamps[2][0] == 200 and t.timestamps[4][1] == 700
    assert t.timestamps[5:] == [(700, 800), (800, 900), (900, 1000)]
    assert [p.to_json() for p in t.sentences] == [
        {"text_seg": "我 有 1 2 3 个 苹 果", "punc": "。", "start": 0, "end": 1000, "ts_list": [list(s) for s in t.timestamps]}
    ]


def test_itn_switch(pipeline):
    words = list("一百二十三")
    on = pipeline.finish([result(words)], use_itn=True, punctuate=lambda s: s)
    off = pipeline.finish([result(words)], use_itn=False, punctuate=lambda s: s)
    assert on.text == "123" and off.text == "一百二十三"
    assert len(on.timestamps) == 3 and len(off.timestamps) == 5


def test_segments_join_with_english_spacing_and_times(pipeline):
    r1 = result(["hello", "world"], start=0)
    r2 = result(["你", "好", "again"], start=5000)
    t = pipeline.finish([r1, r2], use_itn=False, punctuate=lambda s: s)
    assert t.raw_text == "hello world你好again"
    assert t.timestamps == [(0, 100), (100, 200), (5000, 5100), (5100, 5200), (5200, 5300)]


def test_sentence_pieces_cut_at_marks():
    text = "正是因为，hello world。后面"
    spans = [(i * 10, i * 10 + 10) for i in range(len(timed_units(text)))]
    pieces = [p.to_json() for p in sentence_pieces(text, spans)]
    assert [p["text_seg"] for p in pieces] == ["正 是 因 为", "hello world", "后 面"]
    assert [p["punc"] for p in pieces] == ["，", "。", ""]
    assert pieces[1]["start"] == 40 and pieces[1]["end"] == 60
    assert sum(len(p["ts_list"]) for p in pieces) == len(spans)


def test_a_mark_with_nothing_before_it_makes_no_sentence_piece():
    """2pass: the realtime punctuation reports the previous segment's last mark at the start of
    the next segment's text.  That mark closes no token of this text: no piece with ``start: -1``
    (FunASR's TimestampSentence writes one), and a doubled mark makes none either."""
    text = "。后面，，还有"
    spans = [(5000, 5200), (5200, 5400), (5600, 5800), (5800, 6000)]
    pieces = [p.to_json() for p in sentence_pieces(text, spans)]
    assert pieces == [
        {"text_seg": "后 面", "punc": "，", "start": 5000, "end": 5400, "ts_list": [[5000, 5200], [5200, 5400]]},
        {"text_seg": "还 有", "punc": "", "start": 5600, "end": 6000, "ts_list": [[5600, 5800], [5800, 6000]]},
    ]
    assert sentence_pieces("。", []) == [] and sentence_pieces("？。", []) == []
    # units beyond the spans are left out: a mark closing only those makes no piece either
    assert [p.text_seg for p in sentence_pieces("你好。再见。", [(0, 10), (10, 20)])] == ["你 好"]


def test_split_units():
    assert split_units("我们hello, world 2024年!") == ["我", "们", "hello", ",", "world", "2", "0", "2", "4", "年", "!"]
    assert split_units("it's e-mail") == ["it's", "e-mail"]


def test_realign_keeps_equal_units_and_handles_deletions():
    assert realign_spans("你好", "你好。", [(0, 1), (1, 2)]) == [(0, 1), (1, 2)]
    assert realign_spans("嗯你好", "你好", [(0, 1), (1, 2), (2, 3)]) == [(1, 2), (2, 3)]
    assert realign_spans("你好", "你好", [(0, 1)]) is None  # spans that do not fit the text


def test_words_split_into_units_share_their_span():
    assert words_to_unit_spans(["12", "中"], [(0, 100), (100, 200)]) == [(0, 50), (50, 100), (100, 200)]


def test_whole_pipeline_matches_the_oracle_chain(pipeline):
    """VAD segments, token ids and punctuation classes equal funasr-onnx's chain (golden file)."""
    gold = json.loads((GOLDEN / "asr.json").read_text("utf-8"))
    plain = OfflinePipeline(asr=OfflineParaformer(ASR_PLAIN_DIR), vad=pipeline.vad)
    for name, entry in gold.items():
        waveform = load_audio_file(AUDIO / name, 16000)
        segments = plain.speech_segments(waveform)
        assert [list(s) for s in segments] == [e["segment"] for e in entry["segments"]], name
        results = plain.recognize_segments(waveform, segments)
        assert [r.token_ids for r in results] == [e["plain_model"]["token_ids"] for e in entry["segments"]], name
        joined = "".join(r.text for r in results)
        assert joined == entry["joined_text"]
        if joined:
            assert pipeline.punctuator.punctuate(joined).classes == entry["punc_classes"], name


def test_shared_fbank_gives_the_per_segment_features_exactly(pipeline):
    """Slicing the whole file's fbank gives bit-identical recogniser input, and the same tokens as the oracle."""
    gold = json.loads((GOLDEN / "asr.json").read_text("utf-8"))
    plain = OfflinePipeline(asr=OfflineParaformer(ASR_PLAIN_DIR), vad=pipeline.vad)
    checked = 0
    for name, entry in gold.items():
        waveform = load_audio_file(AUDIO / name, 16000)
        fbank = plain.shared_fbank(waveform)
        assert fbank is not None, name
        segments = plain.speech_segments(waveform, fbank)
        assert segments == plain.speech_segments(waveform), name
        shared = plain.segment_features(waveform, segments, fbank)
        alone = plain.segment_features(waveform, segments)
        for (s, e), a, b in zip(segments, shared, alone):
            assert a.shape == b.shape and np.array_equal(a, b), (name, s, e)
            checked += 1
        results = plain.recognize_segments(waveform, segments, fbank)
        assert [r.token_ids for r in results] == [e["plain_model"]["token_ids"] for e in entry["segments"]], name
    assert checked >= 5


def test_segments_off_the_frame_grid_compute_their_own_features(pipeline):
    waveform = load_audio_file(AUDIO / "zh03_triton_mid.wav", 16000)
    fbank = pipeline.shared_fbank(waveform)
    segments = [(5, 1505), (1000, 2000), (2990, 10**6)]  # off the grid, on it, running past the end
    shared = pipeline.segment_features(waveform, segments, fbank)
    alone = [pipeline.asr.features(waveform[s * 16 : e * 16]) for s, e in segments]
    assert all(np.array_equal(a, b) for a, b in zip(shared, alone))
    assert OfflinePipeline(asr=pipeline.asr).shared_fbank(waveform) is None  # no VAD: nothing to share


def test_transcribe_without_vad_or_punctuation(itn):
    bare = OfflinePipeline(asr=OfflineParaformer(ASR_TIMESTAMP_DIR))
    waveform = load_audio_file(AUDIO / "zh03_triton_mid.wav")
    t = bare.transcribe(waveform)
    assert t.segments == [(0, int(waveform.size / 16))]
    assert t.text == t.raw_text and t.text
    assert bare.transcribe(np.zeros(0, np.float32)).text == ""


def test_no_unknown_marks_reach_the_text(pipeline):
    for name in ("zh01_asr_example_zh.wav", "long02_vad_30s_48k.wav", "en01_libri_1995-1837-0001.wav"):
        t = pipeline.transcribe(load_audio_file(AUDIO / name))
        assert "<unk>" not in t.text
        assert len(timed_units(t.text)) == len(t.timestamps)
