"""The large cn-en CT-Transformer (jieba word splitting) and the ASCII-marks option.

Layers as in tests/test_punctuation.py: the recorded golden outputs
(tests/golden/punc_large.json, written by tests/oracle/oracle_punc_large.py), a live
comparison with funasr_onnx, and tests of the text-side functions.  On top: the private
jieba tokenizer (isolation from jieba's global instance and between models, set-up at
load time, thread safety) and ``ascii_marks``.

funasr_onnx segments with jieba's *global* tokenizer and loads the model's user
dictionary into it; the live test here does that once in the test process.  Our models
never read that global state, which the isolation tests check directly.
"""
from __future__ import annotations

import json
import logging
import random
import shutil
import threading
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

jieba = pytest.importorskip("jieba")
from jieba import finalseg  # noqa: E402

import funasr_wss.models.punctuation as punctuation  # noqa: E402
from funasr_wss.models.model_dir import ModelDirError  # noqa: E402
from funasr_wss.models.punctuation import (  # noqa: E402
    ASCII_MARKS,
    DEFAULT_WINDOW,
    JiebaWordSplitter,
    PunctuationCache,
    PunctuationResult,
    Punctuator,
    RealtimePunctuator,
    is_english_word,
    language_runs,
    needs_space,
    open_punctuator,
    render,
    spaced_words,
    split_words,
    split_words_jieba,
    to_ascii_marks,
    wants_jieba,
    words_to_ids,
)
from tests.oracle.oracle_punc_large import EXTRA_USER_DICT, make_extra_dict_dir  # noqa: E402
from tests.paths import GOLDEN, PUNC_DIR, PUNC_LARGE_DIR, PUNC_REALTIME_DIR  # noqa: E402

GOLD = json.loads((GOLDEN / "punc_large.json").read_text(encoding="utf-8"))
MODEL_FILES = ("model.onnx", "model_quant.onnx")
FULL_WIDTH_MARKS = "，。、？"


@pytest.fixture(scope="module")
def large_models() -> Dict[str, Punctuator]:
    return {f: Punctuator(PUNC_LARGE_DIR, quantized=f == "model_quant.onnx") for f in MODEL_FILES}


@pytest.fixture(scope="module")
def large(large_models: Dict[str, Punctuator]) -> Punctuator:
    return large_models["model.onnx"]


@pytest.fixture(scope="module")
def extra_dict_dir(tmp_path_factory) -> Path:
    return make_extra_dict_dir(tmp_path_factory.mktemp("extra") / PUNC_LARGE_DIR.name)


def _large_words() -> List[str]:
    tokens = json.loads((PUNC_LARGE_DIR / "tokens.json").read_text(encoding="utf-8"))
    return [t for t in tokens if not (t.startswith("<") and t.endswith(">"))]


def _user_words(path: Path = PUNC_LARGE_DIR / "jieba_usr_dict") -> List[str]:
    return [ln.split()[0] for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]


def _check(got: PunctuationResult, want: dict, model: Punctuator) -> None:
    assert got.words == want["words"]
    assert words_to_ids(got.words, model.vocab.token_to_id, model.vocab.unk_id) == want["ids"]
    assert got.text == want["result"]["text"]
    assert got.classes == want["result"]["classes"]
    assert got.marks == [model.vocab.marks[c] for c in got.classes]


# --------------------------------------------------------------------------- golden


