"""Offline throughput side by side: our server, FunASR's Python runtime, and the models alone.

At each concurrency C the same work (the file list, ``--rounds`` times) is
done three ways, one after another on the same machine:

* **server**: our server in its own process (``--decoder-thread-num`` threads,
  one intra-op thread per call), C WebSocket clients (:mod:`benchmarks.load`)
  each taking the next file and sending it as one PCM message in offline mode;
* **funasr-onnx**: FunASR's Python runtime in worker processes (:mod:`benchmarks.peers`);
* **floor**: our pipeline's onnxruntime calls alone, replayed on worker threads.

The peer and the floor get min(C, decoder threads) workers: the server never
runs more model calls at once than it has decoder threads, and more workers
than cores would only make the baselines slower (measured: 16 funasr-onnx
processes on 2 cores lose 30 %).

Each system is measured ``--repeat`` times at each C, the three back to back,
and keeps its best (the least disturbed by anything else on the machine; every
sample is in the JSON).  None of the three applies ITN (funasr-onnx's chain has none; clients send
``"itn": false``), so all do the same work.  Throughput is audio seconds per
wall second (RTF = its inverse); the report gives ours ÷ floor and ours ÷
funasr-onnx at each C, and the server's RSS idle and at its peak.

    python -m benchmarks.offline_compare --model-root DIR [--concurrency 1,2,4,8,16] [--rounds 1] [--quantize] [FILES...]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import corpus, peers  # noqa: E402
from benchmarks.load import offline_clients  # noqa: E402
from benchmarks.memory import RssSampler  # noqa: E402
from benchmarks.server_process import rss_mib, running_server  # noqa: E402


def run(model_root: Path, quantize: bool, levels: Sequence[int], rounds: int = 1, files: Optional[Sequence[Path]] = None,
        decoder_threads: int = 2, with_peers: bool = True, repeat: int = 3, log=print) -> Dict[str, object]:
    paths = corpus.offline_files(files)
    waves = corpus.load(paths)
    pcms = [corpus.pcm16(w) for w in waves]
    jobs = corpus.work_list(waves, rounds)
    audio = sum(waves[i].size for i in jobs) / corpus.SAMPLE_RATE
    log(f"offline: {len(waves)} files, {sum(w.size for w in waves) / corpus.SAMPLE_RATE:.1f} s; {audio:.1f} s per measurement")
    # The server runs at most ``decoder_threads`` model calls at once, whatever the client count; the
    # peer and the floor get the same number of workers (more would only oversubscribe the cores).
    # At each count the three are measured back to back, so a slow spell of the machine hits all three.
    workers_for = {c: min(c, decoder_threads) for c in levels}
    per_file = peers.record_model_calls(model_root, quantize, waves) if with_peers else []
    rows: List[Dict[str, object]] = []
    with contextlib.ExitStack() as stack:
        pools = {w: stack.enter_context(peers.funasr_onnx_workers(model_root, quantize, paths, w))
                 for w in sorted(set(workers_for.values()))} if with_peers else {}
        proc, port = stack.enter_context(running_server(model_root, "offline", quantize, decoder_threads, ["--certfile", "0"]))
        url = f"ws://127.0.0.1:{port}"
        time.sleep(0.5)
        idle = rss_mib(proc.pid)
        asyncio.run(offline_clients(url, pcms, jobs[: len(waves)], 1))  # warm up
        sampler = stack.enter_context(RssSampler(proc.pid))
        for c in levels:
            samples: Dict[str, List[float]] = {"server": [], "funasr_onnx": [], "floor": []}
            loads = []
            for _ in range(repeat):  # the three back to back, ``repeat`` times; each keeps its best
                load = asyncio.run(offline_clients(url, pcms, jobs, c))
                loads.append(load)
                samples["server"].append(round(load.throughput, 2))
                if with_peers:
                    samples["funasr_onnx"].append(round(peers.funasr_onnx_throughput(pools[workers_for[c]], jobs, audio), 2))
                    samples["floor"].append(round(peers.floor_throughput(per_file, jobs, workers_for[c], audio), 2))
            best = max(loads, key=lambda x: x.throughput)
            row: Dict[str, object] = {
                "concurrency": c, "server": round(best.throughput, 2), "server_rtf": round(1 / best.throughput, 4),
                "latency_p50": best.latency_p50, "latency_p95": best.latency_p95,
                "errors": sum(x.errors for x in loads), "samples": {k: v for k, v in samples.items() if v}}
            line = f"  c={c:<3d} server {best.throughput:6.2f}x (latency p50 {best.latency_p50:.2f} s, p95 {best.latency_p95:.2f} s)"
            if with_peers:
                row["workers"] = workers_for[c]
                row["funasr_onnx"] = max(samples["funasr_onnx"])
                row["floor"] = max(samples["floor"])
                row["server_over_floor"] = round(row["server"] / row["floor"], 3)
                row["server_over_funasr_onnx"] = round(row["server"] / row["funasr_onnx"], 3)
                line += (f"   funasr-onnx {row['funasr_onnx']:6.2f}x   floor {row['floor']:6.2f}x   "
                         f"ours/floor {row['server_over_floor']:.2f}   ours/funasr-onnx {row['server_over_funasr_onnx']:.2f}")
            rows.append(row)
            log(line)
        memory = {"idle_mib": round(idle, 1), "peak_mib": round(sampler.peak, 1)}
    return {"files": [p.name for p in paths], "audio_seconds": round(audio, 1), "rounds": rounds, "repeat": repeat,
            "decoder_threads": decoder_threads, "rows": rows, "server_rss": memory}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-root", required=True, type=Path)
    ap.add_argument("--concurrency", default="1,2,4,8,16")
    ap.add_argument("--rounds", type=int, default=1, help="times the file list is processed at each concurrency")
    ap.add_argument("--quantize", action="store_true", help="model_quant.onnx everywhere (all three systems)")
    ap.add_argument("--repeat", type=int, default=3, help="measurements per count and system; the best is kept")
    ap.add_argument("--decoder-thread-num", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write the results here too")
    ap.add_argument("files", nargs="*", type=Path, help="audio files (default: the fixture clips)")
    args = ap.parse_args(argv)
    result = run(args.model_root, args.quantize, [int(c) for c in args.concurrency.split(",")], args.rounds,
                 args.files, args.decoder_thread_num, repeat=args.repeat)
    from benchmarks.report import offline_table

    print("\n" + offline_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
