"""Offline throughput over the HTTP API next to the WebSocket offline path, on one server and the same files.

One server process (``python -m funasr_wss.server``, the offline profile) serves
both; at each client count the same job list (the files as 16 kHz PCM, longest
first) goes once through WebSocket clients (:func:`benchmarks.load.offline_clients`,
one PCM message per file in ``offline`` mode) and once through HTTP clients
(``POST /v1/audio/transcriptions``, the same PCM as a ``.pcm`` upload with
``audio_fs=16000``, ``response_format=json``, one keep-alive connection per
client), alternately, best of ``repeat``.  The ratio HTTP ÷ WebSocket is what
the HTTP side costs; no ITN on either.

    python -m benchmarks --model-root DIR --sections http
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import h11

from benchmarks import corpus
from benchmarks.load import OfflineLoad, offline_clients, pct
from benchmarks.server_process import rss_mib, running_server

TRANSCRIPTIONS = "/v1/audio/transcriptions"


def multipart(pcm: bytes, name: str) -> tuple:
    """(Content-Type, body) of one upload: the PCM as ``file`` and the fields the run sends."""
    boundary = uuid.uuid4().hex
    parts = []
    for field, value in (("model", "funasr"), ("response_format", "json"), ("audio_fs", str(corpus.SAMPLE_RATE)),
                         ("itn", "false")):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n{value}\r\n'.encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}.pcm"\r\n'
                 "Content-Type: audio/L16;rate=16000\r\n\r\n".encode() + pcm + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(parts)


async def http_clients(host: str, port: int, pcms: Sequence[bytes], jobs: Sequence[int], concurrency: int) -> OfflineLoad:
    """``concurrency`` HTTP/1.1 clients (h11 over asyncio streams, keep-alive) share the job list."""
    queue = list(reversed(jobs))
    bodies = [multipart(p, f"f{i}") for i, p in enumerate(pcms)]
    latencies: List[float] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        conn = h11.Connection(h11.CLIENT)
        try:
            while queue:
                i = queue.pop()
                content_type, body = bodies[i]
                started = time.perf_counter()
                writer.write(conn.send(h11.Request(method="POST", target=TRANSCRIPTIONS, headers=[
                    ("Host", f"{host}:{port}"), ("Content-Type", content_type), ("Content-Length", str(len(body)))])))
                writer.write(conn.send(h11.Data(data=body)))
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
                status, answer = 0, b""
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(await reader.read(65536))
                    elif isinstance(event, h11.Response):
                        status = event.status_code
                    elif isinstance(event, h11.Data):
                        answer += event.data
                    elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                        break
                latencies.append(time.perf_counter() - started)
                errors += status != 200 or "text" not in json.loads(answer or b"{}")
                conn.start_next_cycle()
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    audio = sum(len(pcms[i]) for i in jobs) / 2 / corpus.SAMPLE_RATE
    return OfflineLoad(concurrency, len(jobs), round(audio, 2), round(wall, 3),
                       pct(latencies, 50) or 0.0, pct(latencies, 95) or 0.0, errors)


def run(model_root: Path, quantize: bool, levels: Sequence[int], rounds: int = 1, files: Optional[Sequence[Path]] = None,
        decoder_threads: int = 2, repeat: int = 3, log: Callable[[str], None] = print) -> Dict[str, object]:
    paths = corpus.offline_files(files)
    waves = corpus.load(paths)
    pcms = [corpus.pcm16(w) for w in waves]
    jobs = corpus.work_list(waves, rounds)
    rows = []
    errors = 0
    with running_server(model_root, "offline", quantize, decoder_threads) as (proc, port):
        url = f"ws://127.0.0.1:{port}"
        peak = rss_mib(proc.pid)
        for n in levels:
            samples: Dict[str, List[float]] = {"websocket": [], "http": []}
            latency: Dict[str, float] = {}
            for _ in range(max(1, repeat)):
                ws = asyncio.run(offline_clients(url, pcms, jobs, n))
                http = asyncio.run(http_clients("127.0.0.1", port, pcms, jobs, n))
                errors += ws.errors + http.errors
                samples["websocket"].append(round(ws.throughput, 2))
                samples["http"].append(round(http.throughput, 2))
                latency = {"websocket_p50": ws.latency_p50, "http_p50": http.latency_p50}
                peak = max(peak, rss_mib(proc.pid))
            best_ws, best_http = max(samples["websocket"]), max(samples["http"])
            row = {"concurrency": n, "websocket": best_ws, "http": best_http,
                   "http_over_websocket": round(best_http / best_ws, 3) if best_ws else 0.0,
                   "samples": samples, **latency}
            rows.append(row)
            log(f"http vs websocket, {n} clients: {best_http:.1f} vs {best_ws:.1f} audio s/s "
                f"({row['http_over_websocket']:.3f})")
    return {"files": [p.name for p in paths], "audio_seconds": round(sum(w.size for w in waves) / corpus.SAMPLE_RATE, 1),
            "repeat": repeat, "rows": rows, "errors": errors, "server_peak_rss_mib": round(peak, 1)}


def markdown(section: Dict[str, object]) -> str:
    """The section of ``report.md``: both throughputs and their ratio per client count."""
    rows = section["rows"]
    assert isinstance(rows, list)
    lines = ["## HTTP API vs WebSocket (offline throughput, audio seconds per wall second)", "",
             f"{len(section['files'])} files ({section['audio_seconds']} s) as 16 kHz PCM, the same server process; "
             "WebSocket: one message per file in offline mode; HTTP: `POST /v1/audio/transcriptions` (a `.pcm` upload, "
             f"`response_format=json`, keep-alive); alternately, best of {section['repeat']}; errors: {section['errors']}.",
             "", "| clients | WebSocket | HTTP | HTTP ÷ WebSocket | p50 latency WS / HTTP (s) |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['concurrency']} | {r['websocket']:.2f} | {r['http']:.2f} | {r['http_over_websocket']:.3f} | "
                     f"{r.get('websocket_p50', 0):.3f} / {r.get('http_p50', 0):.3f} |")
    return "\n".join(lines)
