"""The benchmark's results as a Markdown report and a PNG; the JSON is the results dict itself."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Dict, List, Optional

from benchmarks.lm_cost import MAX_MEMORY_RATIO, MAX_SEARCH_RATIO, MIN_THROUGHPUT_RATIO


def machine() -> Dict[str, object]:
    """What the figures were measured on."""
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            mem_gib = round(int(next(line for line in f if line.startswith("MemTotal")).split()[1]) / 2**20, 1)
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib, "os": platform.platform(),
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__}


def _x(v: Optional[float]) -> str:
    return "–" if v is None else f"{v:.2f}×"


def _s(v: Optional[float]) -> str:
    return "–" if v is None else f"{v:.2f} s"


def offline_table(offline: Dict[str, object]) -> str:
    lines = ["| clients | our server | RTF | latency p50 / p95 | funasr-onnx | models alone (floor) | ours ÷ floor | ours ÷ funasr-onnx |",
             "|---|---|---|---|---|---|---|---|"]
    for r in offline["rows"]:
        floor_ratio = r.get("server_over_floor")
        peer_ratio = r.get("server_over_funasr_onnx")
        lines.append(
            f"| {r['concurrency']} | {_x(r['server'])} | {r['server_rtf']:.4f} | {r['latency_p50']:.2f} / {r['latency_p95']:.2f} s | "
            f"{_x(r.get('funasr_onnx'))} | {_x(r.get('floor'))} | {'–' if floor_ratio is None else f'{floor_ratio:.2f}'} | "
            f"{'–' if peer_ratio is None else f'{peer_ratio:.2f}'} |")
    return "\n".join(lines)


def streaming_table(streaming: Dict[str, object]) -> str:
    lines = ["| streams | first delta p50 | chunk lag p50 / p95 / p99 | worst stream's p95 | final after end p50 / p95 | real-time |",
             "|---|---|---|---|---|---|"]
    for r in streaming["rows"]:
        lines.append(
            f"| {r['streams']} | {_s(r['first_delta_p50'])} | {r['chunk_lag_p50']:.2f} / {r['chunk_lag_p95']:.2f} / "
            f"{r['chunk_lag_p99']:.2f} s | {r['worst_stream_chunk_lag_p95']:.2f} s | "
            f"{_s(r['final_after_end_p50'])} / {_s(r['final_after_end_p95'])} | {'yes' if r['realtime'] else 'no'} |")
    last = streaming["last_segment"]
    lines += [
        "",
        f"Largest real-time stream count ({streaming['start']} starts, {streaming['realtime_rule']}): "
        f"**{'' if streaming.get('limit_found', True) else 'at least '}{streaming['max_realtime_streams']}**.",
        f"Final after end (1 stream, p50) ÷ offline pass on the last segment ({last['segment_seconds']} s of speech, "
        f"{last['seconds']:.3f} s alone): **{_ratio(streaming.get('final_over_last_segment_decode'))}**.",
    ]
    return "\n".join(lines)


def _ratio(v: Optional[float]) -> str:
    return "–" if v is None else f"{v:.2f}"


def memory_table(results: Dict[str, object]) -> str:
    lines = ["| server | idle (models loaded) | peak under load | per idle connection |", "|---|---|---|---|"]
    off = results.get("offline")
    if off:
        top = max(r["concurrency"] for r in off["rows"])
        lines.append(f"| offline | {off['server_rss']['idle_mib']:.0f} MiB | {off['server_rss']['peak_mib']:.0f} MiB "
                     f"(up to {top} clients) | – |")
    st = results.get("streaming")
    if st:
        rss = st["server_rss"]
        conn = rss.get("idle_connection")
        per = f"{conn['per_connection_kib']:.0f} KiB ({conn['connections']} open 2pass sessions)" if conn else "–"
        top = max(r["streams"] for r in st["rows"])
        lines.append(f"| 2pass | {rss['idle_mib']:.0f} MiB | {rss['peak_mib']:.0f} MiB (up to {top} streams) | {per} |")
    return "\n".join(lines)


def cost_table(cost: Dict[str, object]) -> str:
    rows = cost["rows"]  # type: ignore[index]
    stages = sorted({s for r in rows for s in r["stages"]}, key=lambda s: -max(r["stages"].get(s, 0.0) for r in rows))
    lines = ["| stage | " + " | ".join(r["mode"] for r in rows) + " |", "|---|" + "---:|" * len(rows)]
    for s in stages:
        lines.append(f"| {s} | " + " | ".join(f"{r['stages'].get(s, 0.0):.3f}" for r in rows) + " |")
    lines.append("| **total** | " + " | ".join(f"**{r['core_s_per_audio_s']:.3f}**" for r in rows) + " |")
    return "\n".join(lines)


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def lm_table(lm: Dict[str, object]) -> str:
    """The LM section: one row per figure, each target with ✓/✗ (:mod:`benchmarks.lm_cost`)."""
    g, s, srv = lm["graph"], lm["search"], lm["server"]
    rss = srv["server_rss"]
    mib = 2 ** 20

    def conn(name: str) -> str:
        c = rss[name]["idle_connections"]
        return f"{c['rss_with_them_mib'] - c['rss_before_mib']:+.1f} MiB ({c['per_connection_kib']:.0f} KiB each)"

    def per_segment(key: str) -> str:
        r = s[key]
        return (f"median {r['median']:.1%}, p95 {r['p95']:.1%}, max {r['max']:.1%}; "
                f"whole corpus {r['total']:.1%}")

    lines = [
        "| figure | measured | target |", "|---|---|---|",
        f"| TLG.fst | {g['states']:,} states, {g['arcs']:,} arcs, {g['file_bytes'] / mib:.1f} MiB | |",
        f"| load: `load_lm_dir` + `WfstDecoder` (graph conversion) | {g['load_lm_dir_s']:.2f} s + {g['decoder_s']:.2f} s | |",
        f"| search graph in memory ÷ TLG file | {g['memory_over_file']:.2f} ({g['memory_bytes'] / mib:.1f} MiB) | "
        f"≤ {MAX_MEMORY_RATIO} {_mark(g['meets_target'])} |",
        f"| server RSS idle: with LM − without | {rss['lm']['idle_mib']:.0f} − {rss['none']['idle_mib']:.0f} = "
        f"{srv['lm_minus_none_idle_mib']:.0f} MiB | |",
        f"| {srv['connections']} idle connections, {len(lm['hotwords'])} hotwords each | with LM {conn('lm')}; "
        f"without {conn('none')} | |",
        f"| server RSS after the load: with LM − without | {rss['lm']['after_load_mib']:.0f} − "
        f"{rss['none']['after_load_mib']:.0f} = {rss['lm']['after_load_mib'] - rss['none']['after_load_mib']:.0f} MiB | |",
        f"| search ÷ Paraformer call per segment, no hotwords | {per_segment('no_hotwords')} | "
        f"each ≤ {MAX_SEARCH_RATIO:.0%} {_mark(s['no_hotwords']['meets_target'])} |",
        f"| same, {len(lm['hotwords'])} hotwords | {per_segment('hotwords')} | "
        f"each ≤ {MAX_SEARCH_RATIO:.0%} {_mark(s['hotwords']['meets_target'])} |",
    ]
    for r in srv["throughput"]:
        lines.append(f"| throughput, {r['concurrency']} client{'s' if r['concurrency'] > 1 else ''}: with LM ÷ without | "
                     f"{r['with_lm']:.2f}× ÷ {r['without_lm']:.2f}× = {r['ratio']:.2f} | "
                     f"≥ {MIN_THROUGHPUT_RATIO} {_mark(r['meets_target'])} |")
    return "\n".join(lines)


def markdown(results: Dict[str, object]) -> str:
    m = results["machine"]
    out: List[str] = [
        "# Benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['os']}; Python {m['python']}, "
        f"onnxruntime {m['onnxruntime']}.",
        f"Models: `{results['model_root']}` ({'int8 `model_quant.onnx`' if results['quantize'] else 'fp32 `model.onnx`'}); "
        f"server `--decoder-thread-num {results['decoder_threads']}`, one intra-op thread per call.",
        f"Command: `{results['command']}`",
    ]
    if results.get("offline"):
        off = results["offline"]
        out += ["", "## Offline throughput (audio seconds per wall second)", "",
                f"{len(off['files'])} files, {off['audio_seconds']} s of audio per measurement, best of {off.get('repeat', 1)} "
                "(the three systems measured back to back each time); no ITN in any of the three. "
                "funasr-onnx: FunASR's Python runtime (VAD → Paraformer per segment → punctuation) in worker processes; "
                "floor: our pipeline's onnxruntime calls replayed alone on threads; both with min(clients, decoder threads) "
                "workers, one intra-op thread each, like the server.", "", offline_table(off)]
    if results.get("streaming"):
        st = results["streaming"]
        out += ["", "## 2pass streaming", "",
                f"Each stream sends the same {st['audio_seconds']} s utterance in real time (600 ms chunks, "
                "`chunk_size [5, 10, 5]`); chunk lag = delta arrival − send time of the chunk holding its `end_time`.",
                "", streaming_table(st)]
    if results.get("cost"):
        cost = results["cost"]
        out += ["", "## What one live stream costs (core-seconds per audio second)", "",
                f"One stream of the {cost['audio_seconds']} s utterance at a time, in each mode, 600 ms chunks; the "
                "server process's CPU (all threads) split by the stage that spent it "
                f"(`funasr_stage_cpu_seconds_total`); the rest is protocol and scheduling. {cost['cores']} cores ÷ the "
                f"2pass cost = a compute floor of **{cost['two_pass_floor_streams']} real-time 2pass "
                "streams**" + (f" (measured above: {results['streaming']['max_realtime_streams']})"
                               if results.get("streaming") else "") + ".", "", cost_table(cost)]
    if results.get("lm"):
        lm = results["lm"]
        srv, search = lm["server"], lm["search"]
        out += ["", "## n-gram LM (`--lm-dir`)", "",
                f"`{lm['graph']['directory']}`. Search cost: every VAD segment of the offline files "
                f"({search['segments']} segments, {search['speech_seconds']} s of speech), the Paraformer's onnxruntime "
                f"call and the WFST search each timed in one process on one thread, best of {search['repeat']}. "
                f"Throughput: the server started with the LM and with `--lm-dir none`, offline clients over "
                f"{srv['files']} files ({srv['audio_seconds']} s), the two measured alternately, best of {srv['repeat']}.",
                "", lm_table(lm)]
    if results.get("offline") or results.get("streaming"):
        out += ["", "## Memory (server RSS)", "", memory_table(results)]
    out.append("")
    return "\n".join(out)


def plot(results: Dict[str, object], path: Path) -> bool:
    """Throughput vs concurrency and streaming latency percentiles; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    off, st = results.get("offline"), results.get("streaming")
    panels = [p for p in (off, st) if p]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(6 * max(1, len(panels)), 4.2), squeeze=False)
    ax_iter = iter(axes[0])
    if off:
        ax = next(ax_iter)
        cs = [r["concurrency"] for r in off["rows"]]
        ax.plot(cs, [r["server"] for r in off["rows"]], "o-", label="this server")
        if all("funasr_onnx" in r for r in off["rows"]):
            ax.plot(cs, [r["funasr_onnx"] for r in off["rows"]], "s--", label="funasr-onnx")
            ax.plot(cs, [r["floor"] for r in off["rows"]], ":", color="grey", label="models alone (floor)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(cs, [str(c) for c in cs])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("audio seconds per second")
        ax.set_title("Offline throughput")
        ax.set_ylim(bottom=0)
        ax.legend()
        ax.grid(alpha=0.3)
    if st:
        ax = next(ax_iter)
        ns = [r["streams"] for r in st["rows"]]
        for key, label in (("chunk_lag_p50", "chunk lag p50"), ("chunk_lag_p95", "chunk lag p95"),
                           ("chunk_lag_p99", "chunk lag p99"), ("final_after_end_p50", "final after end p50")):
            ax.plot(ns, [r[key] for r in st["rows"]], "o-", label=label)
        ax.axhline(1.0, color="red", lw=0.8, ls="--", label="real-time limit (p95)")
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel(f"concurrent 2pass streams ({st['start']})")
        ax.set_ylabel("seconds")
        ax.set_title("2pass latency")
        ax.set_ylim(bottom=0)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
