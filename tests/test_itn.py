"""Inverse text normalisation without pynini (models/itn.py): the ITN golden, --itn-dir, English, bad grammars.

The golden (tests/golden/itn_zh.json, 782 inputs by category) holds what
WeTextProcessing 1.2.0 on pynini wrote, as the server used it before; every
output must stay the same, with the default grammar (wetext's) and with an
``--itn-dir`` holding WeTextProcessing's own FST pair (tests/golden/itn_zh_fst).
"""
from __future__ import annotations

import json
import shutil
import threading
from collections import Counter
from pathlib import Path

import pytest

import funasr_wss.models.itn as itn_module
from funasr_wss.models.itn import FST_FILES, ChineseItn, ItnError, reorder_tokens

GOLDEN = Path(__file__).parent / "golden"
CASES = json.loads((GOLDEN / "itn_zh.json").read_text(encoding="utf-8"))["cases"]
WTP_FST_DIR = GOLDEN / "itn_zh_fst"  # WeTextProcessing 1.2.0's zh_itn_tagger.fst + zh_itn_verbalizer.fst


@pytest.fixture(scope="module")
def itn() -> ChineseItn:
    return ChineseItn()


@pytest.fixture(scope="module")
def itn_dir_itn() -> ChineseItn:
    return ChineseItn(WTP_FST_DIR)


def _mismatches(normalise) -> list:
    return [(c["category"], c["input"], c["expected"], normalise(c["input"]))
            for c in CASES if normalise(c["input"]) != c["expected"]]


# ------------------------------------------------------------------ the golden


def test_golden_is_large_and_varied():
    assert len(CASES) >= 500
    assert len({c["input"] for c in CASES}) == len(CASES)
    per_category = Counter(c["category"] for c in CASES)
    for category in ("cardinal", "decimal", "fraction_percent", "date", "time", "money", "phone", "measure",
                     "math", "mixed_english", "untouched", "interjection_erhua", "punctuation",
                     "whitespace_special", "long_sentence"):
        assert per_category[category] >= 15, category
    changed = sum(c["input"] != c["expected"] for c in CASES)
    assert 300 < changed < len(CASES) - 200  # both conversions and text that must stay as it is


def test_itn_golden(itn):
    """The default grammar writes exactly what WeTextProcessing wrote, on every golden input."""
    bad = _mismatches(itn)
    assert not bad, f"{len(bad)} of {len(CASES)} differ (category, input, WeTextProcessing, now): {bad[:20]}"


def test_itn_golden_through_itn_dir(itn_dir_itn):
    """WeTextProcessing's own FST pair as --itn-dir reproduces it exactly too (the same runtime)."""
    bad = _mismatches(itn_dir_itn)
    assert not bad, f"{len(bad)} of {len(CASES)} differ (category, input, WeTextProcessing, now): {bad[:20]}"


@pytest.mark.parametrize("text, expected", [
    ("二零二四年三月五号", "2024/03/05"),
    ("下午三点二十分", "3:20p.m."),
    ("百分之五十", "50%"),
    ("三块五毛", "3块5毛"),
    ("一三八一二三四五六七八", "13812345678"),
    ("十厘米", "10cm"),
    ("五公斤", "五公斤"),  # a single digit stays a word (WeTextProcessing's enable_0_to_9=False)
    ("三点一四", "3.14"),
    ("一百二十三", "123"),
    ("今天天气很好", "今天天气很好"),
    ("啊五十块", "50块"),  # WeTextProcessing removes the interjections 啊 and 呃 by default
    (" 一百 ", " 100 "),  # nothing is stripped
    ("", ""),
])
def test_examples(itn, text, expected):
    assert itn(text) == expected


def test_equal_weight_paths_are_broken_like_pynini(itn, itn_dir_itn):
    """``1234 5678``, ``123 45678`` and ``12345 678`` weigh the same; pynini's re-optimised state order picks the
    first, the FST as stored the second: the runtime must optimise the grammar the way pynini does."""
    import kaldifst

    assert itn("拨打一二三四五六七八") == itn_dir_itn("拨打一二三四五六七八") == "拨打1234 5678"
    raw_tagger = kaldifst.TextNormalizer(str(WTP_FST_DIR / "zh_itn_tagger.fst"))
    raw_verbalizer = kaldifst.TextNormalizer(str(WTP_FST_DIR / "zh_itn_verbalizer.fst"))
    assert raw_verbalizer.normalize(reorder_tokens(raw_tagger.normalize("拨打一二三四五六七八"))) == "拨打123 45678"


def test_thread_safe(itn):
    inputs = [c["input"] for c in CASES[::7]]
    expected = [c["expected"] for c in CASES[::7]]
    results = [None] * 4

    def run(k):
        results[k] = [itn(t) for t in inputs]

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == expected for r in results)


# ------------------------------------------------------------------ --itn-dir


def test_itn_dir_loads_through_the_same_path(tmp_path, monkeypatch):
    """An --itn-dir with the two FunASR/WeTextProcessing file names goes through the same optimisation and runtime
    as the bundled grammar (only the interjection filter differs: it is inside those verbalizers)."""
    for name in FST_FILES:
        shutil.copy(WTP_FST_DIR / name, tmp_path / name)
    optimised = []
    real = itn_module.pynini_optimize
    monkeypatch.setattr(itn_module, "_cache", {})
    monkeypatch.setattr(itn_module, "pynini_optimize", lambda source, target: (optimised.append(Path(source).name),
                                                                                  real(source, target))[1])
    from_dir = ChineseItn(tmp_path)
    assert optimised == list(FST_FILES)
    assert from_dir.source == str(tmp_path)
    assert [p.name for p in from_dir._zh.files] == list(FST_FILES)
    optimised.clear()
    default = ChineseItn()
    assert optimised == ["tagger.fst", "verbalizer.fst", "remove_interjections.fst"]
    for c in CASES[::5]:
        assert from_dir(c["input"]) == default(c["input"]) == c["expected"]