def test_golden_file_covers_what_it_should() -> None:
    cases = GOLD["offline"]["model.onnx"]
    by_name = {c["name"]: c for c in cases}
    unk_id = len(json.loads((PUNC_LARGE_DIR / "tokens.json").read_text(encoding="utf-8"))) - 1
    n_words = [len(c["words"]) for c in cases]
    assert any(20 < n <= 100 for n in n_words) and any(n > 200 for n in n_words)
    assert {"zh", "mixed_zh_en", "apostrophes", "digits", "unknown_words", "user_dict_all", "empty"} <= set(by_name)
    assert {"ends_comma", "ends_enum", "ends_question", "ends_unk", "ends_blank"} <= set(by_name)
    # jieba made multi-character words, kept English words whole, and hit the user dictionary.
    words = {w for c in cases for w in c["words"]}
    assert {"今天天气", "长期以来", "don't", "rock'n'roll", "hello"} <= words
    assert set(_user_words()) <= words
    # Unknown words map to <unk>, known ones do not.
    ids = [i for c in cases for i in c["ids"]]
    assert unk_id in ids and len(set(ids)) > 100
    # Every class occurs; the >200-word comma cut turned a comma into a full stop mid-text.
    assert {k for c in cases if "result" in c for k in c["result"]["classes"]} == set(range(6))
    assert 3 in by_name["comma_cut_260"]["result"]["classes"][:-1]
    assert set(by_name["no_end_230"]["result"]["classes"][:-1]) == {1}
    assert {c["name"] for c in cases if "error" in c} == {"empty", "blank"}
    # The extra user dictionary changes the segmentation (so it must be loaded to match).
    extra = {c["name"]: c["words"] for c in GOLD["offline_extra_dict"]["model.onnx"]}
    assert extra["zh"] != by_name["zh"]["words"] and "天气很好" in extra["zh"]
    assert {"跨境河流", "粤港澳大湾区", "funasr模型", "很好"} <= {w for ws in extra.values() for w in ws}
    assert "生命危险" not in {w for ws in extra.values() for w in ws}  # frequency 0 splits it


@pytest.mark.parametrize("model_file", MODEL_FILES)
@pytest.mark.parametrize("case", GOLD["offline"]["model.onnx"], ids=lambda c: c["name"])
def test_large_matches_golden(case: dict, model_file: str, large_models: Dict[str, Punctuator]) -> None:
    model = large_models[model_file]
    (want,) = [c for c in GOLD["offline"][model_file] if c["name"] == case["name"]]
    got = model.punctuate(want["text"], split_size=want["split_size"])
    if "error" in want:
        assert got == PunctuationResult(text="")  # documented: the oracle crashes on no words
        return
    _check(got, want, model)
    # FunASR's C++ en-bpe mapping, on the text only.
    ascii_got = model.punctuate(want["text"], split_size=want["split_size"], ascii_marks=True)
    assert ascii_got.text == want["result"]["en_bpe_text"]
    assert (ascii_got.words, ascii_got.classes, ascii_got.marks) == (got.words, got.classes, got.marks)


@pytest.mark.parametrize("model_file", MODEL_FILES)
def test_extra_user_dict_matches_golden(model_file: str, extra_dict_dir: Path) -> None:
    model = Punctuator(extra_dict_dir, quantized=model_file == "model_quant.onnx")
    for want in GOLD["offline_extra_dict"][model_file]:
        _check(model.punctuate(want["text"], split_size=want["split_size"]), want, model)


# --------------------------------------------------------------------------- live oracle


def _random_texts(seed: int, count: int) -> List[str]:
    rng = random.Random(seed)
    pool = _large_words() + _user_words() * 2 + list("的了很吗呢")
    pool += ["，", "。", "？", "、", ",", "?", "'", "don't", "it's", "42", "3.5", "Hello", "卡拉OK", "T恤衫", "a_b", "x-y"]
    seps = [" ", " ", " ", "", "", "", "\t", "\u3000", "\n"]
    out = []
    for _ in range(count):
        n = rng.choice([1, 2, 5, 19, 20, 21, 40, 77, 150, 260])
        out.append("".join(rng.choice(pool) + rng.choice(seps) for _ in range(n)))
    return out


def test_live_large_against_funasr_onnx() -> None:
    funasr_onnx = pytest.importorskip("funasr_onnx")
    from funasr_onnx.utils.utils import isEnglish, join_chinese_and_english

    before = Punctuator(PUNC_LARGE_DIR)  # built before funasr_onnx loads its dictionary globally
    oracle = funasr_onnx.CT_Transformer(str(PUNC_LARGE_DIR), intra_op_num_threads=1)
    after = Punctuator(PUNC_LARGE_DIR)
    cases = [(c["text"], c["split_size"]) for c in GOLD["offline"]["model.onnx"]]
    cases += [(t, DEFAULT_WINDOW) for t in _random_texts(2024, 40)]
    cases += [(t, 3) for t in _random_texts(7, 8)]
    checked = 0
    for text, size in cases:
        want_words = oracle.code_mix_split_words_jieba(text)
        assert split_words_jieba(text, before.jieba.cut) == before.split(text) == want_words, repr(text)
        got = before.punctuate(text, split_size=size)
        assert after.punctuate(text, split_size=size) == got
        if not want_words:
            assert got == PunctuationResult(text="")
            continue
        want_text, want_classes = oracle(text, split_size=size)
        assert (got.text, got.classes) == (want_text, [int(c) for c in want_classes]), repr(text)
        checked += 1
    assert checked >= 80

    # The text helpers agree with the oracle's pieces on every whitespace-free piece.
    rng = random.Random(11)
    alphabet = "abZ'9,._-中文，"
    for _ in range(300):
        piece = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
        assert is_english_word(piece) == isEnglish(piece), piece
    for text, _ in cases[:60]:
        for english, run in language_runs(text.split()):
            if not english:
                assert "".join(run) == join_chinese_and_english(run)


