"""The 2pass profile through real WebSocket clients: ``2pass``, ``online`` and ``offline`` modes.

Expected results come from the models run directly (the offline VAD for segment
boundaries, the 2pass stream for texts), so these tests check what the server
adds: message shapes and order, one final per end signal, pacing, reuse,
errors, and connections not affecting one another.
"""
from __future__ import annotations

import io
import json
import threading
import time
import wave
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import pytest
from websockets.sync.client import connect

from funasr_wss.models.audio import pcm16_to_float, resample
from funasr_wss.models.live_stream import FINAL_MARK, PartialText, SegmentText
from funasr_wss.server.session import SessionLimits
from funasr_wss.server.streaming_session import PCM_ONLY_ERROR, StreamingSession
from tests.harness import ServerThread, fixture_settings_2pass
from tests.helpers import pcm_of
from tests.paths import ASR_PLAIN_DIR, AUDIO, PUNC_DIR, audio_clips

CHUNK = 19200  # 600 ms of 16 kHz int16: what FunASR's clients send per chunk_size [5, 10, 5]
CONFIG = {"chunk_size": [5, 10, 5], "wav_name": "t", "is_speaking": True}


@dataclass
class Run:
    """What one client saw: messages with their arrival times, and when it sent things."""

    messages: List[dict] = field(default_factory=list)
    times: List[float] = field(default_factory=list)
    first_audio_at: float = 0.0
    end_sent_at: float = 0.0

    @property
    def final(self) -> dict:
        finals = [m for m in self.messages if m.get("is_final")]
        assert len(finals) == 1, self.messages
        assert self.messages[-1] is finals[0]
        return finals[0]

    def of_mode(self, mode: str) -> List[dict]:
        return [m for m in self.messages if m.get("mode") == mode]


def stream(url: str, pcm: bytes, mode: str, stride: int = CHUNK, realtime: bool = False, rate: int = 16000, **config) -> Run:
    """Send one utterance like FunASR's clients and read until the final message."""
    run = Run()
    with connect(url, max_size=None) as ws:

        def reader():
            while True:
                msg = json.loads(ws.recv(timeout=120))
                run.messages.append(msg)
                run.times.append(time.perf_counter())
                if msg.get("is_final"):
                    return

        t = threading.Thread(target=reader)
        t.start()
        ws.send(json.dumps({**CONFIG, "mode": mode, **config}))
        start = run.first_audio_at = time.perf_counter()
        for k, i in enumerate(range(0, len(pcm), stride)):
            if realtime:
                # send on the audio's own clock
                delay = start + i / 2 / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            ws.send(pcm[i : i + stride])
        if realtime:
            time.sleep(max(0.0, start + len(pcm) / 2 / rate - time.perf_counter()))
        run.end_sent_at = time.perf_counter()
        ws.send(json.dumps({"is_speaking": False}))
        t.join(120)
        assert not t.is_alive(), "no final message"
    return run


def recv_until_final(ws, timeout: float = 30) -> List[dict]:
    msgs: List[dict] = []
    while not msgs or not msgs[-1]["is_final"]:
        msgs.append(json.loads(ws.recv(timeout=timeout)))
    return msgs


def model_events(server, pcm: bytes, mode: str, rate: int = 16000):
    """The 2pass stream's events for the whole utterance, straight from the models."""
    rec = server.models
    waveform = resample(pcm16_to_float(pcm), rate, rec.sample_rate)
    s = rec.new_stream(online=mode in ("online", "2pass"), offline=mode in ("offline", "2pass"))
    return s.accept(waveform) + s.accept(np.zeros(0, np.float32), is_final=True)


def online_text_by_segment(events) -> Dict[int, str]:
    out: Dict[int, str] = {}
    for ev in events:
        if isinstance(ev, PartialText):
            out[ev.segment] = out.get(ev.segment, "") + ev.text
    return out


