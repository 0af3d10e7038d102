"""How many live offline streams one server carries while every stream keeps up with real time.

A "live offline stream" is a client recording speech and having each utterance
transcribed as a whole: it sends the utterance's PCM in real time (600 ms
chunks, in ``offline`` mode), the end signal, and at once starts the next
utterance, reading results as they come.  N such clients run at once against
the offline server (a separate process, ``--decoder-thread-num`` threads).

Per utterance: ``latency`` = result arrival − end signal sent.  A stream keeps
up when its results never fall behind its audio: the p95 of latency divided by
the utterance's duration stays below 1 (each result is back before the next
utterance has been recorded), so no backlog can build up.

    python -m benchmarks.offline_capacity --model-root DIR [--sweep 8,16,24,32] [--seconds 60] [--quantize]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.server_process import rss_mib, running_server  # noqa: E402
from funasr_wss.models.audio import load_audio_file  # noqa: E402

#: Every fixture clip of 3 s or more that has speech, resampled to 16 kHz.
CLIPS = [
    "zh01_asr_example_zh.wav", "zh02_llamacpp_sample.wav", "zh03_triton_mid.wav", "zh04_triton_long.wav",
    "zh05_BAC009S0724W0121.wav", "zh07_BAC009S0764W0121.wav", "zh09_paddle_zh.wav", "zh11_cosy_zero_shot.wav",
    "en01_libri_1995-1837-0001.wav", "en02_libri_1089-134686-0001.wav", "k8_BAC009S0764W0121_8k.wav",
]
CHUNK_SECONDS = 0.6


def utterances() -> List[bytes]:
    audio = ROOT / "tests/fixtures/audio"
    out = []
    for name in CLIPS:
        wave = load_audio_file(audio / name, 16000)
        out.append((np.clip(wave, -1, 1) * 32767).astype("<i2").tobytes())
    return out


async def live_client(url: str, clips: List[bytes], offset: int, seconds: float) -> List[Dict[str, float]]:
    """Record utterances back to back for ``seconds``; return each one's duration and result latency."""
    from websockets.asyncio.client import connect

    chunk = int(16000 * CHUNK_SECONDS) * 2
    ends: List[float] = []
    durations: List[float] = []
    arrivals: List[float] = []
    async with connect(url, max_size=None) as ws:

        async def reader() -> None:
            async for raw in ws:
                json.loads(raw)
                arrivals.append(time.perf_counter())

        task = asyncio.create_task(reader())
        clock = time.perf_counter()
        start = clock
        k = offset
        while clock - start < seconds:
            pcm = clips[k % len(clips)]
            k += 1
            await ws.send(json.dumps({"mode": "offline", "wav_name": f"u{k}", "audio_fs": 16000}))
            for i in range(0, len(pcm), chunk):
                await ws.send(pcm[i : i + chunk])
                clock += min(chunk, len(pcm) - i) / 32000
                await asyncio.sleep(max(0.0, clock - time.perf_counter()))
            ends.append(time.perf_counter())
            durations.append(len(pcm) / 32000)
            await ws.send(json.dumps({"is_speaking": False}))
        deadline = time.perf_counter() + 120
        while len(arrivals) < len(ends) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        task.cancel()
    return [
        {"duration": d, "latency": a - e} for d, e, a in zip(durations, ends, arrivals)
    ]


def pct(values, q) -> float:
    return round(float(np.percentile(values, q)), 3)


def run(url: str, clips: List[bytes], n: int, seconds: float, pid: int) -> Dict[str, object]:
    async def all_clients():
        async def one(k: int):
            await asyncio.sleep(CHUNK_SECONDS * k / n)  # independent users: chunk clocks spread out
            return await live_client(url, clips, k, seconds)

        return await asyncio.gather(*(one(k) for k in range(n)))

    results = asyncio.run(all_clients())
    rows = [r for client in results for r in client]
    ratio = [r["latency"] / r["duration"] for r in rows]
    worst = max(float(np.percentile([r["latency"] / r["duration"] for r in c], 95)) for c in results)
    audio = sum(r["duration"] for r in rows)
    return {
        "streams": n,
        "utterances": len(rows),
        "audio_seconds": round(audio, 1),
        "latency_p50": pct([r["latency"] for r in rows], 50),
        "latency_p95": pct([r["latency"] for r in rows], 95),
        "latency_over_duration_p95": pct(ratio, 95),
        "worst_stream_latency_over_duration_p95": round(worst, 3),
        "keeps_up": worst < 1.0,
        "server_rss_mib": round(rss_mib(pid), 1),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-root", required=True, type=Path)
    ap.add_argument("--sweep", default="8,16,24,32", help="comma-separated stream counts")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long each client records")
    ap.add_argument("--quantize", action="store_true")
    ap.add_argument("--decoder-thread-num", type=int, default=2)
    args = ap.parse_args(argv)
    clips = utterances()
    reports = []
    with running_server(args.model_root, "offline", args.quantize, args.decoder_thread_num, ["--certfile", "0"]) as (proc, port):
        for n in (int(x) for x in args.sweep.split(",")):
            report = run(f"ws://127.0.0.1:{port}", clips, n, args.seconds, proc.pid)
            reports.append(report)
            print(json.dumps(report), flush=True)
    print()
    print("| streams | utterances | latency p50 / p95 | p95 latency ÷ duration (worst stream) | keeps up | server RSS |")
    print("|---|---|---|---|---|---|")
    for r in reports:
        print(f"| {r['streams']} | {r['utterances']} | {r['latency_p50']:.2f} / {r['latency_p95']:.2f} s | "
              f"{r['worst_stream_latency_over_duration_p95']:.2f} | {'yes' if r['keeps_up'] else 'no'} | {r['server_rss_mib']:.0f} MiB |")
    ok = [r["streams"] for r in reports if r["keeps_up"]]
    print(f"\nlargest stream count that keeps up: {max(ok) if ok else 0}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
