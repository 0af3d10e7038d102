"""Write tests/golden/punc.json: FunASR's own punctuation runtime on a fixed set of texts.

Run with the project's virtualenv (funasr-onnx 0.4.3 installed):

    .venv/bin/python tests/oracle/oracle_punc.py

The oracle is ``funasr_onnx.CT_Transformer`` (offline) and
``funasr_onnx.CT_Transformer_VadRealtime`` (realtime, with the cache carried from call
to call exactly as the reference server does).  Everything is deterministic: the texts
are fixed or drawn from ``random.Random`` with fixed seeds, and the models are the tiny
fixture exports.  Where the oracle raises, the exception's type is recorded instead of
a result.  This script does not import the project's own code, so the golden file is
an independent record.

The texts (``build_texts``/``build_sequences``) are also used by
tests/test_punctuation.py for the live comparison, hence importable helpers.
"""
from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
MODELS = TESTS / "fixtures" / "models"
OFFLINE_DIR = MODELS / "punc_ct-transformer_zh-cn-common-vocab272727-onnx"
REALTIME_DIR = MODELS / "punc_ct-transformer_zh-cn-common-vad_realtime-vocab272727-onnx"
MANIFEST = TESTS / "fixtures" / "audio" / "manifest.tsv"
GOLDEN = TESTS / "golden" / "punc.json"


def vocab_words() -> List[str]:
    """The tiny model's real words (no <blank>/<s>/</s>/<unk>), so the model sees known ids."""
    tokens = json.loads((OFFLINE_DIR / "tokens.json").read_text(encoding="utf-8"))
    return [t for t in tokens if not (t.startswith("<") and t.endswith(">"))]


