"""What one live stream costs the server, stage by stage, in core-seconds per audio second.

Starts the 2pass server (its own process), then streams the utterance once per
mode (``2pass``, ``online``, ``offline``), one stream at a time, in 600 ms chunks at
real time (``speed`` > 1 sends them faster; the chunks keep their size).  Around each
stream it reads, from the server process:

* its CPU time (user + system, all threads: ``/proc/<pid>/stat``), and
* ``funasr_stage_cpu_seconds_total{stage}`` from ``/metrics``: the CPU the model
  stages charged to themselves (:mod:`models.stage_clock`).

Each stage's share is its CPU ÷ the audio's seconds; ``protocol_and_scheduling`` is
the process's CPU that no stage claimed (the event loop, websockets, JSON, the
decoder pool, the session's state machine).  The compute floor is the cores ÷ the
2pass cost: how many real-time streams the machine could carry if nothing else mattered.

    python -m benchmarks.stage_cost --model-root DIR [--quantize] [--speed 1] [FILES...]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Dict, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import corpus  # noqa: E402
from benchmarks.load import one_stream  # noqa: E402
from benchmarks.server_process import running_server  # noqa: E402

MODES = ("2pass", "online", "offline")
#: The process's CPU that no model stage claimed.
REST = "protocol_and_scheduling"
METRIC = "funasr_stage_cpu_seconds_total"


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid``, all its threads (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stage_cpu_seconds(port: int) -> Dict[str, float]:
    """The server's ``funasr_stage_cpu_seconds_total`` by stage, from ``/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: Dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(METRIC + "{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('stage="', 1)[1].split('"', 1)[0]] = float(value)
    return out


def measure(port: int, pid: int, pcm: bytes, speech_start_ms: int, mode: str, speed: float) -> Dict[str, object]:
    """One stream of ``pcm`` in ``mode``: CPU per audio second by stage, and the whole process's."""
    audio_s = len(pcm) / 2 / corpus.SAMPLE_RATE
    stages0, total0 = stage_cpu_seconds(port), process_cpu_seconds(pid)
    timing = asyncio.run(one_stream(f"ws://127.0.0.1:{port}", pcm, speech_start_ms, mode, speed=speed))
    total1, stages1 = process_cpu_seconds(pid), stage_cpu_seconds(port)
    spent = {name: stages1.get(name, 0.0) - stages0.get(name, 0.0) for name in stages1}
    per_audio_s = {name: round(seconds / audio_s, 4) for name, seconds in sorted(spent.items()) if seconds > 0}
    total = total1 - total0
    per_audio_s[REST] = round(max(0.0, total - sum(spent.values())) / audio_s, 4)
    return {
        "mode": mode,
        "core_s_per_audio_s": round(total / audio_s, 4),
        "stages": per_audio_s,
        "final_after_end": None if timing["final"] is None else round(timing["final"], 3),
    }


def run(model_root: Path, quantize: bool, files: Optional[Sequence[Path]] = None, decoder_threads: int = 2,
        speed: float = 1.0, modes: Sequence[str] = MODES, log=print) -> Dict[str, object]:
    waveform = corpus.stream_audio(files)
    pcm = corpus.pcm16(waveform)
    audio_s = waveform.size / corpus.SAMPLE_RATE
    cores = os.cpu_count() or 1
    rows = []
    with running_server(model_root, "2pass", quantize, decoder_threads, ["--certfile", "0"]) as (proc, port):
        # a first stream warms the sessions (onnxruntime's first calls allocate), and is not counted
        asyncio.run(one_stream(f"ws://127.0.0.1:{port}", pcm[: corpus.SAMPLE_RATE * 2 * 3], 0, "2pass", speed=speed))
        for mode in modes:
            row = measure(port, proc.pid, pcm, 0, mode, speed)
            rows.append(row)
            top = sorted(row["stages"].items(), key=lambda kv: -kv[1])[:4]
            log(f"cost: {mode:7s} {row['core_s_per_audio_s']:.3f} core-s per audio s ("
                + ", ".join(f"{k} {v:.3f}" for k, v in top) + ")")
    two_pass = next((r for r in rows if r["mode"] == "2pass"), None)
    floor = round(cores / two_pass["core_s_per_audio_s"], 1) if two_pass and two_pass["core_s_per_audio_s"] > 0 else None
    return {
        "audio_seconds": round(audio_s, 1),
        "cores": cores,
        "speed": speed,
        "rows": rows,
        "two_pass_floor_streams": floor,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-root", required=True, type=Path)
    ap.add_argument("--quantize", action="store_true", help="use *_quant.onnx everywhere")
    ap.add_argument("--speed", type=float, default=1.0, help="send the chunks this many times faster than real time")
    ap.add_argument("--decoder-thread-num", type=int, default=2)
    ap.add_argument("files", nargs="*", type=Path, help="audio joined into the streamed utterance (default: the corpus)")
    args = ap.parse_args(argv)
    result = run(args.model_root, args.quantize, args.files or None, args.decoder_thread_num, args.speed,
                 log=lambda line: print(line, file=sys.stderr))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
