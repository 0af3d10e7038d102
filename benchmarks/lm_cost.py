"""What the n-gram LM (``--lm-dir``) costs: memory, search time per segment, server throughput.

With an LM the offline Paraformer's argmax becomes a WFST search over TLG
(:mod:`models.wfst_decoder`).  That must stay cheap next to the model, so the
section measures the issue's targets:

* **graph**: TLG's size and load time; the search graph in memory at most
  1.5× the file; and, from outside, the server's RSS with the LM minus without
  it, idle and with idle connections holding 20 hotwords each, which shows the
  graph is held once, not per connection;
* **search**: on every VAD segment of the offline corpus, in this process on
  one thread, the WFST search at most 10 % of that segment's Paraformer
  onnxruntime call (best of ``repeat`` each), without hotwords and with 20;
* **throughput**: offline clients, 1 and 2 at once, get at least 0.9× the
  audio seconds per wall second from the server with the LM that they get from
  the same server started with ``--lm-dir none`` (the two measured
  alternately, best of ``repeat``).

    python -m benchmarks.lm_cost --model-root DIR [--lm-dir DIR] [--quantize] [--repeat 3] [FILES...]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import corpus  # noqa: E402
from benchmarks.load import offline_clients  # noqa: E402
from benchmarks.memory import per_connection_mib  # noqa: E402
from benchmarks.server_process import ASR, LM, VAD, rss_mib, running_server  # noqa: E402

HOTWORDS = 20
HOTWORD_WEIGHT = 20
CONNECTIONS = 50
LEVELS = (1, 2)
#: The targets: graph in memory ÷ TLG file, search ÷ Paraformer call (every segment), with ÷ without LM.
MAX_MEMORY_RATIO = 1.5
MAX_SEARCH_RATIO = 0.10
MIN_THROUGHPUT_RATIO = 0.9


def default_lm_dir(model_root: Path) -> Path:
    return Path(model_root) / LM


def pick_hotwords(decoder, count: int = HOTWORDS, weight: int = HOTWORD_WEIGHT) -> Dict[str, int]:
    """``count`` multi-character words the LM spells completely, spread evenly over its lexicon.

    Deterministic (lexicon order), so every run biases the same words.  CJK
    words first, as Mandarin users give them; others only to make up the count.
    """
    from funasr_wss.models.bias_lm import spell_hotword

    spelt = [w for w in decoder.lexicon if len(w) >= 2 and "<" not in w
             and spell_hotword(w, decoder.lexicon, decoder.token_ids)[1] is None]
    cjk = [w for w in spelt if not w.isascii()]
    pool = cjk if len(cjk) >= count else cjk + [w for w in spelt if w.isascii()]
    picked = [pool[i * len(pool) // count] for i in range(min(count, len(pool)))]
    return {w: weight for w in picked}


def best_of(repeat: int, fn: Callable[[], object]) -> Tuple[object, float]:
    """``fn()``'s result and its fastest wall time over ``repeat`` calls (the least disturbed)."""
    best, out = float("inf"), None
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return out, best


def ratio_summary(search: Sequence[float], model: Sequence[float]) -> Dict[str, object]:
    """Search ÷ Paraformer call per segment: median, p95, max, and over the whole corpus."""
    ratios = np.array(search) / np.array(model)
    return {"median": round(float(np.median(ratios)), 4), "p95": round(float(np.percentile(ratios, 95)), 4),
            "max": round(float(ratios.max()), 4), "worst_segment": int(ratios.argmax()),
            "total": round(sum(search) / sum(model), 4), "meets_target": bool(ratios.max() <= MAX_SEARCH_RATIO)}


