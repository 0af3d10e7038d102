"""The offline profile through a real WebSocket client against a running server."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from funasr_wss.models.audio import load_audio_file, pcm16_to_float, resample
from funasr_wss.server.session import SessionLimits
from tests.harness import ServerThread, fixture_settings
from tests.helpers import wav_pcm_and_rate
from tests.paths import AUDIO, GOLDEN

STRIDE = 1920  # 60 ms of 16 kHz int16, the stride of FunASR's Python client


def send_utterance(ws, audio: bytes, stride: int = STRIDE, end: dict = {"is_speaking": False}, **config) -> None:
    ws.send(json.dumps({"mode": "offline", "wav_name": "test", "is_speaking": True, **config}))
    for i in range(0, len(audio), stride):
        ws.send(audio[i : i + stride])
    ws.send(json.dumps(end))


def recv_json(ws, timeout: float = 30.0) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def assert_silent(ws, seconds: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        ws.recv(timeout=seconds)


def expected(server, waveform: np.ndarray, itn: bool = True):
    return server.models.transcribe(waveform, use_itn=itn)


def test_reference_client_flow_gives_one_offline_message(offline_server):
    pcm, rate = wav_pcm_and_rate("zh01_asr_example_zh.wav")
    assert rate == 16000
    with connect(offline_server.url) as ws:
        send_utterance(ws, pcm, wav_name="zh01", wav_format="pcm", audio_fs=16000, chunk_size=[5, 10, 5])
        msg = recv_json(ws)
        assert_silent(ws)
    want = expected(offline_server, pcm16_to_float(pcm))
    assert msg["mode"] == "offline"
    assert msg["wav_name"] == "zh01"
    assert msg["is_final"] is False
    assert msg["text"] == want.text and msg["text"]
    assert isinstance(msg["timestamp"], str) and " " not in msg["timestamp"]
    stamps = json.loads(msg["timestamp"])
    assert stamps == [list(s) for s in want.timestamps]
    assert all(len(s) == 2 and s[0] <= s[1] for s in stamps)
    assert isinstance(msg["stamp_sents"], list) and msg["stamp_sents"]
    for piece in msg["stamp_sents"]:
        assert set(piece) == {"text_seg", "punc", "start", "end", "ts_list"}
        assert piece["punc"] in {"，", "。", "？", "、", ",", "?", ""}
        assert piece["start"] == piece["ts_list"][0][0] and piece["end"] == piece["ts_list"][-1][1]
        assert len(piece["text_seg"].split(" ")) == len(piece["ts_list"])
    assert sum(len(p["ts_list"]) for p in msg["stamp_sents"]) == len(stamps)


def test_timestamps_lie_inside_the_real_vad_segments(offline_server):
    """Tokens come only from the oracle VAD's speech segments of the 30 s clip."""
    vad_gold = json.loads((GOLDEN / "asr.json").read_text("utf-8"))["long02_vad_30s_48k.wav"]
    segments = [s["segment"] for s in vad_gold["segments"]]
    waveform = load_audio_file(AUDIO / "long02_vad_30s_48k.wav", 16000)
    assert expected(offline_server, waveform).segments == [tuple(s) for s in segments]
    pcm = (np.clip(waveform, -1, 1) * 32767).astype("<i2").tobytes()
    with connect(offline_server.url) as ws:
        send_utterance(ws, pcm, stride=32000, wav_name="long")
        msg = recv_json(ws)
    stamps = json.loads(msg["timestamp"])
    assert stamps
    # A token may end up to one 60 ms LFR frame past its segment (the last frame is padded).
    for start, end in stamps:
        assert any(s <= start and end <= e + 60 for s, e in segments), (start, end)
    for s, e in segments:  # every speech segment produced text
        assert any(s <= a and b <= e + 60 for a, b in stamps)


def test_empty_audio_gives_one_empty_message(offline_server):
    with connect(offline_server.url) as ws:
        send_utterance(ws, b"", wav_name="empty")
        msg = recv_json(ws)
        assert_silent(ws)
    assert msg["text"] == "" and msg["is_final"] is False and msg["wav_name"] == "empty"
    assert msg["timestamp"] == "[]" and msg["stamp_sents"] == []


@pytest.mark.parametrize("name,fmt", [("zh14_sensevoice_zh.mp3", "mp3"), ("zh15_sr_chinese.flac", "flac"), ("zh11_cosy_zero_shot.wav", "wav")])
def test_container_formats_are_decoded(offline_server, name, fmt):
    data = (AUDIO / name).read_bytes()
    with connect(offline_server.url) as ws:
        send_utterance(ws, data, stride=len(data) or 1, wav_name=name, wav_format=fmt)
        msg = recv_json(ws)
    want = expected(offline_server, load_audio_file(AUDIO / name, 16000))
    assert "error" not in msg
    assert msg["text"] == want.text
    assert json.loads(msg["timestamp"]) == [list(s) for s in want.timestamps]