def transcripts() -> List[str]:
    with MANIFEST.open("r", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    seen: List[str] = []
    for row in rows:
        ref = (row.get("reference") or "").strip()
        if ref and ref not in seen:
            seen.append(ref)
    return seen


# Words for which the tiny offline model predicts no sentence end when repeated; texts of
# them make windows grow past 200 words (the comma cut) or never cut at all.
NO_END_WORDS = ["a", "aaa", "aaaand", "aaas", "aace", "aaaah", "aaand"]


def build_texts() -> List[Dict[str, Any]]:
    """(name, text, split_size) cases for the offline model."""
    words = vocab_words()
    rng = random.Random(20240521)
    cases: List[Dict[str, Any]] = []

    def add(name: str, text: str, split_size: int = 20) -> None:
        cases.append({"name": name, "text": text, "split_size": split_size})

    zh = []
    for i, ref in enumerate(transcripts()):
        add(f"manifest_{i}", ref)
        if ref.isascii():
            add(f"manifest_{i}_lower", ref.lower())
        else:
            zh.append(ref)
    add("mixed_zh_en", "我今天用abandon这个词 aaron说hello world然后abacus算了123个数")
    add("mixed_vocab_zh", "aaron在aachen abandoned了aardvark 我们 abacus 和 ababa's")
    add("punct_zh_present", "今天天气很好，我们一起去公园散步吧。")
    add("punct_zh_trailing_comma", "你好，")
    add("punct_zh_trailing_enum", "苹果、香蕉、")
    add("punct_en_present", "hello, world. how are you?")
    add("question_ascii", "aaron abandoned the aardvark?")
    add("question_fullwidth", "你是谁？")
    add("digits", "2024年3月 aaron 15岁 abacus 3.14")
    add("whitespace", "  中\u3000文\tabc\naback   abandon \n")
    add("underscore_words", "aaron_ abandon a_")
    add("single_zh", "好")
    add("single_en", "a")
    add("single_vocab", "aardvark")
    add("empty", "")
    add("blank", "   ")
    add("long_zh_concat", "".join(zh))  # well over 100 characters
    add("long_zh_concat_spaced", " ".join(zh))
    for n in (21, 45, 130, 260):
        add(f"random_vocab_{n}", " ".join(rng.choice(words) for _ in range(n)))
    for n in (30, 120):
        pool = words + list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可也你")
        add(f"random_mixed_{n}", "".join(rng.choice(pool) + (" " if rng.random() < 0.7 else "") for _ in range(n)))
    add("no_end_comma_cut_260", " ".join(rng.choice(NO_END_WORDS) for _ in range(260)))
    add("no_end_blank_230", " ".join(["a"] * 230))
    add("random_vocab_45_window5", " ".join(rng.choice(words) for _ in range(45)), split_size=5)
    add("random_vocab_45_window2", " ".join(rng.choice(words) for _ in range(45)), split_size=2)
    # Search (deterministically) for texts whose last class exercises each end-of-text rule.
    wanted = {"，": "ends_comma", "、": "ends_enum", "？": "ends_question", "<unk>": "ends_unk", "_": "ends_blank"}
    tails = {w: None for w in wanted}
    for _ in range(4000):
        if all(tails.values()):
            break
        cand = " ".join(rng.choice(words) for _ in range(rng.randint(3, 30)))
        tails_key = _last_mark_offline(cand)
        if tails_key in tails and tails[tails_key] is None:
            tails[tails_key] = cand
    for mark, name in wanted.items():
        if tails[mark]:
            add(name, tails[mark])
    return cases


_offline_model = None


def _offline(quantized: bool = False):
    global _offline_model
    from funasr_onnx import CT_Transformer

    if quantized:
        return CT_Transformer(str(OFFLINE_DIR), quantize=True, intra_op_num_threads=1)
    if _offline_model is None:
        _offline_model = CT_Transformer(str(OFFLINE_DIR), intra_op_num_threads=1)
    return _offline_model


def _last_mark_offline(text: str) -> str:
    """The raw mark the model gives the last word (before the end-of-text rule)."""
    import numpy as np

    model = _offline()
    from funasr_onnx.utils.utils import code_mix_split_words

    ids = model.converter.tokens2ids(code_mix_split_words(text))
    logits = model.infer(np.array([ids], dtype=np.int32), np.array([len(ids)], dtype=np.int32))[0]
    return model.punc_list[int(np.argmax(logits, axis=-1)[0][-1])]


def build_sequences() -> List[Dict[str, Any]]:
    """Realtime call sequences; the cache is carried from one call to the next."""
    words = vocab_words()
    rng = random.Random(77)
    seqs: List[Dict[str, Any]] = []
    zh = [t for t in transcripts() if not t.isascii()]
    seqs.append({"name": "manifest_zh", "texts": zh, "split_size": 20})
    seqs.append({"name": "manifest_en", "texts": [t.lower() for t in transcripts() if t.isascii()] * 2, "split_size": 20})
    lengths = [1, 3, 8, 15, 25, 47, 5, 130, 2, 1, 60]
    seqs.append(
        {
            "name": "random_vocab",
            "texts": [" ".join(rng.choice(words) for _ in range(n)) for n in lengths],
            "split_size": 20,
        }
    )
    pool = words + list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可也你")
    seqs.append(
        {
            "name": "random_mixed",
            "texts": ["".join(rng.choice(pool) + (" " if rng.random() < 0.6 else "") for _ in range(n)) for n in (4, 17, 33, 9, 70)],
            "split_size": 20,
        }
    )
    seqs.append(
        {
            "name": "window5",
            "texts": [" ".join(rng.choice(words) for _ in range(n)) for n in (12, 7, 23, 3)],
            "split_size": 5,
        }
    )
    seqs.append(
        {
            "name": "no_end_growth",
            "texts": [" ".join(rng.choice(NO_END_WORDS) for _ in range(n)) for n in (30, 90, 120)],
            "split_size": 20,
        }
    )
    seqs.append(
        {
            "name": "edge_texts",
            "texts": ["你好，", "aaron_", "hello, world.", "a", "好", "aardvark abacus?", "2024年 aaron", "abandon 、"],
            "split_size": 20,
        }
    )
    return seqs


def run_offline(cases: List[Dict[str, Any]], quantized: bool) -> List[Dict[str, Any]]:
    model = _offline(quantized)
    out = []
    for case in cases:
        entry = dict(case)
        try:
            text, classes = model(case["text"], split_size=case["split_size"])
            entry["result"] = {"text": text, "classes": [int(c) for c in classes]}
        except Exception as exc:  # the oracle's own failures are part of the record
            entry["error"] = type(exc).__name__
        out.append(entry)
    return out


def run_realtime(seqs: List[Dict[str, Any]], quantized: bool) -> List[Dict[str, Any]]:
    from funasr_onnx import CT_Transformer_VadRealtime

    model = CT_Transformer_VadRealtime(str(REALTIME_DIR), quantize=quantized, intra_op_num_threads=1)
    out = []
    for seq in seqs:
        param_dict: Dict[str, Any] = {"cache": []}
        calls = []
        for text in seq["texts"]:
            call: Dict[str, Any] = {"text": text}
            try:
                out_text, marks, cache = model(text, param_dict=param_dict, split_size=seq["split_size"])
                call["result"] = {"text": out_text, "marks": list(marks), "cache": list(cache)}
            except Exception as exc:
                call["error"] = type(exc).__name__
            calls.append(call)
        out.append({"name": seq["name"], "split_size": seq["split_size"], "calls": calls})
    return out


def main() -> int:
    from importlib import import_module
    from importlib.metadata import version

    import_module("funasr_onnx")  # fail early when the oracle is missing

    cases = build_texts()
    seqs = build_sequences()
    golden = {
        "about": "FunASR funasr_onnx punctuation outputs; regenerate with tests/oracle/oracle_punc.py",
        "oracle": f"funasr-onnx {version('funasr-onnx')}",
        "offline_model": OFFLINE_DIR.name,
        "realtime_model": REALTIME_DIR.name,
        "offline": {"model.onnx": run_offline(cases, False), "model_quant.onnx": run_offline(cases, True)},
        "realtime": {"model.onnx": run_realtime(seqs, False), "model_quant.onnx": run_realtime(seqs, True)},
    }
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    n_err = sum("error" in c for c in golden["offline"]["model.onnx"])
    print(f"wrote {GOLDEN} ({len(cases)} offline texts, {n_err} oracle errors; {len(seqs)} realtime sequences)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