def assert_segment_messages(msgs: List[dict], segments: List[SegmentText]) -> None:
    assert len(msgs) == len(segments)
    for msg, seg in zip(msgs, segments):
        assert msg["mode"] == "2pass-offline"
        assert msg["text"] == seg.transcript.text
        assert (msg["start_time"], msg["end_time"]) == (seg.start_ms, seg.end_ms)
        assert json.loads(msg["timestamp"]) == [list(s) for s in seg.transcript.timestamps]
        assert " " not in msg["timestamp"]
        assert msg["stamp_sents"] == [p.to_json() for p in seg.transcript.sentences]
        assert msg["slice_type"] == 2


# ---------------------------------------------------------------------- the three modes


def test_2pass_mode_deltas_then_one_offline_message_per_vad_segment(two_pass_server):
    pcm = pcm_of("long02_vad_30s_48k.wav")
    run = stream(two_pass_server.url, pcm, "2pass")
    # segment boundaries are the real VAD's on this audio
    vad_segments = two_pass_server.models.vad.segments(pcm16_to_float(pcm))
    offline = [m for m in run.of_mode("2pass-offline") if "start_time" in m]
    assert [(m["start_time"], m["end_time"]) for m in offline] == [tuple(s) for s in vad_segments]
    assert len(vad_segments) == 5
    events = model_events(two_pass_server, pcm, "2pass")
    assert_segment_messages(offline, [ev for ev in events if isinstance(ev, SegmentText)])
    # every segment ended before the end of the audio: the final message is the empty one
    assert run.final == {"mode": "2pass-offline", "wav_name": "t", "text": "", "is_final": True}
    deltas = run.of_mode("2pass-online")
    assert deltas and all(m["text"] and m["is_final"] is False for m in deltas)
    assert {m["mode"] for m in run.messages} == {"2pass-online", "2pass-offline"}
    # deltas of a segment, then its offline text; clients replace the one with the other
    per_segment: Dict[int, str] = {}
    k = 0
    for m in run.messages[:-1]:
        if m["mode"] == "2pass-online":
            per_segment[k] = per_segment.get(k, "") + m["text"]
            assert m["index"] == k and m["slice_type"] == (1 if per_segment[k] != m["text"] else 0)
        else:
            assert m["index"] == k
            k += 1
    assert per_segment == online_text_by_segment(events)
    # each delta says how far the server had heard: inside its segment (the VAD closes it up
    # to 800 ms after its end, plus one stride), in the VAD's 50 ms steps, never going back
    heard = [m["end_time"] for m in deltas]
    assert heard == sorted(heard) and all(h % 50 == 0 for h in heard)
    for m in deltas:
        start, end = vad_segments[m["index"]]
        assert start < m["end_time"] <= end + 800 + 600


def assert_pieces_are_timed(msg: dict) -> None:
    """Every sentence piece holds tokens and their times (none with ``start: -1``)."""
    for p in msg.get("stamp_sents", []):
        assert p["text_seg"] and p["ts_list"], msg
        assert (p["start"], p["end"]) == (p["ts_list"][0][0], p["ts_list"][-1][1]), msg
        assert 0 <= p["start"] < p["end"], msg


def test_a_segment_text_that_begins_with_the_carried_mark_makes_no_empty_piece(two_pass_server):
    """The realtime punctuation carries the open sentence into the next segment, so the mark that
    closes it comes at the start of that segment's text; it must not become a piece of its own."""
    run = stream(two_pass_server.url, pcm_of("long02_vad_30s_48k.wav"), "2pass")
    offline = [m for m in run.of_mode("2pass-offline") if m["text"]]
    assert any(m["text"][0] in "。？" for m in offline), "the clip no longer shows the case"
    for m in offline:
        assert_pieces_are_timed(m)
        # the pieces hold every timed token of the text
        assert sum(len(p["ts_list"]) for p in m["stamp_sents"]) == len(json.loads(m["timestamp"]))


