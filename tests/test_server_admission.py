"""Before and after the WebSocket session: /health, API keys, the connection limit, graceful drain."""
from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
import wave

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from server.http_routes import AccessPolicy
from tests.harness import ServerThread, fixture_settings
from tests.paths import AUDIO

KEY = "s3cret-key"


def get(url: str, path: str = "/health"):
    try:
        with urllib.request.urlopen(url + path, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except urllib.error.URLError:
        return 0, ""


def pcm() -> bytes:
    with wave.open(str(AUDIO / "zh01_asr_example_zh.wav")) as w:
        return w.readframes(w.getnframes())


def transcribe(ws, audio: bytes, name: str = "a") -> dict:
    ws.send(json.dumps({"mode": "offline", "wav_name": name}))
    ws.send(audio)
    ws.send(json.dumps({"is_speaking": False}))
    return json.loads(ws.recv(timeout=30))


@pytest.fixture(scope="module")
def models():
    from server.model_loader import load_models

    return load_models(fixture_settings())


def refused_status(url: str, **kw) -> int:
    with pytest.raises(InvalidStatus) as err:
        with connect(url, **kw):
            pass
    return err.value.response.status_code


def test_health_says_ok_once_models_are_loaded_and_503_before(models):
    with ServerThread(fixture_settings(), load=False) as server:
        assert get(server.http_url) == (503, "starting or draining\n")
        assert refused_status(server.url) == 503  # no session before the models are there
        server.call(_set_models(server, models))
        assert get(server.http_url) == (200, "ok\n")
        with connect(server.url) as ws:
            assert transcribe(ws, pcm())["text"]


async def _set_models(server, models):
    server.server.set_models(models)


@pytest.mark.parametrize(
    "how",
    [
        {"additional_headers": {"Authorization": f"Bearer {KEY}"}},
        {"additional_headers": {"Authorization": f"Bearer; {KEY}"}},  # xiaozhi-esp32-server's form
        {"path": f"/?token={KEY}"},
        {"path": f"/ws?foo=1&token={KEY}"},
    ],
)
def test_api_key_accepted_in_every_form(models, how):
    with ServerThread(fixture_settings(), models=models, access=AccessPolicy(api_key=KEY)) as server:
        url = server.url + how.get("path", "")
        with connect(url, additional_headers=how.get("additional_headers")) as ws:
            assert transcribe(ws, pcm())["text"]


@pytest.mark.parametrize(
    "headers,path",
    [
        (None, ""),
        ({"Authorization": "Bearer wrong"}, ""),
        ({"Authorization": f"Basic {KEY}"}, ""),
        ({"Authorization": "Bearer"}, ""),
        (None, "/?token=wrong"),
        (None, f"/?tok={KEY}"),
    ],
)
def test_missing_or_wrong_api_key_gets_401(models, headers, path):
    with ServerThread(fixture_settings(), models=models, access=AccessPolicy(api_key=KEY)) as server:
        assert refused_status(server.url + path, additional_headers=headers) == 401
        # health checks need no key
        assert get(server.http_url)[0] == 200


def test_connections_beyond_the_limit_get_503(models):
    with ServerThread(fixture_settings(), models=models, access=AccessPolicy(max_connections=2)) as server:
        with connect(server.url) as a, connect(server.url) as b:
            assert refused_status(server.url) == 503
            # the two admitted connections work
            assert transcribe(a, pcm(), "a")["wav_name"] == "a"
            assert transcribe(b, pcm(), "b")["wav_name"] == "b"
        deadline = time.time() + 5
        while server.server.active_sessions and time.time() < deadline:
            time.sleep(0.05)
        with connect(server.url) as c:  # room again once they closed
            assert transcribe(c, pcm())["text"]


def test_drain_lets_an_utterance_in_flight_finish_then_closes_with_1001(models):
    with ServerThread(fixture_settings(), models=models) as server, contextlib.ExitStack() as stack:
        idle = stack.enter_context(connect(server.url))
        busy = stack.enter_context(connect(server.url))
        busy.send(json.dumps({"mode": "offline", "wav_name": "late"}))
        busy.send(pcm())
        deadline = time.time() + 5
        while not any(s.busy for s in server.server.sessions) and time.time() < deadline:
            time.sleep(0.02)
        draining = server.start_call(server.server.drain(grace_seconds=20))
        time.sleep(0.3)
        assert get(server.http_url)[0] == 0  # no longer listening
        assert not draining.done()  # waiting for the utterance in flight
        busy.send(json.dumps({"is_speaking": False}))
        assert json.loads(busy.recv(timeout=30))["wav_name"] == "late"
        draining.result(30)
        for ws in (idle, busy):
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            assert closed.value.rcvd.code == 1001
        with pytest.raises(OSError):
            with connect(server.url, open_timeout=2):
                pass


def test_drain_closes_unfinished_utterances_after_the_grace_period(models):
    with ServerThread(fixture_settings(), models=models) as server, connect(server.url) as ws:
        ws.send(json.dumps({"mode": "offline"}))
        ws.send(pcm())
        deadline = time.time() + 5
        while not any(s.busy for s in server.server.sessions) and time.time() < deadline:
            time.sleep(0.02)
        started = time.time()
        server.call(server.server.drain(grace_seconds=0.5))
        assert 0.4 < time.time() - started < 5
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd.code == 1001
