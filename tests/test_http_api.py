"""The OpenAI-compatible HTTP API (``POST /v1/audio/transcriptions``) on the WebSocket port.

The official ``openai`` SDK and ``curl`` run against a real server; each result is compared with
the WebSocket offline result for the same file (text, sentence times, unit times).
"""
from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import openai
import pytest
from websockets.sync.client import connect

from funasr_wss.server.decoder_pool import DecoderPool
from funasr_wss.server.http_routes import AccessPolicy
from funasr_wss.server.session import SessionLimits
from funasr_wss.server.tls import TlsPolicy, self_signed_pair, server_context
from tests.harness import ServerThread, fixture_settings
from tests.helpers import ZH01, fixture_pcm
from tests.paths import AUDIO, SENSEVOICE_DIR

CLIPS = (ZH01, "zh03_triton_mid.wav", "zh14_sensevoice_zh.mp3")
KEY = "s3cret-key"


@pytest.fixture(scope="module")
def models():
    from funasr_wss.server.model_loader import load_models

    return load_models(fixture_settings())


def sdk(server_url: str, key: str = "unused", **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=server_url + "/v1", api_key=key, max_retries=0, timeout=60, **kw)


def ws_offline(url: str, data: bytes, wav_format: str, **config) -> dict:
    """The WebSocket offline result for one upload, as FunASR's clients get it."""
    with connect(url, **config.pop("connect", {})) as ws:
        ws.send(json.dumps({"mode": "offline", "wav_name": "ws", "wav_format": wav_format, **config}))
        for i in range(0, len(data), 1 << 20):
            ws.send(data[i:i + (1 << 20)])
        ws.send(json.dumps({"is_speaking": False}))
        return json.loads(ws.recv(timeout=60))