@pytest.mark.parametrize("clip", [p.name for p in audio_clips()])
def test_delta_end_times_never_go_back(two_pass_server, clip):
    """``end_time`` of the deltas (how far the server had heard) only grows within an utterance, in
    both streaming modes.  The online mode's last text of a segment comes when the VAD closes it,
    up to 800 ms after the segment's end, from all the audio the online model had by then."""
    pcm = pcm_of(clip)
    heard_all = len(pcm) // 32  # ms of audio sent
    for mode, label in (("online", "online"), ("2pass", "2pass-online")):
        run = stream(two_pass_server.url, pcm, mode)
        heard = [m["end_time"] for m in run.messages if m["mode"] == label and not m["is_final"]]
        assert heard == sorted(heard), (mode, heard)
        assert all(0 < h <= heard_all for h in heard), (mode, heard)
        for m in run.of_mode("2pass-offline"):
            assert_pieces_are_timed(m)


def test_online_mode_gives_only_online_deltas_and_a_final(two_pass_server):
    pcm = pcm_of("zh02_llamacpp_sample.wav")
    run = stream(two_pass_server.url, pcm, "online")
    assert {m["mode"] for m in run.messages} == {"online"}
    final = run.final
    deltas = run.messages[:-1]
    assert all(m["text"] and m["is_final"] is False for m in deltas)
    assert "timestamp" not in final and "stamp_sents" not in final
    events = model_events(two_pass_server, pcm, "online")
    # all the online text, the tail flushed by the end signal included, and nothing else
    assert "".join(m["text"] for m in run.messages) == "".join(online_text_by_segment(events).values())
    assert len(online_text_by_segment(events)) == 2  # both segments of the clip were decoded
    # the second segment ends with the audio: its tail comes in the final message
    tail = [ev.text for ev in events if isinstance(ev, PartialText) and ev.segment == 1 and ev.ends_segment]
    assert final["text"] == "".join(tail) and final["text"]


def test_offline_mode_gives_offline_messages_per_segment_and_a_final(two_pass_server):
    pcm = pcm_of("zh02_llamacpp_sample.wav")
    run = stream(two_pass_server.url, pcm, "offline")
    assert {m["mode"] for m in run.messages} == {"2pass-offline"}
    segments = [ev for ev in model_events(two_pass_server, pcm, "offline") if isinstance(ev, SegmentText)]
    assert len(segments) == 2
    assert_segment_messages(run.messages, segments)
    assert [m["is_final"] for m in run.messages] == [False, True]
    # the last segment closes the utterance: a closing mark
    assert run.final["text"].endswith(FINAL_MARK)


def test_offline_mode_decodes_container_files_like_pcm(two_pass_server):
    pcm = pcm_of("zh02_llamacpp_sample.wav")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm)
    as_pcm = stream(two_pass_server.url, pcm, "offline")
    as_wav = stream(two_pass_server.url, buf.getvalue(), "offline", wav_format="wav")
    assert as_wav.messages == as_pcm.messages
    mp3 = (AUDIO / "zh14_sensevoice_zh.mp3").read_bytes()
    run = stream(two_pass_server.url, mp3, "offline", wav_format="mp3")
    assert run.final["mode"] == "2pass-offline" and run.final["text"]
    assert run.final["end_time"] > run.final["start_time"] > 0


def test_real_time_pacing_all_modes_at_once(two_pass_server):
    """Three clients streaming on the audio's clock, concurrently: deltas while speaking,
    the first segment corrected before the audio ends, one final after the end signal, and
    the same messages as each client alone at full speed."""
    pcm = pcm_of("zh02_llamacpp_sample.wav")  # 6 s: speech 0.77-2.40 s and 3.38-5.98 s
    solo = {mode: stream(two_pass_server.url, pcm, mode).messages for mode in ("2pass", "online", "offline")}
    runs: Dict[str, Run] = {}

    def client(mode):
        runs[mode] = stream(two_pass_server.url, pcm, mode, stride=1920, realtime=True)  # 60 ms strides

    threads = [threading.Thread(target=client, args=(m,)) for m in solo]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for mode, run in runs.items():
        assert run.messages == solo[mode], mode
        run.final
    two = runs["2pass"]
    clock = [t - two.first_audio_at for t in two.times]
    first_delta = clock[two.messages.index(two.of_mode("2pass-online")[0])]
    first_offline = clock[two.messages.index(two.of_mode("2pass-offline")[0])]
    end = two.end_sent_at - two.first_audio_at
    # a delta needs 600 ms of speech after the VAD's start at 0.77 s; the VAD closes the first
    # segment after 800 ms of silence (≈3.2 s); both well before the audio ends at 6 s
    assert 0.77 + 0.6 <= first_delta < 3.0
    assert 2.4 + 0.5 < first_offline < end - 1.0
    assert clock[-1] >= end  # the final answers the end signal
    online_clock = [t - runs["online"].first_audio_at for t in runs["online"].times]
    assert online_clock[0] < 3.0


