"""Clients already deployed in the field, unchanged, against our server.

* ``funasr-client`` from PyPI (atomiechen/FunASR-Client, MIT): its own code, sync and async
  (0.1.5: 0.1.6's sync ``close()`` deadlocks on its own lock whatever the server, see pyproject.toml).
* xiaozhi-esp32-server's ``fun_server`` ASR provider
  (``main/xiaozhi-server/core/providers/asr/fun_server.py``): its wire flow, written here
  with ``websockets`` exactly as the provider drives it (it cannot be imported on its own).
* FunASR's Python client (``runtime/python/websocket/funasr_wss_client.py``): its wire flow
  and what it prints, as released from 2024-01 on: JSON-object hotwords until 2026-02, the
  hotword file's words joined with commas since, and the ``is_end`` handshake since 2026-07.
* FunASR's HTML5 page (``runtime/html5/static``): the message shapes it sends.

The fixture models have random weights, so the expected texts are what our own models
produce for the same audio, never hard-coded strings.  Every client run is bounded by a
deadline: a client that would wait forever makes a test fail, never hang.
"""
from __future__ import annotations

import asyncio
import json
import os
import ssl
import threading
import time
import warnings
import wave
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import funasr_client
import numpy as np
import pytest
import websockets
from websockets.sync.client import connect

from funasr_wss.models.audio import load_audio_file, pcm16_to_float, resample
from funasr_wss.models.live_stream import PartialText, SegmentText
from funasr_wss.server.http_routes import AccessPolicy
from funasr_wss.server.tls import TlsPolicy, self_signed_pair, server_context
from tests.harness import ServerThread, fixture_settings, fixture_settings_2pass
from tests.helpers import wav_pcm_and_rate
from tests.paths import AUDIO

KEY = "xiaozhi-key"
ZH01 = AUDIO / "zh01_asr_example_zh.wav"  # 5.5 s, 16 kHz, one stretch of speech
ZH05 = AUDIO / "zh05_BAC009S0724W0121.wav"  # 4.3 s, 16 kHz, a plain 44-byte wav header
MP3 = AUDIO / "zh14_sensevoice_zh.mp3"
DEADLINE = 60.0  # seconds any one client run may take before the test calls it hung

# funasr-client's sync API calls websockets.sync.client.connect() without a with-block, which websockets
# deprecated in 17.1 (a warning only; it still works).
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning")


# ---------------------------------------------------------------------- audio and expectations


def two_segments_pcm() -> bytes:
    """zh01, 1.5 s of silence, zh05: the VAD closes a segment in the pause (two results)."""
    a, _ = wav_pcm_and_rate(ZH01)
    b, _ = wav_pcm_and_rate(ZH05)
    return a + bytes(2 * 24000) + b


def write_wav(path, pcm: bytes, rate: int = 16000):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


def offline_truth(server, pcm: bytes, rate: int = 16000, itn: bool = True):
    """The offline profile's answer: the whole pipeline on the utterance."""
    waveform = pcm16_to_float(pcm)
    if rate != server.models.sample_rate:
        waveform = resample(waveform, rate, server.models.sample_rate)
    return server.models.transcribe(waveform, use_itn=itn)


def stream_truth(server, waveform: np.ndarray, mode: str, itn: bool = True, end: bool = True) -> list:
    """The 2pass profile's events for one utterance in ``mode``, straight from the models."""
    rec = server.models
    s = rec.new_stream(online=mode in ("online", "2pass"), offline=mode in ("offline", "2pass"), use_itn=itn)
    events = s.accept(waveform)
    if end:
        events += s.accept(np.zeros(0, np.float32), is_final=True)
    return events


def stream_truth_pcm(server, pcm: bytes, mode: str, rate: int = 16000, **kw) -> list:
    waveform = pcm16_to_float(pcm)
    if rate != server.models.sample_rate:
        waveform = resample(waveform, rate, server.models.sample_rate)
    return stream_truth(server, waveform, mode, **kw)


def segments(events) -> List[SegmentText]:
    return [ev for ev in events if isinstance(ev, SegmentText)]


def segment_text(events) -> str:
    """What a 2pass/offline-mode client shows at the end: the segments' offline texts, joined."""
    return "".join(s.transcript.text for s in segments(events))


def online_text(events) -> str:
    """What an online-mode client shows at the end: every delta, joined."""
    return "".join(ev.text for ev in events if isinstance(ev, PartialText))


def segment_stamps(events) -> list:
    return [list(span) for s in segments(events) for span in s.transcript.timestamps]


def finishes(fn, *args, timeout: float = DEADLINE, **kwargs):
    """``fn(*args, **kwargs)`` in a thread; fail the test if it has not returned by ``timeout``."""
    box: Dict[str, object] = {}

    def run():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{getattr(fn, '__name__', fn)} did not return within {timeout} s"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]


def run_async(coroutine, timeout: float = DEADLINE):
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


def unverified_tls() -> ssl.SSLContext:
    """``ssl.SSLContext()`` with verification off: what FunASR's client (until 2026-07) and xiaozhi build.
    (The no-argument constructor is deprecated since Python 3.10 but still what they call.)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.SSLContext()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ---------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def tls_policy(tmp_path_factory):
    """Our self-signed certificate, as ``funasr-wss-server`` generates it when given none."""
    return TlsPolicy(server_context(*self_signed_pair(tmp_path_factory.mktemp("tls"))))


@pytest.fixture(scope="module")
def tls_2pass(two_pass_server, tls_policy):
    """The 2pass profile serving ws:// and wss:// on one port, no API key."""
    with ServerThread(fixture_settings_2pass(), models=two_pass_server.models, tls=tls_policy) as server:
        yield server


