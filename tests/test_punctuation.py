"""CT-Transformer punctuation (models/punctuation.py) against FunASR's funasr_onnx.

Three layers: the recorded golden outputs (tests/golden/punc.json, written by
tests/oracle/oracle_punc.py), a live comparison with funasr_onnx on the same and on
random texts, and unit tests of the text-side functions and of the realtime cache.
"""
from __future__ import annotations

import json
import random
import shutil
import threading
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest

from funasr_wss.models.model_dir import ModelDirError
from funasr_wss.models.punctuation import (
    DEFAULT_WINDOW,
    PunctuationCache,
    PunctuationResult,
    PunctuationVocab,
    Punctuator,
    RealtimePunctuationResult,
    RealtimePunctuator,
    find_sentence_end,
    finish_offline_text,
    needs_space,
    render,
    spaced_words,
    split_windows,
    split_words,
    vad_mask,
    words_to_ids,
)
from tests.paths import GOLDEN, PUNC_DIR, PUNC_REALTIME_DIR

GOLDEN_FILE = GOLDEN / "punc.json"
MODEL_FILES = ("model.onnx", "model_quant.onnx")


def _golden() -> dict:
    return json.loads(GOLDEN_FILE.read_text(encoding="utf-8"))


GOLD = _golden()


@pytest.fixture(scope="module", params=MODEL_FILES)
def offline_pair(request) -> Tuple[str, Punctuator]:
    return request.param, Punctuator(PUNC_DIR, quantized=request.param == "model_quant.onnx")


@pytest.fixture(scope="module", params=MODEL_FILES)
def realtime_pair(request) -> Tuple[str, RealtimePunctuator]:
    return request.param, RealtimePunctuator(PUNC_REALTIME_DIR, quantized=request.param == "model_quant.onnx")


@pytest.fixture(scope="module")
def offline() -> Punctuator:
    return Punctuator(PUNC_DIR)


@pytest.fixture(scope="module")
def realtime() -> RealtimePunctuator:
    return RealtimePunctuator(PUNC_REALTIME_DIR)


def _vocab_words() -> List[str]:
    tokens = json.loads((PUNC_DIR / "tokens.json").read_text(encoding="utf-8"))
    return [t for t in tokens if not (t.startswith("<") and t.endswith(">"))]


# --------------------------------------------------------------------------- golden


def test_golden_file_covers_what_it_should() -> None:
    cases = GOLD["offline"]["model.onnx"]
    texts = [c["text"] for c in cases]
    names = {c["name"] for c in cases}
    assert any(len(split_words(t)) > 100 for t in texts)
    assert any(20 < len(split_words(t)) <= 100 for t in texts)
    assert any(len(split_words(t)) > 200 for t in texts)
    assert {"empty", "single_zh", "single_en", "mixed_zh_en"} <= names
    assert {"ends_comma", "ends_enum", "ends_question", "ends_unk", "ends_blank"} <= names
    # The tiny model must see known ids and answer with every class somewhere.
    seen = {c for case in cases if "result" in case for c in case["result"]["classes"]}
    assert seen == set(range(6))
    # Only the empty texts make the oracle fail.
    assert {c["name"] for c in cases if "error" in c} == {"empty", "blank"}


@pytest.mark.parametrize("case", GOLD["offline"]["model.onnx"], ids=lambda c: c["name"])
def test_offline_matches_golden(case: dict, offline_pair: Tuple[str, Punctuator]) -> None:
    model_file, model = offline_pair
    (golden,) = [c for c in GOLD["offline"][model_file] if c["name"] == case["name"]]
    got = model.punctuate(golden["text"], split_size=golden["split_size"])
    if "error" in golden:
        # Documented difference: the oracle crashes on text without words, we return nothing.
        assert got == PunctuationResult(text="")
        return
    assert got.text == golden["result"]["text"]
    assert got.classes == golden["result"]["classes"]
    assert got.words == split_words(golden["text"])
    assert got.marks == [model.vocab.marks[c] for c in got.classes]


@pytest.mark.parametrize("seq", GOLD["realtime"]["model.onnx"], ids=lambda s: s["name"])
def test_realtime_matches_golden(seq: dict, realtime_pair: Tuple[str, RealtimePunctuator]) -> None:
    model_file, model = realtime_pair
    (golden,) = [s for s in GOLD["realtime"][model_file] if s["name"] == seq["name"]]
    cache = PunctuationCache()
    for n, call in enumerate(golden["calls"]):
        assert "result" in call, f"oracle failed on call {n}"
        got = model.punctuate(call["text"], cache, split_size=golden["split_size"])
        want = call["result"]
        assert got.text == want["text"], f"call {n}"
        assert got.funasr_marks == want["marks"], f"call {n}"
        # The oracle's cache words carry the spacing it rendered them with; ours are plain.
        assert cache.words == [w.strip() for w in want["cache"]], f"call {n}"
        assert got.cache == cache.words


