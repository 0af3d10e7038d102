"""Regenerate ``tests/golden/vad.json`` with FunASR's own Python runtime (``funasr-onnx``).

For every fixture clip, loaded with our audio loader so both implementations
see the same 16 kHz float32 samples:

* ``offline`` - the segments of ``Fsmn_vad`` on the whole clip;
* ``online`` - the events of ``Fsmn_vad_online`` when the clip is fed in
  chunks of 800 samples (50 ms, what FunASR's 2pass server sends the VAD) and
  of 9600 samples (600 ms), the last chunk flagged ``is_final``.  Each event is
  ``[call_index, beg, end]`` so the test also checks *when* it is reported.

    python tests/oracle/oracle_vad.py

The drivers below are imported by ``tests/test_vad.py`` for its live checks.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from funasr_onnx import Fsmn_vad, Fsmn_vad_online  # noqa: E402
from funasr_onnx.utils.e2e_vad import E2EVadModel  # noqa: E402

from funasr_wss.models.audio import load_audio_file  # noqa: E402
from tests.paths import GOLDEN, VAD_DIR, audio_clips  # noqa: E402

STREAM_CHUNKS = (800, 9600)


def oracle_offline(vad: Fsmn_vad, waveform: np.ndarray) -> List[List[int]]:
    """``Fsmn_vad`` segments as ``[[beg, end], ...]`` (the oracle cannot take empty audio)."""
    if waveform.size == 0:
        return []
    return [[int(b), int(e)] for b, e in vad(waveform)[0]]


def fixed_chunks(n_samples: int, size: int) -> List[int]:
    """Chunk lengths covering ``n_samples`` in steps of ``size``."""
    return [min(size, n_samples - i) for i in range(0, n_samples, size)]


def oracle_stream(online: Fsmn_vad_online, waveform: np.ndarray, chunks: Sequence[int]) -> List[List[int]]:
    """Feed ``waveform`` to ``Fsmn_vad_online`` in pieces of the given lengths.

    Returns ``[[call_index, beg, end], ...]``.  The post-processor is created up
    front because the oracle forgets to when its first call yields no frame.
    """
    param: Dict = {"in_cache": [], "vad_scorer": E2EVadModel(online.config["model_conf"])}
    events: List[List[int]] = []
    pos = 0
    for k, size in enumerate(chunks):
        param["is_final"] = k == len(chunks) - 1
        out = online(waveform[pos : pos + size], param_dict=param)
        pos += size
        for batch in out:
            events.extend([k, int(b), int(e)] for b, e in batch)
    return events


def golden_entry(vad: Fsmn_vad, online: Fsmn_vad_online, waveform: np.ndarray) -> dict:
    return {
        "samples": int(waveform.size),
        "offline": oracle_offline(vad, waveform),
        "online": {
            str(size): oracle_stream(online, waveform, fixed_chunks(waveform.size, size)) for size in STREAM_CHUNKS
        },
    }


def main(clips: Iterable[Path] = ()) -> None:
    vad = Fsmn_vad(str(VAD_DIR), intra_op_num_threads=1)
    online = Fsmn_vad_online(str(VAD_DIR), intra_op_num_threads=1)
    golden = {}
    for clip in list(clips) or audio_clips():
        waveform = load_audio_file(clip, 16000)
        golden[clip.name] = golden_entry(vad, online, waveform)
        print(clip.name, golden[clip.name]["offline"])
    GOLDEN.mkdir(parents=True, exist_ok=True)
    out = GOLDEN / "vad.json"
    # one clip per line: small diffs when a clip is added or the oracle changes
    lines = [f" {json.dumps(name)}: {json.dumps(golden[name], sort_keys=True)}" for name in sorted(golden)]
    out.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    print("wrote", out)


if __name__ == "__main__":
    main()
