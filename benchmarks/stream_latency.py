"""Latency of the 2pass profile as a streaming client sees it.

Starts the 2pass server (a separate process, as users run it) on a loopback
port with the given model directories, then N clients each stream the same audio in real time the way
FunASR's clients do (a 600 ms PCM chunk, then wait 600 ms; ``chunk_size``
``[5, 10, 5]``; the end signal after the last chunk's time), all at once.

Per stream it reports, from the client's clock:

* ``first``: first audio sent → first non-empty ``2pass-online`` delta, and
  ``first_after_speech``: from the moment the client had sent 600 ms of audio
  past the first segment's start (what the online model needs for its first
  chunk) → that delta, i.e. the server's share of ``first``;
* ``chunk_lag``: for each ``2pass-online`` delta, its arrival minus the moment
  the client sent the chunk holding the delta's ``end_time`` (how far the
  server had heard): the server's lag on that chunk; a stream is real-time
  while its p95 stays under 1 s;
* ``final``: end signal sent → the ``is_final: true`` message;
* ``offline_lag``: each segment's end in the audio → its ``2pass-offline`` message
  (includes the VAD's 800 ms end-of-speech wait);

and, for comparison, the time the offline model (Paraformer, realtime
punctuation, ITN) takes on the utterance's last segment alone.

    python -m benchmarks.stream_latency --model-root DIR [--streams 1 | --sweep 1,4,6,8] [--quantize]

``DIR`` holds the official directory names (as built by the shared
random-models tool or downloaded from ModelScope).  The default audio is five
fixture clips joined (29.5 s) so that speech runs to the very end and the
final message has a segment to decode.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.audio import load_audio_file  # noqa: E402
from models.punctuation import PunctuationCache  # noqa: E402
from benchmarks.server_process import rss_mib, running_server  # noqa: E402
from server.model_loader import load_two_pass  # noqa: E402
from server.settings import ServerSettings  # noqa: E402

ASR = "speech_paraformer-large-vad-punc_asr_nat-zh-cn-16k-common-vocab8404-onnx"
ONLINE = "speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-online-onnx"
VAD = "speech_fsmn_vad_zh-cn-16k-common-onnx"
PUNC = "punc_ct-transformer_zh-cn-common-vad_realtime-vocab272727-onnx"
CLIPS = ["zh01_asr_example_zh.wav", "zh02_llamacpp_sample.wav", "zh03_triton_mid.wav", "zh09_paddle_zh.wav", "zh04_triton_long.wav"]
CHUNK_SECONDS = 0.6


def default_audio() -> np.ndarray:
    audio_dir = ROOT / "tests/fixtures/audio"
    return np.concatenate([load_audio_file(audio_dir / name, 16000) for name in CLIPS])


async def one_stream(url: str, pcm: bytes, speech_start_ms: int) -> Dict[str, object]:
    from websockets.asyncio.client import connect

    chunk = int(16000 * CHUNK_SECONDS) * 2
    times: List[float] = []
    messages: List[dict] = []
    async with connect(url, max_size=None) as ws:

        async def reader() -> None:
            async for raw in ws:
                messages.append(json.loads(raw))
                times.append(time.perf_counter())
                if messages[-1].get("is_final"):
                    return

        task = asyncio.create_task(reader())
        await ws.send(json.dumps({"mode": "2pass", "chunk_size": [5, 10, 5], "wav_name": "bench", "audio_fs": 16000}))
        start = time.perf_counter()
        sent: List[float] = []  # when each chunk went out
        for k, i in enumerate(range(0, len(pcm), chunk)):
            await asyncio.sleep(max(0.0, start + k * CHUNK_SECONDS - time.perf_counter()))
            sent.append(time.perf_counter())
            await ws.send(pcm[i : i + chunk])
        await asyncio.sleep(max(0.0, start + len(pcm) / 32000 - time.perf_counter()))
        end_sent = time.perf_counter()
        await ws.send(json.dumps({"is_speaking": False}))
        await asyncio.wait_for(task, 120)
    first = next(t for t, m in zip(times, messages) if m["mode"] == "2pass-online" and m["text"])
    offline_lag = [
        t - (start + m["end_time"] / 1000.0) for t, m in zip(times, messages) if m["mode"] == "2pass-offline" and "end_time" in m and not m["is_final"]
    ]
    # A delta's end_time says how much audio the server had heard when it produced it; the chunk
    # holding that instant was sent at sent[k]: the difference is the server's lag on that chunk.
    chunk_ms = CHUNK_SECONDS * 1000
    chunk_lag = [
        t - sent[min(len(sent) - 1, max(0, int(np.ceil(m["end_time"] / chunk_ms)) - 1))]
        for t, m in zip(times, messages)
        if m["mode"] == "2pass-online" and "end_time" in m
    ]
    # the chunk whose arrival completes 600 ms of audio from the first segment's start
    enough = int(np.ceil((speech_start_ms / 1000.0 + CHUNK_SECONDS) / CHUNK_SECONDS)) - 1
    return {
        "first": first - start,
        "first_after_speech": first - (start + enough * CHUNK_SECONDS),
        "final": times[-1] - end_sent,
        "offline_lag": offline_lag,
        "chunk_lag": chunk_lag,
        "deltas": sum(1 for m in messages if m["mode"] == "2pass-online"),
        "segments": sum(1 for m in messages if m["mode"] == "2pass-offline" and "end_time" in m),
        "final_has_segment": "end_time" in messages[-1],
    }


def last_segment_decode_seconds(recognizer, waveform: np.ndarray, runs: int = 5) -> float:
    """The offline pass alone on the utterance's last VAD segment (ASR + punctuation + ITN)."""
    start, end = recognizer.vad.segments(waveform)[-1]
    piece = waveform[start * 16 : end * 16]
    pipeline = recognizer.pipeline
    took = []
    for _ in range(runs + 1):
        t = time.perf_counter()
        result = pipeline.asr.recognize([piece])[0]
        cache = PunctuationCache()
        pipeline.finish([result], punctuate=lambda text: recognizer.realtime_punctuator.punctuate(text, cache).text)
        took.append(time.perf_counter() - t)
    return statistics.median(took[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-root", required=True, type=Path)
    ap.add_argument("--audio", type=Path, help="a clip to stream instead of the default joined fixtures")
    ap.add_argument("--streams", type=int, default=1, help="concurrent clients")
    ap.add_argument("--sweep", help="comma-separated stream counts to run one after another, e.g. 1,4,6,8")
    ap.add_argument("--stagger", action="store_true", help="start the streams spread over one chunk period")
    ap.add_argument("--quantize", action="store_true", help="use *_quant.onnx everywhere")
    ap.add_argument("--decoder-thread-num", type=int, default=2)
    args = ap.parse_args()

    root = args.model_root
    settings = ServerSettings(
        listen_ip="127.0.0.1", port=0,
        model_dir=str(root / ASR), online_model_dir=str(root / ONLINE), vad_dir=str(root / VAD), punc_dir=str(root / PUNC),
        quantize=args.quantize, vad_quant=args.quantize, punc_quant=args.quantize,
        decoder_thread_num=args.decoder_thread_num, model_thread_num=1,
    )
    t0 = time.perf_counter()
    recognizer = load_two_pass(settings)
    load_s = time.perf_counter() - t0
    waveform = load_audio_file(args.audio, 16000) if args.audio else default_audio()
    pcm = (np.clip(waveform, -1, 1) * 32767).astype("<i2").tobytes()
    decode_last = last_segment_decode_seconds(recognizer, waveform)

    speech_start = recognizer.vad.segments(waveform)[0][0]
    counts = [int(n) for n in args.sweep.split(",")] if args.sweep else [args.streams]
    reports = []
    with running_server(root, "2pass", args.quantize, args.decoder_thread_num, ["--certfile", "0"]) as (proc, port):
        for n in counts:
            report = run_streams(f"ws://127.0.0.1:{port}", pcm, speech_start, n, args.stagger)
            report.update(
                audio_seconds=round(waveform.size / 16000, 2), quantized=args.quantize,
                decoder_threads=args.decoder_thread_num, model_load_seconds=round(load_s, 2),
                last_segment_offline_decode=round(decode_last, 3), server_rss_mib=round(rss_mib(proc.pid), 1),
            )
            reports.append(report)
            print(json.dumps(report), flush=True)
    if len(reports) > 1:
        print()
        print("| streams | first delta p50 | chunk lag p50 / p95 / p99 | worst stream's p95 lag | final p50 / p95 | real-time |")
        print("|---|---|---|---|---|---|")
        for r in reports:
            print(f"| {r['streams']} | {r['first_delta_p50']:.2f} s | {r['chunk_lag_p50']:.2f} / {r['chunk_lag_p95']:.2f} / "
                  f"{r['chunk_lag_p99']:.2f} s | {r['worst_stream_chunk_lag_p95']:.2f} s | {r['final_after_end_p50']:.2f} / "
                  f"{r['final_after_end_p95']:.2f} s | {'yes' if r['realtime'] else 'no'} |")
        ok = [r["streams"] for r in reports if r["realtime"]]
        print(f"\nlargest real-time stream count measured: {max(ok) if ok else 0} (every stream's p95 chunk lag < {REALTIME_LAG_S} s)")


def pct(values, q):
    return round(float(np.percentile(values, q)), 3) if values else None


#: A stream keeps up when 95 % of its chunks are answered within this long.
REALTIME_LAG_S = 1.0


def run_streams(url: str, pcm: bytes, speech_start: int, n: int, stagger: bool) -> Dict[str, object]:
    async def all_streams():
        async def delayed(k: int):
            if stagger:  # spread the streams' chunk clocks over one chunk period, as independent users would be
                await asyncio.sleep(CHUNK_SECONDS * k / n)
            return await one_stream(url, pcm, speech_start)

        return await asyncio.gather(*(delayed(k) for k in range(n)))

    results = asyncio.run(all_streams())
    lags = [x for r in results for x in r["offline_lag"]]
    chunk_lags = [x for r in results for x in r["chunk_lag"]]
    worst = max(pct(r["chunk_lag"], 95) or 0.0 for r in results)
    return {
        "streams": n,
        "staggered": stagger,
        "first_delta_p50": pct([r["first"] for r in results], 50),
        "first_delta_max": round(max(r["first"] for r in results), 3),
        "first_delta_after_enough_speech_p50": pct([r["first_after_speech"] for r in results], 50),
        "chunk_lag_p50": pct(chunk_lags, 50),
        "chunk_lag_p95": pct(chunk_lags, 95),
        "chunk_lag_p99": pct(chunk_lags, 99),
        "worst_stream_chunk_lag_p95": round(worst, 3),
        "realtime": worst < REALTIME_LAG_S,
        "final_after_end_p50": pct([r["final"] for r in results], 50),
        "final_after_end_p95": pct([r["final"] for r in results], 95),
        "segment_end_to_2pass_offline_p50": pct(lags, 50),
        "segment_end_to_2pass_offline_p95": pct(lags, 95),
        "deltas_per_stream": results[0]["deltas"],
        "segments_per_stream": results[0]["segments"],
        "final_carries_a_segment": all(r["final_has_segment"] for r in results),
    }


if __name__ == "__main__":
    main()