@pytest.fixture(scope="module")
def tls_offline(offline_server, tls_policy):
    with ServerThread(fixture_settings(), models=offline_server.models, tls=tls_policy) as server:
        yield server


@pytest.fixture(scope="module")
def keyed_tls_2pass(two_pass_server, tls_policy):
    """xiaozhi's documented deployment: the 2pass server, wss://, here with ``--api-key``."""
    with ServerThread(
        fixture_settings_2pass(), models=two_pass_server.models, tls=tls_policy, access=AccessPolicy(api_key=KEY)
    ) as server:
        yield server


@pytest.fixture(scope="module")
def keyed_tls_offline(offline_server, tls_policy):
    with ServerThread(
        fixture_settings(), models=offline_server.models, tls=tls_policy, access=AccessPolicy(api_key=KEY)
    ) as server:
        yield server


# ====================================================================== funasr-client (PyPI)
# It targets the 2pass server: file_asr/file_asr_stream read until a message has is_final true and
# merge only "2pass-offline" messages.


def test_funasr_client_file_asr_sync_2pass_mode(two_pass_server):
    result = finishes(funasr_client.file_asr, ZH01, two_pass_server.url, mode="2pass")
    pcm, _ = wav_pcm_and_rate(ZH01)
    events = stream_truth_pcm(two_pass_server, pcm, "2pass")
    assert result["text"] == segment_text(events) and result["text"]
    assert result["mode"] == "2pass-offline" and result["is_final"] is True
    assert result["wav_name"] == ZH01.name  # it names the utterance after the file
    assert [list(s) for s in result["timestamp"]] == segment_stamps(events)  # decoded from our JSON string
    assert result["stamp_sents"] == [p.to_json() for s in segments(events) for p in s.transcript.sentences]


def test_funasr_client_file_asr_stream_sees_deltas_then_one_final(two_pass_server):
    """The raw messages (decode=False) of one file: our deltas join up to the online model's text."""
    messages = finishes(
        lambda: list(funasr_client.file_asr_stream(ZH05, two_pass_server.url, mode="2pass", decode=False))
    )
    pcm, _ = wav_pcm_and_rate(ZH05)
    events = stream_truth_pcm(two_pass_server, pcm, "2pass")
    assert [m["is_final"] for m in messages].count(True) == 1 and messages[-1]["is_final"] is True
    deltas = [m for m in messages if m["mode"] == "2pass-online"]
    assert deltas and "".join(m["text"] for m in deltas) == online_text(events)
    assert [m["text"] for m in messages if m["mode"] == "2pass-offline"] == [
        s.transcript.text for s in segments(events)
    ]
    assert all(isinstance(m["timestamp"], str) for m in messages if "timestamp" in m)


def test_funasr_client_async_file_asr_offline_mode_over_wss(tls_2pass, tmp_path):
    """wss:// with our self-signed certificate (it turns verification off itself), 2pass server, offline mode."""
    pcm = two_segments_pcm()
    events = stream_truth_pcm(tls_2pass, pcm, "offline", itn=False)
    assert len(segments(events)) == 2
    path = write_wav(tmp_path / "two.wav", pcm)
    result = run_async(funasr_client.async_file_asr(path, tls_2pass.tls_url, mode="offline", itn=False))
    assert result["text"] == segment_text(events) and result["text"]
    assert [list(s) for s in result["timestamp"]] == segment_stamps(events)


def test_funasr_client_callback_api_online_mode(two_pass_server):
    """Non-blocking sync client: a thread feeds the callback; close() waits for the final message."""
    pcm, rate = wav_pcm_and_rate(ZH01)
    received: List[dict] = []
    client = funasr_client.funasr_client(
        two_pass_server.url, mode="online", wav_name="cb", audio_fs=rate, callback=received.append
    )
    client.connect()
    try:
        for i in range(0, len(pcm), 1920):
            client.send(pcm[i : i + 1920])
        client.close(timeout=DEADLINE)
    finally:
        client.close(wait_for_final=False)
    assert client.received_final
    events = stream_truth_pcm(two_pass_server, pcm, "online")
    assert "".join(m["text"] for m in received) == online_text(events) and online_text(events)
    assert {m["mode"] for m in received} == {"online"} and received[-1]["is_final"] is True
    assert all(m["wav_name"] == "cb" for m in received)