def test_concurrent_streams_equal_each_alone(two_pass_server):
    jobs = [
        ("2pass", "long02_vad_30s_48k.wav"),
        ("2pass", "zh02_llamacpp_sample.wav"),
        ("online", "en02_libri_1089-134686-0001.wav"),
        ("offline", "zh04_triton_long.wav"),
        ("2pass", "zh01_asr_example_zh.wav"),
    ]
    pcms = {name: pcm_of(name) for _, name in jobs}
    solo = [stream(two_pass_server.url, pcms[name], mode).messages for mode, name in jobs]
    together: List[Optional[List[dict]]] = [None] * len(jobs)

    def client(k, mode, name):
        together[k] = stream(two_pass_server.url, pcms[name], mode, stride=3200 + 800 * k).messages

    threads = [threading.Thread(target=client, args=(k, m, n)) for k, (m, n) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert together == solo


# ---------------------------------------------------------------------- session rules


def test_reuse_after_the_final_and_a_bare_end_signal(two_pass_server):
    pcm = pcm_of("zh02_llamacpp_sample.wav")
    with connect(two_pass_server.url) as ws:
        runs = []
        for k in range(2):
            ws.send(json.dumps({**CONFIG, "mode": "2pass", "wav_name": f"u{k}"} if k == 0 else {"wav_name": f"u{k}"}))
            for i in range(0, len(pcm), CHUNK):
                ws.send(pcm[i : i + CHUNK])
            ws.send(json.dumps({"is_speaking": False}))
            msgs = recv_until_final(ws)
            runs.append(msgs)
        # chunk_size stayed; times restart at 0; the name changed
        assert [dict(m, wav_name="", index=0) for m in runs[0]] == [dict(m, wav_name="", index=0) for m in runs[1]]
        assert {m["wav_name"] for m in runs[1]} == {"u1"}
        ws.send(json.dumps({"is_speaking": False}))
        assert json.loads(ws.recv(timeout=10)) == {"mode": "2pass-offline", "wav_name": "u1", "text": "", "is_final": True}
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)
    # the index of sentences goes on across utterances, like the reference's
    assert runs[1][0]["index"] == len([m for m in runs[0] if m["mode"] == "2pass-offline"])


def test_8khz_pcm_is_resampled(two_pass_server):
    with wave.open(str(AUDIO / "k8_BAC009S0764W0121_8k.wav")) as w:
        assert w.getframerate() == 8000
        pcm8 = w.readframes(w.getnframes())
    run = stream(two_pass_server.url, pcm8, "2pass", stride=9600, audio_fs=8000, rate=8000)
    events = model_events(two_pass_server, pcm8, "2pass", rate=8000)
    segments = [ev for ev in events if isinstance(ev, SegmentText)]
    assert segments and segments[0].start_ms > 2000  # the clip starts with 2.7 s of silence
    assert_segment_messages(run.of_mode("2pass-offline"), segments)
    assert "".join(m["text"] for m in run.of_mode("2pass-online")) == "".join(online_text_by_segment(events).values())


def test_audio_before_the_first_config_is_dropped(two_pass_server):
    pcm = pcm_of("zh01_asr_example_zh.wav")
    plain = stream(two_pass_server.url, pcm, "2pass")
    with connect(two_pass_server.url) as ws:
        ws.send(pcm[: CHUNK * 4])
        ws.send(json.dumps({**CONFIG, "mode": "2pass"}))
        for i in range(0, len(pcm), CHUNK):
            ws.send(pcm[i : i + CHUNK])
        ws.send(json.dumps({"is_speaking": False}))
        msgs = recv_until_final(ws)
    assert msgs == plain.messages