# --------------------------------------------------------------------------- isolation


def _global_jieba_state() -> tuple:
    dt = jieba.dt
    return (dt.initialized, dt.total, len(dt.FREQ), {w: dt.FREQ.get(w) for w in EXTRA_WORDS}, set(finalseg.Force_Split_Words))


EXTRA_WORDS = [ln.split()[0] for ln in EXTRA_USER_DICT.splitlines() if ln.strip()]


def test_loading_leaves_global_jieba_alone(extra_dict_dir: Path, monkeypatch) -> None:
    """Neither a model nor a splitter reads or writes jieba's global tokenizer or finalseg."""
    # A fresh set, so that a leak from an earlier test cannot hide one from this test.
    monkeypatch.setattr(finalseg, "Force_Split_Words", set())
    state = _global_jieba_state()
    Punctuator(extra_dict_dir)  # a user dictionary with new words and a frequency 0
    JiebaWordSplitter(extra_dict_dir / "jieba_usr_dict")
    assert _global_jieba_state() == state
    assert finalseg.Force_Split_Words == set()  # the frequency-0 word 生命危险 did not leak
    # And the global instance still cuts as jieba does without those words.
    if not jieba.dt.initialized:
        jieba.dt.check_initialized()
    assert jieba.lcut("天气很好生命危险", HMM=False) == ["天气", "很", "好", "生命危险"]


def test_models_do_not_share_dictionaries(large: Punctuator, extra_dict_dir: Path) -> None:
    text = "今天天气很好 粤港澳大湾区 生命危险"
    plain_before = large.split(text)
    extra = Punctuator(extra_dict_dir)
    no_user_dict = JiebaWordSplitter()
    assert plain_before == ["今天天气", "很", "好", "粤港澳", "大湾", "区", "生命危险"]
    assert extra.split(text) == ["今天", "天气很好", "粤港澳大湾区", "生命", "危险"]
    assert large.split(text) == plain_before  # loading the other model changed nothing here
    assert Punctuator(PUNC_LARGE_DIR).split(text) == plain_before  # nor for a model loaded later
    assert no_user_dict(text) == plain_before  # all fixture user words are main-dictionary words


def test_results_do_not_depend_on_global_jieba(monkeypatch) -> None:
    """A polluted global jieba (words added/removed) changes nothing for our models."""
    jieba.dt.check_initialized()
    monkeypatch.setattr(jieba.dt, "FREQ", dict(jieba.dt.FREQ))
    monkeypatch.setattr(jieba.dt, "total", jieba.dt.total)
    monkeypatch.setattr(finalseg, "Force_Split_Words", set(finalseg.Force_Split_Words))
    jieba.add_word("天气很好", 10**7)
    jieba.add_word("跨境河流", 10**7)
    jieba.del_word("今天天气")
    jieba.del_word("长期以来")
    assert "天气很好" in jieba.lcut("今天天气很好", HMM=False)
    model = Punctuator(PUNC_LARGE_DIR)
    for want in GOLD["offline"]["model.onnx"]:
        if "result" in want:
            _check(model.punctuate(want["text"], split_size=want["split_size"]), want, model)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_tokenizer_is_ready_at_load_and_quiet(capfd, monkeypatch) -> None:
    jieba_log = logging.getLogger("jieba")
    old_level, records = jieba_log.level, _Records()
    jieba_log.setLevel(logging.DEBUG)  # jieba's default: it narrates its set-up
    jieba_log.addHandler(records)
    try:
        capfd.readouterr()
        model = Punctuator(PUNC_LARGE_DIR, quantized=True)
        out, _ = capfd.readouterr()
        assert jieba_log.level == logging.DEBUG  # restored
    finally:
        jieba_log.removeHandler(records)
        jieba_log.setLevel(old_level)
    assert out == "" and records.records == []
    assert model.uses_jieba and model.jieba._tokenizer.initialized
    assert model.jieba._tokenizer is not jieba.dt

    # A request never initialises or changes the tokenizer.
    def boom(*args, **kwargs):
        raise AssertionError("jieba set-up during a request")

    for name in ("initialize", "add_word", "load_userdict"):
        monkeypatch.setattr(jieba.Tokenizer, name, boom)
    freq = dict(model.jieba._tokenizer.FREQ)
    assert model.punctuate("跨境河流是养育沿岸人民的生命之源 hello world").text
    assert model.jieba._tokenizer.FREQ == freq