def test_funasr_client_async_callback_api_2pass_with_hotwords_and_start_time(two_pass_server):
    """Async client, async callback, a hotword dict (sent as an ASCII-escaped JSON string),
    ``start_time`` to shift timestamps: decoded messages carry our times + start_time."""
    pcm, _ = wav_pcm_and_rate(ZH01)
    received: List[dict] = []

    async def go():
        async def on_message(msg):
            received.append(msg)

        async with funasr_client.async_funasr_client(
            two_pass_server.url, mode="2pass", hotwords={"达摩院": 20, "语音识别": 30}, start_time=1000,
            callback=on_message,
        ) as client:
            for i in range(0, len(pcm), 1920):
                await client.send(pcm[i : i + 1920])
        return client

    client = run_async(go())
    assert client.received_final
    assert not [m for m in received if "error" in m]
    events = stream_truth_pcm(two_pass_server, pcm, "2pass")
    offline = [m for m in received if m["mode"] == "2pass-offline"]
    assert [m["text"] for m in offline] == [s.transcript.text for s in segments(events)]
    for m, seg in zip(offline, segments(events)):
        assert [list(p) for p in m["real_timestamp"]] == [[a + 1000, b + 1000] for a, b in seg.transcript.timestamps]
        assert [p["start"] for p in m["real_stamp_sents"]] == [p.start + 1000 for p in seg.transcript.sentences]


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_funasr_client_against_the_offline_profile(tls_offline, scheme):
    """The offline profile answers once with is_final false (as FunASR's C++ funasr-wss-server does):
    funasr-client gets the right text through recv(), but its received_final stays False, so its
    stream()/file_asr()/close(wait_for_final) would wait for a final message that no offline server sends."""
    pcm, rate = wav_pcm_and_rate(ZH01)
    url = tls_offline.url if scheme == "ws" else tls_offline.tls_url
    client = funasr_client.funasr_client(url, mode="offline", wav_name="off", audio_fs=rate, blocking=True)
    client.connect()
    try:
        for i in range(0, len(pcm), 1920):
            client.send(pcm[i : i + 1920])
        client.signal_close()
        msg = client.recv(timeout=30)
        with pytest.raises(TimeoutError):
            client.recv(timeout=0.3)  # exactly one message per utterance
        assert client.received_final is False
    finally:
        client.close(wait_for_final=False)
    want = offline_truth(tls_offline, pcm, rate)
    assert msg["mode"] == "offline" and msg["is_final"] is False and msg["wav_name"] == "off"
    assert msg["text"] == want.text and msg["text"]
    assert [list(s) for s in msg["timestamp"]] == [list(s) for s in want.timestamps]


# ====================================================================== xiaozhi-esp32-server fun_server

XIAOZHI_RECV_TIMEOUT = 5.0  # the provider's per-message wait


@dataclass
class XiaozhiRun:
    text: str
    subprotocol: Optional[str]
    ended_by: str  # "final": a message with is_final true (or none); "timeout": 5 s of silence; "closed"
    messages: List[dict] = field(default_factory=list)
    seconds: float = 0.0


async def xiaozhi_fun_server(uri: str, api_key: str, pcm: bytes, session_id: str, is_ssl: bool) -> XiaozhiRun:
    """The provider's wire flow: one connection per utterance, the header ``Authorization: Bearer; <key>``,
    subprotocol ``binary``, no pings, unverified TLS from ``ssl.SSLContext()``; the configuration
    (offline mode, itn off), the whole utterance as ONE binary frame, ``{"is_speaking": false}``, sent by
    one task while another reads: each message's text is appended, a message whose ``is_final`` is true
    (or missing) ends the read, and so do 5 s without a message or a closed connection."""
    run = XiaozhiRun(text="", subprotocol=None, ended_by="")
    started = time.perf_counter()

    async def send_all(ws):
        await ws.send(json.dumps({
            "mode": "offline", "chunk_size": [5, 10, 5], "chunk_interval": 10,
            "wav_name": session_id, "is_speaking": True, "itn": False,
        }))
        await ws.send(pcm)
        await ws.send(json.dumps({"is_speaking": False}))

    async def read_all(ws) -> str:
        text = ""
        while True:
            try:
                data = json.loads(await asyncio.wait_for(ws.recv(), timeout=XIAOZHI_RECV_TIMEOUT))
            except asyncio.TimeoutError:
                run.ended_by = "timeout"
                return text
            except websockets.exceptions.ConnectionClosed:
                run.ended_by = "closed"
                return text
            run.messages.append(data)
            text += data.get("text", "")
            if data.get("is_final", True):
                run.ended_by = "final"
                return text

    async with websockets.connect(
        uri,
        additional_headers={"Authorization": "Bearer; {}".format(api_key)},
        subprotocols=["binary"],
        ping_interval=None,
        ssl=unverified_tls() if is_ssl else None,
    ) as ws:
        run.subprotocol = ws.subprotocol
        sender, reader = asyncio.create_task(send_all(ws)), asyncio.create_task(read_all(ws))
        done, pending = await asyncio.wait([sender, reader], return_when=asyncio.FIRST_EXCEPTION)
        for task in pending:
            task.cancel()
        for task in done:
            if task.exception():
                raise task.exception()
        # the provider then strips SenseVoice's <|lang|><|emotion|>... tags (our Paraformer output has none)
        run.text = reader.result().strip()
    run.seconds = time.perf_counter() - started
    return run