# --------------------------------------------------------------------------- live oracle


def _random_texts(seed: int, count: int) -> List[str]:
    """Texts mixing vocabulary words, Chinese, digits, marks and odd whitespace."""
    rng = random.Random(seed)
    vocab = _vocab_words()
    pieces = vocab * 3 + list("我们的是在有个了不人中国大会说") + ["，", "。", "？", "、", ",", "?", "_", "42", "AARON", "a_b"]
    seps = [" ", " ", " ", "", "", "\t", "\u3000", "\n"]
    texts = []
    for _ in range(count):
        n = rng.choice([1, 2, 5, 19, 20, 21, 40, 41, 77, 150])
        texts.append("".join(rng.choice(pieces) + rng.choice(seps) for _ in range(n)))
    return texts


def test_live_offline_against_funasr_onnx() -> None:
    funasr_onnx = pytest.importorskip("funasr_onnx")
    oracle = funasr_onnx.CT_Transformer(str(PUNC_DIR), intra_op_num_threads=1)
    ours = Punctuator(PUNC_DIR)
    cases = [(c["text"], c["split_size"]) for c in GOLD["offline"]["model.onnx"]]
    cases += [(t, DEFAULT_WINDOW) for t in _random_texts(1234, 40)]
    cases += [(t, 3) for t in _random_texts(99, 10)]
    checked = 0
    for text, size in cases:
        got = ours.punctuate(text, split_size=size)
        if not split_words(text):
            assert got.text == "" and got.classes == []
            continue
        want_text, want_classes = oracle(text, split_size=size)
        assert (got.text, got.classes) == (want_text, [int(c) for c in want_classes]), text
        checked += 1
    assert checked >= 80


def test_live_realtime_against_funasr_onnx() -> None:
    funasr_onnx = pytest.importorskip("funasr_onnx")
    oracle = funasr_onnx.CT_Transformer_VadRealtime(str(PUNC_REALTIME_DIR), intra_op_num_threads=1)
    ours = RealtimePunctuator(PUNC_REALTIME_DIR)
    sequences = [[c["text"] for c in s["calls"]] for s in GOLD["realtime"]["model.onnx"]]
    rnd = [t for t in _random_texts(4321, 60) if split_words(t)]
    sequences += [rnd[i : i + 6] for i in range(0, len(rnd), 6)]
    for texts in sequences:
        param_dict: dict = {"cache": []}
        cache = PunctuationCache()
        for text in texts:
            want_text, want_marks, want_cache = oracle(text, param_dict=param_dict)
            got = ours.punctuate(text, cache)
            assert got.text == want_text, text
            assert got.funasr_marks == list(want_marks), text
            assert cache.words == [w.strip() for w in want_cache], text


def test_live_text_helpers_against_funasr_onnx() -> None:
    pytest.importorskip("funasr_onnx")
    from funasr_onnx.utils.utils import code_mix_split_words, split_to_mini_sentence

    rng = random.Random(5)
    alphabet = "ab Z9,.?_'中文，。？、\t\u3000\n-"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert split_words(text) == code_mix_split_words(text), repr(text)
    for n in range(0, 70):
        for size in (2, 3, 20):
            items = list(range(n))
            assert split_windows(items, size) == split_to_mini_sentence(items, size)


def test_live_vad_mask_against_funasr_onnx() -> None:
    funasr_onnx = pytest.importorskip("funasr_onnx")
    oracle = funasr_onnx.CT_Transformer_VadRealtime.vad_mask
    for size in range(0, 8):
        for pos in range(-1, 10):
            np.testing.assert_array_equal(vad_mask(size, pos), oracle(None, size, pos).astype(np.float32))


# --------------------------------------------------------------------------- text side


def test_split_words_rules() -> None:
    assert split_words("") == []
    assert split_words(" \t\u3000\n ") == []
    assert split_words("欢迎大家") == ["欢", "迎", "大", "家"]
    assert split_words("hello world") == ["hello", "world"]
    assert split_words("我用Python3写, ok") == ["我", "用", "Python3", "写", ",", "ok"]
    assert split_words("你好，世界。") == ["你", "好", "，", "世", "界", "。"]
    assert split_words("a\u3000b\tc\nd") == ["a", "b", "c", "d"]  # any Unicode whitespace separates
    assert split_words("don't stop") == ["don't", "stop"]
    assert split_words("\ud800x") == ["\ud800", "x"]  # lone surrogate: a non-ASCII char, no crash