@pytest.mark.parametrize("config", [{"mode": "2pass"}, {"mode": "online"}, {}])
def test_streaming_mode_without_chunk_size_gets_an_error(two_pass_server, config):
    pcm = pcm_of("zh01_asr_example_zh.wav")
    with connect(two_pass_server.url) as ws:
        ws.send(json.dumps({"wav_name": "x", **config}))
        err = json.loads(ws.recv(timeout=10))
        assert err["is_final"] is True and err["text"] == "" and "chunk_size" in err["error"]
        for i in range(0, len(pcm), CHUNK):  # ignored: no valid configuration yet
            ws.send(pcm[i : i + CHUNK])
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1.0)
        ws.send(json.dumps({"chunk_size": "5,10,5"}))  # the string form works too
        ws.send(pcm)
        ws.send(json.dumps({"is_speaking": False}))
        msgs = recv_until_final(ws)
    assert msgs and all("error" not in m for m in msgs)


@pytest.mark.parametrize("bad", ['"5,10"', "[5, 10, 5, 5]", '"a,b,c"', "[5, 0, 5]", "{}", "5"])
def test_malformed_chunk_size_gets_an_error(two_pass_server, bad):
    with connect(two_pass_server.url) as ws:
        ws.send('{"mode": "2pass", "chunk_size": %s}' % bad)
        err = json.loads(ws.recv(timeout=10))
        assert err["is_final"] is True and "chunk_size" in err["error"]


@pytest.mark.parametrize("mode", ["2pass", "online"])
def test_streaming_modes_refuse_container_files_and_recover(two_pass_server, mode):
    pcm = pcm_of("zh01_asr_example_zh.wav")
    with connect(two_pass_server.url) as ws:
        ws.send(json.dumps({**CONFIG, "mode": mode, "wav_format": "mp3"}))
        ws.send((AUDIO / "zh14_sensevoice_zh.mp3").read_bytes())
        err = json.loads(ws.recv(timeout=10))
        assert err["is_final"] is True and err["text"] == PCM_ONLY_ERROR and "error" in err
        ws.send(json.dumps({"is_speaking": False}))  # ends the refused utterance quietly
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)
        ws.send(json.dumps({"wav_format": "pcm"}))
        ws.send(pcm)
        ws.send(json.dumps({"is_speaking": False}))
        msgs = recv_until_final(ws)
        assert msgs[-1]["text"] and "error" not in msgs[-1]


def test_garbage_file_in_offline_mode_gets_one_final_with_an_error(two_pass_server):
    with connect(two_pass_server.url) as ws:
        ws.send(json.dumps({"mode": "offline", "wav_format": "mp3", "wav_name": "g"}))
        ws.send(b"\x00\x01not audio at all" * 100)
        ws.send(json.dumps({"is_speaking": False}))
        msg = json.loads(ws.recv(timeout=10))
        assert msg["is_final"] is True and msg["text"] == "" and msg["error"] and msg["wav_name"] == "g"


def test_odd_strides_give_the_same_messages(two_pass_server):
    pcm = pcm_of("zh02_llamacpp_sample.wav")
    assert stream(two_pass_server.url, pcm, "2pass", stride=1001).messages == stream(two_pass_server.url, pcm, "2pass").messages


# ---------------------------------------------------------------------- hotwords

SHORT = CHUNK * 5  # 3 s of zh01: enough for text in every mode, quick to decode


@pytest.fixture(scope="module")
def online_reference(two_pass_server) -> List[dict]:
    """The online mode's messages for the short clip, the configuration sent without hotwords."""
    return stream(two_pass_server.url, pcm_of("zh01_asr_example_zh.wav")[:SHORT], "online", itn=False).messages


