"""SenseVoiceSmall: token ids, text and tags agree with FunASR's own runtime (``funasr-onnx``)."""
from __future__ import annotations

import json
import logging
import random
import re
import shutil

import numpy as np
import pytest

from funasr_wss.models.audio import load_audio_file
from funasr_wss.models.paraformer import NO_OPTIONS, AsrResult, DecodeOptions
from funasr_wss.models.sensevoice import (
    LANGUAGES,
    SenseVoiceSmall,
    ctc_greedy_ids,
    decode_pieces,
    read_tags,
    split_words,
)
from tests.paths import AUDIO, GOLDEN, SENSEVOICE_DIR, audio_clips

GOLD = json.loads((GOLDEN / "sensevoice.json").read_text("utf-8"))
CLIPS = GOLD["clips"]
MAX_SAMPLES = GOLD["max_samples"]
PIECES = json.loads((SENSEVOICE_DIR / "tokens.json").read_text("utf-8"))
BPE_MODEL = SENSEVOICE_DIR / "chn_jpn_yue_eng_ko_spectok.bpe.model"
TAG = re.compile(r"<\|[^|]*\|>")

# Written out here rather than imported, so a wrong table in the module fails the tests.
EXPECTED_LANGUAGE_IDS = {"auto": 0, "zh": 3, "en": 4, "yue": 7, "ja": 11, "ko": 12, "nospeech": 13}
CATEGORIES = {
    "language": {"zh", "en", "yue", "ja", "ko", "nospeech"},
    "emotion": {"HAPPY", "SAD", "ANGRY", "NEUTRAL", "FEARFUL", "DISGUSTED", "SURPRISED", "EMO_UNKNOWN"},
    "event": {"Speech", "BGM", "Applause", "Laughter", "Cry", "Sneeze", "Breath", "Cough", "Sing",
              "Speech_Noise", "Event_UNK", "GBG"},
    "text_norm": {"withitn", "woitn"},
}


@pytest.fixture(scope="module")
def model():
    return SenseVoiceSmall(SENSEVOICE_DIR)


def _waveform(name):
    return load_audio_file(AUDIO / name, 16000)[:MAX_SAMPLES]


def _options(entry):
    return DecodeOptions(language=entry["language"], text_norm=entry["textnorm"] == "withitn")


def _expected_tags(ids):
    """First tag of each category in the oracle's ids, computed independently of the module."""
    tags = {}
    for i in ids:
        m = re.fullmatch(r"<\|(.+)\|>", PIECES[i])
        if not m:
            continue
        for category, names in CATEGORIES.items():
            if m.group(1) in names:
                tags.setdefault(category, m.group(1))
    return tags


class SpySession:
    """Records every feed and forwards it to the real session (or raises, when told to)."""

    def __init__(self, session, fail_when=None):
        self.session = session
        self.feeds = []
        self.fail_when = fail_when

    def run(self, output_names, feed):
        self.feeds.append({k: np.array(v) for k, v in feed.items()})
        if self.fail_when is not None and self.fail_when(feed):
            raise RuntimeError("simulated onnxruntime failure")
        return self.session.run(output_names, feed)


@pytest.fixture
def spy():
    """A fresh model whose session is wrapped by a :class:`SpySession`."""
    m = SenseVoiceSmall(SENSEVOICE_DIR, batch_size=4)
    m.session = SpySession(m.session)
    return m


# --- golden comparison -------------------------------------------------------


def test_golden_covers_every_clip_and_every_language():
    assert sorted(CLIPS) == sorted(p.name for p in audio_clips())
    requests = {(e["language"], e["textnorm"]) for entries in CLIPS.values() for e in entries}
    assert {lang for lang, _ in requests} == set(EXPECTED_LANGUAGE_IDS)
    assert {"woitn", "withitn"} == {tn for _, tn in requests}
    for required in [("auto", "woitn"), ("zh", "withitn"), ("en", "woitn"), ("nospeech", "withitn")]:
        assert required in requests


