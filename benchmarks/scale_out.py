"""Replicas behind HAProxy: aggregate real-time 2pass streams and offline throughput.

Three set-ups on one machine, each measured the same way: one replica straight (no proxy), one
replica behind the shipped HAProxy configuration (deploy/compose/haproxy.cfg, on loopback:
:mod:`benchmarks.replicas`), and ``replicas`` replicas behind it.  The first two differ only by
the proxy, so their ratio is what the proxy costs; the last says what scaling out brings on this
machine (replicas share its cores: on 2 cores, two replicas mostly split the same CPU).

* 2pass: ``streams`` real-time streams at once (staggered, as independent users), counted up
  until one falls behind (:func:`benchmarks.load.stream_clients`); the largest real-time count.
* offline: ``concurrency`` clients sharing the file list; audio seconds per wall second, best
  of ``repeat``.

    python -m benchmarks --model-root DIR --sections scale
"""
from __future__ import annotations

import asyncio
import contextlib
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

from benchmarks import corpus
from benchmarks.load import offline_clients, stream_clients
from benchmarks.replicas import loopback_haproxy_config, running_haproxy, wait_for_servers
from benchmarks.server_process import ROOT, _wait_healthy, free_port, server_command
from benchmarks.stream_latency import last_segment_decode_seconds


@contextlib.contextmanager
def replicas_behind(model_root: Path, quantize: bool, decoder_threads: int, count: int,
                    proxy: bool) -> Iterator[str]:
    """``count`` 2pass replica processes (loading together); yields the URL clients use: the proxy's,
    or with ``proxy`` False (one replica) the replica's own."""
    assert proxy or count == 1
    with contextlib.ExitStack() as stack:
        certs = stack.enter_context(tempfile.TemporaryDirectory())
        ports = [free_port() for _ in range(count)]
        procs = []
        for port in ports:
            cmd = server_command(model_root, "2pass", quantize, decoder_threads, port, ["--self-signed-dir", certs])
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            procs.append(proc)
            stack.callback(_stop, proc)
        for proc, port in zip(procs, ports):
            _wait_healthy(proc, port)
        if not proxy:
            yield f"ws://127.0.0.1:{ports[0]}"
            return
        frontend, stats = free_port(), free_port()
        stack.enter_context(running_haproxy(loopback_haproxy_config(frontend, stats, ports, "500ms"), stats))
        wait_for_servers(stats, {f"funasr{i}": True for i in range(1, count + 1)})
        yield f"ws://127.0.0.1:{frontend}"


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    if proc.stderr:
        proc.stderr.close()


def measure(url: str, pcm: bytes, speech_start_ms: int, streams: Sequence[int], pcms: List[bytes], jobs: List[int],
            concurrency: int, repeat: int) -> Dict[str, object]:
    """One set-up: the largest real-time 2pass stream count, and the best offline throughput."""
    asyncio.run(offline_clients(url, pcms, jobs[: len(pcms)], 1))  # warm up
    rows = []
    for n in streams:
        row = asyncio.run(stream_clients(url, pcm, speech_start_ms, n, stagger=True))
        rows.append({"streams": n, "realtime": row["realtime"], "chunk_lag_p95": row["chunk_lag_p95"],
                     "final_after_end_p95": row["final_after_end_p95"]})
        if not row["realtime"]:
            break
    loads = [asyncio.run(offline_clients(url, pcms, jobs, concurrency)) for _ in range(repeat)]
    realtime = [r["streams"] for r in rows if r["realtime"]]
    return {
        "max_realtime_streams": max(realtime) if realtime else 0,
        "limit_found": any(not r["realtime"] for r in rows),
        "stream_rows": rows,
        "offline_throughput": round(max(x.throughput for x in loads), 2),
        "offline_samples": [round(x.throughput, 2) for x in loads],
        "offline_errors": sum(x.errors for x in loads),
    }


def run(model_root: Path, quantize: bool, replicas: int = 2, streams: Sequence[int] = (1, 2, 4, 6, 8, 10, 12, 16),
        concurrency: int = 8, files: Optional[Sequence[Path]] = None, stream_files: Optional[Sequence[Path]] = None,
        decoder_threads: int = 2, repeat: int = 2, log: Callable[[str], None] = print) -> Dict[str, object]:
    waveform = corpus.stream_audio(stream_files)
    pcm = corpus.pcm16(waveform)
    speech_start_ms = int(last_segment_decode_seconds(model_root, quantize, waveform, runs=1)["speech_start_ms"])
    waves = corpus.load(corpus.offline_files(files))
    pcms = [corpus.pcm16(w) for w in waves]
    jobs = corpus.work_list(waves, 1)
    setups = [("1 replica, direct", 1, False), ("1 replica, HAProxy", 1, True), (f"{replicas} replicas, HAProxy", replicas, True)]
    rows = []
    for label, count, proxy in setups:
        with replicas_behind(model_root, quantize, decoder_threads, count, proxy) as url:
            row = {"setup": label, "replicas": count, "proxy": proxy,
                   **measure(url, pcm, speech_start_ms, streams, pcms, jobs, concurrency, repeat)}
        rows.append(row)
        log(f"scale: {label}: {row['max_realtime_streams']} real-time 2pass streams"
            f"{'' if row['limit_found'] else ' (or more)'}, offline {row['offline_throughput']}x real time")
    direct, proxied, scaled = rows

    def ratio(a: float, b: float) -> Optional[float]:
        return round(a / b, 3) if b else None

    return {
        "decoder_threads": decoder_threads,
        "offline_concurrency": concurrency,
        "stream_seconds": round(waveform.size / corpus.SAMPLE_RATE, 1),
        "rows": rows,
        "proxy_cost": {  # one replica through HAProxy ÷ the same replica straight
            "streams": ratio(proxied["max_realtime_streams"], direct["max_realtime_streams"]),
            "offline": ratio(proxied["offline_throughput"], direct["offline_throughput"]),
        },
        "scale_out": {  # N replicas through HAProxy ÷ one replica straight
            "streams": ratio(scaled["max_realtime_streams"], direct["max_realtime_streams"]),
            "offline": ratio(scaled["offline_throughput"], direct["offline_throughput"]),
        },
    }


def markdown(section: Dict[str, object]) -> str:
    lines = [
        "## Scaling out: replicas behind HAProxy",
        "",
        f"2pass: staggered real-time streams, counted up until one falls behind; offline: "
        f"{section['offline_concurrency']} clients sharing the file list, best run.",
        "",
        "| set-up | real-time 2pass streams | offline throughput (× real time) |",
        "| --- | --- | --- |",
    ]
    for r in section["rows"]:  # type: ignore[attr-defined]
        more = "" if r["limit_found"] else "+"
        lines.append(f"| {r['setup']} | {r['max_realtime_streams']}{more} | {r['offline_throughput']} |")
    cost, scale = section["proxy_cost"], section["scale_out"]
    lines += ["", f"The proxy alone (1 replica through HAProxy ÷ direct): streams {cost['streams']}, "  # type: ignore[index]
                  f"offline {cost['offline']}. Scaling out ({section['rows'][-1]['replicas']} replicas ÷ 1 direct): "  # type: ignore[index]
                  f"streams {scale['streams']}, offline {scale['offline']}.", ""]  # type: ignore[index]
    return "\n".join(lines)