@pytest.mark.parametrize("hotwords,dropped", [
    ('{"阿里巴巴": "heavy", "达摩院": 20}', ["阿里巴巴"]),
    ('{"阿里巴巴": 101}', ["阿里巴巴"]),
    ('{"阿里巴巴": -1, "two words": 20, "": 5}', ["阿里巴巴", ""]),
    ("一二三四五六七八九十一 达摩院", ["一二三四五六七八九十一"]),
    ("{" + ",".join(f'"w{i}": 5' for i in range(1001)) + "}", ["w1000"]),
    ('{"x": 1', None),  # unreadable: no hotword of the client's, all the rest applied
    ('["阿里巴巴"]', None),
    (["阿里巴巴"], None),
    (42, None),
])
def test_bad_hotwords_get_a_warning_and_the_configuration_stays(two_pass_server, online_reference, hotwords, dropped):
    """A bad hotword used to cost the whole configuration (chunk_size too: no text at all).  Now the
    client gets one warning, not final and without text, and then exactly the results it would get
    without hotwords."""
    pcm = pcm_of("zh01_asr_example_zh.wav")[:SHORT]
    run = stream(two_pass_server.url, pcm, "online", itn=False, hotwords=hotwords)
    warning, rest = run.messages[0], run.messages[1:]
    assert set(warning) == {"mode", "wav_name", "text", "is_final", "warning"}
    assert (warning["mode"], warning["wav_name"], warning["text"], warning["is_final"]) == ("online", "t", "", False)
    if dropped is None:
        assert warning["warning"].startswith("ignored 'hotwords'")
    else:
        assert warning["warning"].startswith(f"dropped {len(dropped)} hotword")
        for word in dropped:
            assert repr(word) in warning["warning"]
    assert not [m for m in run.messages if "warning" in m or "error" in m][1:]
    assert rest == online_reference and rest[-1]["text"]


def test_comma_joined_hotwords_of_funasr_client_2026_02_are_read_as_words(two_pass_server):
    """FunASR's Python client since 2026-02 joins its hotword file with commas: three words, no warning
    (read as one word, 11 characters long, it used to be refused with the whole configuration)."""
    pcm = pcm_of("zh01_asr_example_zh.wav")[:SHORT]
    run = stream(two_pass_server.url, pcm, "2pass", hotwords="阿里巴巴,达摩院,通义千问")
    assert not [m for m in run.messages if "warning" in m or "error" in m]
    assert "".join(m["text"] for m in run.messages)
    assert run.messages == stream(two_pass_server.url, pcm, "2pass").messages


def _session(send, **kwargs) -> StreamingSession:
    from funasr_wss.server.metrics import ServerMetrics

    return StreamingSession(None, None, send, metrics=ServerMetrics(), conn_id="c9", **kwargs)


def test_hotwords_are_merged_and_kept_per_connection():
    sent: List[str] = []

    async def send(text):
        sent.append(text)

    import asyncio

    session = _session(send, server_hotwords={"达摩院": 10, "魔搭": 5})
    asyncio.run(session.on_text(json.dumps({**CONFIG, "hotwords": '{"阿里巴巴": 20, "魔搭": "30"}'})))
    assert sent == []
    assert session.hotwords == {"达摩院": 10, "魔搭": 30, "阿里巴巴": 20}
    # later messages do not change them (protocol: first message only), nor warn about them
    asyncio.run(session.on_text(json.dumps({"hotwords": "其他"})))
    asyncio.run(session.on_text(json.dumps({"hotwords": 5})))
    assert session.hotwords == {"达摩院": 10, "魔搭": 30, "阿里巴巴": 20} and sent == []
    other = _session(send, server_hotwords={"达摩院": 10})
    asyncio.run(other.on_text(json.dumps({**CONFIG, "hotwords": "通义，千问,阿里巴巴"})))
    assert other.hotwords == {"达摩院": 10, "通义": 20, "千问": 20, "阿里巴巴": 20} and sent == []