def test_golden_exercises_tags_and_control_pieces():
    """The golden data must contain what the decoding rules are about, or matching it proves little."""
    all_ids = [i for entries in CLIPS.values() for e in entries for i in e["token_ids"]]
    found = _expected_tags(all_ids)
    assert set(found) == set(CATEGORIES)
    assert PIECES.index("<s>") in all_ids  # a control piece sentencepiece decodes to nothing
    assert sum(bool(TAG.search(e["text"])) for entries in CLIPS.values() for e in entries) > 50


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_matches_oracle_on_every_clip_and_request(model, name):
    waveform = _waveform(name)
    for entry in CLIPS[name]:
        result = model.recognize([waveform], _options(entry))[0]
        label = f"{name} {entry['language']}/{entry['textnorm']}"
        assert result.token_ids == entry["token_ids"], label
        assert result.tokens == [PIECES[i] for i in entry["token_ids"]], label
        assert result.text == TAG.sub("", entry["text"]).strip(), label
        assert result.tags == _expected_tags(entry["token_ids"]), label
        assert result.punctuated is (entry["textnorm"] == "withitn"), label
        assert result.word_spans is None
        assert "".join(result.words) == "".join(result.text.split()), label


def test_textnorm_and_language_change_the_output_in_the_golden_data(model):
    """The queries reach the graph: with random weights they change the first tokens."""
    changed_tn = changed_lang = 0
    for entries in CLIPS.values():
        by_request = {(e["language"], e["textnorm"]): e["token_ids"] for e in entries}
        changed_tn += by_request[("auto", "woitn")] != by_request[("auto", "withitn")]
        changed_lang += by_request[("auto", "withitn")] != by_request[("zh", "withitn")]
    assert changed_tn >= 5 and changed_lang >= 5
    # And our model reproduces the difference (not just one of the two answers).
    name = next(n for n, es in CLIPS.items() if es[0]["token_ids"] != es[1]["token_ids"])
    woitn, withitn = CLIPS[name][0], CLIPS[name][1]
    assert (woitn["textnorm"], withitn["textnorm"]) == ("woitn", "withitn")
    waveform = _waveform(name)
    assert model.recognize([waveform], _options(woitn))[0].token_ids == woitn["token_ids"]
    assert model.recognize([waveform], _options(withitn))[0].token_ids == withitn["token_ids"]


# --- live comparison with funasr-onnx ----------------------------------------


@pytest.mark.parametrize("quantized", [False, True])
def test_live_against_funasr_onnx(quantized):
    funasr_onnx = pytest.importorskip("funasr_onnx")
    oracle = funasr_onnx.SenseVoiceSmall(str(SENSEVOICE_DIR), batch_size=1, quantize=quantized,
                                         intra_op_num_threads=1)
    ours = SenseVoiceSmall(SENSEVOICE_DIR, quantized=quantized)
    assert ours.model_path.name == ("model_quant.onnx" if quantized else "model.onnx")
    sp_tokenizer = oracle.tokenizer
    for name in ["zh01_asr_example_zh.wav", "en02_libri_1089-134686-0001.wav", "zh15_sr_chinese.flac"]:
        waveform = _waveform(name)
        for language, textnorm in [("auto", "woitn"), ("ko", "withitn")]:
            expected = oracle(waveform, language=language, textnorm=textnorm)[0]
            result = ours.recognize([waveform], DecodeOptions(language=language, text_norm=textnorm == "withitn"))[0]
            assert sp_tokenizer.decode(result.token_ids) == expected
            assert result.text == TAG.sub("", expected).strip()
            assert result.text


# --- sentencepiece agreement -------------------------------------------------


def test_piece_decoding_agrees_with_sentencepiece_on_random_sequences():
    spm = pytest.importorskip("sentencepiece")
    sp = spm.SentencePieceProcessor()
    sp.load(str(BPE_MODEL))
    assert [sp.IdToPiece(i) for i in range(sp.GetPieceSize())] == PIECES
    rng = random.Random(7)
    plain = [i for i, p in enumerate(PIECES) if i != 0 and not TAG.fullmatch(p)]
    space_heavy = [i for i in plain if PIECES[i].startswith("\u2581")] + [PIECES.index("\u2581")] * 10
    for n in range(400):
        pool = space_heavy if n % 3 == 0 else plain
        ids = [rng.choice(pool) for _ in range(rng.randint(0, 12))]
        assert decode_pieces([PIECES[i] for i in ids]) == sp.DecodeIds(ids).strip(), ids
    # With tags among the pieces: the same once the tags are removed from sentencepiece's text.
    tags = [i for i, p in enumerate(PIECES) if TAG.fullmatch(p)]
    for _ in range(200):
        ids = [rng.choice(plain if rng.random() < 0.7 else tags) for _ in range(rng.randint(1, 12))]
        assert decode_pieces([PIECES[i] for i in ids]) == TAG.sub("", sp.DecodeIds(ids)).strip(), ids