def test_thread_safe(large: Punctuator) -> None:
    texts = [t for t in _random_texts(99, 24) if t.split()]
    expected = {t: large.punctuate(t) for t in texts}
    errors: List[str] = []
    start = threading.Barrier(4)

    def work(chunk: List[str]) -> None:
        start.wait()
        for t in chunk * 3:
            if large.punctuate(t) != expected[t]:
                errors.append(t)

    threads = [threading.Thread(target=work, args=(texts[i::4],)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors


def test_concurrent_loading(extra_dict_dir: Path) -> None:
    """Models built in parallel threads (serialised set-up) each get their own dictionary."""
    results: Dict[str, List[str]] = {}

    def load(name: str, d: Path) -> None:
        results[name] = JiebaWordSplitter(d / "jieba_usr_dict")("今天天气很好")

    threads = [threading.Thread(target=load, args=args) for args in (("plain", PUNC_LARGE_DIR), ("extra", extra_dict_dir))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert results == {"plain": ["今天天气", "很", "好"], "extra": ["今天", "天气很好"]}


# --------------------------------------------------------------------------- which splitting


def test_plain_models_split_per_character() -> None:
    text = "生命危险 今天天气很好 hello world"
    per_char = ["生", "命", "危", "险", "今", "天", "天", "气", "很", "好", "hello", "world"]
    plain = Punctuator(PUNC_DIR)
    assert not plain.uses_jieba and plain.jieba is None
    assert plain.split(text) == split_words(text) == per_char
    assert plain.punctuate(text).words == per_char
    realtime = RealtimePunctuator(PUNC_REALTIME_DIR)
    assert realtime.punctuate(text, PunctuationCache()).words == per_char
    forced = Punctuator(PUNC_LARGE_DIR, seg_jieba=False)
    assert not forced.uses_jieba and forced.punctuate(text).words == per_char


def test_realtime_ignores_jieba_dirs(tmp_path: Path) -> None:
    """funasr_onnx's realtime model splits per character whatever the directory holds."""
    copy = tmp_path / "rt"
    shutil.copytree(PUNC_REALTIME_DIR, copy)
    shutil.copy(PUNC_LARGE_DIR / "jieba_usr_dict", copy / "jieba_usr_dict")
    model = RealtimePunctuator(copy)
    assert model.punctuate("生命危险").words == ["生", "命", "危", "险"]
    assert not hasattr(model, "jieba")


def test_wants_jieba(tmp_path: Path) -> None:
    assert wants_jieba(PUNC_LARGE_DIR) and not wants_jieba(PUNC_DIR) and not wants_jieba(PUNC_REALTIME_DIR)
    # config.yaml alone (FunASR's C++ runtime) is enough: main dictionary only.
    config_only = tmp_path / "config_only"
    shutil.copytree(PUNC_LARGE_DIR, config_only)
    (config_only / "jieba_usr_dict").unlink()
    assert wants_jieba(config_only)
    model = Punctuator(config_only)
    assert model.uses_jieba and model.jieba.user_dict is None
    assert model.jieba._tokenizer.initialized  # built at load, also without a user dictionary
    assert model.split("今天天气很好 hello") == ["今天天气", "很", "好", "hello"]
    # The user dictionary alone (funasr_onnx) is enough too, even against seg_jieba: false.
    dict_only = tmp_path / "dict_only"
    shutil.copytree(PUNC_DIR, dict_only)
    (dict_only / "jieba_usr_dict").write_text("天气很好\n", encoding="utf-8")
    assert wants_jieba(dict_only)
    assert Punctuator(dict_only).split("今天天气很好") == ["今天", "天气很好"]
    config = (dict_only / "config.yaml").read_text(encoding="utf-8")
    (dict_only / "config.yaml").write_text(config + "\nseg_jieba: false\n", encoding="utf-8")
    assert wants_jieba(dict_only)
    assert wants_jieba(PUNC_DIR, {"seg_jieba": True}) and wants_jieba(PUNC_DIR, {"seg_jieba": "true"})
    assert not wants_jieba(PUNC_DIR, {"seg_jieba": False}) and not wants_jieba(PUNC_DIR, {})


def test_bad_user_dict(tmp_path: Path) -> None:
    copy = tmp_path / "bad"
    shutil.copytree(PUNC_LARGE_DIR, copy)
    (copy / "jieba_usr_dict").write_bytes("天气很好\n".encode("gbk"))
    with pytest.raises(ModelDirError):
        Punctuator(copy)


def test_open_punctuator_large() -> None:
    for quantized in (False, True):
        model = open_punctuator(PUNC_LARGE_DIR, quantized=quantized)
        assert type(model) is Punctuator and model.uses_jieba
        assert model.model_path.name == ("model_quant.onnx" if quantized else "model.onnx")
        (want,) = [c for c in GOLD["offline"]["model_quant.onnx" if quantized else "model.onnx"] if c["name"] == "mixed_zh_en"]
        _check(model.punctuate(want["text"]), want, model)
    assert not open_punctuator(PUNC_DIR).uses_jieba


def test_open_punctuator_realtime_builds_no_tokenizer(monkeypatch, tmp_path: Path) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("jieba built")

    monkeypatch.setattr(punctuation, "_new_jieba_tokenizer", boom)
    realtime_with_dict = tmp_path / "rt"
    shutil.copytree(PUNC_REALTIME_DIR, realtime_with_dict)
    shutil.copy(PUNC_LARGE_DIR / "jieba_usr_dict", realtime_with_dict / "jieba_usr_dict")
    assert type(open_punctuator(PUNC_REALTIME_DIR)) is RealtimePunctuator
    assert type(open_punctuator(realtime_with_dict)) is RealtimePunctuator
    assert type(open_punctuator(PUNC_DIR)) is Punctuator
    with pytest.raises(AssertionError):
        open_punctuator(PUNC_LARGE_DIR)


# --------------------------------------------------------------------------- ASCII marks


def test_to_ascii_marks() -> None:
    assert ASCII_MARKS == {"，": ",", "。": ".", "、": ",", "？": "?"}
    assert to_ascii_marks("你好，世界、再见。好吗？") == "你好,世界,再见.好吗?"
    assert to_ascii_marks("hello， world<unk>。") == "hello, world<unk>."
    assert to_ascii_marks("！；：“”") == "！；：“”"  # only the model's four marks
    assert to_ascii_marks("") == ""


@pytest.mark.parametrize("model_dir,golden", [(PUNC_DIR, "punc.json"), (PUNC_LARGE_DIR, "punc_large.json")], ids=["plain", "large"])
def test_offline_ascii_marks(model_dir: Path, golden: str) -> None:
    model = Punctuator(model_dir)
    cases = json.loads((GOLDEN / golden).read_text(encoding="utf-8"))["offline"]["model.onnx"]
    texts = [c["text"] for c in cases if "result" in c and len(c["text"]) < 400]
    seen = set()
    for text in texts:
        plain = model.punctuate(text)
        ascii_ = model.punctuate(text, ascii_marks=True)
        assert ascii_.text == to_ascii_marks(plain.text)
        assert not set(ascii_.text) & set(FULL_WIDTH_MARKS)
        assert (ascii_.words, ascii_.classes, ascii_.marks) == (plain.words, plain.classes, plain.marks)
        seen |= set(plain.text) & set(FULL_WIDTH_MARKS)
    assert seen == set(FULL_WIDTH_MARKS)  # every mapping was exercised
    assert model.punctuate("今天，", ascii_marks=True).text.endswith(".")


def test_realtime_ascii_marks() -> None:
    model = RealtimePunctuator(PUNC_REALTIME_DIR)
    vocab = [t for t in json.loads((PUNC_REALTIME_DIR / "tokens.json").read_text(encoding="utf-8")) if not t.startswith("<")]
    rng = random.Random(5)
    segments = [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 40))) for _ in range(12)]
    plain_cache, ascii_cache = PunctuationCache(), PunctuationCache()
    seen = set()
    for seg in segments:
        plain = model.punctuate(seg, plain_cache)
        ascii_ = model.punctuate(seg, ascii_cache, ascii_marks=True)
        assert ascii_.text == to_ascii_marks(plain.text)
        assert not set(ascii_.text) & set(FULL_WIDTH_MARKS)
        assert ascii_.funasr_marks == plain.funasr_marks and ascii_.classes == plain.classes
        assert ascii_.cache == plain.cache and ascii_cache.words == plain_cache.words
        seen |= set(plain.text) & set(FULL_WIDTH_MARKS)
    assert seen == set(FULL_WIDTH_MARKS)