def test_8khz_pcm_is_resampled(offline_server):
    pcm, rate = wav_pcm_and_rate("k8_BAC009S0764W0121_8k.wav")
    assert rate == 8000
    with connect(offline_server.url) as ws:
        send_utterance(ws, pcm, stride=960, wav_name="k8", audio_fs=8000)
        msg = recv_json(ws)
    want = expected(offline_server, resample(pcm16_to_float(pcm), 8000, 16000))
    assert msg["text"] == want.text and msg["text"]
    # The same clip sent as if it were 16 kHz is a different (wrong) signal: the rate matters.
    assert want.text != expected(offline_server, pcm16_to_float(pcm)).text


def test_two_utterances_on_one_connection(offline_server):
    a, _ = wav_pcm_and_rate("zh03_triton_mid.wav")
    b, _ = wav_pcm_and_rate("zh05_BAC009S0724W0121.wav")
    with connect(offline_server.url) as ws:
        send_utterance(ws, a, wav_name="first")
        first = recv_json(ws)
        send_utterance(ws, b, wav_name="second", itn=False)
        second = recv_json(ws)
        ws.send(json.dumps({"is_speaking": False}))  # a second end signal with no audio
        third = recv_json(ws)
    assert (first["wav_name"], second["wav_name"]) == ("first", "second")
    assert first["text"] == expected(offline_server, pcm16_to_float(a)).text
    assert second["text"] == expected(offline_server, pcm16_to_float(b), itn=False).text
    assert third["text"] == "" and third["wav_name"] == "second"


def test_audio_before_the_first_config_is_dropped(offline_server):
    pcm, _ = wav_pcm_and_rate("zh03_triton_mid.wav")
    with connect(offline_server.url) as ws:
        ws.send(pcm)
        ws.send(json.dumps({"mode": "offline", "wav_name": "late"}))
        ws.send(json.dumps({"is_speaking": False}))
        msg = recv_json(ws)
    assert msg["text"] == ""


@pytest.mark.parametrize("not_an_end", [0, "false", None, "False"])
def test_only_json_false_ends_an_utterance(offline_server, not_an_end):
    pcm, _ = wav_pcm_and_rate("zh03_triton_mid.wav")
    with connect(offline_server.url) as ws:
        ws.send(json.dumps({"mode": "offline", "wav_name": "x"}))
        ws.send(pcm)
        ws.send(json.dumps({"is_speaking": not_an_end}))
        assert_silent(ws)
        ws.send(json.dumps({"is_finished": True}))
        msg = recv_json(ws)
    assert msg["text"] == expected(offline_server, pcm16_to_float(pcm)).text


def test_any_mode_is_answered_as_offline_on_the_offline_profile(offline_server):
    pcm, _ = wav_pcm_and_rate("zh03_triton_mid.wav")
    for mode in ("2pass", "online", "nonsense"):
        with connect(offline_server.url) as ws:
            ws.send(json.dumps({"mode": mode, "wav_name": mode, "chunk_size": [5, 10, 5]}))
            ws.send(pcm)
            ws.send(json.dumps({"is_speaking": False}))
            msg = recv_json(ws)
            assert_silent(ws)
        assert msg["mode"] == "offline" and msg["is_final"] is False and msg["text"]


@pytest.mark.parametrize(
    "bad",
    ["{not json", "[1, 2, 3]", '"just a string"', '{"audio_fs": "fast"}', '{"itn": "maybe"}', '{"chunk_size": [5, 10]}', '{"audio_fs": 5}', '{"mode": 3}'],
)
def test_bad_control_messages_get_an_error_and_the_connection_recovers(offline_server, bad):
    pcm, _ = wav_pcm_and_rate("zh03_triton_mid.wav")
    with connect(offline_server.url) as ws:
        ws.send(json.dumps({"mode": "offline", "wav_name": "x"}))
        ws.send(pcm)
        ws.send(bad)
        err = recv_json(ws)
        assert err["is_final"] is True and err["error"] and err["text"] == ""
        # The utterance was discarded; a new one works on the same connection.
        send_utterance(ws, pcm, wav_name="after")
        msg = recv_json(ws)
    assert msg["wav_name"] == "after"
    assert msg["text"] == expected(offline_server, pcm16_to_float(pcm)).text


