"""Write tests/golden/punc_large.json: funasr_onnx on the large cn-en punctuation model.

Run with the project's virtualenv (funasr-onnx 0.4.3 and jieba installed):

    .venv/bin/python tests/oracle/oracle_punc_large.py

The oracle is ``funasr_onnx.CT_Transformer`` on the fixture directory
``punc_ct-transformer_cn-en-common-vocab471067-large-onnx`` (tiny random weights, a
word vocabulary and a ``jieba_usr_dict``), with ``model.onnx`` and ``model_quant.onnx``.
That directory makes funasr_onnx segment with jieba, and it does so with jieba's
*global* tokenizer, calling ``jieba.load_userdict`` each time a model is constructed
(a second load bumps the user words' frequencies).  So every model runs in a fresh
process of its own (``spawn``), loaded once, as in a server; this script's own process
never touches jieba.

Recorded per text: the oracle's words (its ``code_mix_split_words_jieba``), their ids,
the output text and classes; where the oracle raises, the exception's type instead.
``en_bpe_text`` is the output text after the replacement FunASR's C++ ``AddPunc`` does
for an English ASR model (``，。、？`` → ``,.,?``, one mark after another over the whole
string), transcribed here so that the golden file records it independently.

Every user-dictionary word of the fixture is also in jieba's main dictionary, so the
fixture alone cannot show whether the user dictionary was loaded.  Hence a second set,
``offline_extra_dict``: the same model in a copy of the directory whose
``jieba_usr_dict`` starts with a BOM and gains :data:`EXTRA_USER_DICT` (new words, words
with a frequency and a tag, a frequency 0 that forces a main-dictionary word apart);
:func:`make_extra_dict_dir` builds that copy, for the tests too.

Everything is deterministic (fixed texts, ``random.Random`` with fixed seeds).  This
script does not import the project's own code.
"""
from __future__ import annotations

import json
import multiprocessing
import random
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
LARGE_DIR = TESTS / "fixtures" / "models" / "punc_ct-transformer_cn-en-common-vocab471067-large-onnx"
GOLDEN = TESTS / "golden" / "punc_large.json"
MODEL_FILES = ("model.onnx", "model_quant.onnx")

#: Words for which the tiny large model predicts no sentence end when repeated: only
#: commas ("hello") or no mark at all ("and"), so windows grow past 200 words.
COMMA_ONLY_WORD = "hello"
BLANK_ONLY_WORD = "and"


#: Lines added to the copy's ``jieba_usr_dict`` (``word [freq [tag]]``); none of these
#: words is in jieba's main dictionary except 生命危险, which frequency 0 splits.
EXTRA_USER_DICT = """跨境河流
那今天 3
天气很好 100000 n
funasr模型 50 nz
粤港澳大湾区
生命危险 0
很好
"""


def make_extra_dict_dir(dest: Path) -> Path:
    """Copy the large model directory to ``dest`` with :data:`EXTRA_USER_DICT` added."""
    shutil.copytree(LARGE_DIR, dest)
    original = (LARGE_DIR / "jieba_usr_dict").read_text(encoding="utf-8")
    (dest / "jieba_usr_dict").write_text("\ufeff" + original + EXTRA_USER_DICT, encoding="utf-8")
    return dest


def build_extra_dict_texts() -> List[Dict[str, Any]]:
    texts = {
        "extra_mixed_zh_en": "跨境河流是养育沿岸人民的生命之源长期以来为帮助下游地区防灾减灾 hello world 那今天的会就到这里吧",
        "extra_weather": "今天天气很好 天气很好 很好",
        "extra_funasr": "funasr模型 funasr 模型 我们的funasr模型",
        "extra_bay_area": "粤港澳大湾区的大学生 hello 粤港澳大湾区",
        "extra_freq_zero": "生命危险 他有生命危险吗",
        "extra_user_words_glued": "跨境河流那今天天气很好粤港澳大湾区生命危险很好funasr模型",
    }
    return [{"name": k, "text": v, "split_size": 20} for k, v in texts.items()]