def test_xiaozhi_on_its_documented_deployment_2pass_server_wss_with_api_key(keyed_tls_2pass):
    """xiaozhi's config.yaml: FunASR's 2pass server (run_server_2pass.sh) on 10096, ``is_ssl: true``.
    Our 2pass profile answers the offline mode with one message per VAD segment and is_final true on
    the last: the provider returns at once with the whole text."""
    pcm = two_segments_pcm()
    run = run_async(xiaozhi_fun_server(keyed_tls_2pass.tls_url, KEY, pcm, "session-1", is_ssl=True))
    events = stream_truth_pcm(keyed_tls_2pass, pcm, "offline", itn=False)
    assert len(segments(events)) == 2  # the concatenation of several messages is exercised
    assert run.ended_by == "final" and run.seconds < XIAOZHI_RECV_TIMEOUT
    assert run.text == segment_text(events) and run.text
    assert run.subprotocol == "binary"
    assert [m["mode"] for m in run.messages] == ["2pass-offline", "2pass-offline"]
    assert [m["is_final"] for m in run.messages] == [False, True]
    assert all(m["wav_name"] == "session-1" for m in run.messages)


def test_xiaozhi_on_the_offline_profile_gets_the_text_after_its_5s_timeout(keyed_tls_offline):
    """Against an offline-profile server (ours or FunASR's C++ funasr-wss-server: both answer with
    is_final false) the provider keeps reading after the one result, gives up after its 5 s timeout and
    returns the right text: correct, but each utterance costs 5 s more.  Users should run the 2pass profile."""
    pcm, _ = wav_pcm_and_rate(ZH01)
    run = run_async(xiaozhi_fun_server(keyed_tls_offline.tls_url, KEY, pcm, "session-2", is_ssl=True))
    assert run.ended_by == "timeout" and run.seconds >= XIAOZHI_RECV_TIMEOUT
    assert len(run.messages) == 1 and run.messages[0]["is_final"] is False
    assert run.text == offline_truth(keyed_tls_offline, pcm, itn=False).text and run.text
    assert run.subprotocol == "binary"


def test_xiaozhi_default_config_api_key_none_on_a_server_without_key(two_pass_server):
    """Out of the box xiaozhi sends ``Authorization: Bearer; none``; a server without --api-key ignores it."""
    pcm, _ = wav_pcm_and_rate(ZH05)
    run = run_async(xiaozhi_fun_server(two_pass_server.url, "none", pcm, "session-3", is_ssl=False))
    assert run.ended_by == "final"
    assert run.text == segment_text(stream_truth_pcm(two_pass_server, pcm, "offline", itn=False)) and run.text


def test_xiaozhi_with_a_wrong_key_is_refused_with_401(keyed_tls_2pass):
    with pytest.raises(websockets.exceptions.InvalidStatus) as err:
        run_async(xiaozhi_fun_server(keyed_tls_2pass.tls_url, "wrong", b"\0\0" * 1600, "s", is_ssl=True))
    assert err.value.response.status_code == 401


def test_binary_subprotocol_is_selected_when_offered_and_never_required(two_pass_server):
    """FunASR's clients, funasr-client and xiaozhi offer ``binary``: we select it, as FunASR's Python server
    does.  A client offering something else or nothing gets no subprotocol and is served all the same
    (websockets' client accepts an answer without one; browsers, which refuse that, offer none here)."""
    pcm, _ = wav_pcm_and_rate(ZH05)
    want = segment_text(stream_truth_pcm(two_pass_server, pcm, "offline"))
    for offered, selected in ((["binary"], "binary"), (["chat", "binary"], "binary"), (["chat"], None), (None, None)):
        with connect(two_pass_server.url, subprotocols=offered) as ws:
            assert ws.subprotocol == selected
            assert ws.response.headers.get("Sec-WebSocket-Protocol") == selected
            ws.send(json.dumps({"mode": "offline", "wav_name": "p"}))
            ws.send(pcm)
            ws.send(json.dumps({"is_speaking": False}))
            assert json.loads(ws.recv(timeout=30))["text"] == want


# ====================================================================== FunASR's Python client


@dataclass
class FunasrClientRun:
    printed: List[str] = field(default_factory=list)  # its result lines, in order
    messages: List[dict] = field(default_factory=list)
    final_seen: bool = False
    ack: Optional[dict] = None  # the end acknowledgement (2026-07 and later)


#: Releases of funasr_wss_client.py whose wire flows differ: JSON-object hotwords and ``{"is_speaking": false}``
#: (2024-01, 4f224c880); hotwords joined with commas (2026-02, a397d0b27); and the ``is_end`` handshake
#: (2026-07, 30caaf8e1).
FUNASR_CLIENT_RELEASES = ("2024-01", "2026-02", "2026-07")


def funasr_hotword_message(hotword: str, release: str) -> str:
    """The ``hotwords`` string a release builds from ``--hotword``: a value that is no file is sent as it is;
    a file of ``word weight`` lines becomes a JSON object (2024-01, ASCII-escaped, lines without a weight
    dropped) or, since 2026-02, the first word of each line joined with commas (the weights are lost)."""
    if not hotword.strip():
        return ""
    if not os.path.exists(hotword):
        return hotword
    lines = open(hotword, encoding="utf-8").read().splitlines()
    if release == "2024-01":
        words = {}
        for line in lines:
            parts = line.strip().split(" ")
            if len(parts) >= 2:
                words[" ".join(parts[:-1])] = int(parts[-1])
        return json.dumps(words)
    return ",".join(line.split()[0] for line in lines if line.split())