def test_a_hotword_warning_is_logged_counted_and_sent_once(caplog):
    import asyncio
    import logging

    sent: List[dict] = []

    async def send(text):
        sent.append(json.loads(text))

    session = _session(send, server_hotwords={"魔搭": 5})
    config = {**CONFIG, "mode": "2pass", "wav_name": "hw", "itn": False,
              "hotwords": '{"阿里巴巴": -1, "一二三四五六七八九十一": 20, "达摩院": 30}'}
    with caplog.at_level(logging.INFO, logger="funasr_wss.server.session"):
        asyncio.run(session.on_text(json.dumps(config, ensure_ascii=False)))
    assert len(sent) == 1
    # labelled like the final results of the mode: FunASR's Python client (until 2026-07) ends its offline
    # mode on any message labelled "offline"
    assert sent[0] == {"mode": "2pass-offline", "wav_name": "hw", "text": "", "is_final": False, "warning": sent[0]["warning"]}
    assert "'阿里巴巴' (weight -1 is not between 0 and 100)" in sent[0]["warning"]
    assert "'一二三四五六七八九十一' (longer than 10 characters)" in sent[0]["warning"]
    # everything else applied, the valid hotword merged with the server's
    assert session.configured and session.config.chunk_size == (5, 10, 5) and session.config.itn is False
    assert session.hotwords == {"魔搭": 5, "达摩院": 30}
    [record] = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert record.levelno == logging.INFO and record.conn == "c9" and "阿里巴巴" in record.getMessage()
    assert b'funasr_errors_total{kind="bad_hotword"} 1.0' in session.metrics.render()


def test_streaming_utterance_cap():
    settings = fixture_settings_2pass()
    pcm = pcm_of("zh02_llamacpp_sample.wav")
    with ServerThread(settings, limits=SessionLimits(max_utterance_seconds=3)) as server:
        with connect(server.url) as ws:
            ws.send(json.dumps({**CONFIG, "mode": "2pass"}))
            for i in range(0, len(pcm), CHUNK):
                ws.send(pcm[i : i + CHUNK])
            msgs = recv_until_final(ws)
            assert "too long" in msgs[-1]["error"]
            ws.send(json.dumps({"is_speaking": False}))
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.5)
            # the next utterance is served
            ws.send(pcm[: CHUNK * 4])
            ws.send(json.dumps({"is_speaking": False}))
            msgs = recv_until_final(ws)
            assert "error" not in msgs[-1]


def test_2pass_with_a_plain_paraformer_and_offline_punctuation():
    """Exports without timestamps give no ``timestamp``; an offline punctuation model punctuates each segment."""
    settings = fixture_settings_2pass(model_dir=str(ASR_PLAIN_DIR), punc_dir=str(PUNC_DIR))
    pcm = pcm_of("zh02_llamacpp_sample.wav")
    with ServerThread(settings) as server:
        assert server.models.realtime_punctuator is None and server.models.pipeline.punctuator is not None
        run = stream(server.url, pcm, "2pass")
    offline = run.of_mode("2pass-offline")
    assert len(offline) == 2 and offline[-1]["is_final"] is True
    for m in offline:
        assert "timestamp" not in m and "stamp_sents" not in m and m["text"]
    # the offline export always ends a text with a sentence mark
    assert all(m["text"][-1] in "。？" for m in offline)


def test_a_model_failure_costs_the_utterance_not_the_connection(two_pass_server, monkeypatch):
    from funasr_wss.server import recognizer

    pcm = pcm_of("zh01_asr_example_zh.wav")
    original = recognizer.LiveUtterance.feed_pcm

    def broken(self, data, final=False):
        raise RuntimeError("simulated onnxruntime failure")

    with connect(two_pass_server.url) as ws:
        monkeypatch.setattr(recognizer.LiveUtterance, "feed_pcm", broken)
        ws.send(json.dumps({**CONFIG, "mode": "2pass"}))
        ws.send(pcm[:CHUNK])
        err = json.loads(ws.recv(timeout=10))
        assert err["is_final"] is True and "internal error" in err["error"]
        ws.send(json.dumps({"is_speaking": False}))  # closes the failed utterance quietly
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)
        monkeypatch.setattr(recognizer.LiveUtterance, "feed_pcm", original)
        ws.send(pcm)
        ws.send(json.dumps({"is_speaking": False}))
        msgs = recv_until_final(ws)
        assert msgs[-1]["text"] and "error" not in msgs[-1]


