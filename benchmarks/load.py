"""A load generator speaking FunASR's WebSocket protocol; every figure comes from the client's clock.

Works against any FunASR-compatible server (this one, or FunASR's C++
``funasr-wss-server`` / ``funasr-wss-server-2pass``):

* offline: N clients, each taking the next file from a shared list, sending it
  as one PCM message in ``offline`` mode and waiting for its result;
* streaming: N clients each streaming one utterance in real time the way
  FunASR's clients do (a 600 ms PCM chunk every 600 ms, ``chunk_size``
  ``[5, 10, 5]``, the end signal at the audio's end), in ``2pass`` or
  ``online`` mode.

    python -m benchmarks.load --url ws://127.0.0.1:10096 --mode offline --concurrency 4 [FILES...]
    python -m benchmarks.load --url ws://127.0.0.1:10096 --mode 2pass --concurrency 4 [FILES...]

Without files, the fixture clips are used (streaming joins them into one utterance).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import corpus  # noqa: E402

CHUNK_SECONDS = 0.6
#: A stream keeps up when 95 % of its chunks are answered within this long.
REALTIME_LAG_S = 1.0


def pct(values: Sequence[float], q: float) -> Optional[float]:
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def _client_ssl(url: str) -> Optional[ssl.SSLContext]:
    """FunASR's clients do not verify the server's certificate; nor does the load generator."""
    if not url.startswith("wss://"):
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


# ---------------------------------------------------------------------------------------- offline


@dataclass
class OfflineLoad:
    concurrency: int
    files: int
    audio_seconds: float
    wall_seconds: float
    #: per request: end signal sent → result received
    latency_p50: float
    latency_p95: float
    errors: int

    @property
    def throughput(self) -> float:
        """Audio seconds transcribed per wall-clock second (1 / RTF)."""
        return self.audio_seconds / self.wall_seconds


async def offline_clients(url: str, pcms: Sequence[bytes], jobs: Sequence[int], concurrency: int,
                          itn: bool = False) -> OfflineLoad:
    """``concurrency`` clients share the job list (file indices); each sends one file at a time."""
    from websockets.asyncio.client import connect

    queue = list(reversed(jobs))
    latencies: List[float] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        async with connect(url, max_size=None, ssl=_client_ssl(url), open_timeout=60) as ws:
            while queue:
                i = queue.pop()
                await ws.send(json.dumps({"mode": "offline", "wav_name": f"f{i}", "audio_fs": corpus.SAMPLE_RATE,
                                          "wav_format": "pcm", "itn": itn}))
                await ws.send(pcms[i])
                sent = time.perf_counter()
                await ws.send(json.dumps({"is_speaking": False}))
                while True:
                    # The offline profile answers with one message (mode "offline", is_final false);
                    # the 2pass profile with a 2pass-offline message per segment, the last is_final.
                    reply = json.loads(await ws.recv())
                    if reply.get("mode") == "offline" or reply.get("is_final") or "error" in reply:
                        break
                latencies.append(time.perf_counter() - sent)
                errors += "error" in reply

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    audio = sum(len(pcms[i]) for i in jobs) / 2 / corpus.SAMPLE_RATE
    return OfflineLoad(concurrency, len(jobs), round(audio, 2), round(wall, 3),
                       pct(latencies, 50) or 0.0, pct(latencies, 95) or 0.0, errors)


# ---------------------------------------------------------------------------------------- streaming


async def one_stream(url: str, pcm: bytes, speech_start_ms: int, mode: str = "2pass",
                     speed: float = 1.0) -> Dict[str, object]:
    """Stream ``pcm`` in real time (``speed`` times faster: the chunks keep their size, for cost
    measurements that need not wait); timings of what came back, on the client's clock."""
    from websockets.asyncio.client import connect

    chunk = int(corpus.SAMPLE_RATE * CHUNK_SECONDS) * 2
    times: List[float] = []
    messages: List[dict] = []
    async with connect(url, max_size=None, ssl=_client_ssl(url), open_timeout=60) as ws:

        async def reader() -> None:
            async for raw in ws:
                messages.append(json.loads(raw))
                times.append(time.perf_counter())
                if messages[-1].get("is_final"):
                    return

        task = asyncio.create_task(reader())
        await ws.send(json.dumps({"mode": mode, "chunk_size": [5, 10, 5], "wav_name": "bench",
                                  "audio_fs": corpus.SAMPLE_RATE, "wav_format": "pcm"}))
        start = time.perf_counter()
        sent: List[float] = []  # when each chunk went out
        for k, i in enumerate(range(0, len(pcm), chunk)):
            await asyncio.sleep(max(0.0, start + k * CHUNK_SECONDS / speed - time.perf_counter()))
            sent.append(time.perf_counter())
            await ws.send(pcm[i : i + chunk])
        await asyncio.sleep(max(0.0, start + len(pcm) / (2 * corpus.SAMPLE_RATE) / speed - time.perf_counter()))
        end_sent = time.perf_counter()
        await ws.send(json.dumps({"is_speaking": False}))
        await asyncio.wait_for(task, 120)
    online = f"{mode}-online" if mode == "2pass" else "online"
    first = next((t for t, m in zip(times, messages) if m.get("mode") == online and m.get("text")), None)
    offline_lag = [t - (start + m["end_time"] / 1000.0) for t, m in zip(times, messages)
                   if m.get("mode") == "2pass-offline" and "end_time" in m and not m.get("is_final")]
    # A delta's end_time says how much audio the server had heard when it produced it; the chunk
    # holding that instant was sent at sent[k]: the difference is the server's lag on that chunk.
    # Servers that do not send end_time (FunASR's C++ one) are timed against the newest chunk sent.
    chunk_ms = CHUNK_SECONDS * 1000
    chunk_lag = []
    for t, m in zip(times, messages):
        if m.get("mode") != online:
            continue
        if "end_time" in m:
            k = min(len(sent) - 1, max(0, int(np.ceil(m["end_time"] / chunk_ms)) - 1))
        else:
            k = max(0, sum(1 for s in sent if s <= t) - 1)
        chunk_lag.append(t - sent[k])
    # the chunk whose arrival completes 600 ms of audio from the first segment's start
    enough = int(np.ceil((speech_start_ms / 1000.0 + CHUNK_SECONDS) / CHUNK_SECONDS)) - 1
    return {
        "first": None if first is None else first - start,
        "first_after_speech": None if first is None else first - (start + enough * CHUNK_SECONDS),
        "final": times[-1] - end_sent if times else None,
        "offline_lag": offline_lag,
        "chunk_lag": chunk_lag,
        "deltas": sum(1 for m in messages if m.get("mode") == online),
        "segments": sum(1 for m in messages if m.get("mode") == "2pass-offline" and "end_time" in m),
        "final_has_segment": bool(messages) and "end_time" in messages[-1],
    }