def test_garbage_container_audio_gets_an_error_while_others_carry_on(offline_server):
    pcm, _ = wav_pcm_and_rate("zh09_paddle_zh.wav")
    want = expected(offline_server, pcm16_to_float(pcm)).text
    results = {}

    def good_client(i):
        with connect(offline_server.url) as ws:
            send_utterance(ws, pcm, wav_name=f"good{i}")
            results[i] = recv_json(ws)

    threads = [threading.Thread(target=good_client, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    with connect(offline_server.url) as ws:
        send_utterance(ws, np.random.default_rng(0).bytes(50000), stride=50000, wav_name="junk", wav_format="mp3")
        bad = recv_json(ws)
    for t in threads:
        t.join(60)
    assert bad["text"] == "" and "error" in bad and bad["wav_name"] == "junk"
    assert [results[i]["text"] for i in range(3)] == [want] * 3


def test_odd_byte_counts_and_tiny_chunks_are_fine(offline_server):
    pcm, _ = wav_pcm_and_rate("zh03_triton_mid.wav")
    with connect(offline_server.url) as ws:
        send_utterance(ws, pcm[:12345], stride=777, wav_name="odd")
        msg = recv_json(ws)
    assert msg["text"] == expected(offline_server, pcm16_to_float(pcm[:12344])).text


END = {"is_speaking": False, "is_end": True}  # FunASR's Python client since 2026-07


def test_is_end_is_acknowledged_after_the_one_result(offline_server):
    """The result first and unchanged, then ``{"is_end": true, "is_final": true}``, which FunASR's newest
    Python client waits for; the connection stays open and serves the next utterance as before."""
    pcm, _ = wav_pcm_and_rate("zh03_triton_mid.wav")
    with connect(offline_server.url) as ws:
        send_utterance(ws, pcm, wav_name="plain")
        plain = recv_json(ws)
    with connect(offline_server.url) as ws:
        send_utterance(ws, pcm, wav_name="plain", end=END)
        assert recv_json(ws) == plain and plain["text"]
        assert recv_json(ws) == {"mode": "offline", "wav_name": "plain", "text": "", "is_final": True, "is_end": True}
        assert_silent(ws)
        send_utterance(ws, pcm, wav_name="plain")
        assert recv_json(ws) == plain
        assert_silent(ws)


@pytest.mark.parametrize("mode", ["offline", "2pass"])
def test_bad_hotwords_on_the_offline_profile_ride_on_the_one_result(offline_server, mode):
    """Still exactly one message per end signal (clients take the first "offline" message for the result):
    the warning is a field of that message, the text is the normal one; the next result has none."""
    pcm, _ = wav_pcm_and_rate("zh03_triton_mid.wav")
    with connect(offline_server.url) as ws:
        send_utterance(ws, pcm, wav_name="hw", mode=mode, itn=False, hotwords="阿里巴巴,一二三四五六七八九十一，达摩院")
        msg = recv_json(ws)
        assert_silent(ws)
        send_utterance(ws, pcm, wav_name="again", itn=False)
        again = recv_json(ws)
    assert msg["warning"] == ("dropped 1 hotword: '一二三四五六七八九十一' (longer than 10 characters); "
                              "2 other hotwords and the rest of the configuration are used")
    assert "error" not in msg and msg["mode"] == "offline" and msg["is_final"] is False
    assert msg["text"] == expected(offline_server, pcm16_to_float(pcm), itn=False).text and msg["text"]
    assert again == {**{k: v for k, v in msg.items() if k != "warning"}, "wav_name": "again"}


def test_binary_subprotocol_is_accepted_not_required(offline_server):
    with connect(offline_server.url, subprotocols=["binary"]) as ws:
        assert ws.subprotocol == "binary"
        send_utterance(ws, b"", wav_name="sp")
        assert recv_json(ws)["wav_name"] == "sp"
    with connect(offline_server.url) as ws:
        assert ws.subprotocol is None


def silent_flac(seconds: int) -> bytes:
    import io

    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="flac") as out:
        stream = out.add_stream("flac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000 * seconds), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def test_limits_message_size_and_utterance_length():
    settings = fixture_settings()
    limits = SessionLimits(max_utterance_seconds=6, max_utterance_bytes=300_000)
    with ServerThread(settings, max_message_bytes=64 * 1024, limits=limits) as server:
        with connect(server.url) as ws:
            ws.send(json.dumps({"mode": "offline", "wav_name": "big"}))
            for _ in range(4):
                ws.send(b"\0" * 60_000)  # 240 kB = 7.5 s of 16 kHz PCM: over the 6 s cap
            err = recv_json(ws)
            assert err["is_final"] is True and "too long" in err["error"]
            ws.send(json.dumps({"is_speaking": False}))  # the oversized utterance is dropped
            send_utterance(ws, b"\0" * 32000, stride=32000, wav_name="ok")
            msg = recv_json(ws)
            assert msg["wav_name"] == "ok" and msg["text"] == ""
        with connect(server.url) as ws:
            # At 8 kHz, 120 kB is 7.5 s (at 16 kHz it would pass): the cap is in seconds, not bytes.
            ws.send(json.dumps({"mode": "offline", "audio_fs": 8000}))
            for _ in range(3):
                ws.send(b"\0" * 40_000)
            error = recv_json(ws)["error"]
            assert "too long" in error
            # An end signal with is_end after the refusal: acknowledged with that error (FunASR's Python
            # client since 2026-07 waits for it, and reports the failure).
            ws.send(json.dumps({"is_speaking": False, "is_end": True}))
            assert recv_json(ws) == {"mode": "offline", "wav_name": "wav-default-id", "text": "", "is_final": False,
                                     "is_end": True, "error": error}
            # A short compressed file that decodes to more than the cap is refused too.
            bomb = silent_flac(seconds=20)
            assert len(bomb) < 64 * 1024
            send_utterance(ws, bomb, stride=len(bomb), wav_name="bomb", wav_format="flac", end=END)
            msg = recv_json(ws)
            assert msg["text"] == "" and "longer than" in msg["error"]
            assert recv_json(ws) == {"mode": "offline", "wav_name": "bomb", "text": "", "is_final": False,
                                     "is_end": True, "error": msg["error"]}
        with connect(server.url) as ws:
            ws.send(json.dumps({"mode": "offline"}))
            ws.send(b"\0" * 100_000)  # one frame over the message limit
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd.code == 1009


def test_offline_is_final_opt_in_sends_one_final_result(offline_server):
    """``--offline-is-final`` (ServerOptions.offline_is_final): the one result says ``"is_final": true`` for
    clients that wait for it (xiaozhi's provider, funasr-client's file_asr), and nothing else changes: still
    exactly one message per end signal, the same text and timestamps, the ``is_end`` acknowledgement after it."""
    pcm, _ = wav_pcm_and_rate("zh03_triton_mid.wav")
    with connect(offline_server.url) as ws:  # the default: false, as the reference and the guides
        send_utterance(ws, pcm, wav_name="opt")
        plain = recv_json(ws)
        send_utterance(ws, b"", wav_name="opt-empty")
        plain_empty = recv_json(ws)
    assert plain["is_final"] is False and plain["text"] and plain_empty["is_final"] is False
    opted = ServerThread(offline_server.settings, models=offline_server.models)
    opted.extra_options["offline_is_final"] = True
    with opted:
        with connect(opted.url) as ws:
            send_utterance(ws, pcm, wav_name="opt")
            assert recv_json(ws) == dict(plain, is_final=True)
            assert_silent(ws)
            send_utterance(ws, b"", wav_name="opt-empty")  # an empty utterance too
            assert recv_json(ws) == dict(plain_empty, is_final=True)
            send_utterance(ws, pcm, wav_name="opt", end=END)
            assert recv_json(ws) == dict(plain, is_final=True)
            assert recv_json(ws) == {"mode": "offline", "wav_name": "opt", "text": "", "is_final": True, "is_end": True}
            assert_silent(ws)


def test_offline_is_final_lets_the_clients_that_wait_for_it_return_at_once(offline_server):
    """xiaozhi's ``fun_server`` provider returns with the text at once instead of after its 5 s timeout;
    ``funasr-client``'s ``file_asr_stream`` and ``file_asr`` return instead of waiting for ever (its
    ``merge_messages`` keeps only ``2pass-offline`` messages, so ``file_asr``'s merged text stays empty:
    README, Clients in the field)."""
    import funasr_client

    from tests.test_third_party_clients import XIAOZHI_RECV_TIMEOUT, finishes, run_async, xiaozhi_fun_server

    pcm, _ = wav_pcm_and_rate("zh01_asr_example_zh.wav")
    want = expected(offline_server, pcm16_to_float(pcm), itn=False).text
    opted = ServerThread(offline_server.settings, models=offline_server.models)
    opted.extra_options["offline_is_final"] = True
    with opted:
        run = run_async(xiaozhi_fun_server(opted.url, "none", pcm, "xz", is_ssl=False))
        assert run.ended_by == "final" and run.seconds < XIAOZHI_RECV_TIMEOUT
        assert run.text == want and want and [m["is_final"] for m in run.messages] == [True]
        path = str(AUDIO / "zh01_asr_example_zh.wav")
        messages = finishes(lambda: list(funasr_client.file_asr_stream(path, opted.url, mode="offline", decode=False)),
                            timeout=30)
        assert [(m["mode"], m["is_final"]) for m in messages] == [("offline", True)] and messages[0]["text"]
        assert finishes(funasr_client.file_asr, path, opted.url, mode="offline", timeout=30)["is_final"] is True
