"""Soak test: thousands of connections, well- and ill-behaved, against one server process; RSS before and after.

Starts the 2pass server (so every mode is served) as a subprocess on the given
model directories, with ws:// and wss:// on one port, then opens ``--connections``
connections, ``--concurrency`` at a time, cycling through what clients in the
field do:

* ``offline``: a 2 s PCM utterance in offline mode, read the result;
* ``2pass``: stream 2 s in 600 ms chunks, read until the final message;
* ``online_abort``: start an online stream and vanish mid-utterance (TCP reset);
* ``tls_offline``: like ``offline`` over wss:// (self-signed certificate);
* ``bad_json``: send a broken control message, read the error, leave;
* ``open_close``: connect and close at once;
* ``health``: a plain ``GET /health``, no WebSocket.

The server's resident memory (``VmRSS``) is sampled when idle after the models
load, after a warm-up (allocator arenas, onnxruntime's buffers and caches fill
up during the first connections), every 1,000 connections, and when idle at
the end; growth is reported from the warm-up sample to the end.

    python -m benchmarks.soak --model-root DIR [--connections 5000] [--concurrency 32] [--quantize]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.server_process import rss_mib, running_server  # noqa: E402
from funasr_wss.models.audio import load_audio_file  # noqa: E402

KINDS = ["offline", "2pass", "online_abort", "tls_offline", "bad_json", "open_close", "health"]
WARMUP = 500


async def one_connection(kind: str, port: int, pcm: bytes, insecure: ssl.SSLContext) -> str:
    """Run one client of ``kind``; return ``ok`` or what went wrong."""
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{port}"
    if kind == "health":
        def get() -> int:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as r:
                return r.status

        return "ok" if await asyncio.to_thread(get) == 200 else "health_not_200"
    kw = {}
    if kind == "tls_offline":
        url, kw = f"wss://127.0.0.1:{port}", {"ssl": insecure}
    async with connect(url, max_size=None, open_timeout=60, **kw) as ws:
        if kind == "open_close":
            return "ok"
        if kind == "bad_json":
            await ws.send("{not json")
            reply = json.loads(await ws.recv())
            return "ok" if "error" in reply else "no_error_reply"
        if kind in ("offline", "tls_offline"):
            await ws.send(json.dumps({"mode": "offline", "wav_name": kind, "audio_fs": 16000}))
            await ws.send(pcm)
            await ws.send(json.dumps({"is_speaking": False}))
            while not json.loads(await ws.recv()).get("is_final"):  # segments, then the final one
                pass
            return "ok"
        mode = "online" if kind == "online_abort" else "2pass"
        await ws.send(json.dumps({"mode": mode, "wav_name": kind, "chunk_size": [5, 10, 5], "audio_fs": 16000}))
        chunk = 19200
        stop = len(pcm) // 2 if kind == "online_abort" else len(pcm)
        for i in range(0, stop, chunk):
            await ws.send(pcm[i : min(i + chunk, stop)])
        if kind == "online_abort":
            ws.transport.abort()
            return "ok"
        await ws.send(json.dumps({"is_speaking": False}))
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("is_final"):
                return "ok"


async def soak(port: int, pid: int, total: int, concurrency: int, pcm: bytes) -> Dict[str, object]:
    insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    outcomes: Counter = Counter()
    samples: List[Dict[str, float]] = []
    done = 0
    next_index = 0
    lock = asyncio.Lock()
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal done, next_index
        while True:
            async with lock:
                if next_index >= total:
                    return
                index, next_index = next_index, next_index + 1
            kind = KINDS[index % len(KINDS)]
            try:
                outcome = await one_connection(kind, port, pcm, insecure)
            except Exception as exc:  # counted, never fatal: the soak goes on
                outcome = f"{type(exc).__name__}"
            outcomes[(kind, outcome)] += 1
            done += 1
            if done == WARMUP or done % 1000 == 0:
                samples.append({"connections": done, "rss_mib": round(rss_mib(pid), 1),
                                "seconds": round(time.perf_counter() - started, 1)})
                print(f"  {done:5d} connections  RSS {samples[-1]['rss_mib']:7.1f} MiB  {samples[-1]['seconds']:6.1f} s", flush=True)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"outcomes": {f"{k}:{o}": n for (k, o), n in sorted(outcomes.items())}, "samples": samples,
            "seconds": round(time.perf_counter() - started, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-root", type=Path, required=True, help="directory holding the official model directory names")
    p.add_argument("--connections", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--quantize", action="store_true", help="use the *_quant.onnx models")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    clip = load_audio_file(ROOT / "tests/fixtures/audio/zh01_asr_example_zh.wav", 16000)[:32000]
    pcm = (np.clip(clip, -1, 1) * 32767).astype("<i2").tobytes()
    with running_server(args.model_root, "2pass", args.quantize, 2) as (proc, port):
        time.sleep(1.0)
        idle = rss_mib(proc.pid)
        print(f"server pid {proc.pid}: idle after loading the models, RSS {idle:.1f} MiB", flush=True)
        result = asyncio.run(soak(port, proc.pid, args.connections, args.concurrency, pcm))
        time.sleep(2.0)
        end = rss_mib(proc.pid)
        alive = proc.poll() is None
    warm = next(s["rss_mib"] for s in result["samples"] if s["connections"] == min(WARMUP, args.connections))
    result.update(
        idle_rss_mib=round(idle, 1), end_rss_mib=round(end, 1), warm_rss_mib=warm,
        growth_after_warmup_mib=round(end - warm, 1), server_alive=alive,
        connections=args.connections, concurrency=args.concurrency, quantize=args.quantize,
        per_connection_growth_kib=round((end - warm) * 1024 / max(1, args.connections - WARMUP), 2),
    )
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    failures = {k: n for k, n in result["outcomes"].items() if not k.endswith(":ok")}
    return 0 if alive and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
