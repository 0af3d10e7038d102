"""Readiness (/health), liveness (/livez), the active-streams metric, and draining without loss.

A balancer sends new connections only where ``/health`` says 200: models loaded, not draining,
below ``--max-connections``.  A supervisor restarts only where ``/livez`` fails, which it does not
while the models load or the server drains.  A drain (SIGTERM) finishes every utterance a client
already sent, including one whose frames are still queued behind the handler or still arriving.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.sync.client import connect

from funasr_wss.server.http_routes import AccessPolicy
from tests.harness import ServerThread, fixture_settings, fixture_settings_2pass
from tests.helpers import fixture_pcm
from tests.paths import ASR_CONTEXTUAL_DIR
from tests.test_server_admission import scrape


def probe(server: ServerThread, path: str):
    """(status, JSON body) of a plain GET."""
    try:
        with urllib.request.urlopen(server.http_url + path, timeout=10) as r:
            assert r.headers["Content-Type"] == "application/json"
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        assert e.headers["Content-Type"] == "application/json"
        return e.code, json.loads(e.read())


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture(scope="module")
def models():
    from funasr_wss.server.model_loader import load_models

    return load_models(fixture_settings())


async def _set_models(server, models):
    server.server.set_models(models)


def test_loading_is_not_ready_but_alive(models):
    with ServerThread(fixture_settings(), load=False) as server:
        status, body = probe(server, "/health")
        assert status == 503 and body["status"] == "loading" and not body["ready"] and not body["loaded"]
        assert probe(server, "/livez") == (200, body)  # a first start may download for minutes: not dead
        server.call(_set_models(server, models))
        status, body = probe(server, "/health")
        assert status == 200 and body["status"] == "ready" and body["profile"] == "offline"


def test_full_is_not_ready_and_the_counts_are_in_the_body(models):
    with ServerThread(fixture_settings(), models=models, access=AccessPolicy(max_connections=2)) as server:
        assert probe(server, "/health")[1]["connections"] == 0
        with connect(server.url):
            status, body = probe(server, "/health")
            assert (status, body["connections"], body["max_connections"]) == (200, 1, 2)
            with connect(server.url):
                status, body = probe(server, "/health")
                assert (status, body["status"], body["connections"]) == (503, "full", 2)
                assert probe(server, "/livez")[0] == 200  # full is alive
        assert wait_until(lambda: probe(server, "/health")[0] == 200)  # a slot free again: ready


def test_active_streams_by_mode_in_health_and_metrics():
    with ServerThread(fixture_settings_2pass()) as server, connect(server.url) as ws:
        ws.send(json.dumps({"mode": "2pass", "chunk_size": [5, 10, 5]}))
        assert probe(server, "/health")[1]["active_streams"] == {}  # configured, no audio: nothing in flight
        ws.send(fixture_pcm()[:19200])
        assert wait_until(lambda: probe(server, "/health")[1]["active_streams"] == {"2pass": 1})
        assert scrape(server)[("funasr_active_streams", (("mode", "2pass"),))] == 1
        ws.send(json.dumps({"is_speaking": False}))
        while not json.loads(ws.recv(timeout=30))["is_final"]:
            pass
        assert wait_until(lambda: probe(server, "/health")[1]["active_streams"] == {})
        assert not any(name == "funasr_active_streams" for name, _ in scrape(server))


def test_draining_keeps_answering_health_503_and_livez_200(models):
    with ServerThread(fixture_settings(), models=models) as server, connect(server.url) as ws:
        ws.send(json.dumps({"mode": "offline", "wav_name": "d"}))
        ws.send(fixture_pcm())
        assert wait_until(lambda: server.server.in_flight() == 1)
        draining = server.start_call(server.server.drain(grace_seconds=20))
        assert wait_until(lambda: probe(server, "/health")[1]["status"] == "draining")
        status, body = probe(server, "/health")
        assert status == 503 and body["draining"] and body["active_streams"] == {"offline": 1}
        assert probe(server, "/livez")[0] == 200
        with pytest.raises(InvalidStatus) as refused:  # no new session while draining
            with connect(server.url):
                pass
        assert refused.value.response.status_code == 503
        ws.send(json.dumps({"is_speaking": False}))
        assert json.loads(ws.recv(timeout=30))["wav_name"] == "d"
        draining.result(30)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd.code == 1001
        with pytest.raises(OSError):  # the port closes once the drain is over
            urllib.request.urlopen(server.http_url + "/livez", timeout=2)


def test_drain_finishes_an_upload_still_queued_behind_the_handler():
    """The reported loss: configuration, audio and end signal had arrived, but the handler was still
    busy with the configuration (here its hotwords wait for the one decoder thread), so the audio
    sat in the receive queue and the session had nothing in flight: drain closed it with 1001."""
    settings = fixture_settings(model_dir=str(ASR_CONTEXTUAL_DIR), decoder_thread_num=1)
    with ServerThread(settings) as server, connect(server.url) as ws:
        hold = threading.Event()
        blocker = server.start_call(server.server.pool.run(hold.wait, 10))  # the decoder thread is taken
        ws.send(json.dumps({"mode": "offline", "wav_name": "queued", "hotwords": json.dumps({"阿里巴巴": 20})}))
        ws.send(fixture_pcm())
        ws.send(json.dumps({"is_speaking": False}))
        session = None
        assert wait_until(lambda: bool(server.server.sessions))
        session = next(iter(server.server.sessions))
        assert wait_until(lambda: session.seen_first_message)  # the configuration was read ...
        time.sleep(0.1)
        assert not session.busy  # ... and the audio waits in the receive queue, unseen by the session
        draining = server.start_call(server.server.drain(grace_seconds=20))
        time.sleep(0.3)
        assert not draining.done()
        hold.set()
        blocker.result(10)
        answer = json.loads(ws.recv(timeout=30))
        assert answer["wav_name"] == "queued" and answer["text"]
        draining.result(30)


def test_drain_waits_for_a_frame_still_arriving(models):
    """An upload in one large frame, half of it received when the drain starts: the rest is coming,
    and the client gets its result."""
    audio = fixture_pcm()
    raw = Frame(Opcode.BINARY, audio).serialize(mask=True, extensions=[])
    with ServerThread(fixture_settings(), models=models) as server, connect(server.url) as ws:
        ws.send(json.dumps({"mode": "offline", "wav_name": "split"}))
        assert wait_until(lambda: any(s.seen_first_message for s in server.server.sessions))
        ws.socket.sendall(raw[: len(raw) // 2])
        time.sleep(0.2)  # received by the server, not a whole frame yet
        assert server.server.in_flight() == 1
        draining = server.start_call(server.server.drain(grace_seconds=20))
        time.sleep(0.3)
        assert not draining.done()
        ws.socket.sendall(raw[len(raw) // 2:])
        ws.send(json.dumps({"is_speaking": False}))
        answer = json.loads(ws.recv(timeout=30))
        assert answer["wav_name"] == "split" and answer["text"]
        draining.result(30)


def test_drain_does_not_wait_for_idle_connections(models):
    with ServerThread(fixture_settings(), models=models) as server, connect(server.url) as idle:
        idle.send(json.dumps({"mode": "offline"}))  # configured, nothing sent after: nothing in flight
        assert wait_until(lambda: any(s.seen_first_message for s in server.server.sessions))
        started = time.time()
        server.call(server.server.drain(grace_seconds=20))
        assert time.time() - started < 3
        with pytest.raises(ConnectionClosed) as closed:
            idle.recv(timeout=5)
        assert closed.value.rcvd.code == 1001
