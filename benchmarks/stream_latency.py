"""Latency of the 2pass profile as streaming clients see it, and how many real-time streams it carries.

Starts the 2pass server (its own process) on the model directories, then N
clients (:mod:`benchmarks.load`) each stream the same utterance in real time
(600 ms chunks, ``chunk_size [5, 10, 5]``).  Per run, from the clients' clocks:

* ``first``: first audio sent → first non-empty ``2pass-online`` delta
  (``first_after_speech``: from the moment 600 ms past the first segment's
  start had been sent, i.e. the server's share);
* ``chunk_lag``: each delta's arrival minus the moment the client sent the
  chunk holding the delta's ``end_time``: the server's lag on that chunk; a
  stream is real-time while its p95 stays under 1 s;
* ``final``: end signal sent → the ``is_final: true`` message; compared with
  the offline pass (Paraformer + realtime punctuation + ITN) on the
  utterance's last VAD segment alone, timed in this process;
* ``offline_lag``: a segment's end in the audio → its ``2pass-offline``
  message (includes the VAD's 800 ms end-of-speech wait).

``--sweep`` runs growing stream counts (staggered start, as independent users
are, unless ``--lockstep``) and stops after the first count that is not
real-time; the largest real-time count is reported.

    python -m benchmarks.stream_latency --model-root DIR [--sweep 1,2,4,6,8,10] [--lockstep] [--quantize] [FILES...]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import corpus  # noqa: E402
from benchmarks.load import REALTIME_LAG_S, stream_clients  # noqa: E402
from benchmarks.memory import RssSampler, per_connection_mib  # noqa: E402
from benchmarks.server_process import ASR, ONLINE, PUNC_REALTIME, VAD, rss_mib, running_server  # noqa: E402


def last_segment_decode_seconds(model_root: Path, quantize: bool, waveform: np.ndarray, runs: int = 5) -> Dict[str, float]:
    """The offline pass alone on the utterance's last VAD segment (ASR + realtime punctuation + ITN)."""
    from funasr_wss.models.punctuation import PunctuationCache
    from funasr_wss.server.model_loader import load_two_pass
    from funasr_wss.server.settings import ServerSettings

    settings = ServerSettings(
        model_dir=str(model_root / ASR), online_model_dir=str(model_root / ONLINE), vad_dir=str(model_root / VAD),
        punc_dir=str(model_root / PUNC_REALTIME), quantize=quantize, vad_quant=quantize, punc_quant=quantize,
        model_thread_num=1,
    )
    recognizer = load_two_pass(settings)
    segments = recognizer.vad.segments(waveform)
    start, end = segments[-1]
    piece = waveform[start * 16 : end * 16]
    pipeline = recognizer.pipeline
    took = []
    for _ in range(runs + 1):
        t = time.perf_counter()
        result = pipeline.asr.recognize([piece])[0]
        cache = PunctuationCache()
        pipeline.finish([result], punctuate=lambda text: recognizer.realtime_punctuator.punctuate(text, cache).text)
        took.append(time.perf_counter() - t)
    return {"seconds": round(statistics.median(took[1:]), 3), "segment_seconds": round((end - start) / 1000, 2),
            "speech_start_ms": int(segments[0][0])}


def run(model_root: Path, quantize: bool, counts: Sequence[int], lockstep: bool = False,
        files: Optional[Sequence[Path]] = None, decoder_threads: int = 2, idle_connections: int = 200,
        stop_when_behind: bool = True, log=print) -> Dict[str, object]:
    waveform = corpus.stream_audio(files)
    pcm = corpus.pcm16(waveform)
    last = last_segment_decode_seconds(model_root, quantize, waveform)
    log(f"streaming: {waveform.size / corpus.SAMPLE_RATE:.1f} s utterance; offline pass on its last segment "
        f"({last['segment_seconds']} s) alone: {last['seconds']:.3f} s")
    rows: List[Dict[str, object]] = []
    with running_server(model_root, "2pass", quantize, decoder_threads, ["--certfile", "0"]) as (proc, port):
        url = f"ws://127.0.0.1:{port}"
        time.sleep(0.5)
        idle = rss_mib(proc.pid)
        with RssSampler(proc.pid) as sampler:
            for n in counts:
                row = asyncio.run(stream_clients(url, pcm, last["speech_start_ms"], n, stagger=not lockstep))
                rows.append(row)
                log(f"  {n:3d} streams: chunk lag p50/p95/p99 {row['chunk_lag_p50']:.2f}/{row['chunk_lag_p95']:.2f}/"
                    f"{row['chunk_lag_p99']:.2f} s, final p50 {row['final_after_end_p50']:.2f} s, "
                    f"{'real-time' if row['realtime'] else 'behind'}")
                if stop_when_behind and not row["realtime"]:
                    break
        peak = sampler.peak
        per_conn = asyncio.run(per_connection_mib(url, proc.pid, idle_connections)) if idle_connections else None
    single = next((r for r in rows if r["streams"] == 1), None)
    realtime = [r["streams"] for r in rows if r["realtime"]]
    return {
        "audio_seconds": round(waveform.size / corpus.SAMPLE_RATE, 1),
        "start": "lockstep" if lockstep else "staggered",
        "decoder_threads": decoder_threads,
        "last_segment": last,
        "final_over_last_segment_decode": round(single["final_after_end_p50"] / last["seconds"], 3) if single else None,
        "rows": rows,
        "max_realtime_streams": max(realtime) if realtime else 0,
        "limit_found": any(not r["realtime"] for r in rows),
        "realtime_rule": f"every stream's p95 chunk lag < {REALTIME_LAG_S} s and final-after-end p95 < {REALTIME_LAG_S} s",
        "server_rss": {"idle_mib": round(idle, 1), "peak_mib": round(peak, 1), "idle_connection": per_conn},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-root", required=True, type=Path)
    ap.add_argument("--sweep", default="1", help="comma-separated stream counts, e.g. 1,2,4,6,8,10")
    ap.add_argument("--lockstep", action="store_true", help="start every stream at the same instant")
    ap.add_argument("--all", action="store_true", help="run every count even after one falls behind")
    ap.add_argument("--quantize", action="store_true", help="use *_quant.onnx everywhere")
    ap.add_argument("--decoder-thread-num", type=int, default=2)
    ap.add_argument("--idle-connections", type=int, default=0, help="also measure RSS per idle 2pass connection")
    ap.add_argument("--json", type=Path)
    ap.add_argument("files", nargs="*", type=Path, help="audio joined into the streamed utterance (default: fixtures)")
    args = ap.parse_args(argv)
    result = run(args.model_root, args.quantize, [int(n) for n in args.sweep.split(",")], args.lockstep, args.files,
                 args.decoder_thread_num, args.idle_connections, stop_when_behind=not args.all)
    from benchmarks.report import streaming_table

    print("\n" + streaming_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