async def funasr_wss_client(
    host: str,
    port: int,
    audio_in,
    mode: str = "2pass",
    ssl_on: int = 1,
    chunk_size: str = "5, 10, 5",
    chunk_interval: int = 10,
    hotword: str = "",
    use_itn: int = 1,
    send_without_sleep: bool = False,
    release: str = "2024-01",
    result_timeout: float = 300.0,
) -> FunasrClientRun:
    """``funasr_wss_client.py --host H --port P --audio_in F.wav --mode M`` (one file, one process), as
    released from 2024-01 (4f224c880) on (2026-02, a397d0b27, made ``--send_without_sleep`` work, which
    earlier versions accepted and ignored):

    * ``--ssl 1`` by default: wss:// with verification off; subprotocol ``binary``, no pings;
    * the configuration: mode, ``chunk_size`` as a list of ints, ``chunk_interval``, the two look-backs,
      ``audio_fs`` from the wav header, ``wav_name`` "demo", ``wav_format`` "pcm", ``is_speaking`` true,
      ``hotwords`` (see :func:`funasr_hotword_message`), ``itn`` a boolean;
    * the samples (header stripped) in strides of 60 ms * chunk_size[1] / chunk_interval, 1 ms apart in
      offline mode, in real time otherwise;
    * until 2026-07: ``{"is_speaking": false}`` right after the last stride; offline: close once a message
      has mode "offline" or is_final true; online/2pass: close 2 s after the end signal, whatever has
      arrived (the releases then sleep 10 s more; we close as soon as the final message is in, and record it);
    * since 2026-07 (``release="2026-07"``): ``{"is_speaking": false, "is_end": true}`` after the last
      stride's pause, then wait up to ``--result_timeout`` (300 s) for a message with ``is_end`` true:
      none raises TimeoutError, one without ``is_final`` true raises RuntimeError (with its ``error``),
      and so does the connection closing first; then close;
    * the reader prints the text so far after each message ("online": deltas appended; "2pass-online":
      appended to the offline text; "2pass-offline" (and any other mode): appended to the offline text,
      deltas dropped; "offline": ``<wav_name>: <text> timestamp: <timestamp>``); a message without
      ``mode`` is skipped; 2024-01 reads ``meg["text"]`` and dies on a message without it.
    """
    assert release in FUNASR_CLIENT_RELEASES
    handshake = release >= "2026-07"
    chunks = [int(x) for x in chunk_size.split(",")]
    run = FunasrClientRun()
    hotword_msg = funasr_hotword_message(hotword, release)
    with wave.open(str(audio_in)) as w:
        sample_rate = w.getframerate()
        audio = bytes(w.readframes(w.getnframes()))
    stride = int(60 * chunks[1] / chunk_interval / 1000 * sample_rate * 2)
    chunk_num = (len(audio) - 1) // stride + 1
    state = {"offline_msg_done": False, "acked": False}
    final = asyncio.Event()
    acks: asyncio.Queue = asyncio.Queue()
    uri = f"{'wss' if ssl_on == 1 else 'ws'}://{host}:{port}"
    ctx = unverified_tls() if ssl_on == 1 else None

    async with websockets.connect(uri, subprotocols=["binary"], ping_interval=None, ssl=ctx) as ws:

        async def record_from_scp():
            await ws.send(json.dumps({
                "mode": mode, "chunk_size": chunks, "chunk_interval": chunk_interval,
                "encoder_chunk_look_back": 4, "decoder_chunk_look_back": 0, "audio_fs": sample_rate,
                "wav_name": "demo", "wav_format": "pcm", "is_speaking": True, "hotwords": hotword_msg,
                "itn": use_itn != 0,
            }, ensure_ascii=release == "2024-01"))
            for i in range(chunk_num):
                await ws.send(audio[i * stride : (i + 1) * stride])
                if i == chunk_num - 1 and not handshake:
                    await ws.send(json.dumps({"is_speaking": False}))
                realtime = mode != "offline" and not send_without_sleep
                await asyncio.sleep(60 * chunks[1] / chunk_interval / 1000 if realtime else 0.001)
            if handshake:
                await ws.send(json.dumps({"is_speaking": False, "is_end": True}, ensure_ascii=False))
                try:
                    run.ack = await asyncio.wait_for(acks.get(), timeout=result_timeout)
                except asyncio.TimeoutError as exc:
                    await ws.close()
                    raise TimeoutError(f"server did not acknowledge end of input within {result_timeout:g} seconds") from exc
                if not run.ack.get("is_final", False):
                    await ws.close()
                    raise RuntimeError(f"server failed to finalize 'demo': {run.ack.get('error') or 'server did not finalize input'}")
            elif mode == "offline":
                while not state["offline_msg_done"]:
                    await asyncio.sleep(0.05)
            else:
                try:
                    await asyncio.wait_for(final.wait(), 2.0)
                except asyncio.TimeoutError:
                    pass
            await ws.close()

        def release_sender(error: str) -> None:
            if handshake and not state["acked"]:
                acks.put_nowait({"is_end": True, "is_final": False, "error": error})

        async def message():
            text_print = text_2pass_online = text_2pass_offline = ""
            try:
                while True:
                    meg = json.loads(await ws.recv())
                    run.messages.append(meg)
                    # 2024-01 dies on a KeyError when a message has no "text"; later releases default to ""
                    text = meg["text"] if release == "2024-01" else meg.get("text", "")
                    timestamp = meg.get("timestamp", "")
                    state["offline_msg_done"] = meg.get("is_final", False)
                    if handshake and meg.get("is_end"):
                        state["acked"] = True
                        acks.put_nowait(meg)
                    if meg.get("is_final"):
                        run.final_seen = True
                        final.set()
                    if "mode" not in meg:
                        continue
                    if meg["mode"] == "online":
                        text_print += text
                        run.printed.append(f"pid0_0: {text_print}")
                    elif meg["mode"] == "offline":
                        text_print += f"{text} timestamp: {timestamp}" if timestamp != "" else text
                        run.printed.append(f"pid0_0: {meg.get('wav_name', 'demo')}: {text_print}")
                        state["offline_msg_done"] = True
                    else:
                        if meg["mode"] == "2pass-online":
                            text_2pass_online += text
                            text_print = text_2pass_offline + text_2pass_online
                        else:
                            text_2pass_online = ""
                            text_print = text_2pass_offline + text
                            text_2pass_offline += text
                        run.printed.append(f"pid0_0: {text_print}")
            except websockets.exceptions.ConnectionClosedOK:
                release_sender("connection closed before end-of-input acknowledgement")
                return
            except Exception as exc:
                if not handshake:
                    raise
                release_sender(f"receiver failed before end-of-input acknowledgement: {exc}")

        await asyncio.gather(record_from_scp(), message())
    return run