def test_words_to_ids_unknown_and_lookup() -> None:
    vocab = PunctuationVocab.build(["<blank>", "a", "b", "a", "<unk>"], ["<unk>", "_", ",", "。", "?", "、"])
    assert vocab.unk_id == 4
    assert vocab.token_to_id["a"] == 3  # a duplicated token keeps its last id, like the reference
    assert words_to_ids(["a", "b", "zzz", "<unk>"], vocab.token_to_id, vocab.unk_id) == [3, 2, 4, 4]
    assert vocab.marks == ("<unk>", "_", "，", "。", "？", "、")
    assert (vocab.full_stop_id, vocab.no_mark_id) == (3, 1)


def test_vocab_from_model_dirs() -> None:
    for d in (PUNC_DIR, PUNC_REALTIME_DIR):
        vocab = PunctuationVocab.from_model_dir(d)
        assert vocab.marks == ("<unk>", "_", "，", "。", "？", "、")
        assert vocab.unk_id == len(vocab.token_to_id) - 1 == 199


def test_split_windows() -> None:
    assert split_windows([], 20) == [[]]
    assert split_windows(list(range(20))) == [list(range(20))]
    assert split_windows(list(range(41)), 20) == [list(range(20)), list(range(20, 40)), [40]]
    assert split_windows(list(range(6)), 3) == [[0, 1, 2], [3, 4, 5]]
    assert DEFAULT_WINDOW == 20
    with pytest.raises(ValueError):
        split_windows([1, 2, 3], 1)


def test_spacing_and_render() -> None:
    assert needs_space("hello", "world")
    assert not needs_space("你", "world") and not needs_space("hello", "你")
    assert spaced_words(["hi", "there", "你", "ok", "1"]) == ["hi", " there", "你", "ok", " 1"]
    assert render(["hi", "there", "你", "好"], ["，", "_", "、", "。"]) == "hi， there你、好。"
    assert render(["x"], ["<unk>"]) == "x<unk>"  # the model's <unk> class is written out, as FunASR does
    with pytest.raises(ValueError):
        render(["a"], [])


def test_find_sentence_end_skips_edges() -> None:
    assert find_sentence_end(["。", "。", "_", "_"]) == -1  # positions 0 and 1 never count
    assert find_sentence_end(["_", "_", "_", "。"]) == -1  # nor the last word
    assert find_sentence_end(["_", "_", "？", "。", "_"]) == 3
    assert find_sentence_end(["_", "_", "？", "，", "_"]) == 2
    assert find_sentence_end([]) == -1


def test_finish_offline_text() -> None:
    assert finish_offline_text("你好，", [1, 2], 3) == ("你好。", [1, 3])
    assert finish_offline_text("苹果、", [1, 5], 3) == ("苹果。", [1, 3])
    assert finish_offline_text("你好", [1, 1], 3) == ("你好。", [1, 3])
    assert finish_offline_text("你好？", [1, 4], 3) == ("你好？", [1, 4])
    assert finish_offline_text("你好。", [1, 3], 3) == ("你好。", [1, 3])
    assert finish_offline_text("why?", [1], 3) == ("why?。", [3])  # ASCII ? is not a sentence end
    assert finish_offline_text("x<unk>", [0], 3) == ("x<unk>。", [3])


def test_vad_mask_shape() -> None:
    m = vad_mask(5, 3)
    assert m.dtype == np.float32 and m.shape == (5, 5)
    assert m[:2, 3:].sum() == 0 and m.sum() == 25 - 4
    assert vad_mask(4, 0).all() and vad_mask(4, 4).all()


# --------------------------------------------------------------------------- models