# ---------------------------------------------------------------------- the is_end handshake

END = json.dumps({"is_speaking": False, "is_end": True})  # FunASR's Python client since 2026-07


def recv_until_end_ack(ws, timeout: float = 30) -> List[dict]:
    msgs: List[dict] = []
    while not msgs or not msgs[-1].get("is_end"):
        msgs.append(json.loads(ws.recv(timeout=timeout)))
    return msgs


@pytest.mark.parametrize("mode", ["2pass", "online", "offline"])
def test_is_end_is_acknowledged_after_the_final_and_the_connection_stays(two_pass_server, mode):
    """The results come first, unchanged (clients that stop at the first is_final see nothing new),
    then one acknowledgement; the connection then serves the next utterance as before."""
    pcm = pcm_of("zh01_asr_example_zh.wav")[:SHORT]
    plain = stream(two_pass_server.url, pcm, mode).messages
    with connect(two_pass_server.url) as ws:
        ws.send(json.dumps({**CONFIG, "mode": mode}))
        ws.send(pcm)
        ws.send(END)
        msgs = recv_until_end_ack(ws)
        assert msgs[:-1] == plain and "".join(m["text"] for m in plain)
        label = "online" if mode == "online" else "2pass-offline"  # that of the final result
        assert msgs[-1] == {"mode": label, "wav_name": "t", "text": "", "is_final": True, "is_end": True}
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)
        # reused: a plain end signal gets the plain answer, no acknowledgement
        ws.send(json.dumps({"wav_name": "again"}))
        ws.send(pcm)
        ws.send(json.dumps({"is_speaking": False}))
        again = recv_until_final(ws)
        assert [m["text"] for m in again] == [m["text"] for m in plain]
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)
        # a bare is_end (no audio): the empty final, then the acknowledgement
        ws.send(END)
        assert [(m["text"], m["is_final"], m.get("is_end")) for m in recv_until_end_ack(ws)] == [
            ("", True, None), ("", True, True)]


def test_is_end_after_a_failed_utterance_is_acknowledged_with_the_error(two_pass_server):
    """As FunASR's Python server does: is_final false and the error, so its client reports the failure
    at once instead of waiting 300 s for an acknowledgement."""
    with connect(two_pass_server.url) as ws:
        ws.send(json.dumps({**CONFIG, "mode": "2pass", "wav_format": "mp3", "wav_name": "f"}))
        ws.send((AUDIO / "zh14_sensevoice_zh.mp3").read_bytes())
        err = json.loads(ws.recv(timeout=10))
        assert err["is_final"] is True and err["text"] == PCM_ONLY_ERROR
        ws.send(END)
        ack = json.loads(ws.recv(timeout=10))
        assert ack == {"mode": "2pass-offline", "wav_name": "f", "text": "", "is_final": False, "is_end": True,
                       "error": err["error"]}
    with connect(two_pass_server.url) as ws:  # a streaming mode never configured: the error, then the ack
        ws.send(json.dumps({"mode": "online", "wav_name": "n"}))
        assert "chunk_size" in json.loads(ws.recv(timeout=10))["error"]
        ws.send(END)
        err, ack = json.loads(ws.recv(timeout=10)), json.loads(ws.recv(timeout=10))
        assert "chunk_size" in err["error"] and err.get("is_end") is None
        assert ack == {"mode": "online", "wav_name": "n", "text": "", "is_final": False, "is_end": True, "error": err["error"]}
    with connect(two_pass_server.url) as ws:  # the end message itself is bad
        ws.send(json.dumps({**CONFIG, "mode": "2pass"}))
        ws.send(json.dumps({"is_speaking": False, "is_end": True, "audio_fs": 0}))
        err, ack = json.loads(ws.recv(timeout=10)), json.loads(ws.recv(timeout=10))
        assert "audio_fs" in err["error"] and err["is_final"] is True and err.get("is_end") is None
        assert ack == {"mode": "2pass-offline", "wav_name": "t", "text": "", "is_final": False, "is_end": True,
                       "error": err["error"]}