async def stream_clients(url: str, pcm: bytes, speech_start_ms: int, n: int, stagger: bool,
                         mode: str = "2pass") -> Dict[str, object]:
    """``n`` streams at once; ``stagger`` spreads their chunk clocks over one chunk period, as independent users are."""
    async def delayed(k: int):
        if stagger:
            await asyncio.sleep(CHUNK_SECONDS * k / n)
        return await one_stream(url, pcm, speech_start_ms, mode)

    results = await asyncio.gather(*(delayed(k) for k in range(n)))
    lags = [x for r in results for x in r["offline_lag"]]
    chunk_lags = [x for r in results for x in r["chunk_lag"]]
    worst = max((pct(r["chunk_lag"], 95) or 0.0) for r in results)
    firsts = [r["first"] for r in results if r["first"] is not None]
    finals = [r["final"] for r in results if r["final"] is not None]
    after_speech = [r["first_after_speech"] for r in results if r["first_after_speech"] is not None]
    return {
        "streams": n,
        "staggered": stagger,
        "first_delta_p50": pct(firsts, 50),
        "first_delta_max": round(max(firsts), 3) if firsts else None,
        "first_delta_after_enough_speech_p50": pct(after_speech, 50),
        "chunk_lag_p50": pct(chunk_lags, 50),
        "chunk_lag_p95": pct(chunk_lags, 95),
        "chunk_lag_p99": pct(chunk_lags, 99),
        "worst_stream_chunk_lag_p95": round(worst, 3),
        # real-time: every stream keeps up with its chunks, and users get their final answers within the bound
        "realtime": worst < REALTIME_LAG_S and (pct(finals, 95) or 0.0) < REALTIME_LAG_S,
        "final_after_end_p50": pct(finals, 50),
        "final_after_end_p95": pct(finals, 95),
        "segment_end_to_2pass_offline_p50": pct(lags, 50),
        "segment_end_to_2pass_offline_p95": pct(lags, 95),
        "deltas_per_stream": results[0]["deltas"],
        "segments_per_stream": results[0]["segments"],
        "final_carries_a_segment": all(r["final_has_segment"] for r in results),
    }


# ---------------------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="ws://127.0.0.1:10096")
    ap.add_argument("--mode", choices=["offline", "2pass", "online"], default="offline")
    ap.add_argument("--concurrency", type=int, default=1, help="clients at once")
    ap.add_argument("--rounds", type=int, default=1, help="offline: times the file list is sent")
    ap.add_argument("--stagger", action="store_true", help="streaming: spread the clients' chunk clocks")
    ap.add_argument("--itn", action="store_true", help="offline: ask for inverse text normalisation")
    ap.add_argument("files", nargs="*", type=Path)
    args = ap.parse_args(argv)
    if args.mode == "offline":
        waves = corpus.load(corpus.offline_files(args.files))
        pcms = [corpus.pcm16(w) for w in waves]
        load = asyncio.run(offline_clients(args.url, pcms, corpus.work_list(waves, args.rounds), args.concurrency, args.itn))
        print(json.dumps(dict(asdict(load), throughput=round(load.throughput, 2), rtf=round(1 / load.throughput, 4))))
    else:
        audio = corpus.stream_audio(args.files)
        report = asyncio.run(stream_clients(args.url, corpus.pcm16(audio), 0, args.concurrency, args.stagger, args.mode))
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