def vocab_words() -> List[str]:
    """The tiny model's words (no <blank>/<s>/</s>/<unk>)."""
    tokens = json.loads((LARGE_DIR / "tokens.json").read_text(encoding="utf-8"))
    return [t for t in tokens if not (t.startswith("<") and t.endswith(">"))]


def user_dict_words() -> List[str]:
    lines = (LARGE_DIR / "jieba_usr_dict").read_text(encoding="utf-8").splitlines()
    return [ln.split()[0] for ln in lines if ln.strip()]


def random_text(rng: random.Random, n: int, pool: List[str], seps: List[str]) -> str:
    return "".join(rng.choice(pool) + rng.choice(seps) for _ in range(n))


def build_texts() -> List[Dict[str, Any]]:
    """(name, text, split_size) cases."""
    words = vocab_words()
    english = [w for w in words if w.isascii()]
    chinese = [w for w in words if not w.isascii()]
    user = user_dict_words()
    rng = random.Random(20240607)
    cases: List[Dict[str, Any]] = []

    def add(name: str, text: str, split_size: int = 20) -> None:
        cases.append({"name": name, "text": text, "split_size": split_size})

    add("zh", "今天天气很好我们一起去公园散步吧")
    add("zh_user_words", "跨境河流是养育沿岸人民的生命之源长期以来为帮助下游地区防灾减灾")
    add(
        "mixed_zh_en",
        "跨境河流是养育沿岸人民的生命之源长期以来为帮助下游地区防灾减灾 hello world 那今天的会就到这里吧",
    )
    add("user_dict_all", "".join(user))
    add("user_dict_spaced", " ".join(user[:40]))
    add("user_dict_longest_match", "今天天气很好 生命危险 百分之五十的大学生 滨海新区的富士康工厂 达摩院的语音识别模型")
    add("en_only", "hello world this is the funasr model and it is ok")
    add("en_upper", "Hello WORLD this Is ASR")
    add("apostrophes", "don't worry it's ok we're fine rock'n'roll ' '' o'clock")
    add("apostrophe_in_zh_run", "他说don't 我说'好'")
    add("digits", "2024年3月5日 下午五点 3 5个 百分之五十 50% 3.14 九点 hello 42 world")
    add("digits_spaced_join", "1 2 3 4 5 6")
    add("unknown_words", "很好 我觉得 卡拉OK T恤衫 B超 hello 卡拉OK world 粤港澳大湾区")
    add("mixed_word_spacing", "hello T恤衫 ok 卡拉OK hello B超 world")
    add("no_spaces_mixed", "你好hello世界world我们ok吧")
    add("en_then_zh_glued", "hello你好 world世界")
    add("input_marks", "今天天气很好，我们一起去公园散步吧。你好？")
    add("input_ascii_marks", "hello, world. how are you? 你好,世界")
    add("ascii_symbols", "a+b=c #tag 50% x_y a-b C++ c# e.g. u.s.a")
    add("whitespace", "\t今天\u3000天气 \n 很好  hello\u2003world \r\n")
    add("ends_input_comma", "今天天气很好，")
    add("ends_input_question", "今天天气好吗？")
    add("single_zh", "好")
    add("single_en", "hello")
    add("single_user_word", "生命危险")
    add("empty", "")
    add("blank", " \u3000 ")
    add("lone_marks", "， 。 ？ 、")
    for n in (21, 45, 130):
        add(f"random_vocab_{n}", " ".join(rng.choice(words) for _ in range(n)))
    add("random_zh_glued_250", "".join(rng.choice(chinese + user) for _ in range(250)))
    pool = words + user + english * 2 + ["，", "。", "？", "、", ",", "?", "'", "42", "3.5", "Hello", "卡拉OK", "T恤衫"]
    seps = [" ", " ", " ", "", "", "\t", "\u3000"]
    for n in (30, 90, 240):
        add(f"random_mixed_{n}", random_text(rng, n, pool, seps))
    add("comma_cut_260", " ".join([COMMA_ONLY_WORD] * 260))
    add("no_end_230", " ".join([BLANK_ONLY_WORD] * 230))
    add("mixed_window5", random_text(rng, 60, pool, seps), split_size=5)
    add("mixed_window2", random_text(rng, 40, pool, seps), split_size=2)
    return cases


