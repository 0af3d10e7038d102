"""Regression tests for what a hostile client found: each case once made the server read files,
hold memory far beyond what was sent, stall other clients, or fail with an internal error.

The container-decoding cases (files, sockets, header claims, NaN samples) are in
tests/test_audio_hardening.py; the randomised search for new ones is tests/test_fuzz.py.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.sync.client import connect

from benchmarks.server_process import ROOT, free_port, rss_mib, running_server
from funasr_wss.server import logs, protocol
from funasr_wss.server.decoder_pool import DecoderPool, JobSkipped
from funasr_wss.server.http_routes import AccessPolicy
from funasr_wss.server.receive_queue import ByteBoundedAssembler
from funasr_wss.server.session import SessionLimits
from tests.harness import ServerThread, fixture_settings, fixture_settings_2pass
from tests.helpers import fixture_pcm
from tests.paths import MODELS
from tests.test_server_admission import scrape, transcribe
from tests.test_server_robustness import wait_until as wait_for

MIB = 1 << 20


@pytest.fixture(scope="module")
def models():
    from funasr_wss.server.model_loader import load_models

    return load_models(fixture_settings())


@pytest.fixture(scope="module")
def models_2pass():
    from funasr_wss.server.model_loader import load_models

    return load_models(fixture_settings_2pass())


def recv_json(ws, timeout: float = 30.0) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def health(server) -> int:
    with urllib.request.urlopen(server.http_url + "/health", timeout=5) as r:
        return r.status


# ----------------------------------------------------------------- text messages: size, parsing, memory


def big_hotwords_config(mib: int) -> str:
    """A configuration whose ``hotwords`` is ``mib`` MiB of empty arrays: 3 bytes each, ~100 bytes each once parsed."""
    return '{"mode": "offline", "hotwords": [' + ",".join(["[]"] * (mib * MIB // 3)) + "]}"


def test_an_oversized_text_message_is_refused_unparsed_and_keeps_no_memory():
    """28 MiB of hotwords once cost 678 MiB per idle connection (24x what was sent; three of them:
    2.6 GB).  Now the size is checked before parsing: each gets an error naming the flag, the
    connection stays usable, and what an idle connection keeps is bounded by what it sent (websockets
    holds the last frame received until the next one arrives: at most one --max-message-mib each)."""
    config = big_hotwords_config(28)
    with running_server(MODELS, "offline") as (proc, port), contextlib.ExitStack() as stack:
        url = f"ws://127.0.0.1:{port}"
        with connect(url) as warm:
            assert transcribe(warm, fixture_pcm())["text"] is not None
        before = rss_mib(proc.pid)
        clients = [stack.enter_context(connect(url, max_size=None)) for _ in range(3)]
        for ws in clients:
            ws.send(config)
            err = recv_json(ws)
            assert err["is_final"] is True and "--max-text-kib" in err["error"] and "too large" in err["error"]
        time.sleep(0.5)
        grown = rss_mib(proc.pid) - before
        assert grown < 3 * 28 * 2.5, f"RSS grew {grown:.0f} MiB for 3 x 28 MiB of hotwords"
        assert "text" in transcribe(clients[0], fixture_pcm())  # the connection carries on


def test_the_text_limit_counts_bytes_and_has_a_flag(models):
    limits = SessionLimits(max_text_bytes=1000)
    with ServerThread(fixture_settings(), models=models, limits=limits) as server, connect(server.url) as ws:
        text = json.dumps({"mode": "offline", "wav_name": "汉" * 400}, ensure_ascii=False)  # 400 chars, 1200+ bytes
        assert len(text) < 1000 < len(text.encode())
        ws.send(text)
        err = recv_json(ws)
        assert f"{len(text.encode())} bytes" in err["error"] and "limit is 1000 (--max-text-kib)" in err["error"]
        ws.send(json.dumps({"mode": "offline", "wav_name": "汉" * 300}, ensure_ascii=False))  # 900 bytes: fine
        ws.send(fixture_pcm())
        ws.send(json.dumps({"is_speaking": False}))
        assert recv_json(ws)["wav_name"] == "汉" * 300


def test_large_text_messages_are_parsed_off_the_event_loop(models, monkeypatch):
    """A 24 MiB hotword list froze /health and every client for 7 s.  The size cap bounds the work;
    what remains above 16 KiB (configuration and hotwords alike) is parsed in a worker thread."""
    import funasr_wss.server.session as session_module

    threads = []
    for name in ("parse_control_message", "parse_client_hotwords"):
        real = getattr(session_module, name)

        def spy(*args, _real=real, _name=name):
            threads.append((_name, threading.current_thread().name))
            return _real(*args)

        monkeypatch.setattr(session_module, name, spy)
    words = ",".join(f"词{i}" for i in range(9000))  # ~60 KB of plain hotwords
    with ServerThread(fixture_settings(), models=models) as server, connect(server.url) as ws:
        loop_thread = server._thread.name
        ws.send(json.dumps({"mode": "offline", "wav_name": "big", "hotwords": words}, ensure_ascii=False))
        ws.send(json.dumps({"mode": "offline", "wav_name": "small"}))
        ws.send(fixture_pcm())
        ws.send(json.dumps({"is_speaking": False}))
        msg = recv_json(ws)
        assert msg["wav_name"] == "small"
    big_config, big_hotwords, small = threads[0], threads[1], threads[2]
    assert small == ("parse_control_message", loop_thread)
    assert big_config[0] == "parse_control_message" and big_config[1] != loop_thread
    assert big_hotwords[0] == "parse_client_hotwords" and big_hotwords[1] != loop_thread


def test_nested_json_and_huge_integers_are_errors_not_crashes(models):
    """A JSON integer of over 4300 digits raised an uncaught ValueError (close 1011)."""
    with ServerThread(fixture_settings(), models=models) as server, connect(server.url) as ws:
        for text in (
            '{"audio_fs": 1' + "0" * 5000 + "}",
            "[" * 100_000 + "]" * 100_000,
            '{"wav_name": ' + "[" * 50_000 + "]" * 50_000 + "}",
            '{"wav_name": [' + ",".join(["1" * 4000] * 20) + "]}",
        ):
            ws.send(text)
            reply = recv_json(ws)
            assert reply["is_final"] is True and reply["error"], reply
            assert len(json.dumps(reply)) < 2000  # the bad value is not echoed back whole
        # hotwords are read at a connection's first message; on this profile their warning rides on the result
        ws.send('{"mode": "offline", "hotwords": "{\\"a\\": 1' + "0" * 5000 + '}"}')
        ws.send(fixture_pcm())
        ws.send('{"is_speaking": false}')
        reply = recv_json(ws)
        assert "does not parse" in reply["warning"] and "error" not in reply


@pytest.mark.parametrize("field", ["audio_fs", "chunk_interval", "decoder_chunk_look_back", "chunk_size"])
def test_a_number_out_of_range_is_not_echoed_whole(field):
    huge = "9" * 4000
    value = f"[5, {huge}, 5]" if field == "chunk_size" else huge
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.parse_control_message(f'{{"{field}": {value}}}')
    assert field in str(err.value) and len(str(err.value)) < 300


def test_a_bad_hotword_weight_is_not_echoed_whole():
    from funasr_wss.server.hotwords import parse_client_hotwords, warning_text

    words, dropped = parse_client_hotwords(json.dumps({f"词{i}": int("9" * 4000) for i in range(30)}, ensure_ascii=False))
    assert words == {} and len(warning_text(dropped, kept=0)) < 3000


def test_a_lone_surrogate_in_an_echoed_field_is_replaced(models):
    """``"\\ud800"`` in ``wav_name`` made the reply unencodable: the TCP connection dropped without a close."""
    with ServerThread(fixture_settings(), models=models) as server, connect(server.url) as ws:
        ws.send('{"mode": "offline", "wav_name": "a\\ud800b"}')
        ws.send(fixture_pcm())
        ws.send('{"is_speaking": false}')
        assert recv_json(ws)["wav_name"] == "a\ufffdb"
        ws.send('{"mode": "offline", "wav_name": "x", "audio_fs": "\\udfff"}')
        err = recv_json(ws)
        assert "\ufffd" in err["error"]


def test_long_names_are_refused():
    with pytest.raises(protocol.ProtocolError, match="wav_name"):
        protocol.parse_control_message(json.dumps({"wav_name": "n" * (protocol.MAX_NAME_CHARS + 1)}))
    assert protocol.parse_control_message(json.dumps({"wav_name": "n" * protocol.MAX_NAME_CHARS})).fields["wav_name"]


# ----------------------------------------------------------------- configuration bounds


@pytest.mark.parametrize("chunk", [[1000, 1, 1000], [0, 1, 0], [5, 21, 5], [11, 10, 5], [5, 10, 11], [0, 100, 0]])
def test_expensive_chunk_sizes_are_refused(chunk):
    """``[1000, 1, 1000]`` cost 35x the CPU of ``[5, 10, 5]`` for the same audio."""
    with pytest.raises(protocol.ProtocolError, match="chunk_size"):
        protocol.parse_chunk_size(chunk)


@pytest.mark.parametrize("chunk", [[5, 10, 5], [0, 10, 5], [0, 8, 4], [8, 8, 4], [2, 2, 2], [20, 20, 20]])
def test_the_chunk_sizes_clients_use_are_accepted(chunk):
    assert protocol.parse_chunk_size(chunk) == tuple(chunk)


@pytest.mark.parametrize("field,value", [("chunk_interval", 0), ("chunk_interval", 10**9), ("encoder_chunk_look_back", -1),
                                         ("decoder_chunk_look_back", 10**6)])
def test_numeric_fields_are_range_checked(field, value):
    with pytest.raises(protocol.ProtocolError, match=field):
        protocol.parse_control_message(json.dumps({field: value}))


def test_an_expensive_chunk_size_gets_an_error_over_the_protocol(models_2pass):
    with ServerThread(fixture_settings_2pass(), models=models_2pass) as server, connect(server.url) as ws:
        ws.send(json.dumps({"mode": "2pass", "chunk_size": [1000, 1, 1000]}))
        err = recv_json(ws)
        assert err["is_final"] is True and "chunk" in err["error"] and "2 to 20" in err["error"]


# ----------------------------------------------------------------- audio held in memory


def test_the_utterance_cap_counts_stored_bytes_at_any_audio_fs(models):
    """At ``audio_fs: 384000`` the seconds cap allowed 8.3 GB per connection; the byte cap does not."""
    limits = SessionLimits(max_utterance_bytes=1 * MIB)
    with ServerThread(fixture_settings(), models=models, limits=limits) as server, connect(server.url) as ws:
        ws.send(json.dumps({"mode": "offline", "audio_fs": 384000}))
        for _ in range(3):
            ws.send(b"\0" * 400_000)  # 1.2 MB: 1.6 s at 384 kHz, far below the seconds cap
        err = recv_json(ws)
        assert err["is_final"] is True and "--max-utterance-mib" in err["error"]
        ws.send(json.dumps({"is_speaking": False}))
        assert transcribe(ws, fixture_pcm())["wav_name"] == "a"
        assert server.server.audio_budget.used_bytes == 0


def test_the_server_wide_audio_budget_refuses_with_an_error_and_frees_on_every_path(models_2pass):
    """Many connections each under their own cap could still exhaust memory together."""
    with ServerThread(fixture_settings_2pass(), models=models_2pass, max_buffered_audio_bytes=1 * MIB) as server:
        budget = server.server.audio_budget
        with contextlib.ExitStack() as stack:
            a, b = stack.enter_context(connect(server.url)), stack.enter_context(connect(server.url))
            a.send(json.dumps({"mode": "offline", "wav_format": "wav"}))
            a.send(b"\0" * 700_000)
            assert wait_for(lambda: budget.used_bytes == 700_000)
            b.send(json.dumps({"mode": "offline", "wav_format": "wav"}))
            b.send(b"\0" * 700_000)  # does not fit beside a's
            err = recv_json(b)
            assert "--max-buffered-audio-mib" in err["error"] and err["is_final"] is True
            assert budget.used_bytes == 700_000
            assert scrape(server)[("funasr_errors_total", (("kind", "server_audio_budget"),))] == 1.0
            assert scrape(server)[("funasr_buffered_audio_bytes", ())] == 700_000
            a.close()  # a vanishes with its upload: its share comes back
            assert wait_for(lambda: budget.used_bytes == 0)
            b.send(json.dumps({"is_speaking": False}))  # ends the refused utterance (its error was the final answer)
            b.send(json.dumps({"mode": "offline", "wav_format": "pcm"}))
            b.send(fixture_pcm()[:600_000])
            b.send(json.dumps({"is_speaking": False}))
            assert recv_json(b)["mode"] == "2pass-offline"
            assert wait_for(lambda: budget.used_bytes == 0)


def test_the_offline_profile_releases_the_budget_after_each_utterance(models):
    with ServerThread(fixture_settings(), models=models, max_buffered_audio_bytes=2 * MIB) as server, connect(server.url) as ws:
        for _ in range(5):  # 5 x 0.35 MB: more than the budget in all, never at once
            assert "text" in transcribe(ws, fixture_pcm())
        assert server.server.audio_budget.used_bytes == 0


def test_the_receive_queue_pauses_on_bytes_not_only_on_frames():
    """A busy connection could queue 16 x 32 MiB unread messages; now reading pauses past ``max_bytes``."""

    async def scenario():
        events = []
        queue = ByteBoundedAssembler(16, 4, pause=lambda: events.append("pause"), resume=lambda: events.append("resume"),
                                     max_bytes=4 * MIB)
        for _ in range(2):
            queue.put(Frame(Opcode.BINARY, b"\0" * (1 * MIB)))
        assert events == []  # 2 MiB: under the byte bound and the frame count
        queue.put(Frame(Opcode.BINARY, b"\0" * (3 * MIB)))
        assert events == ["pause"]  # 5 MiB in 3 frames: paused on bytes
        await queue.get()
        await queue.get()
        assert events == ["pause"]  # 3 MiB left: above a quarter of the bound
        await queue.get()
        assert events == ["pause", "resume"]

    asyncio.run(scenario())


# ----------------------------------------------------------------- idle connections


def test_idle_connections_are_closed_and_free_their_slot(models):
    """20 idle clients held all of ``--max-connections 20`` forever."""
    limits = SessionLimits(idle_timeout=0.5)
    with ServerThread(fixture_settings(), models=models, limits=limits, access=AccessPolicy(max_connections=1)) as server:
        with connect(server.url) as idle:
            idle.send(json.dumps({"mode": "offline"}))
            with pytest.raises(ConnectionClosed):
                while True:
                    idle.recv(timeout=5)
        assert idle.close_code == 1000 and "idle" in idle.close_reason
        with connect(server.url) as ws:  # the slot is free again
            assert "text" in transcribe(ws, fixture_pcm())
        assert scrape(server)[("funasr_errors_total", (("kind", "idle_timeout"),))] == 1.0


def test_a_connection_that_keeps_talking_is_not_idle_and_zero_turns_the_timeout_off(models):
    with ServerThread(fixture_settings(), models=models, limits=SessionLimits(idle_timeout=0.6)) as server:
        with connect(server.url) as ws:
            ws.send(json.dumps({"mode": "offline"}))
            for _ in range(8):  # 1.6 s in all, never 0.6 s silent
                time.sleep(0.2)
                ws.send(b"\0" * 3200)
            ws.send(json.dumps({"is_speaking": False}))
            assert recv_json(ws)["mode"] == "offline"
    with ServerThread(fixture_settings(), models=models, limits=SessionLimits(idle_timeout=0)) as server:
        with connect(server.url) as ws:
            time.sleep(1.0)
            assert "text" in transcribe(ws, fixture_pcm())


# ----------------------------------------------------------------- smaller defects


@pytest.mark.parametrize("header", ["Host", "Authorization", "Connection"])
def test_duplicate_headers_get_400_or_pass_never_500(models, header, caplog):
    values = {"Host": ["a", "b"], "Authorization": ["Bearer k", "Bearer x"], "Connection": ["Upgrade", "Upgrade"]}[header]
    with ServerThread(fixture_settings(), models=models, access=AccessPolicy(api_key="k")) as server:
        for websocket in (True, False):
            lines = [f"{header}: {v}" for v in values]
            if header != "Host":
                lines.append("Host: a")
            if websocket:
                lines += ["Upgrade: websocket", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
                if header != "Connection":
                    lines.append("Connection: Upgrade")
            with socket.create_connection(("127.0.0.1", server.server.port), timeout=5) as s:
                s.sendall(("GET /health HTTP/1.1\r\n" + "".join(x + "\r\n" for x in lines) + "\r\n").encode())
                status = s.recv(200).split(b"\r\n")[0]
            expected = b"401" if header == "Connection" else b"400"  # a repeated list header is legal
            assert expected in status, (header, websocket, status)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_client_text_in_log_lines_is_escaped():
    """A newline in ``wav_name`` wrote arbitrary lines into the text log."""
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "offline %s: done", ("a\n2026-01-01 ERROR fake\r\x1b[2J",), None)
    record.conn = "c1"
    line = logs.TextFormatter().format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "a\\n2026-01-01 ERROR fake\\r\\x1b[2J" in line


def test_a_model_failure_in_the_offline_profile_is_an_error_reply_not_1011(models, monkeypatch):
    """A float WAV with NaN samples once raised RuntimeError inside the models and closed the
    connection with 1011; any such failure now costs the utterance only."""
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("model exploded")

    with ServerThread(fixture_settings(), models=models) as server, connect(server.url) as ws:
        monkeypatch.setattr(server.models, "transcribe", broken)
        reply = transcribe(ws, fixture_pcm())
        assert calls and "internal error" in reply["error"] and reply["text"] == ""
        monkeypatch.undo()
        assert "error" not in transcribe(ws, fixture_pcm())


def test_jobs_of_clients_that_have_gone_are_not_run(models, monkeypatch):
    """Jobs of clients that had already disconnected kept the pool busy."""
    gate = threading.Event()
    ran = []
    real = models.transcribe

    def counting(*args, **kwargs):
        ran.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(models, "transcribe", counting)
    settings = fixture_settings(decoder_thread_num=1)
    with ServerThread(settings, models=models) as server:
        blocker = server.start_call(server.server.pool.run(gate.wait, 30))  # the only thread is busy
        with connect(server.url) as ws:
            ws.send(json.dumps({"mode": "offline"}))
            ws.send(fixture_pcm())
            ws.send(json.dumps({"is_speaking": False}))
            assert wait_for(lambda: server.server.pool.pending == 2)
        gate.set()
        blocker.result(10)
        assert wait_for(lambda: server.server.pool.pending == 0)
        assert ran == []
        with connect(server.url) as ok:
            assert "text" in transcribe(ok, fixture_pcm()) and ran == [1]


def test_a_skipped_job_raises_and_never_runs():
    async def scenario():
        pool = DecoderPool(1)
        called = []
        with pytest.raises(JobSkipped):
            await pool.run(called.append, 1, skip_if=lambda: True)
        assert await pool.run(lambda: 7, skip_if=lambda: False) == 7
        pool.shutdown()
        return called

    assert asyncio.run(scenario()) == []


SLOW_SERVER = textwrap.dedent(
    """
    import sys, time
    import funasr_wss.server.recognizer as recognizer
    real = recognizer.transcribe_utterance
    def slow(*args, **kwargs):
        time.sleep(60)  # a job that outlives any grace period
        return real(*args, **kwargs)
    recognizer.transcribe_utterance = slow
    import funasr_wss.server.offline_session as offline_session
    offline_session.transcribe_utterance = slow
    from funasr_wss.server.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_sigterm_exits_within_the_grace_period_with_jobs_running_and_queued():
    """With jobs still running the server did not exit within 8 s of SIGTERM."""
    from benchmarks.server_process import _wait_healthy, server_command

    port = free_port()
    cmd = server_command(MODELS, "offline", False, 1, port, ["--shutdown-grace", "1", "--certfile", "0"])
    cmd = [sys.executable, "-c", SLOW_SERVER] + cmd[3:]  # same flags, through the slow entry point
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        _wait_healthy(proc, port)
        clients = contextlib.ExitStack()
        for _ in range(3):  # one job running, two queued behind it
            ws = clients.enter_context(connect(f"ws://127.0.0.1:{port}"))
            ws.send(json.dumps({"mode": "offline"}))
            ws.send(fixture_pcm())
            ws.send(json.dumps({"is_speaking": False}))
        time.sleep(0.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(15)
        took = time.monotonic() - started
        assert code == 0
        assert took < 1 + 3, f"exit took {took:.1f} s after SIGTERM with --shutdown-grace 1"
        clients.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
