"""Before and after the WebSocket session: /health, API keys, the connection limit, graceful drain."""
from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from funasr_wss.server.http_routes import AccessPolicy
from tests.harness import ServerThread, fixture_settings
from tests.helpers import fixture_pcm

KEY = "s3cret-key"


def get(url: str, path: str = "/health"):
    try:
        with urllib.request.urlopen(url + path, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except urllib.error.URLError:
        return 0, ""


def transcribe(ws, audio: bytes, name: str = "a") -> dict:
    ws.send(json.dumps({"mode": "offline", "wav_name": name}))
    ws.send(audio)
    ws.send(json.dumps({"is_speaking": False}))
    return json.loads(ws.recv(timeout=30))


@pytest.fixture(scope="module")
def models():
    from funasr_wss.server.model_loader import load_models

    return load_models(fixture_settings())


def refused_status(url: str, **kw) -> int:
    with pytest.raises(InvalidStatus) as err:
        with connect(url, **kw):
            pass
    return err.value.response.status_code


def test_health_says_ok_once_models_are_loaded_and_503_before(models):
    with ServerThread(fixture_settings(), load=False) as server:
        status, body = get(server.http_url)
        assert status == 503 and json.loads(body)["status"] == "loading"
        assert refused_status(server.url) == 503  # no session before the models are there
        server.call(_set_models(server, models))
        status, body = get(server.http_url)
        assert status == 200 and json.loads(body)["status"] == "ready"
        with connect(server.url) as ws:
            assert transcribe(ws, fixture_pcm())["text"]


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
            assert transcribe(ws, fixture_pcm())["text"]


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
            assert transcribe(a, fixture_pcm(), "a")["wav_name"] == "a"
            assert transcribe(b, fixture_pcm(), "b")["wav_name"] == "b"
        deadline = time.time() + 5
        while server.server.active_sessions and time.time() < deadline:
            time.sleep(0.05)
        with connect(server.url) as c:  # room again once they closed
            assert transcribe(c, fixture_pcm())["text"]


def test_drain_lets_an_utterance_in_flight_finish_then_closes_with_1001(models):
    with ServerThread(fixture_settings(), models=models) as server, contextlib.ExitStack() as stack:
        idle = stack.enter_context(connect(server.url))
        busy = stack.enter_context(connect(server.url))
        busy.send(json.dumps({"mode": "offline", "wav_name": "late"}))
        busy.send(fixture_pcm())
        deadline = time.time() + 5
        while not any(s.busy for s in server.server.sessions) and time.time() < deadline:
            time.sleep(0.02)
        draining = server.start_call(server.server.drain(grace_seconds=20))
        time.sleep(0.3)
        assert get(server.http_url)[0] == 503  # still listening, not ready (tests/test_health_and_drain.py)
        assert refused_status(server.url) == 503  # no new session
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
        ws.send(fixture_pcm())
        deadline = time.time() + 5
        while not any(s.busy for s in server.server.sessions) and time.time() < deadline:
            time.sleep(0.02)
        started = time.time()
        server.call(server.server.drain(grace_seconds=0.5))
        assert 0.4 < time.time() - started < 5
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd.code == 1001


def scrape(server, tls_context=None) -> dict:
    """``/metrics`` parsed: (name, labels) → value; over https when given a client TLS context."""
    from prometheus_client.parser import text_string_to_metric_families

    url = f"https://127.0.0.1:{server.server.port}" if tls_context else server.http_url
    with urllib.request.urlopen(url + "/metrics", timeout=10, context=tls_context) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_connections_audio_latency_and_errors(models):
    with ServerThread(fixture_settings(), models=models, access=AccessPolicy(api_key=KEY)) as server:
        before = scrape(server)
        assert before[("funasr_decode_queue_depth", ())] == 0
        assert not any(name == "funasr_connections" for name, _ in before)
        refused_status(server.url)  # no key
        with connect(server.url, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
            assert transcribe(ws, fixture_pcm())["text"]
            ws.send("{not json")
            json.loads(ws.recv(timeout=10))
            during = scrape(server)
            assert during[("funasr_connections", (("mode", "offline"),))] == 1
        after = scrape(server)
    assert after[("funasr_audio_seconds_total", (("mode", "offline"),))] == pytest.approx(len(fixture_pcm()) / 32000, abs=0.01)
    assert after[("funasr_stage_seconds_count", (("stage", "offline_utterance"),))] == 1
    assert after[("funasr_stage_seconds_sum", (("stage", "offline_utterance"),))] > 0
    assert after[("funasr_errors_total", (("kind", "protocol"),))] == 1
    assert after[("funasr_errors_total", (("kind", "unauthorized"),))] == 1


def test_streaming_metrics():
    from tests.harness import fixture_settings_2pass

    with ServerThread(fixture_settings_2pass()) as server:
        with connect(server.url) as ws:
            ws.send(json.dumps({"mode": "2pass", "chunk_size": [5, 10, 5]}))
            audio = fixture_pcm()
            for i in range(0, len(audio), 19200):
                ws.send(audio[i : i + 19200])
            assert scrape(server)[("funasr_connections", (("mode", "2pass"),))] == 1
            ws.send(json.dumps({"is_speaking": False}))
            while not json.loads(ws.recv(timeout=30))["is_final"]:
                pass
            ws.send(json.dumps({"mode": "online"}))  # no chunk_size change needed; mode only
            ws.send(json.dumps({"mode": "2pass", "wav_format": "mp3"}))
            ws.send(b"\x00" * 100)
            assert json.loads(ws.recv(timeout=10))["is_final"] is True
        metrics = scrape(server)
    assert metrics[("funasr_audio_seconds_total", (("mode", "2pass"),))] == pytest.approx(len(audio) / 32000, abs=0.01)
    assert metrics[("funasr_stage_seconds_count", (("stage", "stream_piece"),))] >= 9
    assert metrics[("funasr_stage_seconds_count", (("stage", "stream_final"),))] == 1
    assert metrics[("funasr_errors_total", (("kind", "format"),))] == 1
