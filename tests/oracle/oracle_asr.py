"""Regenerate ``tests/golden/asr.json`` with FunASR's own Python runtime (``funasr-onnx``).

For every fixture clip: the oracle's FSMN VAD cuts the clip (loaded with our
audio loader so both sides see the same 16 kHz samples), then the oracle's
Paraformer decodes each segment alone (batch size 1) with the timestamp model
and the plain model, and the oracle's CT-Transformer punctuates the joined
text.  The tests compare our token ids, timestamps, words and punctuation
classes with this file.

    python tests/oracle/oracle_asr.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from funasr_onnx import CT_Transformer, Fsmn_vad, Paraformer  # noqa: E402

from funasr_wss.models.audio import load_audio_file  # noqa: E402
from tests.paths import ASR_PLAIN_DIR, ASR_TIMESTAMP_DIR, GOLDEN, PUNC_DIR, VAD_DIR, audio_clips  # noqa: E402


def oracle_tokens(model: Paraformer, waveform) -> list:
    """The oracle's greedy tokens for one segment, through its own methods."""
    feats, feats_len = model.extract_feat([waveform])
    outputs = model.infer(feats, feats_len)
    return model.decode(outputs[0], outputs[1])[0]


def main() -> None:
    vad = Fsmn_vad(str(VAD_DIR), intra_op_num_threads=1)
    with_ts = Paraformer(str(ASR_TIMESTAMP_DIR), batch_size=1, intra_op_num_threads=1)
    plain = Paraformer(str(ASR_PLAIN_DIR), batch_size=1, intra_op_num_threads=1)
    punc = CT_Transformer(str(PUNC_DIR), intra_op_num_threads=1)
    token_index = {t: i for i, t in enumerate(json.loads((ASR_TIMESTAMP_DIR / "tokens.json").read_text("utf-8")))}
    golden = {}
    for clip in audio_clips():
        waveform = load_audio_file(clip, 16000)
        segments = [list(map(int, s)) for s in vad(waveform)[0]] if waveform.size else []
        entries = []
        for start, end in segments:
            piece = waveform[start * 16 : end * 16]
            ts = with_ts(piece)[0]
            plain_tokens = oracle_tokens(plain, piece)
            plain_text, plain_words = plain(piece)[0]["preds"]
            entries.append(
                {
                    "segment": [start, end],
                    "timestamp_model": {
                        "token_ids": [token_index[t] for t in ts["raw_tokens"]],
                        "timestamp": ts["timestamp"],
                    },
                    "plain_model": {
                        "token_ids": [token_index[t] for t in plain_tokens],
                        "text": plain_text,
                        "words": plain_words,
                    },
                }
            )
        joined = "".join(e["plain_model"]["text"] for e in entries)
        punc_classes = [int(c) for c in punc(joined)[1]] if joined else []
        golden[clip.name] = {"segments": entries, "joined_text": joined, "punc_classes": punc_classes}
        print(clip.name, len(segments), "segments")
    GOLDEN.mkdir(parents=True, exist_ok=True)
    out = GOLDEN / "asr.json"
    out.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print("wrote", out)


if __name__ == "__main__":
    main()