def _host_port(server):
    return "127.0.0.1", server.server.port


def test_funasr_python_client_default_flags_2pass_over_wss_in_real_time(tls_2pass):
    """No flags but host, port and file: ``--ssl 1 --mode 2pass``, audio sent in real time."""
    run = run_async(funasr_wss_client(*_host_port(tls_2pass), ZH05))
    pcm, _ = wav_pcm_and_rate(ZH05)
    events = stream_truth_pcm(tls_2pass, pcm, "2pass")
    assert run.final_seen  # within the client's 2 s after the end signal
    assert run.printed[-1] == f"pid0_0: {segment_text(events)}" and segment_text(events)
    # while it spoke, the line grew with our deltas
    deltas = [m["text"] for m in run.messages if m["mode"] == "2pass-online"]
    assert "".join(deltas) == online_text(events) and len(deltas) > 1


def test_funasr_python_client_online_mode_without_sleep(two_pass_server):
    run = run_async(funasr_wss_client(*_host_port(two_pass_server), ZH01, mode="online", ssl_on=0, send_without_sleep=True))
    pcm, _ = wav_pcm_and_rate(ZH01)
    want = online_text(stream_truth_pcm(two_pass_server, pcm, "online"))
    assert run.final_seen and want
    assert run.printed[-1] == f"pid0_0: {want}"


def test_funasr_python_client_offline_mode_on_the_offline_profile(tls_offline, tmp_path):
    """``--mode offline`` against funasr-wss-server, default --ssl 1, a hotword file and --use_itn 0."""
    hotwords = tmp_path / "hotwords.txt"
    hotwords.write_text("达摩院 20\n语音 识别 30\n", encoding="utf-8")
    run = run_async(
        funasr_wss_client(*_host_port(tls_offline), ZH01, mode="offline", hotword=str(hotwords), use_itn=0)
    )
    pcm, rate = wav_pcm_and_rate(ZH01)
    want = offline_truth(tls_offline, pcm, rate, itn=False)
    assert len(run.messages) == 1 and "error" not in run.messages[0]
    assert run.printed == [f"pid0_0: demo: {want.text} timestamp: {run.messages[0]['timestamp']}"] and want.text
    assert json.loads(run.messages[0]["timestamp"]) == [list(s) for s in want.timestamps]


def test_funasr_python_client_offline_mode_on_the_2pass_profile(two_pass_server):
    """On the 2pass server, mode offline ends with the is_final message (a "2pass-offline" one)."""
    run = run_async(funasr_wss_client(*_host_port(two_pass_server), ZH01, mode="offline", ssl_on=0))
    pcm, _ = wav_pcm_and_rate(ZH01)
    want = segment_text(stream_truth_pcm(two_pass_server, pcm, "offline"))
    assert run.final_seen and want
    assert run.printed[-1] == f"pid0_0: {want}"


def test_funasr_python_client_microphone_flow_gets_segments_without_an_end_signal(two_pass_server):
    """``--audio_in`` unset: wav_name "microphone", no audio_fs/wav_format, 960-sample reads, and no end
    signal ever (it runs until killed): results come from the VAD closing segments."""
    pcm = two_segments_pcm() + bytes(2 * 24000)
    want = segments(stream_truth_pcm(two_pass_server, pcm, "2pass", end=False))
    assert len(want) == 2
    with connect(two_pass_server.url, subprotocols=["binary"]) as ws:
        ws.send(json.dumps({
            "mode": "2pass", "chunk_size": [5, 10, 5], "chunk_interval": 10, "encoder_chunk_look_back": 4,
            "decoder_chunk_look_back": 0, "wav_name": "microphone", "is_speaking": True, "hotwords": "", "itn": True,
        }))
        for i in range(0, len(pcm), 1920):
            ws.send(pcm[i : i + 1920])
        got: List[dict] = []
        while len([m for m in got if m["mode"] == "2pass-offline"]) < 2:
            got.append(json.loads(ws.recv(timeout=30)))
    offline = [m for m in got if m["mode"] == "2pass-offline"]
    assert [m["text"] for m in offline] == [s.transcript.text for s in want]
    assert not any(m["is_final"] for m in got) and all(m["wav_name"] == "microphone" for m in got)