def in_process(model_root: Path, quantize: bool, lm_dir: Path, files: Optional[Sequence[Path]] = None,
               repeat: int = 3, log=print) -> Dict[str, object]:
    """Graph figures and the search's cost per VAD segment, here on one thread (no server, no other work).

    The segments and features are the offline pipeline's own (its VAD, the
    shared fbank), so each search sees what the server's would.
    """
    from funasr_wss.models.batching import pad_features
    from funasr_wss.models.ngram_lm import load_lm_dir
    from funasr_wss.models.offline_pipeline import OfflinePipeline
    from funasr_wss.models.onnx_session import RuntimeOptions
    from funasr_wss.models.paraformer import OfflineParaformer
    from funasr_wss.models.vad import FsmnVadModel
    from funasr_wss.models.wfst_decoder import WfstConfig, WfstDecoder

    one = RuntimeOptions(intra_op_threads=1)  # as the server's decoder threads
    asr = OfflineParaformer(Path(model_root) / ASR, quantize, one)
    pipeline = OfflinePipeline(asr, vad=FsmnVadModel(Path(model_root) / VAD, quantize, one))
    started = time.perf_counter()
    lm = load_lm_dir(lm_dir)
    loaded = time.perf_counter()
    decoder = WfstDecoder(lm, asr.vocab.tokens, WfstConfig())  # converts the graph, compiles the search
    built = time.perf_counter()
    graph = {"directory": str(lm_dir), "states": lm.graph.num_states, "arcs": lm.graph.num_arcs,
             "file_bytes": lm.file_bytes, "load_lm_dir_s": round(loaded - started, 3),
             "decoder_s": round(built - loaded, 3), "memory_bytes": decoder.memory_bytes,
             "memory_over_file": round(decoder.memory_bytes / lm.file_bytes, 3)}
    graph["meets_target"] = graph["memory_over_file"] <= MAX_MEMORY_RATIO
    del lm  # as the server: only the decoder's searched form stays
    log(f"lm: TLG {graph['states']} states, {graph['arcs']} arcs, {graph['file_bytes'] / 2**20:.1f} MiB; "
        f"loaded in {graph['load_lm_dir_s']:.2f} + {graph['decoder_s']:.2f} s; in memory ÷ file {graph['memory_over_file']:.2f}")

    hotwords = pick_hotwords(decoder)
    plain, biased = decoder.new_context(), decoder.new_context(hotwords)  # one connection each, as in the server
    names = [i.name for i in asr.session.get_inputs()[:2]]
    paths = corpus.offline_files(files)
    segments: List[Dict[str, object]] = []
    for path, wave in zip(paths, corpus.load(paths)):
        fbank = pipeline.shared_fbank(wave)
        spans = pipeline.speech_segments(wave, fbank)
        for (start, end), feats in zip(spans, pipeline.segment_features(wave, spans, fbank)):
            if feats.shape[0] == 0:
                continue
            inputs = dict(zip(names, pad_features([feats])))
            outputs, model_s = best_of(repeat, lambda: asr.session.run(None, inputs))
            logp, token_num = outputs[0][0], int(outputs[1][0])
            _, search_s = best_of(repeat, lambda: decoder.decode(logp, token_num, plain))
            decoded, hot_s = best_of(repeat, lambda: decoder.decode(logp, token_num, biased))
            segments.append({"file": path.name, "start_ms": start, "end_ms": end, "tokens": token_num,
                             "words": len(decoded.words), "paraformer_s": round(model_s, 6),
                             "search_s": round(search_s, 6), "search_hotwords_s": round(hot_s, 6)})
    model = [s["paraformer_s"] for s in segments]
    search = {"segments": len(segments), "speech_seconds": round(sum(s["end_ms"] - s["start_ms"] for s in segments) / 1000, 1),
              "repeat": repeat, "paraformer_s": round(sum(model), 3),
              "no_hotwords": ratio_summary([s["search_s"] for s in segments], model),
              "hotwords": ratio_summary([s["search_hotwords_s"] for s in segments], model),
              "hotword_problems": len(biased.problems), "rows": segments}
    for key in ("no_hotwords", "hotwords"):
        r = search[key]
        log(f"lm: search ÷ Paraformer ({key}, {len(segments)} segments): median {r['median']:.1%}, "
            f"p95 {r['p95']:.1%}, max {r['max']:.1%}, total {r['total']:.1%}")
    return {"graph": graph, "hotwords": hotwords, "search": search}