def test_itn_dir_missing_file(tmp_path):
    shutil.copy(WTP_FST_DIR / "zh_itn_tagger.fst", tmp_path / "zh_itn_tagger.fst")
    with pytest.raises(ItnError, match=r"is missing zh_itn_verbalizer\.fst"):
        ChineseItn(tmp_path)


def test_itn_dir_missing_both(tmp_path):
    with pytest.raises(ItnError, match=r"missing zh_itn_tagger\.fst, zh_itn_verbalizer\.fst"):
        ChineseItn(tmp_path)


def test_itn_dir_not_a_directory(tmp_path):
    with pytest.raises(ItnError, match="does not exist"):
        ChineseItn(tmp_path / "nowhere")


def test_itn_dir_not_an_fst(tmp_path):
    for name in FST_FILES:
        (tmp_path / name).write_bytes(b"not an FST at all")
    with pytest.raises(ItnError, match=r"zh_itn_tagger\.fst is not a readable OpenFst"):
        ChineseItn(tmp_path)


def test_itn_dir_acceptor_refused(tmp_path):
    import kaldifst

    acceptor = kaldifst.compile("0 1 97 97\n1\n", acceptor=False)
    for name in FST_FILES:
        acceptor.write(str(tmp_path / name))
    with pytest.raises(ItnError, match="acceptor"):
        ChineseItn(tmp_path)


def test_without_wetext_the_default_grammar_says_what_to_install(monkeypatch):
    monkeypatch.setattr(itn_module, "_wetext_file", lambda relative: None)
    with pytest.raises(ItnError, match="pip install wetext"):
        ChineseItn()
    from_dir = ChineseItn(WTP_FST_DIR)  # an --itn-dir needs kaldifst only
    assert from_dir("一百二十三") == "123"
    assert not from_dir.has_english and from_dir("twenty three", english=True) == "twenty three"


def test_itn_dir_empty_fst(tmp_path):
    import kaldifst

    for name in FST_FILES:
        kaldifst.StdVectorFst().write(str(tmp_path / name))
    with pytest.raises(ItnError, match="empty FST"):
        ChineseItn(tmp_path)


# ------------------------------------------------------------------ English


def test_english_itn(itn):
    assert itn.has_english
    assert itn("I have twenty three apples.", english=True) == "I have 23 apples."
    assert itn("the price is twenty dollars and fifty cents", english=True) == "the price is $20.50"
    assert itn("call me at five five five one two three four", english=True) == "call me at 5551234"
    assert itn("hello world", english=True) == "hello world"
    assert itn("", english=True) == ""
    # text the English grammar has no path for is left alone
    assert itn('he said "twenty"', english=True) == 'he said "twenty"'


def test_english_text_through_chinese_itn_is_untouched(itn):
    """Without ``english=True`` it is the Chinese grammar, which leaves English words alone (as before)."""
    assert itn("I have twenty three apples.") == "I have twenty three apples."


def test_english_without_the_grammar_is_untouched(monkeypatch):
    found = itn_module._wetext_file
    monkeypatch.setattr(itn_module, "_wetext_file", lambda r: None if "/en/" in r else found(r))
    normaliser = ChineseItn()
    assert not normaliser.has_english
    assert normaliser("twenty three", english=True) == "twenty three"
    assert normaliser("二十三") == "23"


# ------------------------------------------------------------------ the token reordering


def test_reorder_tokens():
    tagged = 'char { value: "今" } date { day: "05" month: "03" year: "2024" } money { value: "3" currency: "¥" } '
    assert reorder_tokens(tagged) == ('char { value: "今" } date { year: "2024" month: "03" day: "05" } '
                                      'money { currency: "¥" value: "3" }')
    kept = 'date { day: "5" year: "2024" preserve_order: "true" }'
    assert reorder_tokens(kept) == kept
    extra = 'telephone { number_part: "123" kind: "serial" }'
    assert reorder_tokens(extra) == 'telephone { number_part: "123" }'
    assert reorder_tokens(extra, keep_other_fields=True) == extra
    escaped = 'char { value: "\\"" } char { value: "\\\\" }'  # the tagger's escapes for a quote and a backslash
    assert reorder_tokens(escaped) == escaped
    assert reorder_tokens("") == ""


def test_english_text_goes_through_the_english_grammar_in_the_pipeline():
    """The English model's (and SenseVoice-English) text: English ITN; Chinese text: the Chinese grammar."""
    from types import SimpleNamespace

    from funasr_wss.models.offline_pipeline import OfflinePipeline
    from funasr_wss.models.paraformer import AsrResult

    itn = ChineseItn()
    assert itn.has_english
    words = ["i", "have", "twenty", "three", "apples"]
    asr = SimpleNamespace(has_timestamps=False, sample_rate=16000)
    english = OfflinePipeline(asr=asr, itn=itn, english=True).finish([AsrResult(words=words)])
    assert english.text == "i have 23 apples"
    sensevoice = OfflinePipeline(asr=asr, itn=itn).finish([AsrResult(words=words, tags={"language": "en"})])
    assert sensevoice.text == "i have 23 apples"
    chinese = OfflinePipeline(asr=asr, itn=itn).finish([AsrResult(words=["一", "百", "二", "十", "三"])])
    assert chinese.text == "123"