def _hotword_file(tmp_path, text: str) -> str:
    path = tmp_path / "hotwords.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


#: The file of FunASR's docs: since 2026-02 the client sends "阿里巴巴,达摩院,通义千问" (11 characters:
#: read as one word, we used to refuse it with the whole configuration, and the client got no text).
HOTWORDS = "阿里巴巴 20\n达摩院 30\n通义千问 10\n"


def test_funasr_python_client_2026_02_comma_joined_hotwords_get_the_normal_text(two_pass_server, tmp_path):
    run = run_async(funasr_wss_client(*_host_port(two_pass_server), ZH05, ssl_on=0, send_without_sleep=True,
                                      hotword=_hotword_file(tmp_path, HOTWORDS), release="2026-02"))
    pcm, _ = wav_pcm_and_rate(ZH05)
    want = segment_text(stream_truth_pcm(two_pass_server, pcm, "2pass"))
    assert not [m for m in run.messages if "error" in m or "warning" in m]
    assert run.final_seen and want
    assert run.printed[-1] == f"pid0_0: {want}"


@pytest.mark.parametrize("release", ["2024-01", "2026-02"])
def test_funasr_python_client_offline_mode_with_a_bad_hotword_on_the_2pass_profile(two_pass_server, tmp_path, release):
    """Until 2026-07 the client's offline mode ends on the first message labelled "offline" (or is_final):
    the hotword warning, which comes first, is labelled "2pass-offline" like this profile's results, so
    the client waits for the text; it used to get an error and no text."""
    hotwords = _hotword_file(tmp_path, "阿里巴巴 20\n阿里巴巴集团控股有限公司 30\n")
    run = run_async(funasr_wss_client(*_host_port(two_pass_server), ZH01, mode="offline", ssl_on=0, hotword=hotwords,
                                      release=release))
    pcm, _ = wav_pcm_and_rate(ZH01)
    want = segment_text(stream_truth_pcm(two_pass_server, pcm, "offline"))
    assert run.messages[0]["mode"] == "2pass-offline" and "'阿里巴巴集团控股有限公司'" in run.messages[0]["warning"]
    assert not [m for m in run.messages if "error" in m]
    assert run.final_seen and run.printed[-1] == f"pid0_0: {want}" and want


@pytest.mark.parametrize("mode", ["2pass", "online", "offline"])
def test_funasr_python_client_2026_07_is_end_handshake_on_the_2pass_profile(two_pass_server, tmp_path, mode):
    """FunASR's client since 2026-07-29 (30caaf8e1) ends with ``{"is_speaking": false, "is_end": true}``
    and waits (300 s) for a message with ``is_end`` true and ``is_final`` true: it gets it right after the
    final result, prints the whole text and closes at once."""
    pcm, _ = wav_pcm_and_rate(ZH05)
    started = time.perf_counter()
    run = run_async(funasr_wss_client(*_host_port(two_pass_server), ZH05, mode=mode, ssl_on=0, send_without_sleep=True,
                                      hotword=_hotword_file(tmp_path, HOTWORDS), release="2026-07"))
    events = stream_truth_pcm(two_pass_server, pcm, mode)
    want = online_text(events) if mode == "online" else segment_text(events)
    label = "online" if mode == "online" else "2pass-offline"  # that of the final result: printed like it
    assert run.ack == {"mode": label, "wav_name": "demo", "text": "", "is_final": True, "is_end": True}
    assert run.messages[-1] is run.ack and run.messages[-2]["is_final"] is True  # the final result first
    assert not [m for m in run.messages if "error" in m or "warning" in m]
    assert run.printed[-1] == f"pid0_0: {want}" and want
    assert time.perf_counter() - started < 20


@pytest.mark.parametrize("release", FUNASR_CLIENT_RELEASES)
def test_funasr_python_client_offline_profile_with_a_bad_hotword(tls_offline, tmp_path, release):
    """Default ``--ssl 1``, ``--mode offline``, a hotword file with one word too long: the one result names
    it in a ``warning`` field (a message of its own, labelled "offline", would end these clients' offline
    mode before the text); the client prints the normal text and exits cleanly (since 2026-07 after the
    acknowledgement)."""
    hotwords = _hotword_file(tmp_path, "阿里巴巴 20\n阿里巴巴集团控股有限公司 30\n达摩院 10\n")
    run = run_async(funasr_wss_client(*_host_port(tls_offline), ZH01, mode="offline", hotword=hotwords, release=release))
    pcm, rate = wav_pcm_and_rate(ZH01)
    want = offline_truth(tls_offline, pcm, rate)
    result = run.messages[0]
    assert "'阿里巴巴集团控股有限公司' (longer than 10 characters)" in result["warning"]
    assert result["text"] == want.text and want.text and "error" not in result
    if release == "2026-07":
        assert run.messages[1:] == [run.ack] == [{"mode": "offline", "wav_name": "demo", "text": "", "is_final": True,
                                                  "is_end": True}]
    else:
        assert len(run.messages) == 1
    assert run.printed[-1] == f"pid0_0: demo: {want.text} timestamp: {result['timestamp']}"


# ====================================================================== FunASR's HTML5 page (runtime/html5)