def test_empty_text_does_not_run_the_model(offline: Punctuator, realtime: RealtimePunctuator, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("model called")

    monkeypatch.setattr(offline, "_classify", boom)
    monkeypatch.setattr(realtime, "_classify", boom)
    assert offline.punctuate("") == PunctuationResult(text="")
    assert offline.punctuate(" \n ").text == ""
    cache = PunctuationCache(["aaron", "abandon"])
    got = realtime.punctuate("  ", cache)
    assert got == RealtimePunctuationResult(text="", cache=["aaron", "abandon"])
    assert cache.words == ["aaron", "abandon"]
    assert realtime.punctuate("").text == ""


def test_offline_result_shape(offline: Punctuator) -> None:
    text = " ".join(_vocab_words()[:50])
    got = offline.punctuate(text)
    assert len(got.words) == len(got.classes) == len(got.marks) == 50
    assert got.text.endswith(("。", "？"))
    # Settled chunks are rendered separately: English words at a window cut are not re-spaced.
    assert got.text.replace(" ", "").replace("<unk>", "").translate({ord(c): None for c in "，。？、"}) == text.replace(" ", "")


def test_realtime_cache_carries_the_open_sentence(realtime: RealtimePunctuator) -> None:
    words = _vocab_words()
    first = " ".join(words[60:75])
    second = " ".join(words[100:110])
    cache = PunctuationCache()
    r1 = realtime.punctuate(first, cache)
    assert r1.leading_mark is None and r1.leading_class is None
    assert cache.words and cache.words == r1.cache
    assert cache.words[-1] == split_words(first)[-1]  # the last word is always carried
    carried = list(cache.words)

    r2 = realtime.punctuate(second, cache)
    assert r2.words == split_words(second)
    # The mark withheld from the first segment's last word opens the second one.
    assert r2.leading_class is not None and r2.leading_mark == realtime.vocab.marks[r2.leading_class]
    assert r2.funasr_marks[0] == r2.leading_mark
    assert r2.marks[-1] == "_"  # the new last mark is withheld in turn

    # The same segment without the carry is a different computation.
    fresh = realtime.punctuate(second, PunctuationCache())
    assert fresh.leading_mark is None
    # ...and equal to running the carried words explicitly.
    again = realtime.punctuate(second, PunctuationCache(carried))
    assert again == r2


def test_realtime_cache_matches_oracle_exactly(realtime: RealtimePunctuator) -> None:
    funasr_onnx = pytest.importorskip("funasr_onnx")
    oracle = funasr_onnx.CT_Transformer_VadRealtime(str(PUNC_REALTIME_DIR), intra_op_num_threads=1)
    words = _vocab_words()
    first, second = " ".join(words[3:20]), " ".join(words[120:131])
    p: dict = {"cache": []}
    oracle(first, param_dict=p)
    want_text, want_marks, want_cache = oracle(second, param_dict=p)
    cache = PunctuationCache()
    realtime.punctuate(first, cache)
    got = realtime.punctuate(second, cache)
    assert (got.text, got.funasr_marks) == (want_text, list(want_marks))
    assert cache.words == [w.strip() for w in want_cache]
    # Without the first call the oracle (and we) answer differently.
    alone_text, _, _ = oracle(second, param_dict={"cache": []})
    assert realtime.punctuate(second).text == alone_text != want_text


def test_one_model_many_streams(realtime: RealtimePunctuator) -> None:
    """Interleaved streams with their own caches give what each gives alone."""
    rng = random.Random(3)
    vocab = _vocab_words()
    streams = [[" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 30))) for _ in range(5)] for _ in range(3)]

    def alone(texts: List[str]) -> List[str]:
        cache = PunctuationCache()
        return [realtime.punctuate(t, cache).text for t in texts]

    expected = [alone(s) for s in streams]
    caches = [PunctuationCache() for _ in streams]
    got: List[List[str]] = [[] for _ in streams]
    for step in range(5):
        for i, s in enumerate(streams):
            got[i].append(realtime.punctuate(s[step], caches[i]).text)
    assert got == expected


def test_thread_safe(offline: Punctuator) -> None:
    texts = [t for t in _random_texts(8, 24) if split_words(t)]
    expected = {t: offline.punctuate(t) for t in texts}
    errors: List[str] = []

    def work(chunk: List[str]) -> None:
        for t in chunk * 3:
            if offline.punctuate(t) != expected[t]:
                errors.append(t)

    threads = [threading.Thread(target=work, args=(texts[i::4],)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors


def test_missing_files_and_jieba_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelDirError):
        Punctuator(tmp_path)
    copy = tmp_path / "punc"
    shutil.copytree(PUNC_DIR, copy)
    assert not Punctuator(copy).uses_jieba
    # A jieba_usr_dict switches the offline model to jieba words (tests/test_punctuation_large.py).
    (copy / "jieba_usr_dict").write_text("abc 1\n", encoding="utf-8")
    model = Punctuator(copy, quantized=True)
    assert model.uses_jieba and model.split("今天天气 hello") == ["今天天气", "hello"]
    assert model.model_path.name == "model_quant.onnx"
    (copy / "tokens.json").unlink()
    with pytest.raises(ModelDirError):
        Punctuator(copy)


def test_tokens_json_must_be_a_non_empty_list_of_strings(tmp_path: Path) -> None:
    """One loader (models.tokens.load_token_list) for every model's tokens.json, with one check."""
    from funasr_wss.models.tokens import load_token_list

    assert load_token_list(PUNC_DIR)[:1]
    with pytest.raises(ModelDirError, match="missing tokens.json"):
        load_token_list(tmp_path)
    for bad in ("[]", '["a", 1]', '{"a": 1}', "not json"):
        (tmp_path / "tokens.json").write_text(bad, encoding="utf-8")
        with pytest.raises(ModelDirError, match="tokens.json"):
            load_token_list(tmp_path)
