"""LM (WFST) decode text and timestamps agree with FunASR's own C++ decoder (shared/fixtures/lm/golden.json).

The golden (``tests/golden/lm``, copied from ``shared/fixtures/lm``) holds, per clip, VAD segment and hotword set, the LM words the C++ ``WfstDecoder`` chose and the
two texts its ``FinalizeDecode`` built from them: ``text`` (no-timestamp path, ``Vector2StringV2``) and
``stamp_text`` (timestamp path: ``SplitChiEngCharacters`` → ``TimestampOnnx`` → ``PostProcess``, "text | stamps").
The stamps need the fixture Paraformer's ``us_alphas``/``us_cif_peak`` for each segment: the golden segments
are cut from the clip and run through the project's frontend and the fp32 ``model.onnx``, as the golden was
made (funasr-onnx ``WavFrontend`` + onnxruntime).  Segments whose LM words include English words (``andthese``:
one word over several CIF positions) have fewer units than peaks - 1 and go through the alpha fallback.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from funasr_wss.models.audio import load_audio_file
from funasr_wss.models.batching import pad_features
from funasr_wss.models.cif_timestamps import (
    TimestampMismatch,
    alpha_fire_positions,
    cif_token_spans,
    cpp_server_ms,
    cpp_stamp_seconds,
    peak_positions,
    timestamp_onnx_positions,
    timestamp_onnx_spans,
)
from funasr_wss.models.lm_text import (
    is_chinese_word,
    lm_plain_text,
    lm_stamp_text,
    post_process,
    split_chi_eng,
    split_lm_words,
)
from funasr_wss.models.paraformer import UPSAMPLE, OfflineParaformer
from tests.paths import ASR_TIMESTAMP_DIR, AUDIO, LM_GOLDEN

# A copy of shared/fixtures/lm/golden.json; a missing file fails here (collection error), it never skips.
GOLD = json.loads(LM_GOLDEN.read_text("utf-8"))
CLIPS = sorted(GOLD)


def _decodes(clip):
    """(segment index, set name, golden entry) for every LM decode of a clip."""
    return [(si, name, segs[si]) for name, segs in sorted(GOLD[clip]["lm"].items()) for si in range(len(segs))]


def _split_stamp_text(stamp_text):
    text, stamps = stamp_text.split(" | ")
    return text, stamps


def _format_cpp_stamps(seconds):
    """``PostProcess``'s stamp string: ``std::to_string`` (%f) pairs, ``"b, e"`` joined by ``","``."""
    return ",".join("%f, %f" % (float(b), float(e)) for b, e in seconds)


@pytest.fixture(scope="module")
def cif_outputs():
    """{(clip, segment index): (us_alphas, us_cif_peak, token_num, argmax ids)} from the fixture model."""
    model = OfflineParaformer(ASR_TIMESTAMP_DIR, quantized=False)
    names = [i.name for i in model.session.get_inputs()]
    outs = [o.name for o in model.session.get_outputs()]
    found = {}
    for clip in CLIPS:
        waveform = load_audio_file(AUDIO / clip, 16000)
        for si, (start, end) in enumerate(GOLD[clip]["segments"]):
            speech, lengths = pad_features([model.features(waveform[start * 16 : end * 16])])
            named = dict(zip(outs, model.session.run(None, {names[0]: speech, names[1]: lengths})))
            frames = int(lengths[0]) * UPSAMPLE
            token_num = int(named["token_num"][0])
            ids = named["logits"][0][:token_num].argmax(axis=-1).tolist()
            found[clip, si] = (named["us_alphas"][0][:frames], named["us_cif_peak"][0][:frames], token_num, ids)
    return found


def test_golden_is_there_and_covers_every_set():
    assert len(CLIPS) == 9
    assert sum(len(GOLD[c]["segments"]) for c in CLIPS) == 10
    for clip in CLIPS:
        assert sorted(GOLD[clip]["lm"]) == sorted(["none", *GOLD[clip]["hotword_sets"]])


# --- text -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("clip", CLIPS)
def test_stamp_text_matches_cpp(clip):
    for si, name, gold in _decodes(clip):
        text, _ = _split_stamp_text(gold["stamp_text"])
        assert lm_stamp_text(split_lm_words(gold["word_strs"])) == text, (si, name)


@pytest.mark.parametrize("clip", CLIPS)
def test_plain_text_matches_cpp(clip):
    for si, name, gold in _decodes(clip):
        assert lm_plain_text(gold["word_strs"]) == gold["text"], (si, name)