def _html5_config(mode: str, **extra) -> str:
    return json.dumps({"chunk_size": [5, 10, 5], "wav_name": "h5", "is_speaking": True, "chunk_interval": 10,
                       "itn": False, "mode": mode, **extra})


def _html5_stop(mode: str) -> str:
    """Its end message repeats chunk_size, wav_name, chunk_interval and mode."""
    return json.dumps({"chunk_size": [5, 10, 5], "wav_name": "h5", "is_speaking": False, "chunk_interval": 10,
                       "mode": mode})


def _recv_until_final(ws) -> List[dict]:
    msgs: List[dict] = []
    while not msgs or not msgs[-1]["is_final"]:
        msgs.append(json.loads(ws.recv(timeout=30)))
    return msgs


@pytest.mark.parametrize(
    "hotwords",
    [
        None,  # the hotword box empty: no field
        "{}",  # lines without a weight are dropped: an empty object
        json.dumps({"阿里巴巴": 20, "hello world": 40}, ensure_ascii=False),  # JSON.stringify of word → weight
    ],
)
def test_html5_microphone_2pass(two_pass_server, hotwords):
    """The page's mic mode: 960-sample Int16 frames, hotwords as a JSON string, the stop message."""
    pcm, _ = wav_pcm_and_rate(ZH01)
    extra = {} if hotwords is None else {"hotwords": hotwords}
    with connect(two_pass_server.url) as ws:  # new WebSocket(uri): no subprotocol
        ws.send(_html5_config("2pass", **extra))
        for i in range(0, len(pcm), 1920):
            ws.send(pcm[i : i + 1920])
        ws.send(_html5_stop("2pass"))
        msgs = _recv_until_final(ws)
    assert not [m for m in msgs if "error" in m]
    events = stream_truth_pcm(two_pass_server, pcm, "2pass", itn=False)
    # what its text box shows: offline texts (+ deltas since the last one)
    assert "".join(m["text"] for m in msgs if m["mode"] == "2pass-offline") == segment_text(events)
    assert "".join(m["text"] for m in msgs if m["mode"] == "2pass-online") == online_text(events)


def test_html5_microphone_online(two_pass_server):
    pcm, _ = wav_pcm_and_rate(ZH05)
    with connect(two_pass_server.url) as ws:
        ws.send(_html5_config("online"))
        for i in range(0, len(pcm), 1920):
            ws.send(pcm[i : i + 1920])
        ws.send(_html5_stop("online"))
        msgs = _recv_until_final(ws)
    assert "".join(m["text"] for m in msgs) == online_text(stream_truth_pcm(two_pass_server, pcm, "online"))


def _html5_file_frames(data: bytes) -> List[bytes]:
    """File mode: the whole file (a wav with its header) in 960-byte Uint8Array slices, the rest with stop()."""
    return [data[i : i + 960] for i in range(0, len(data), 960)]


def test_html5_wav_file_on_the_2pass_profile(two_pass_server):
    """File mode forces mode offline, ``wav_format: "PCM"`` (upper case) and audio_fs from the header, and
    sends the header too (as samples, as FunASR's servers take it); is_final true ends its file mode."""
    data = ZH05.read_bytes()
    with connect(two_pass_server.url) as ws:
        ws.send(_html5_config("offline", wav_format="PCM", audio_fs=16000))
        for frame in _html5_file_frames(data):
            ws.send(frame)
        ws.send(_html5_stop("offline"))
        msgs = _recv_until_final(ws)
    want = segment_text(stream_truth_pcm(two_pass_server, data, "offline", itn=False))
    assert "".join(m["text"] for m in msgs) == want and want
    assert msgs[-1]["is_final"] is True and "error" not in msgs[-1]


def test_html5_wav_file_on_the_offline_profile(offline_server):
    data = ZH05.read_bytes()
    with connect(offline_server.url) as ws:
        ws.send(_html5_config("offline", wav_format="PCM", audio_fs=16000))
        for frame in _html5_file_frames(data):
            ws.send(frame)
        ws.send(_html5_stop("offline"))
        msg = json.loads(ws.recv(timeout=30))
    assert msg["text"] == offline_truth(offline_server, data, itn=False).text and msg["text"]
    assert msg["mode"] == "offline" and msg["is_final"] is False  # the page shows it; its file mode stays open


@pytest.mark.parametrize("profile", ["offline", "2pass"])
def test_html5_mp3_file_in_960_byte_slices(offline_server, two_pass_server, profile):
    """An mp3 sent as ``wav_format: "mp3"`` (the file's extension), no audio_fs, 960-byte slices."""
    server = offline_server if profile == "offline" else two_pass_server
    data = MP3.read_bytes()
    with connect(server.url) as ws:
        ws.send(_html5_config("offline", wav_format="mp3"))
        for frame in _html5_file_frames(data):
            ws.send(frame)
        ws.send(_html5_stop("offline"))
        msgs = _recv_until_final(ws) if profile == "2pass" else [json.loads(ws.recv(timeout=30))]
    waveform = load_audio_file(MP3, 16000)
    if profile == "offline":
        want = server.models.transcribe(waveform, use_itn=False).text
    else:
        want = segment_text(stream_truth(server, waveform, "offline", itn=False))
    assert not [m for m in msgs if "error" in m]
    assert "".join(m["text"] for m in msgs) == want and want
