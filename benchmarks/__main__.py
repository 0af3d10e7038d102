"""Run the whole benchmark and write ``results.json``, ``report.md`` and ``report.png``.

    python -m benchmarks --model-root DIR [--quantize] [--out benchmarks/results]

``DIR`` holds FunASR's official model directory names (downloaded from
ModelScope, or the random-weight set the project's shared tool builds), so the
same command measures trained or untrained models alike.  Sections:

* offline: throughput and latency at 1, 2, 4, 8, 16 clients, side by side with
  funasr-onnx and the models alone (:mod:`benchmarks.offline_compare`);
* streaming: 2pass first delta, chunk lag, final-after-end, the largest
  real-time stream count (:mod:`benchmarks.stream_latency`);
* memory: server RSS idle, at its peak in each section, per open connection;
* cost (not in the default run): core-seconds per audio second of one live stream in each
  mode, stage by stage, and the compute floor, cores ÷ the 2pass cost (:mod:`benchmarks.stage_cost`);
* http (not in the default run): offline throughput over ``POST /v1/audio/transcriptions``
  next to the WebSocket offline path, one server, the same files (:mod:`benchmarks.http_compare`);
* scale (not in the default run): 1 replica straight, 1 and ``--replicas`` replicas behind the
  shipped HAProxy configuration: aggregate real-time 2pass streams and offline throughput, and
  the ratios that say what the proxy costs and what scaling out brings (:mod:`benchmarks.scale_out`);
* lm (not in the default run): what ``--lm-dir`` costs: graph memory and load
  time, WFST search ÷ Paraformer per segment, throughput with vs without the LM
  (:mod:`benchmarks.lm_cost`).

Every figure comes from the clients' clocks against the server running as its
own process (``python -m funasr_wss.server``), exactly as users start it.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import (  # noqa: E402
    http_compare,
    lm_cost,
    offline_compare,
    report,
    scale_out,
    stage_cost,
    stream_latency,
)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-root", required=True, type=Path, help="directory holding the official model directory names")
    ap.add_argument("--quantize", action="store_true", help="int8 model_quant.onnx everywhere")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results", help="where the report goes")
    ap.add_argument("--sections", default="offline,streaming", help="comma-separated: offline, streaming, cost, http, scale, lm")
    ap.add_argument("--concurrency", default="1,2,4,8,16", help="offline client counts")
    ap.add_argument("--rounds", type=int, default=1, help="offline: times the file list is sent at each count")
    ap.add_argument("--repeat", type=int, default=3, help="offline: measurements per count and system; the best is kept")
    ap.add_argument("--no-peers", action="store_true", help="offline: skip funasr-onnx and the floor")
    ap.add_argument("--streams", default="1,2,4,6,8,10", help="2pass stream counts, tried in order until one falls behind")
    ap.add_argument("--lockstep", action="store_true", help="start every stream at the same instant (worst case)")
    ap.add_argument("--idle-connections", type=int, default=200, help="open 2pass sessions for the per-connection RSS")
    ap.add_argument("--decoder-thread-num", type=int, default=2)
    ap.add_argument("--offline-audio", nargs="*", type=Path, default=None, help="offline files (default: fixture clips)")
    ap.add_argument("--stream-audio", nargs="*", type=Path, default=None, help="files joined into the streamed utterance")
    ap.add_argument("--lm-dir", type=Path, default=None,
                    help=f"lm: the n-gram LM directory (default: <model-root>/{lm_cost.LM})")
    ap.add_argument("--lm-connections", type=int, default=lm_cost.CONNECTIONS,
                    help="lm: idle connections (20 hotwords each) for the RSS with the LM")
    ap.add_argument("--replicas", type=int, default=2, help="scale: replicas behind the proxy")
    ap.add_argument("--scale-streams", default="1,2,4,6,8,10,12,16",
                    help="scale: 2pass stream counts per set-up, tried in order until one falls behind")
    ap.add_argument("--scale-concurrency", type=int, default=8, help="scale: offline clients per set-up")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sections - {"offline", "streaming", "cost", "http", "scale", "lm"}
    if unknown:
        print(f"unknown section(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    results = {
        "machine": report.machine(),
        "model_root": str(args.model_root),
        "quantize": args.quantize,
        "decoder_threads": args.decoder_thread_num,
        "command": "python -m benchmarks " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
    }

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if "offline" in sections:
        results["offline"] = offline_compare.run(
            args.model_root, args.quantize, [int(c) for c in args.concurrency.split(",")], args.rounds,
            args.offline_audio, args.decoder_thread_num, with_peers=not args.no_peers, repeat=args.repeat, log=log)
    if "streaming" in sections:
        results["streaming"] = stream_latency.run(
            args.model_root, args.quantize, [int(n) for n in args.streams.split(",")], args.lockstep,
            args.stream_audio, args.decoder_thread_num, args.idle_connections, log=log)
    if "cost" in sections:
        results["cost"] = stage_cost.run(args.model_root, args.quantize, args.stream_audio, args.decoder_thread_num,
                                         log=log)
    if "http" in sections:
        results["http"] = http_compare.run(
            args.model_root, args.quantize, [int(c) for c in args.concurrency.split(",")], args.rounds,
            args.offline_audio, args.decoder_thread_num, repeat=args.repeat, log=log)
    if "scale" in sections:
        results["scale"] = scale_out.run(
            args.model_root, args.quantize, args.replicas, [int(n) for n in args.scale_streams.split(",")],
            args.scale_concurrency, args.offline_audio, args.stream_audio, args.decoder_thread_num,
            repeat=min(args.repeat, 2), log=log)
    if "lm" in sections:
        results["lm"] = lm_cost.run(args.model_root, args.quantize, args.lm_dir, args.offline_audio,
                                    args.decoder_thread_num, args.repeat, args.lm_connections, log=log)
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    text = report.markdown(results)
    if results.get("http"):
        text = text.rstrip("\n") + "\n\n" + http_compare.markdown(results["http"]) + "\n"
    if results.get("scale"):
        text = text.rstrip("\n") + "\n\n" + scale_out.markdown(results["scale"]) + "\n"
    (args.out / "report.md").write_text(text, encoding="utf-8")
    plotted = bool(results.get("offline") or results.get("streaming"))  # the lm section has no plot
    drew = plotted and report.plot(results, args.out / "report.png")
    print(text)
    written = ["results.json", "report.md"] + (["report.png"] if drew else [])
    log(f"wrote {', '.join(str(args.out / w) for w in written)}"
        + ("" if drew or not plotted else " (no plot: pip install 'funasr-wss-server[bench]' for matplotlib)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