def test_decode_pieces_rules():
    assert decode_pieces(["<|zh|>", "\u2581a", "\u2581\u2581", "b", "<s>", "，", "</s>", "<|woitn|>"]) == "a  b，"
    assert decode_pieces(["<|Speech|>", "<|Cough|>"]) == ""
    assert decode_pieces([]) == ""


# --- tags, CTC and words -----------------------------------------------------


def test_read_tags_takes_the_first_of_each_category_and_ignores_others():
    pieces = ["x", "<|Cough|>", "<|en|>", "<|SAD|>", "<|zh|>", "<|Speech|>", "<|HAPPY|>", "<|woitn|>",
              "<|withitn|>", "<|de|>", "<|unknown_tag|>"]
    assert read_tags(pieces) == {"event": "Cough", "language": "en", "emotion": "SAD", "text_norm": "woitn"}
    assert read_tags(["a", "<|NEUTRAL|>"]) == {"emotion": "NEUTRAL"}
    assert read_tags(["a", "b"]) == {}
    # The real model's layout.
    assert read_tags(["<|yue|>", "<|NEUTRAL|>", "<|BGM|>", "<|withitn|>", "a"]) == {
        "language": "yue", "emotion": "NEUTRAL", "event": "BGM", "text_norm": "withitn"}


def test_unknown_tags_are_dropped_from_text():
    assert decode_pieces(["<|de|>", "\u2581a", "<|EMO_UNKNOWN|>", "<|Event_UNK|>", "b"]) == "ab"


def test_ctc_greedy_merges_repeats_before_dropping_blanks_and_cuts_padding():
    path = [5, 5, 0, 5, 7, 7, 0, 0, 7, 9, 9]
    logits = np.full((len(path), 12), -1.0, dtype=np.float32)
    logits[np.arange(len(path)), path] = 1.0
    assert ctc_greedy_ids(logits, len(path)) == [5, 5, 7, 7, 9]
    assert ctc_greedy_ids(logits, 5) == [5, 5, 7]
    assert ctc_greedy_ids(logits, 0) == []


def test_split_words():
    assert split_words("你好，世界。") == ["你", "好，", "世", "界。"]
    assert split_words("Hello, world.") == ["Hello,", "world."]
    assert split_words("“你好” 2024年 abc你def") == ["“你", "好”", "2024", "年", "abc", "你", "def"]
    assert split_words("こんにちは世界") == ["こんにちは", "世", "界"]
    assert split_words("  ") == []


# --- batching ------------------------------------------------------------------


def test_batching_gives_the_same_as_one_by_one():
    """fp32: padding is masked, so batched rows equal lone ones exactly (order kept too)."""
    waveforms = [_waveform(name) for name in sorted(CLIPS)]
    single = SenseVoiceSmall(SENSEVOICE_DIR)
    alone = [single.recognize([w])[0] for w in waveforms]
    batched = SenseVoiceSmall(SENSEVOICE_DIR, batch_size=8)
    batched.session = SpySession(batched.session)
    together = batched.recognize(waveforms)
    assert len(batched.session.feeds) == 3  # 18 clips in batches of 8
    assert max(f["speech"].shape[0] for f in batched.session.feeds) == 8
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]
    assert [r.text for r in together] == [r.text for r in alone]
    assert [r.tags for r in together] == [r.tags for r in alone]
    # Default batch size 1, several segments in one call: one graph call each, same answers.
    single.session = SpySession(single.session)
    again = single.recognize(waveforms[:4])
    assert len(single.session.feeds) == 4
    assert [r.token_ids for r in again] == [r.token_ids for r in alone[:4]]


def test_max_batch_frames_splits_calls(model):
    waveforms = [_waveform(name) for name in sorted(CLIPS)[:6]]
    small = SenseVoiceSmall(SENSEVOICE_DIR, batch_size=6, max_batch_frames=200)
    small.session = SpySession(small.session)
    results = small.recognize(waveforms)
    for feed in small.session.feeds:
        assert feed["speech"].shape[0] == 1 or feed["speech"].shape[0] * feed["speech"].shape[1] <= 200
    assert [r.token_ids for r in results] == [r.token_ids for r in model.recognize(waveforms)]


# --- graph inputs --------------------------------------------------------------


