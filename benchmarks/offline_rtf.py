"""Single-stream real-time factor of the offline profile, as a client sees it.

Starts the server in-process on a loopback port with the given model
directories, sends one file over the FunASR protocol (config, 60 ms PCM
strides, end signal) several times, and reports wall time per request and the
real-time factor (processing seconds per audio second; lower is better).
The raw pipeline is timed on the same audio for comparison.

    python -m benchmarks.offline_rtf --model-root DIR [--audio FILE] [--runs 5]

``DIR`` holds the official directory names (as built by the shared
random-models tool or downloaded from ModelScope).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.audio import load_audio_file  # noqa: E402
from benchmarks.inprocess import start_server  # noqa: E402
from server.model_loader import load_offline_pipeline  # noqa: E402
from server.settings import ServerSettings  # noqa: E402

ASR = "speech_paraformer-large-vad-punc_asr_nat-zh-cn-16k-common-vocab8404-onnx"
VAD = "speech_fsmn_vad_zh-cn-16k-common-onnx"
PUNC = "punc_ct-transformer_zh-cn-common-vocab272727-onnx"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-root", required=True, type=Path)
    ap.add_argument("--audio", type=Path, default=ROOT / "tests/fixtures/audio/long02_vad_30s_48k.wav")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quantize", action="store_true", help="use model_quant.onnx everywhere")
    ap.add_argument("--model-thread-num", type=int, default=1)
    args = ap.parse_args()

    settings = ServerSettings(
        listen_ip="127.0.0.1", port=0,
        model_dir=str(args.model_root / ASR), vad_dir=str(args.model_root / VAD), punc_dir=str(args.model_root / PUNC),
        quantize=args.quantize, vad_quant=args.quantize, punc_quant=args.quantize,
        decoder_thread_num=2, model_thread_num=args.model_thread_num,
    )
    t0 = time.perf_counter()
    pipeline = load_offline_pipeline(settings)
    load_s = time.perf_counter() - t0
    waveform = load_audio_file(args.audio, 16000)
    seconds = waveform.size / 16000
    pcm = (np.clip(waveform, -1, 1) * 32767).astype("<i2").tobytes()

    pipeline.transcribe(waveform)  # warm-up
    direct = []
    for _ in range(args.runs):
        t = time.perf_counter()
        pipeline.transcribe(waveform)
        direct.append(time.perf_counter() - t)

    url = start_server(pipeline, decoder_threads=2)
    served = []
    with connect(url, max_size=None) as ws:
        for _ in range(args.runs + 1):
            t = time.perf_counter()
            ws.send(json.dumps({"mode": "offline", "wav_name": "bench", "wav_format": "pcm", "audio_fs": 16000}))
            for i in range(0, len(pcm), 1920):
                ws.send(pcm[i : i + 1920])
            ws.send(json.dumps({"is_speaking": False}))
            json.loads(ws.recv())
            served.append(time.perf_counter() - t)
    served = served[1:]  # the first request warms the connection
    report = {
        "audio": args.audio.name,
        "audio_seconds": round(seconds, 2),
        "model_load_seconds": round(load_s, 2),
        "quantized": args.quantize,
        "pipeline_seconds_median": round(statistics.median(direct), 3),
        "pipeline_rtf": round(statistics.median(direct) / seconds, 4),
        "server_seconds_median": round(statistics.median(served), 3),
        "server_rtf": round(statistics.median(served) / seconds, 4),
        "server_speed_x": round(seconds / statistics.median(served), 1),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
