"""Regenerate ``tests/golden/asr_8k.json`` with ``funasr-onnx`` for the 8 kHz telephone Paraformer.

FunASR's VAD is a 16 kHz model; an 8 kHz recogniser is served with it by
letting each hear the audio at its own rate.  So, per clip: the audio at
8 kHz (our loader), the oracle's ``Fsmn_vad`` on that audio resampled to
16 kHz (our resampler, the one the server uses), and the oracle's 8 kHz
``Paraformer`` on each segment of the 8 kHz audio.  Clips: the two telephone
recordings, a 16 kHz one and a 48 kHz one of several segments brought down to 8 kHz.

    python tests/oracle/oracle_8k.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from funasr_onnx import Fsmn_vad, Paraformer  # noqa: E402

from funasr_wss.models.audio import load_audio_file, resample  # noqa: E402
from tests.oracle.oracle_asr import oracle_tokens  # noqa: E402
from tests.paths import ASR_8K_DIR, AUDIO, GOLDEN, VAD_DIR  # noqa: E402

CLIPS = ("k8_BAC009S0764W0121_8k.wav", "zh01_asr_example_zh_tel8k.wav", "zh05_BAC009S0724W0121.wav", "long02_vad_30s_48k.wav")


def main() -> None:
    vad = Fsmn_vad(str(VAD_DIR), intra_op_num_threads=1)
    token_index = {t: i for i, t in enumerate(json.loads((ASR_8K_DIR / "tokens.json").read_text("utf-8")))}
    golden = {}
    for quantize in (False, True):
        asr = Paraformer(str(ASR_8K_DIR), batch_size=1, intra_op_num_threads=1, quantize=quantize)
        assert asr.frontend.opts.frame_opts.samp_freq == 8000
        for name in CLIPS:
            audio8 = load_audio_file(AUDIO / name, 8000)
            segments = [list(map(int, s)) for s in vad(resample(audio8, 8000, 16000))[0]]
            entries = []
            for start, end in segments:
                piece = audio8[start * 8 : end * 8]
                tokens = oracle_tokens(asr, piece)
                text = asr(piece)[0]["preds"][0] if tokens else ""
                entries.append({"segment": [start, end], "token_ids": [token_index[t] for t in tokens], "text": text})
            golden.setdefault(name, {})["quant" if quantize else "fp32"] = entries
            print(name, "quant" if quantize else "fp32", len(segments), "segments")
    out = GOLDEN / "asr_8k.json"
    out.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print("wrote", out)


if __name__ == "__main__":
    main()