def test_the_two_paths_differ_on_multichar_words():
    words = ["而", "对", "楼市", "成交", "these", "these", "a", "b"]
    assert lm_plain_text(words) == "而对楼市 成交 these these ab"
    assert lm_stamp_text(split_lm_words(words)) == "而对楼市成交these these a b"
    # In the golden, too, the plain text has spaces the stamp text lacks.
    assert any(" " in g["text"] and g["text"].replace(" ", "") == _split_stamp_text(g["stamp_text"])[0].replace(" ", "")
               and g["text"] != _split_stamp_text(g["stamp_text"])[0]
               for c in CLIPS for _, _, g in _decodes(c))


def test_units_keep_special_words_and_pieces_for_the_count():
    # <unk> and xx@@ pieces are units (they take a CIF interval); only a trailing </s> is dropped.
    assert split_lm_words(["<s>", "竞阖", "<unk>", "lo@@", "ve", "a b", "</s>"]) == \
        ["<s>", "竞", "阖", "<unk>", "lo@@", "ve", "a", "b"]
    assert split_lm_words(["</s>", "x"]) == ["</s>", "x"]
    assert split_chi_eng("ab中cd ef") == ["ab", "中", "cd", "ef"]
    # Extension A is CJK for the split but not for PostProcess's IsChinese: it is spaced like English.
    assert split_chi_eng("a㐀b") == ["a", "㐀", "b"]
    assert not is_chinese_word("㐀") and is_chinese_word("中") and not is_chinese_word("中文")
    assert lm_stamp_text(["中", "㐀", "㐀"]) == "中㐀 㐀"
    # Characters outside the BMP vanish (the C++ UTF-8 decoder makes NULs of them) without cutting the run.
    assert split_chi_eng("a\U0001F600b") == ["ab"]
    assert split_chi_eng("\U0001F600") == []


def test_post_process_glues_pieces_and_merges_their_stamps():
    units = ["<s>", "中", "lo@@", "ve@@", "ly", "<unk>", "ok", "ab@@", "文", "x@@"]
    spans = [(i * 10, i * 10 + 10) for i in range(len(units))]
    text, merged = post_process(units, spans)
    assert text == "中lovely ok ab 文x "
    assert merged == [(10, 20), (20, 50), (60, 70), (70, 80), (80, 90), (90, 100)]
    assert lm_plain_text(units) == "中lovely ok ab 文x "
    with pytest.raises(ValueError):
        post_process(units, spans[:-1])


# --- timestamps ---------------------------------------------------------------------------------------------------

def test_model_inputs_are_the_goldens(cif_outputs):
    """The segments run through the project's frontend give the golden's token_num and argmax ids."""
    for clip in CLIPS:
        for si, greedy in enumerate(GOLD[clip]["greedy"]):
            alphas, peaks, token_num, ids = cif_outputs[clip, si]
            assert token_num == greedy["token_num"] and ids == greedy["tokens"]
            assert alphas.shape == peaks.shape


@pytest.mark.parametrize("clip", CLIPS)
def test_stamps_match_cpp_bit_for_bit(cif_outputs, clip):
    for si, name, gold in _decodes(clip):
        alphas, peaks, _, _ = cif_outputs[clip, si]
        units = split_lm_words(gold["word_strs"])
        text, seconds = post_process(units, cpp_stamp_seconds(timestamp_onnx_positions(alphas, peaks, len(units))))
        assert (text, _format_cpp_stamps(seconds)) == _split_stamp_text(gold["stamp_text"]), (si, name)


@pytest.mark.parametrize("clip", CLIPS)
def test_ms_spans_match_cpp(cif_outputs, clip):
    """ms: the C++ server's ``(int)(1000 * stof(stamp))`` exactly; the project's double rounding within 1 ms."""
    for si, name, gold in _decodes(clip):
        alphas, peaks, _, _ = cif_outputs[clip, si]
        units = split_lm_words(gold["word_strs"])
        gold_s = [float(v) for v in _split_stamp_text(gold["stamp_text"])[1].split(",")]
        gold_ms = [cpp_server_ms(v) for v in gold_s]
        _, seconds = post_process(units, cpp_stamp_seconds(timestamp_onnx_positions(alphas, peaks, len(units))))
        assert [cpp_server_ms(v) for pair in seconds for v in pair] == gold_ms, (si, name)
        _, ms = post_process(units, timestamp_onnx_spans(alphas, peaks, len(units)))
        mine = [v for pair in ms for v in pair]
        assert len(mine) == len(gold_ms)
        assert all(abs(a - b) <= 1 for a, b in zip(mine, gold_ms)), (si, name)