def curl(url: str, *args: str) -> Tuple[int, Dict[str, str], bytes]:
    """``curl`` in a subprocess: (status, headers lower-cased, body)."""
    proc = subprocess.run(["curl", "-sS", "-i", "--max-time", "60", *args, url], capture_output=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    raw = proc.stdout
    while raw.startswith(b"HTTP/1.1 100"):  # curl prints the 100 Continue too
        raw = raw.split(b"\r\n\r\n", 1)[1]
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def error_of(body: bytes) -> dict:
    """OpenAI's error shape, asserted: ``{"error": {"message", "type", "param", "code"}}``."""
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def expected_segments(ws: dict) -> List[Tuple[float, float]]:
    return [(s["start"] / 1000, s["end"] / 1000) for s in ws["stamp_sents"]]


def expected_words(ws: dict) -> List[Tuple[float, float]]:
    return [(a / 1000, b / 1000) for s in ws["stamp_sents"] for a, b in s["ts_list"]]


# ------------------------------------------------------------------ every response format, equal to the WebSocket


@pytest.mark.parametrize("clip", CLIPS)
def test_every_response_format_equals_the_websocket_offline_result(offline_server, clip):
    data = (AUDIO / clip).read_bytes()
    ws = ws_offline(offline_server.url, data, Path(clip).suffix[1:])
    assert ws["text"] and ws["stamp_sents"]
    client = sdk(offline_server.http_url)
    path = AUDIO / clip

    plain = client.audio.transcriptions.create(file=path, model="paraformer")
    assert plain.text == ws["text"]
    assert client.audio.transcriptions.create(file=path, model="x", response_format="text") == ws["text"] + "\n"

    verbose = client.audio.transcriptions.create(file=path, model="x", response_format="verbose_json",
                                                 timestamp_granularities=["segment", "word"])
    assert verbose.text == ws["text"]
    assert [(s.start, s.end) for s in verbose.segments] == expected_segments(ws)
    assert "".join(s.text for s in verbose.segments).replace(" ", "") == ws["text"].replace(" ", "")
    # each segment is its sentence piece as the text writes it, closing mark included
    assert [s.text for s in verbose.segments] == [_tidy(p["text_seg"]) + p["punc"] for p in ws["stamp_sents"]]
    assert [(w.start, w.end) for w in verbose.words] == expected_words(ws)
    assert [(w.start, w.end) for w in verbose.words] == [(a / 1000, b / 1000) for a, b in json.loads(ws["timestamp"])]
    assert verbose.duration == pytest.approx(verbose.usage.seconds) and verbose.duration > 1

    words_only = client.audio.transcriptions.create(file=path, model="x", response_format="verbose_json",
                                                    timestamp_granularities=["word"])
    assert words_only.segments is None and len(words_only.words) == len(verbose.words)

    srt = client.audio.transcriptions.create(file=path, model="x", response_format="srt")
    cues = [c.split("\n") for c in srt.strip().split("\n\n")]
    assert [int(c[0]) for c in cues] == list(range(1, len(verbose.segments) + 1))
    assert [c[2] for c in cues] == [s.text for s in verbose.segments]
    first = ws["stamp_sents"][0]
    assert cues[0][1] == f"{_clock(first['start'], ',')} --> {_clock(first['end'], ',')}"

    vtt = client.audio.transcriptions.create(file=path, model="x", response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n")
    vtt_cues = [c.split("\n") for c in vtt.strip().split("\n\n")[1:]]
    assert vtt_cues[0][0] == f"{_clock(first['start'], '.')} --> {_clock(first['end'], '.')}"
    assert [c[1] for c in vtt_cues] == [c[2] for c in cues]


def _tidy(text_seg: str) -> str:
    """A piece's space-separated units as the text writes them: no space next to a CJK character."""
    return re.sub(r" (?=[\u2e80-\uffff])|(?<=[\u2e80-\uffff]) ", "", text_seg)


def _clock(ms: int, sep: str) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ms // 1000)) + f"{sep}{ms % 1000:03d}"


def test_stream_sends_a_delta_per_segment_then_done(offline_server):
    data = (AUDIO / ZH01).read_bytes()
    ws = ws_offline(offline_server.url, data, "wav")
    events = list(sdk(offline_server.http_url).audio.transcriptions.create(
        file=AUDIO / ZH01, model="x", stream=True))
    deltas, done = events[:-1], events[-1]
    assert [e.type for e in deltas] == ["transcript.text.delta"] * len(ws["stamp_sents"])
    assert "".join(e.delta for e in deltas) == ws["text"]
    assert done.type == "transcript.text.done" and done.text == ws["text"]
    # our extension: each delta's segment times
    assert [(e.start, e.end) for e in deltas] == expected_segments(ws)
    status, headers, body = curl(offline_server.http_url + "/v1/audio/transcriptions",
                                 "-F", f"file=@{AUDIO / ZH01}", "-F", "stream=true")
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert body.decode().count("data: ") == len(events) and body.endswith(b"\n\n")


def test_curl_uploads_a_file_and_raw_pcm_with_extension_fields(offline_server, tmp_path):
    url = offline_server.http_url + "/v1/audio/transcriptions"
    status, headers, body = curl(url, "-F", f"file=@{AUDIO / ZH01}", "-F", "model=whatever", "-F", "itn=false",
                                 "-F", "response_format=json")
    assert status == 200 and headers["content-type"] == "application/json"
    ws = ws_offline(offline_server.url, (AUDIO / ZH01).read_bytes(), "wav", itn=False)
    assert json.loads(body)["text"] == ws["text"]
    # raw PCM: a .pcm name, or audio/L16 with its rate; both as the WebSocket's pcm at that rate
    pcm = fixture_pcm()
    (tmp_path / "clip.pcm").write_bytes(pcm)
    ws_pcm = ws_offline(offline_server.url, pcm, "pcm", audio_fs=16000)
    status, _, body = curl(url, "-F", f"file=@{tmp_path / 'clip.pcm'}", "-F", "response_format=text")
    assert status == 200 and body.decode() == ws_pcm["text"] + "\n"
    (tmp_path / "clip.bin").write_bytes(pcm[: len(pcm) // 2 * 2])
    status, _, body = curl(url, "-F", f"file=@{tmp_path / 'clip.bin'};type=audio/L16", "-F", "audio_fs=16000")
    assert status == 200 and json.loads(body)["text"] == ws_pcm["text"]
    # the same samples said to be 8 kHz are resampled as the WebSocket side does
    ws_8k = ws_offline(offline_server.url, pcm, "pcm", audio_fs=8000)
    status, _, body = curl(url, "-F", f"file=@{tmp_path / 'clip.pcm'}", "-F", "audio_fs=8000")
    assert status == 200 and json.loads(body)["text"] == ws_8k["text"]


def test_models_openapi_and_the_old_routes_share_the_port(offline_server):
    models = sdk(offline_server.http_url).models.list()
    (model,) = models.data
    assert model.id == Path(offline_server.settings.model_dir).name and model.owned_by == "funasr"
    status, _, body = curl(offline_server.http_url + f"/v1/models/{model.id}")
    assert status == 200 and json.loads(body)["id"] == model.id
    status, headers, body = curl(offline_server.http_url + "/openapi.json")
    spec = json.loads(body)
    assert status == 200 and spec["openapi"].startswith("3.")
    form = spec["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert form["schema"]["properties"]["response_format"]["enum"] == ["json", "text", "srt", "vtt", "verbose_json"]
    # websockets still answers everything else, on the same port
    assert curl(offline_server.http_url + "/health")[0] == 200
    assert curl(offline_server.http_url + "/")[1]["content-type"].startswith("text/html")
    status, _, body = curl(offline_server.http_url + "/v1/chat/completions", "-d", "{}")
    assert status == 404 and error_of(body)["code"] == "not_found"
    status, headers, body = curl(offline_server.http_url + "/v1/audio/transcriptions")
    assert status == 405 and headers["allow"] == "POST" and error_of(body)["code"] == "method_not_allowed"
    metrics = curl(offline_server.http_url + "/metrics")[2].decode()
    assert 'funasr_http_requests_total{endpoint="models",status="200"}' in metrics
    assert 'funasr_http_request_seconds_count{endpoint="transcriptions"}' in metrics


def test_keep_alive_serves_several_requests_on_one_connection(offline_server):
    client = sdk(offline_server.http_url)  # httpx keeps its connection open between calls
    texts = {client.audio.transcriptions.create(file=AUDIO / ZH01, model="x").text for _ in range(3)}
    assert len(texts) == 1
    with socket.create_connection(("127.0.0.1", offline_server.server.port), timeout=10) as s:
        for _ in range(2):
            s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
            head = _read_head(s)
            assert head.startswith(b"HTTP/1.1 200")
            length = int(next(v for k, v in _headers(head).items() if k == "content-length"))
            assert json.loads(_read_exactly(s, length))["object"] == "list"


def _read_head(s: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def _read_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk
        data += chunk
    return data


def _headers(head: bytes) -> Dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("args,status,param", [
    (["-F", "file=@{empty}"], 400, "file"),
    (["-F", "model=x"], 400, "file"),
    (["-F", "file=@{garbage}"], 415, "file"),
    (["-F", "file=@{wav}", "-F", "response_format=xml"], 400, "response_format"),
    (["-F", "file=@{wav}", "-F", "temperature=hot"], 400, "temperature"),
    (["-F", "file=@{wav}", "-F", "stream=maybe"], 400, "stream"),
    (["-F", "file=@{wav}", "-F", "itn=maybe"], 400, "itn"),
    (["-F", "file=@{wav}", "-F", "timestamp_granularities[]=sentence"], 400, "timestamp_granularities"),
    (["-F", "file=@{wav}", "-F", "model=a", "-F", "model=b"], 400, "model"),
    (["-F", "file=@{wav}", "-F", "file=@{wav}"], 400, "file"),
    (["-F", "file=@{pcm}", "-F", "audio_fs=12"], 400, None),
    (["-F", "file=@{pcm}", "-F", "audio_fs=many"], 400, None),
    (["--data-binary", "@{wav}", "-H", "Content-Type: audio/wav"], 415, None),
    (["-d", "file=x"], 415, None),
])
def test_bad_uploads_get_the_right_status_and_openai_error_shape(offline_server, tmp_path, args, status, param):
    files = {"empty": b"", "garbage": b"\x00\x01garbage, not audio" * 50, "wav": (AUDIO / ZH01).read_bytes(),
             "pcm": fixture_pcm()}
    names = {}
    for name, data in files.items():
        path = tmp_path / (name + (".pcm" if name == "pcm" else ".wav"))
        path.write_bytes(data)
        names[name] = str(path)
    status_got, headers, body = curl(offline_server.http_url + "/v1/audio/transcriptions",
                                     *[a.format(**names) for a in args])
    assert status_got == status, body
    error = error_of(body)
    assert error["type"] == "invalid_request_error" and headers["content-type"] == "application/json"
    if param is not None:
        assert error["param"] == param
    # the server is unharmed: the next request succeeds
    assert curl(offline_server.http_url + "/v1/models")[0] == 200


def test_malformed_http_and_multipart_bodies_are_refused(offline_server):
    port = offline_server.server.port

    def exchange(raw: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out
                out += chunk

    # a body that stops before its closing boundary
    body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nRIFF"
    answer = exchange(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                      b"boundary=b\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    assert answer.startswith(b"HTTP/1.1 400") and b"closing boundary" in answer
    # a part without a name
    body = b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n"
    answer = exchange(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                      b"boundary=b\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    assert answer.startswith(b"HTTP/1.1 400")
    # not HTTP at all after a claimed request line
    answer = exchange(b"POST /v1/audio/transcriptions HTTP/1.1\r\n\x00\x01\x02\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400")
    assert curl(offline_server.http_url + "/v1/models")[0] == 200


def test_uploads_over_the_limits_get_413_before_the_body_is_read(models, tmp_path):
    limits = SessionLimits(max_utterance_bytes=64 << 10, max_utterance_seconds=2, max_text_bytes=1 << 10)
    with ServerThread(fixture_settings(), models=models, limits=limits) as server:
        url = server.http_url + "/v1/audio/transcriptions"
        with pytest.raises(openai.APIStatusError) as err:
            sdk(server.http_url).audio.transcriptions.create(file=AUDIO / ZH01, model="x")  # 177 kB
        assert err.value.status_code == 413 and err.value.body["code"] == "file_too_large"
        # a declared length over the cap is answered at once, the body never sent
        with socket.create_connection(("127.0.0.1", server.server.port), timeout=10) as s:
            s.sendall(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                      b"boundary=b\r\nContent-Length: 1073741824\r\n\r\n")
            assert _read_head(s).startswith(b"HTTP/1.1 413")
        # chunked, without a length: cut off once the counted bytes pass the cap
        big = tmp_path / "big.wav"
        big.write_bytes((AUDIO / ZH01).read_bytes() * 2)
        status, _, body = curl(url, "-H", "Transfer-Encoding: chunked", "-F", f"file=@{big}")
        assert status == 413 and error_of(body)["code"] == "file_too_large"
        # a small file that decodes to more than --max-utterance-seconds
        pcm = tmp_path / "long.pcm"
        pcm.write_bytes(b"\x00\x01" * 8000 * 3)  # 3 s at 8 kHz, 48 kB
        status, _, body = curl(url, "-F", f"file=@{pcm}", "-F", "audio_fs=8000")
        assert status == 413 and error_of(body)["code"] == "audio_too_long"
        # a text field over --max-text-kib
        status, _, body = curl(url, "-F", "prompt=" + "词" * 2000, "-F", f"file=@{pcm}")
        assert status == 413
        assert server.server.audio_budget.used_bytes == 0


def test_the_server_audio_budget_is_shared_with_http(models):
    with ServerThread(fixture_settings(), models=models, max_buffered_audio_bytes=32 << 10) as server:
        with pytest.raises(openai.APIStatusError) as err:
            sdk(server.http_url).audio.transcriptions.create(file=AUDIO / ZH01, model="x")
        assert err.value.status_code == 503 and "--max-buffered-audio-mib" in err.value.body["message"]
        assert server.server.audio_budget.used_bytes == 0


# ------------------------------------------------------------------ security, admission, TLS


def test_api_key_is_required_over_http_as_over_websocket(models):
    with ServerThread(fixture_settings(), models=models, access=AccessPolicy(api_key=KEY)) as server:
        with pytest.raises(openai.AuthenticationError) as err:
            sdk(server.http_url, key="wrong").audio.transcriptions.create(file=AUDIO / ZH01, model="x")
        assert err.value.status_code == 401 and err.value.body["code"] == "invalid_api_key"
        # no key at all (the SDK always sends one; curl need not)
        status, headers, body = curl(server.http_url + "/v1/audio/transcriptions", "-F", f"file=@{AUDIO / ZH01}")
        assert status == 401 and headers["www-authenticate"] == "Bearer" and error_of(body)["code"] == "invalid_api_key"
        assert curl(server.http_url + "/v1/models")[0] == 401
        assert curl(server.http_url + "/v1/models", "-H", f"Authorization: Bearer {KEY}")[0] == 200
        assert sdk(server.http_url, key=KEY).audio.transcriptions.create(file=AUDIO / ZH01, model="x").text
        assert sdk(server.http_url, key=KEY).models.list().data
        assert curl(server.http_url + "/openapi.json")[0] == 200  # the description is public, like /health
        metrics = curl(server.http_url + "/metrics")[2].decode()
        assert 'funasr_http_requests_total{endpoint="transcriptions",status="401"} 2.0' in metrics


def test_https_with_the_self_signed_certificate(models, tmp_path):
    cert, key = self_signed_pair(tmp_path)
    with ServerThread(fixture_settings(), models=models, tls=TlsPolicy(server_context(cert, key))) as server:
        port = server.server.port
        trusting = ssl.create_default_context(cafile=str(cert))
        client = sdk(f"https://localhost:{port}", http_client=openai.DefaultHttpxClient(verify=trusting))
        secure = client.audio.transcriptions.create(file=AUDIO / ZH01, model="x", response_format="verbose_json")
        plain = sdk(server.http_url).audio.transcriptions.create(file=AUDIO / ZH01, model="x")
        wss = ws_offline(f"wss://localhost:{port}", (AUDIO / ZH01).read_bytes(), "wav", connect={"ssl": trusting})
        assert secure.text == plain.text == wss["text"]
        events = list(client.audio.transcriptions.create(file=AUDIO / ZH01, model="x", stream=True))
        assert events[-1].text == wss["text"]
        status, _, body = curl(f"https://localhost:{port}/v1/audio/transcriptions", "--cacert", str(cert),
                               "-F", f"file=@{AUDIO / ZH01}", "-F", "response_format=text")
        assert status == 200 and body.decode() == wss["text"] + "\n"


def test_503_while_loading_and_beyond_max_connections(models):
    with ServerThread(fixture_settings(), load=False) as loading:
        status, headers, body = curl(loading.http_url + "/v1/audio/transcriptions", "-F", f"file=@{AUDIO / ZH01}")
        assert status == 503 and error_of(body)["code"] == "unavailable" and "retry-after" in headers
    with ServerThread(fixture_settings(), models=models, access=AccessPolicy(max_connections=1)) as server:
        with connect(server.url):  # one WebSocket holds the only slot
            with pytest.raises(openai.APIStatusError) as err:
                sdk(server.http_url).audio.transcriptions.create(file=AUDIO / ZH01, model="x")
            assert err.value.status_code == 503 and err.value.body["code"] == "overloaded"
        time.sleep(0.2)
        assert sdk(server.http_url).audio.transcriptions.create(file=AUDIO / ZH01, model="x").text


class SlowPool(DecoderPool):
    """Each model job starts 1.5 s late: long enough to drain or to connect meanwhile."""

    async def run(self, fn, *args, **kwargs):
        await asyncio.sleep(1.5)
        return await super().run(fn, *args, **kwargs)


def test_an_http_transcription_holds_the_drain_and_a_websocket_slot(models):
    with ServerThread(fixture_settings(), models=models, pool_factory=SlowPool,
                      access=AccessPolicy(max_connections=1)) as server:
        result: Dict[str, object] = {}

        def post() -> None:
            result["text"] = sdk(server.http_url).audio.transcriptions.create(file=AUDIO / ZH01, model="x").text

        worker = threading.Thread(target=post)
        worker.start()
        deadline = time.time() + 10
        while server.server.http_api.in_flight == 0 and time.time() < deadline:
            time.sleep(0.02)
        assert server.server.http_api.in_flight == 1
        # the transcription holds the only --max-connections slot
        with pytest.raises(Exception) as refused:
            with connect(server.url, open_timeout=5):
                pass
        assert "503" in str(refused.value)
        drained = server.start_call(server.server.drain(20))
        worker.join(30)
        assert result["text"]  # answered in full during the drain
        drained.result(30)


# ------------------------------------------------------------------ concurrency and SenseVoice


def test_concurrent_http_and_websocket_clients_get_their_results_alone(offline_server):
    alone_http = {c: sdk(offline_server.http_url).audio.transcriptions.create(file=AUDIO / c, model="x").text
                  for c in CLIPS}
    alone_ws = {c: ws_offline(offline_server.url, (AUDIO / c).read_bytes(), Path(c).suffix[1:])["text"] for c in CLIPS}
    assert alone_http == alone_ws

    def http_job(clip: str) -> Tuple[str, str]:
        return clip, sdk(offline_server.http_url).audio.transcriptions.create(file=AUDIO / clip, model="x").text

    def ws_job(clip: str) -> Tuple[str, str]:
        return clip, ws_offline(offline_server.url, (AUDIO / clip).read_bytes(), Path(clip).suffix[1:])["text"]

    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(job, c) for c in CLIPS for job in (http_job, ws_job) for _ in range(2)]
        for future in futures:
            clip, text = future.result(120)
            assert text == alone_ws[clip]


def test_sensevoice_language_goes_to_svs_lang_and_tags_come_back():
    settings = fixture_settings(model_dir=str(SENSEVOICE_DIR), punc_dir=None)
    with ServerThread(settings) as server:
        data = (AUDIO / ZH01).read_bytes()
        client = sdk(server.http_url)
        for lang in ("en", "ja"):
            ws = ws_offline(server.url, data, "wav", svs_lang=lang, svs_itn=False)
            verbose = client.audio.transcriptions.create(file=AUDIO / ZH01, model="x", language=lang,
                                                         response_format="verbose_json",
                                                         extra_body={"svs_itn": "false"})
            assert verbose.text == ws["text"]
            extra = verbose.model_extra or {}
            assert verbose.language == ws["language"] and extra.get("emotion") == ws.get("emotion")
            assert extra.get("event") == ws.get("event")
            assert len(verbose.segments) == (1 if ws["text"] else 0)
        with pytest.raises(openai.BadRequestError) as err:
            client.audio.transcriptions.create(file=AUDIO / ZH01, model="x", language="klingon")
        assert err.value.body["param"] == "language"


def test_a_paraformer_ignores_language_and_takes_prompt_as_hotwords(offline_server):
    client = sdk(offline_server.http_url)
    base = client.audio.transcriptions.create(file=AUDIO / ZH01, model="x").text
    assert client.audio.transcriptions.create(file=AUDIO / ZH01, model="x", language="klingon").text == base
    ws = ws_offline(offline_server.url, (AUDIO / ZH01).read_bytes(), "wav", hotwords='{"阿里巴巴": 20}')
    hot = client.audio.transcriptions.create(file=AUDIO / ZH01, model="x", prompt='{"阿里巴巴": 20}')
    assert hot.text == ws["text"]
    # hotwords the model cannot spell are dropped with a warning, as on the WebSocket side
    bad = client.audio.transcriptions.with_raw_response.create(file=AUDIO / ZH01, model="x", prompt='{"": "x"}')
    warned: Optional[str] = bad.headers.get("x-funasr-warning")
    assert warned and json.loads(bad.text).get("warning")