# --------------------------------------------------------------------------- text side


def test_is_english_word_and_runs() -> None:
    assert is_english_word("hello") and is_english_word("don't") and is_english_word("'") and is_english_word("ABC")
    assert not is_english_word("hello,") and not is_english_word("3pm") and not is_english_word("你好")
    assert not is_english_word("") and not is_english_word("a_b") and not is_english_word("hello\n")
    assert language_runs([]) == []
    assert language_runs(["你好", "3", "hello", "it's", "世界", "ok"]) == [
        (False, ["你好", "3"]),
        (True, ["hello", "it's"]),
        (False, ["世界"]),
        (True, ["ok"]),
    ]


def test_split_words_jieba_with_a_fake_cut() -> None:
    calls: List[str] = []

    def cut(text: str) -> List[str]:
        calls.append(text)
        return list(text)  # one word per character, to see what jieba would get

    assert split_words_jieba("", cut) == [] and calls == []
    assert split_words_jieba("今天 hello world 天气\t好", cut) == ["今", "天", "hello", "world", "天", "气", "好"]
    assert calls == ["今天", "天气好"]  # non-English pieces glued without their spaces
    calls.clear()
    assert split_words_jieba("3 5个 don't hello, world", cut) == ["3", "5", "个", "don't", "h", "e", "l", "l", "o", ",", "world"]
    assert calls == ["35个", "hello,"]


