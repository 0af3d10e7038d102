"""Regenerate ``tests/golden/online.json`` with FunASR's own Python runtime (``funasr-onnx``).

For every fixture clip, loaded with our audio loader so both implementations
see the same 16 kHz float32 samples, the oracle's streaming ``Paraformer`` is
fed the clip in chunks of ``chunk_size[1] * 960`` samples (what the 2pass
server sends it), the last chunk flagged ``is_final``, with chunk size
``[5, 10, 5]``; a few clips also with ``[0, 10, 5]`` and ``[0, 8, 4]``.  For
each call the file records the token ids the oracle decoded and the text it
returned (``""`` when it returned nothing).

    python tests/oracle/oracle_online.py

The driver below is imported by ``tests/test_paraformer_online.py`` for its live check.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from funasr_onnx.paraformer_online_bin import Paraformer as OracleOnline  # noqa: E402

from funasr_wss.models.audio import load_audio_file  # noqa: E402
from tests.paths import ASR_ONLINE_DIR, GOLDEN, audio_clips  # noqa: E402

DEFAULT_CHUNK = (5, 10, 5)
#: Extra chunk sizes, each for a few clips (chosen for their different final-chunk lengths).
EXTRA_CHUNKS = {
    (0, 10, 5): ("en02_libri_1089-134686-0001.wav", "zh02_llamacpp_sample.wav", "zh11_cosy_zero_shot.wav", "zh04_triton_long.wav"),
    (0, 8, 4): ("en01_libri_1995-1837-0001.wav", "zh05_BAC009S0724W0121.wav", "zhtts_2.wav"),
}


class RecordingOracle(OracleOnline):
    """The oracle, noting the tokens each decoder run produced."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.decoded: List[str] = []

    def decode(self, am_scores, token_nums):
        out = super().decode(am_scores, token_nums)
        for tokens in out:
            self.decoded.extend(tokens)
        return out


def load_oracle(chunk_size: Sequence[int]) -> RecordingOracle:
    return RecordingOracle(str(ASR_ONLINE_DIR), batch_size=1, chunk_size=list(chunk_size), intra_op_num_threads=1)


def oracle_stream(oracle: RecordingOracle, waveform: np.ndarray, token_index: Dict[str, int]) -> List[dict]:
    """Per call ``{"token_ids": [...], "text": str}`` for whole chunks, the last flagged final."""
    oracle.frontend.cache_reset()  # the oracle keeps its frontend state on the instance
    step = oracle.chunk_size[1] * 960
    starts = list(range(0, waveform.size, step)) or [0]
    cache: dict = {}
    calls = []
    for k, start in enumerate(starts):
        oracle.decoded = []
        out = oracle(waveform[start : start + step], param_dict={"cache": cache, "is_final": k == len(starts) - 1})
        text = ""
        if out and out[0].get("preds"):
            text = out[0]["preds"][0]
        calls.append({"token_ids": [token_index[t] for t in oracle.decoded], "text": text})
    return calls


def main() -> None:
    token_index = {t: i for i, t in enumerate(json.loads((ASR_ONLINE_DIR / "tokens.json").read_text("utf-8")))}
    plan = [(DEFAULT_CHUNK, clip) for clip in audio_clips()]
    plan += [(chunk, clip) for chunk, names in EXTRA_CHUNKS.items() for clip in audio_clips() if clip.name in names]
    oracles = {chunk: load_oracle(chunk) for chunk in {c for c, _ in plan}}
    cases = []
    for chunk, clip in plan:
        waveform = load_audio_file(clip, 16000)
        calls = oracle_stream(oracles[chunk], waveform, token_index)
        cases.append({"clip": clip.name, "chunk_size": list(chunk), "samples": int(waveform.size), "calls": calls})
        print(clip.name, chunk, "".join(c["text"] for c in calls))
    GOLDEN.mkdir(parents=True, exist_ok=True)
    out = GOLDEN / "online.json"
    lines = [f"  {json.dumps(case, ensure_ascii=False, sort_keys=True)}" for case in cases]
    out.write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")
    print("wrote", out)


if __name__ == "__main__":
    main()