def test_alpha_fallback_is_exercised_and_peaks_path_equals_cif_token_spans(cif_outputs):
    fallback = direct = 0
    for clip in CLIPS:
        for si, name, gold in _decodes(clip):
            alphas, peaks, _, _ = cif_outputs[clip, si]
            n = len(split_lm_words(gold["word_strs"]))
            if len(peak_positions(peaks)) == n + 1:
                direct += 1
                assert timestamp_onnx_spans(alphas, peaks, n) == cif_token_spans(peaks, n)
            else:
                fallback += 1
                assert len(peak_positions(peaks)) > n + 1  # English LM words: fewer units than positions
                with pytest.raises(TimestampMismatch):
                    cif_token_spans(peaks, n)
                assert len(timestamp_onnx_spans(alphas, peaks, n)) == n
    assert (fallback, direct) == (24, 26)


def test_peaks_path_equals_cif_token_spans_on_random_rows():
    rng = np.random.default_rng(7)
    for _ in range(300):
        total = int(rng.integers(5, 400))
        peaks = (rng.random(total) * 0.9).astype(np.float32)
        fires = rng.choice(total, size=int(rng.integers(1, max(2, total // 4))), replace=False)
        peaks[fires] = 1.0
        n = len(fires) - 1
        alphas = rng.random(total).astype(np.float32)
        assert timestamp_onnx_spans(alphas, peaks, n) == cif_token_spans(peaks, n)


def test_alpha_fallback_by_hand():
    # 4 positions, alphas sum 3 → 2 tokens + end: scale 1, fires where the running sum passes 1 - 1e-4.
    alphas = np.array([0.5, 0.6, 0.9, 1.0], np.float32)
    peaks = np.zeros(4, np.float32)  # no peaks: the fallback must rebuild them
    # running sums 0.5, 1.1 (fire, → 0.1001), 1.0001 (fire, → 0.0002), 1.0002 (fire)
    assert alpha_fire_positions(alphas, 2, 4).tolist() == [-0.5, 0.5, 1.5]
    assert timestamp_onnx_positions(alphas, peaks, 2) == [(-0.5, 0.5), (0.5, 4.0)]
    assert timestamp_onnx_spans(alphas, peaks, 2) == [(-10, 10), (10, 80)]
    # Fix-up: the last position fires with 4.0 and leaves 3.0001; going backwards, the positions that did not
    # fire take the leftover (3.0001, 2.0002, 1.0003), so all four fire; without the fix-up only one would.
    fixed = alpha_fire_positions(np.array([0.2, 0.2, 0.2, 3.4], np.float32), 3, 4)
    assert fixed.tolist() == [-1.5, -0.5, 0.5, 1.5]
    # More tokens than positions cannot fire n + 1 times: the C++ would read past its vector.
    with pytest.raises(TimestampMismatch):
        timestamp_onnx_spans(np.ones(2, np.float32), np.zeros(2, np.float32), 3)
    with pytest.raises(TimestampMismatch):
        timestamp_onnx_spans(np.zeros(4, np.float32), np.zeros(4, np.float32), 2)
    assert timestamp_onnx_spans(alphas, peaks, 0) == []


def test_alpha_fallback_integrates_in_float32():
    """0.9f + 0.0999000296f is 0.99990000576 exactly (>= 1 - 1e-4, double would fire at position 1) but rounds
    to 0.99989998f in float32, so the C++ fires at position 2 instead (checked against the C++ function)."""
    alphas = np.array([0.9, 0.0999000296, 5e-05, 1.00005], np.float32)
    assert alpha_fire_positions(alphas, 1, 4).tolist() == [0.5, 1.5]
    assert timestamp_onnx_positions(alphas, np.zeros(4, np.float32), 1) == [(0.5, 4.0)]
    assert [tuple(map(float, s)) for s in cpp_stamp_seconds([(0.5, 4.0)])] == [
        (float(np.float32(0.01)), float(np.float32(0.08)))
    ]


def test_long_gap_and_tail_rules_in_the_fallback():
    # One big alpha far from the start: the gap of >= 30 positions is cut to 30, the tail ends halfway.
    alphas = np.zeros(100, np.float32)
    alphas[[2, 50, 60]] = 1.0
    positions = timestamp_onnx_positions(alphas, np.zeros(100, np.float32), 2)
    assert positions == [(0.5, 30.5), (48.5, (100 + 58.5) / 2)]


def test_cpp_server_ms_truncates_in_float32():
    assert cpp_server_ms(np.float32(201.75) * np.float32(0.02)) == 4034  # double rounding would give 4035
    assert cpp_server_ms(0.09) == 90
    assert cpp_server_ms(0.09, 1.0) == 1090