def test_jieba_splitter_cut_rules(large: Punctuator) -> None:
    cut = large.jieba.cut
    assert cut("35个") == ["35", "个"]  # jieba buffers single ASCII letters/digits into one word
    assert cut("hello,world,") == ["hello", ",", "world", ","]
    assert cut("3.14") == ["3", ".", "14"]
    assert cut("今天天气很好") == ["今天天气", "很", "好"]  # HMM off: no guessed words
    assert large.split("你好hello世界 ok") == ["你好", "hello", "世界", "ok"]


def test_spacing_by_first_character() -> None:
    # jieba words can start with ASCII and end with Chinese: the offline reference
    # looks at the previous word's first character, the realtime one at its last.
    assert needs_space("T恤衫", "ok", by_first_char=True) and not needs_space("T恤衫", "ok")
    assert needs_space("卡拉OK", "hello") and not needs_space("卡拉OK", "hello", by_first_char=True)
    assert spaced_words(["hello", "T恤衫", "ok"], by_first_char=True) == ["hello", " T恤衫", " ok"]
    assert render(["hello", "T恤衫", "ok", "卡拉OK", "hi"], ["_"] * 5) == "hello T恤衫 ok卡拉OKhi"


def test_large_vocab_words(large: Punctuator) -> None:
    tokens = json.loads((PUNC_LARGE_DIR / "tokens.json").read_text(encoding="utf-8"))
    assert large.vocab.unk_id == len(tokens) - 1
    assert large.vocab.marks == ("<unk>", "_", "，", "。", "？", "、")
    got: Tuple[str, ...] = tuple(large.punctuate("长期以来 很好 hello").words)
    ids = words_to_ids(got, large.vocab.token_to_id, large.vocab.unk_id)
    assert got == ("长期以来", "很", "好", "hello") and large.vocab.unk_id not in ids