def test_language_and_textnorm_reach_the_graph(spy):
    waveform = _waveform("zh15_sr_chinese.flac")
    for language, lid in EXPECTED_LANGUAGE_IDS.items():
        for text_norm, tnid in [(True, 14), (False, 15)]:
            spy.session.feeds.clear()
            results = spy.recognize([waveform, waveform[:8000]], DecodeOptions(language=language, text_norm=text_norm))
            (feed,) = spy.session.feeds
            assert feed["language"].tolist() == [lid, lid]
            assert feed["textnorm"].tolist() == [tnid, tnid]
            assert feed["language"].dtype == np.int32 and feed["textnorm"].dtype == np.int32
            assert feed["speech_lengths"].tolist() == sorted(feed["speech_lengths"].tolist())
            assert all(r.punctuated is text_norm for r in results)
    # The default request is svs_lang=auto, svs_itn=true, as in FunASR's server.
    spy.session.feeds.clear()
    spy.recognize([waveform])
    assert spy.session.feeds[0]["language"].tolist() == [0]
    assert spy.session.feeds[0]["textnorm"].tolist() == [14]


def test_languages_tuple():
    assert tuple(LANGUAGES) == tuple(EXPECTED_LANGUAGE_IDS)


@pytest.mark.parametrize("language", ["de", "", "ZH", "withitn", None])
def test_unknown_language_is_a_value_error_before_the_graph_runs(spy, language):
    waveform = _waveform("zh15_sr_chinese.flac")
    with pytest.raises(ValueError) as info:
        spy.recognize([waveform], DecodeOptions(language=language))
    message = str(info.value)
    assert all(lang in message for lang in EXPECTED_LANGUAGE_IDS)
    with pytest.raises(ValueError):
        spy.recognize_features([spy.features(waveform)], DecodeOptions(language=language))
    assert spy.session.feeds == []


# --- empty input and failures ------------------------------------------------


def test_empty_input_gives_empty_results_without_calling_the_graph(spy):
    assert spy.recognize([]) == []
    results = spy.recognize([np.zeros(0, dtype=np.float32), np.zeros(100, dtype=np.float32)])
    assert spy.session.feeds == []
    assert [(r.token_ids, r.text, r.tags, r.word_spans) for r in results] == [([], "", {}, None)] * 2
    assert all(isinstance(r, AsrResult) for r in results)
    # Mixed with real speech: the empty one stays empty, the other is decoded as alone.
    waveform = _waveform("zh15_sr_chinese.flac")
    mixed = spy.recognize([np.zeros(0, dtype=np.float32), waveform])
    assert len(spy.session.feeds) == 1 and spy.session.feeds[0]["speech"].shape[0] == 1
    assert mixed[0].token_ids == []
    assert mixed[1].token_ids == CLIPS["zh15_sr_chinese.flac"][1]["token_ids"]  # auto/withitn


def test_a_failing_segment_gives_an_empty_result_and_a_warning(spy, caplog):
    names = ["zh15_sr_chinese.flac", "zh01_asr_example_zh.wav", "en02_libri_1089-134686-0001.wav"]
    waveforms = [_waveform(n) for n in names]
    bad_frames = spy.features(waveforms[1]).shape[0]
    # Fail any call that contains the second clip (the batch, then its retry alone).
    spy.session.fail_when = lambda feed: bad_frames in feed["speech_lengths"].tolist()
    with caplog.at_level(logging.WARNING, logger="funasr_wss.models.sensevoice"):
        results = spy.recognize(waveforms, NO_OPTIONS)
    assert results[1].token_ids == [] and results[1].text == ""
    assert results[0].token_ids == CLIPS[names[0]][1]["token_ids"]
    assert results[2].token_ids == CLIPS[names[2]][1]["token_ids"]
    assert any("SenseVoiceSmall failed" in r.getMessage() for r in caplog.records)


# --- interface -----------------------------------------------------------------


def test_interface_matches_the_offline_paraformer(model):
    assert model.sample_rate == 16000
    assert model.has_timestamps is False
    assert model.batch_size == 1
    assert model.model_dir == SENSEVOICE_DIR
    assert model.model_path == SENSEVOICE_DIR / "model.onnx"
    feats = model.features(_waveform("zh15_sr_chinese.flac"))
    assert feats.dtype == np.float32 and feats.shape[1] == 560  # 80 mels × lfr_m 7
    assert model.recognize_features([feats])[0].token_ids == CLIPS["zh15_sr_chinese.flac"][1]["token_ids"]


def test_tokens_of_another_model_are_refused(tmp_path):
    for name in ("model.onnx", "config.yaml", "am.mvn"):
        shutil.copy(SENSEVOICE_DIR / name, tmp_path / name)
    (tmp_path / "tokens.json").write_text(json.dumps(PIECES[:200]), encoding="utf-8")
    with pytest.raises(ValueError, match="tokens.json"):
        SenseVoiceSmall(tmp_path)
