"""Does batching offline segments from different requests into one onnxruntime call raise throughput?

The decoder pool runs one job per thread, each a single onnxruntime call with
``--model-thread-num`` intra-op threads.  Batching would merge segments that
arrive at the same time from different connections into one call.  This
measures the offline Paraformer alone on the fixture speech (VAD segments of
1 to 9 s) with a fixed thread budget, every way of spending it:

* ``T threads × batch 1``: what the server does (one segment per call, T calls at once);
* ``T threads × batch B``: B segments per call (sorted by length to limit padding);
* ``1 thread × batch B, T intra-op threads``: one big call using every core.

    python -m benchmarks.batching --model-root DIR [--threads 2] [--quantize]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.offline_capacity import CLIPS  # noqa: E402
from benchmarks.server_process import ASR  # noqa: E402
from funasr_wss.models.audio import load_audio_file  # noqa: E402
from funasr_wss.models.onnx_session import RuntimeOptions  # noqa: E402
from funasr_wss.models.paraformer import OfflineParaformer  # noqa: E402


def segments() -> List[np.ndarray]:
    return [load_audio_file(ROOT / "tests/fixtures/audio" / name, 16000) for name in CLIPS]


def throughput(model: OfflineParaformer, feats, threads: int, batch: int, rounds: int = 3) -> float:
    """Audio seconds decoded per wall second, ``threads`` calls at once, ``batch`` segments per call."""
    audio_seconds = sum(f.shape[0] for f in feats) * 0.06 * rounds  # LFR frames are 60 ms
    order = sorted(range(len(feats)), key=lambda i: feats[i].shape[0])
    groups = [[feats[i] for i in order[k : k + batch]] for k in range(0, len(order), batch)] * rounds
    model.batch_size = batch
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(model.recognize_features, groups[: threads * 2]))  # warm up
        start = time.perf_counter()
        list(pool.map(model.recognize_features, groups))
        return audio_seconds / (time.perf_counter() - start)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-root", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quantize", action="store_true")
    args = ap.parse_args(argv)
    waves = segments()
    single = OfflineParaformer(args.model_root / ASR, quantized=args.quantize, options=RuntimeOptions(intra_op_threads=1))
    feats = [single.features(w) for w in waves]
    rows = []
    for batch in (1, 2, 4, 8):
        rows.append({"threads": args.threads, "intra_op": 1, "batch": batch,
                     "audio_s_per_s": round(throughput(single, feats, args.threads, batch), 1)})
        print(json.dumps(rows[-1]), flush=True)
    wide = OfflineParaformer(args.model_root / ASR, quantized=args.quantize,
                             options=RuntimeOptions(intra_op_threads=args.threads))
    for batch in (1, 4, 8):
        rows.append({"threads": 1, "intra_op": args.threads, "batch": batch,
                     "audio_s_per_s": round(throughput(wide, feats, 1, batch), 1)})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| calls at once | intra-op threads | segments per call | audio s / wall s |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['threads']} | {r['intra_op']} | {r['batch']} | {r['audio_s_per_s']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