def _model(quantized: bool, model_dir: Path = LARGE_DIR):
    from funasr_onnx import CT_Transformer

    return CT_Transformer(str(model_dir), quantize=quantized, intra_op_num_threads=1)


def en_bpe(text: str) -> str:
    """FunASR's C++ ``AddPunc`` for ``en-bpe``: each Chinese mark replaced in turn."""
    for zh, en in (("，", ","), ("。", "."), ("、", ","), ("？", "?")):
        text = text.replace(zh, en)
    return text


def find_tails(seed: int) -> Dict[str, Optional[str]]:
    """Texts whose last word gets each class from the model (fp32), before the end rule."""
    import numpy as np

    model = _model(False)
    words = vocab_words() + user_dict_words()
    rng = random.Random(seed)
    tails: Dict[str, Optional[str]] = {m: None for m in ("，", "、", "？", "<unk>", "_")}
    for _ in range(4000):
        if all(tails.values()):
            break
        cand = " ".join(rng.choice(words) for _ in range(rng.randint(3, 18)))
        ids = model.converter.tokens2ids(model.code_mix_split_words_jieba(cand))
        logits = model.infer(np.array([ids], dtype=np.int32), np.array([len(ids)], dtype=np.int32))[0]
        mark = model.punc_list[int(np.argmax(logits, axis=-1)[0][-1])]
        if mark in tails and tails[mark] is None:
            tails[mark] = cand
    return tails


def run_model(model_file: str, cases: List[Dict[str, Any]], model_dir: Path = LARGE_DIR) -> List[Dict[str, Any]]:
    """One model, loaded once in this (fresh) process, on every case."""
    model = _model(model_file == "model_quant.onnx", model_dir)
    out = []
    for case in cases:
        entry = dict(case)
        words = model.code_mix_split_words_jieba(case["text"])
        entry["words"] = list(words)
        entry["ids"] = [int(i) for i in model.converter.tokens2ids(words)]
        try:
            text, classes = model(case["text"], split_size=case["split_size"])
            entry["result"] = {"text": text, "classes": [int(c) for c in classes], "en_bpe_text": en_bpe(text)}
        except Exception as exc:  # the oracle's own failures are part of the record
            entry["error"] = type(exc).__name__
        out.append(entry)
    return out


#: Cases of :func:`build_texts` that are also run with the extra user dictionary.
EXTRA_DICT_ALSO = ("zh", "mixed_zh_en", "user_dict_longest_match", "random_zh_glued_250", "random_mixed_90")


def _in_fresh_process(fn, *args):
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def main() -> int:
    from importlib.metadata import version

    cases = build_texts()
    tails = _in_fresh_process(find_tails, 77)
    for mark, name in (("，", "ends_comma"), ("、", "ends_enum"), ("？", "ends_question"), ("<unk>", "ends_unk"), ("_", "ends_blank")):
        if tails[mark]:
            cases.append({"name": name, "text": tails[mark], "split_size": 20})
    golden = {
        "about": "funasr_onnx CT_Transformer on the large cn-en model (jieba); regenerate with tests/oracle/oracle_punc_large.py",
        "oracle": f"funasr-onnx {version('funasr-onnx')}, jieba {version('jieba')}",
        "model": LARGE_DIR.name,
        "offline": {f: _in_fresh_process(run_model, f, cases) for f in MODEL_FILES},
    }
    extra_cases = build_extra_dict_texts() + [c for c in cases if c["name"] in EXTRA_DICT_ALSO]
    with tempfile.TemporaryDirectory() as tmp:
        extra_dir = make_extra_dict_dir(Path(tmp) / LARGE_DIR.name)
        golden["offline_extra_dict"] = {f: _in_fresh_process(run_model, f, extra_cases, extra_dir) for f in MODEL_FILES}
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    n_err = sum("error" in c for c in golden["offline"]["model.onnx"])
    print(f"wrote {GOLDEN} ({len(cases)} texts, {n_err} oracle errors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