def server_figures(model_root: Path, quantize: bool, lm_dir: Path, hotwords: Dict[str, int],
                   files: Optional[Sequence[Path]] = None, decoder_threads: int = 2, repeat: int = 3,
                   connections: int = CONNECTIONS, log=print) -> Dict[str, object]:
    """The server with ``--lm-dir DIR`` and with ``--lm-dir none``, side by side: RSS and offline throughput.

    Both run at once (an idle server costs no CPU), so their measurements can
    alternate, each repeat starting with the other one: a slow spell of the
    machine hits both alike.
    """
    waves = corpus.load(corpus.offline_files(files))
    pcms = [corpus.pcm16(w) for w in waves]
    jobs = corpus.work_list(waves, 1)
    config = {"hotwords": json.dumps(hotwords, ensure_ascii=False)}
    servers: Dict[str, Tuple[int, str]] = {}
    memory: Dict[str, Dict[str, object]] = {}
    samples = {c: {"lm": [], "none": []} for c in LEVELS}
    errors = 0
    with contextlib.ExitStack() as stack:
        for name, lm in (("lm", lm_dir), ("none", None)):
            started = time.perf_counter()
            proc, port = stack.enter_context(running_server(model_root, "offline", quantize, decoder_threads,
                                                            ["--certfile", "0"], lm_dir=lm))
            servers[name] = (proc.pid, f"ws://127.0.0.1:{port}")
            memory[name] = {"start_s": round(time.perf_counter() - started, 2)}
        time.sleep(0.5)
        for name, (pid, url) in servers.items():
            memory[name]["idle_mib"] = round(rss_mib(pid), 1)
            memory[name]["idle_connections"] = asyncio.run(
                per_connection_mib(url, pid, connections, "offline", extra_config=config, silence=b""))
            asyncio.run(offline_clients(url, pcms, jobs, max(LEVELS)))  # warm up every decoder thread (its scratch too)
        for k in range(repeat):
            for c in LEVELS:
                for name in (("lm", "none") if k % 2 == 0 else ("none", "lm")):
                    load = asyncio.run(offline_clients(servers[name][1], pcms, jobs, c))
                    errors += load.errors
                    samples[c][name].append(round(load.throughput, 2))
        for name, (pid, _) in servers.items():
            memory[name]["after_load_mib"] = round(rss_mib(pid), 1)
    rows = []
    for c in LEVELS:
        with_lm, without = max(samples[c]["lm"]), max(samples[c]["none"])
        rows.append({"concurrency": c, "with_lm": with_lm, "without_lm": without, "ratio": round(with_lm / without, 3),
                     "meets_target": with_lm / without >= MIN_THROUGHPUT_RATIO, "samples": samples[c]})
        log(f"lm: c={c} with LM {with_lm:.2f}x, without {without:.2f}x, ratio {with_lm / without:.2f}")
    return {"audio_seconds": round(sum(w.size for w in waves) / corpus.SAMPLE_RATE, 1), "files": len(waves),
            "repeat": repeat, "connections": connections, "server_rss": memory,
            "lm_minus_none_idle_mib": round(memory["lm"]["idle_mib"] - memory["none"]["idle_mib"], 1),
            "throughput": rows, "errors": errors}


def run(model_root: Path, quantize: bool, lm_dir: Optional[Path] = None, files: Optional[Sequence[Path]] = None,
        decoder_threads: int = 2, repeat: int = 3, connections: int = CONNECTIONS, log=print) -> Dict[str, object]:
    """The whole section: in-process figures first (nothing else running), then the two servers."""
    lm_dir = Path(lm_dir) if lm_dir else default_lm_dir(model_root)
    result = in_process(model_root, quantize, lm_dir, files, repeat, log)
    result["server"] = server_figures(model_root, quantize, lm_dir, result["hotwords"], files, decoder_threads,
                                      repeat, connections, log)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-root", required=True, type=Path)
    ap.add_argument("--lm-dir", type=Path, help=f"the n-gram LM (default: <model-root>/{LM})")
    ap.add_argument("--quantize", action="store_true", help="model_quant.onnx everywhere")
    ap.add_argument("--repeat", type=int, default=3, help="measurements per segment and per throughput figure; the best is kept")
    ap.add_argument("--connections", type=int, default=CONNECTIONS, help="idle connections (with 20 hotwords) for the RSS")
    ap.add_argument("--decoder-thread-num", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write the results here too")
    ap.add_argument("files", nargs="*", type=Path, help="audio files (default: the fixture clips)")
    args = ap.parse_args(argv)
    result = run(args.model_root, args.quantize, args.lm_dir, args.files, args.decoder_thread_num, args.repeat,
                 args.connections, log=lambda line: print(line, file=sys.stderr, flush=True))
    from benchmarks.report import lm_table

    print(lm_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
