"""The browser page at ``/``: its HTTP side, then the page itself in a headless Chromium.

The browser tests drive Debian's ``chromium`` through its ``chromedriver`` (Selenium, with the
driver's path given, so nothing is downloaded).  Chromium's fake microphone plays a fixture wav;
every message the server sends is recorded on the server side (:class:`Tap`), and the page must
have received exactly those and show their text.  Without the browser these tests fail with the
command that installs it; they never skip (``.ci/run`` installs it).
"""
from __future__ import annotations

import http.client
import json
import shutil
import ssl
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from funasr_wss.server import app as server_app
from funasr_wss.server.cli import settings_from_args
from funasr_wss.server.http_routes import AccessPolicy
from funasr_wss.server.offline_session import OfflineSession
from funasr_wss.server.streaming_session import StreamingSession
from funasr_wss.server.tls import TlsPolicy, self_signed_pair, server_context
from funasr_wss.server.web_page import ROUTES, WEB_DIR, content_security_policy
from tests.harness import ServerThread, fixture_settings, fixture_settings_2pass
from tests.helpers import wav_pcm
from tests.paths import AUDIO

KEY = "page-test-key"
APT = "apt-get install -y chromium chromium-driver"
MIC_CLIP = AUDIO / "zh01_asr_example_zh.wav"  # 16 kHz 16-bit mono: what --use-file-for-fake-audio-capture plays
UPLOAD_WAV = AUDIO / "zh03_triton_mid.wav"
UPLOAD_MP3 = AUDIO / "zh14_sensevoice_zh.mp3"
REMOTE_NAME = "funasr.test"  # the browser resolves it to 127.0.0.1: the page as seen from another machine


# ---------------------------------------------------------------------------------- servers


class Tap:
    """Every message the servers' sessions send, as sent: what the page is checked against."""

    def __init__(self):
        self.sent: List[dict] = []

    def wrap(self, session_class):
        tap = self

        class Recorded(session_class):
            def __init__(self, models, pool, send, *args, **kwargs):
                async def send_and_record(text: str) -> None:
                    tap.sent.append(json.loads(text))
                    await send(text)

                super().__init__(models, pool, send_and_record, *args, **kwargs)

        return Recorded


@pytest.fixture(scope="module")
def tap():
    tap = Tap()
    with pytest.MonkeyPatch.context() as mp:  # AsrServer.handle looks the classes up per connection
        mp.setattr(server_app, "StreamingSession", tap.wrap(StreamingSession))
        mp.setattr(server_app, "OfflineSession", tap.wrap(OfflineSession))
        yield tap


@pytest.fixture(scope="module")
def tls_policy(tmp_path_factory) -> TlsPolicy:
    return TlsPolicy(server_context(*self_signed_pair(tmp_path_factory.mktemp("tls"))))


@pytest.fixture(scope="module")
def guarded(offline_server, tls_policy):
    """Offline profile, ws:// and wss:// on one port, an API key and room for one WebSocket."""
    access = AccessPolicy(api_key=KEY, max_connections=1)
    with ServerThread(fixture_settings(), models=offline_server.models, tls=tls_policy, access=access) as server:
        yield server


@pytest.fixture(scope="module")
def streaming(two_pass_server, tls_policy, tap):
    """2pass profile, http:// and https:// (ws:// and wss://) on one port."""
    with ServerThread(fixture_settings_2pass(), models=two_pass_server.models, tls=tls_policy) as server:
        yield server


@pytest.fixture(scope="module")
def offline_only(offline_server, tap):
    with ServerThread(fixture_settings(), models=offline_server.models) as server:
        yield server


@pytest.fixture(scope="module")
def keyed(offline_server, tap):
    with ServerThread(fixture_settings(), models=offline_server.models, access=AccessPolicy(api_key=KEY)) as server:
        yield server


# ---------------------------------------------------------------------------------- HTTP side


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def fetch(server, path: str = "/", method: str = "GET", tls: bool = False, headers: Optional[dict] = None) -> Reply:
    port = server.server.port
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the self-signed certificate
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return Reply(r.status, r.headers, r.read())
    finally:
        conn.close()


def refused_status(url: str) -> int:
    with pytest.raises(InvalidStatus) as err:
        with connect(url, open_timeout=10):
            pass
    return err.value.response.status_code


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_page_and_its_files_are_served_with_their_headers(guarded, tls):
    port = guarded.server.port
    for path, (name, content_type) in ROUTES.items():
        r = fetch(guarded, path, tls=tls)
        assert r.status == 200, path
        assert r.headers.get_all("Content-Type") == [content_type]
        assert int(r.headers["Content-Length"]) == len(r.body) > 0
        assert r.headers["Cache-Control"] == "no-cache" and r.headers["ETag"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Referrer-Policy"] == "no-referrer"
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert f"connect-src 'self' ws://127.0.0.1:{port} wss://127.0.0.1:{port}" in csp
        if name != "index.html":
            assert r.body == (WEB_DIR / name).read_bytes()
    index = fetch(guarded, "/", tls=tls).body.decode()
    # filled in: this server's profile, and that the WebSocket needs a key
    assert '<meta name="funasr-profile" content="offline">' in index
    assert '<meta name="funasr-api-key" content="required">' in index
    assert "{{" not in index and 'src="app.js"' in index and "http" not in index.replace("http-equiv", "")


def test_revalidation_gets_304(guarded):
    first = fetch(guarded, "/")
    again = fetch(guarded, "/", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304 and again.body == b"" and again.headers["ETag"] == first.headers["ETag"]
    assert fetch(guarded, "/", headers={"If-None-Match": '"other"'}).status == 200


def test_head_and_other_methods(guarded):
    head = fetch(guarded, "/app.js", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert int(head.headers["Content-Length"]) == len((WEB_DIR / "app.js").read_bytes())
    post = fetch(guarded, "/", method="POST")
    assert post.status == 405 and post.headers["Allow"] == "GET, HEAD"


def test_page_is_public_and_uncounted_while_the_websocket_on_root_needs_the_key(guarded):
    assert refused_status(guarded.url + "/") == 401  # the WebSocket on / without the key
    assert refused_status(guarded.url + "/?token=wrong") == 401
    with connect(guarded.url + f"/?token={KEY}") as ws:  # the one WebSocket allowed, on /
        # the page, /health and /metrics still answer, with no key and the limit reached (/health: full)
        assert fetch(guarded, "/").status == 200
        assert fetch(guarded, "/", tls=True).status == 200
        health = fetch(guarded, "/health")
        assert health.status == 503 and json.loads(health.body)["status"] == "full"
        assert refused_status(guarded.url + f"/?token={KEY}") == 503  # a second WebSocket is over the limit
        ws.send(json.dumps({"mode": "offline", "wav_name": "root"}))
        ws.send(wav_pcm(UPLOAD_WAV))
        ws.send(json.dumps({"is_speaking": False}))
        answer = json.loads(ws.recv(timeout=60))
        assert answer["wav_name"] == "root" and answer["text"]


def test_other_paths_are_404_and_the_side_endpoints_still_work(guarded):
    for path in ("/nope", "/index.htm", "/app.js.map", "/web/app.js", "/../server/web/app.js", "/static/main.js"):
        r = fetch(guarded, path)
        assert r.status == 404, path
        assert b"/health" in r.body
    metrics = fetch(guarded, "/metrics")
    assert metrics.status == 200 and len(metrics.headers.get_all("Content-Type")) == 1
    assert metrics.headers["Content-Type"].startswith("text/plain; version=")
    health = fetch(guarded, "/health", tls=True)
    assert health.status == 200 and json.loads(health.body)["status"] == "ready"


def test_page_while_loading_and_turned_off(offline_server):
    with ServerThread(fixture_settings(), load=False) as loading:
        page = fetch(loading, "/")
        assert page.status == 200 and b'<meta name="funasr-profile" content="">' in page.body
        assert b'content="none"' in page.body  # no API key
        assert fetch(loading, "/health").status == 503
    with ServerThread(fixture_settings(), models=offline_server.models, web_page=False) as bare:
        assert fetch(bare, "/").status == 404 and fetch(bare, "/app.js").status == 404
        assert b"web page" not in fetch(bare, "/").body
        assert fetch(bare, "/health").status == 200
        with connect(bare.url + "/") as ws:  # the WebSocket on / is unaffected
            ws.send(json.dumps({"mode": "offline"}))
            ws.send(wav_pcm(UPLOAD_WAV))
            ws.send(json.dumps({"is_speaking": False}))
            assert json.loads(ws.recv(timeout=60))["text"]


def test_no_web_page_flag():
    assert settings_from_args([]).web_page is True
    assert settings_from_args(["--no-web-page"]).web_page is False
    assert settings_from_args(["--no_web_page"]).web_page is False


def test_csp_repeats_only_a_plain_host_header():
    assert "ws://localhost:10096 wss://localhost:10096" in content_security_policy("localhost:10096")
    assert "ws://[::1]:10096" in content_security_policy("[::1]:10096")
    for hostile in ("evil.example; script-src *", "a b", "x'y", None, ""):
        csp = content_security_policy(hostile)
        assert "connect-src 'self'; " in csp and "evil" not in csp and "*" not in csp


def test_package_data_covers_every_file_of_the_page():
    import fnmatch
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text("utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["funasr_wss.server"]
    for name, _ in ROUTES.values():
        assert (WEB_DIR / name).is_file()
        assert any(fnmatch.fnmatch(f"web/{name}", p) for p in patterns), name


# ---------------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.fail(
            f"the web page tests need Debian's Chromium and its driver on PATH; install them with: {APT} "
            "(as root; .ci/run does it when they are missing)",
            pytrace=False,
        )
    try:
        from selenium import webdriver
    except ImportError:
        pytest.fail("the web page tests need selenium: pip install -e '.[test]'", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--ignore-certificate-errors",  # the server's self-signed certificate, for https:// and wss://
        "--use-fake-ui-for-media-stream",  # grant the microphone without asking
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={MIC_CLIP}%noloop",
        "--autoplay-policy=no-user-gesture-required",
        f"--host-resolver-rules=MAP {REMOTE_NAME} 127.0.0.1",  # a host name that is not a secure context
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # the driver's path is given, so Selenium Manager never tries to download anything
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=chromedriver))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The page in the browser, with waits that say what the page showed when they time out."""

    def __init__(self, driver, url: str):
        self.driver = driver
        driver.get(url)
        self.wait("window.funasrPage && window.funasrPage.state === 'idle'", timeout=30)

    def js(self, expression: str):
        return self.driver.execute_script(f"return {expression};")

    def text(self, element_id: str) -> str:
        return self.js(f"document.getElementById({element_id!r}).textContent")

    def shown(self, element_id: str) -> bool:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.ID, element_id).is_displayed()

    def click(self, element_id: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.ID, element_id).click()

    def type(self, element_id: str, value: str) -> None:
        from selenium.webdriver.common.by import By

        box = self.driver.find_element(By.ID, element_id)
        box.clear()
        box.send_keys(value)

    def transcribe_file(self, path: Path) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.ID, "file").send_keys(str(path))
        self.wait("!document.getElementById('upload').disabled")
        self.click("upload")
        self.wait("['done', 'error'].includes(window.funasrPage.state)")

    def record(self, seconds: float) -> None:
        """Start, let the fake microphone play ``seconds`` of audio into the page, stop, wait for the result."""
        self.click("start")
        self.wait("window.funasrPage.state === 'recording'")
        self.wait(f"window.funasrPage.sentSeconds >= {seconds}")
        self.click("stop")
        self.wait("['done', 'error'].includes(window.funasrPage.state)")

    def watch_live_text(self) -> None:
        """Keep every text the live (online) span shows, however briefly."""
        self.js(
            "(() => { window.liveShown = []; const live = document.getElementById('live-text');"
            " new MutationObserver(() => live.textContent && window.liveShown.push(live.textContent))"
            ".observe(live, {childList: true, characterData: true, subtree: true}); })()"
        )

    def wait(self, condition: str, timeout: float = 60) -> None:
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(f"return {condition};"))
        except TimeoutException:
            raise AssertionError(f"timed out after {timeout} s waiting for {condition}\n{self.describe()}") from None

    def describe(self) -> str:
        try:
            state = self.js("window.funasrPage ? JSON.stringify(window.funasrPage).slice(0, 3000) : 'no funasrPage'")
            shown = f"status: {self.text('status')!r}, error: {self.text('error')!r}, transcript: {self.text('transcript')!r}"
        except Exception as exc:  # the page itself is broken
            state, shown = f"(cannot read the page: {exc})", ""
        console = "\n".join(f"  {e['level']} {e['message']}" for e in self.driver.get_log("browser"))
        return f"page: {state}\n{shown}\nconsole:\n{console}"


def settle(server, timeout: float = 10) -> None:
    """Wait until the server has closed every session, so no earlier message reaches the tap later."""
    deadline = time.monotonic() + timeout
    while server.server.active_sessions and time.monotonic() < deadline:
        time.sleep(0.02)


def clip_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def test_microphone_in_2pass_shows_live_text_then_each_corrected_sentence(browser, streaming, tap):
    page = Page(browser, streaming.http_url + "/")  # http://127.0.0.1: a secure context, the microphone is allowed
    assert page.js("document.getElementById('mode').value") == "2pass"
    assert "streams" in page.text("server-info") and not page.shown("token-row")  # no key needed
    assert not page.shown("mic-note") and page.js("!document.getElementById('start').disabled")
    page.watch_live_text()
    settle(streaming)
    tap.sent.clear()
    page.record(clip_seconds(MIC_CLIP) + 0.5)
    sent = list(tap.sent)
    assert page.js("window.funasrPage.messages") == sent  # the page got every message, in order
    assert page.js("window.funasrPage.url") == streaming.url + "/"
    assert page.js("window.funasrPage.audioRate") >= 16000  # so the page downsampled to 16 kHz itself
    assert page.js("window.funasrPage.errors") == [] and page.text("status") == "Done."
    assert sent[-1]["is_final"] is True and sum(m["is_final"] for m in sent) == 1
    deltas = [m["text"] for m in sent if m["mode"] == "2pass-online"]
    corrected = [m for m in sent if m["mode"] == "2pass-offline"]
    assert deltas and corrected[0]["text"], sent
    # live: each delta was on the page as it came; final: the corrected sentences replaced them all
    shown = page.js("window.liveShown")
    assert all(any(d in s for s in shown) for d in deltas), (deltas, shown)
    assert page.text("transcript") == "".join(m["text"] for m in corrected)
    assert page.text("live-text") == ""
    rows = page.js("[...document.querySelectorAll('#sentences tbody tr')].map(r => [...r.cells].map(c => c.textContent))")
    pieces = [s for m in corrected for s in m.get("stamp_sents") or []]
    assert len(rows) == len(pieces) > 0
    assert rows[0][0] == f"{pieces[0]['start'] / 1000:.2f}" and rows[-1][1] == f"{pieces[-1]['end'] / 1000:.2f}"


def test_file_upload_over_https_and_wss(browser, streaming, tap):
    port = streaming.server.port
    page = Page(browser, f"https://127.0.0.1:{port}/")
    settle(streaming)
    tap.sent.clear()
    page.transcribe_file(UPLOAD_WAV)
    sent = list(tap.sent)
    assert page.js("window.funasrPage.url") == f"wss://127.0.0.1:{port}/"
    assert page.js("window.funasrPage.messages") == sent and page.js("window.funasrPage.errors") == []
    assert all(m["mode"] == "2pass-offline" and m["wav_name"] == UPLOAD_WAV.name for m in sent)
    assert sent[-1]["is_final"] is True
    text = "".join(m["text"] for m in sent)
    assert text and page.text("transcript") == text
    # the same file from a plain client gives the same text
    with connect(streaming.url) as ws:
        ws.send(json.dumps({"mode": "offline", "wav_name": "direct", "wav_format": "wav"}))
        ws.send(UPLOAD_WAV.read_bytes())
        ws.send(json.dumps({"is_speaking": False}))
        direct = []
        while not direct or not direct[-1]["is_final"]:
            direct.append(json.loads(ws.recv(timeout=60)))
    assert "".join(m["text"] for m in direct) == text


def test_offline_profile_offers_offline_only_and_answers_once(browser, offline_only, tap):
    page = Page(browser, offline_only.http_url + "/")
    assert page.js("document.getElementById('mode').value") == "offline"
    assert page.js("[...document.getElementById('mode').options].filter(o => !o.disabled).map(o => o.value)") == ["offline"]
    assert "offline profile" in page.text("server-info")
    settle(offline_only)
    tap.sent.clear()
    page.record(clip_seconds(MIC_CLIP) + 0.5)
    sent = list(tap.sent)
    assert len(sent) == 1 and sent[0]["mode"] == "offline" and sent[0]["text"], sent
    assert page.js("window.funasrPage.messages") == sent and page.text("status") == "Done."
    assert page.text("transcript") == sent[0]["text"]
    settle(offline_only)
    tap.sent.clear()
    page.transcribe_file(UPLOAD_MP3)  # a container the server decodes itself
    sent = list(tap.sent)
    assert [m["wav_name"] for m in sent] == [UPLOAD_MP3.name] and sent[0]["text"] and "error" not in sent[0]
    assert page.text("transcript") == sent[0]["text"] and page.text("status") == "Done."
    assert len(page.js("document.querySelectorAll('#sentences tbody tr')")) == len(sent[0]["stamp_sents"]) > 0


def test_api_key_box_and_errors_from_the_server(browser, keyed, tap, tmp_path):
    page = Page(browser, keyed.http_url + "/")
    assert page.shown("token-row")
    page.transcribe_file(UPLOAD_WAV)  # no key: the WebSocket is refused
    assert page.js("window.funasrPage.state") == "error"
    assert page.shown("error") and "could not connect" in page.text("error") and "API key" in page.text("error")
    page.type("token", KEY)
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"not audio at all" * 100)
    page.transcribe_file(broken)  # the server cannot decode it: its message is shown
    assert "server:" in page.text("error") and page.text("status") == "Finished with an error."
    page.type("hotwords", "达摩院 500")  # a weight the server cannot use: dropped with a warning, the text comes
    page.transcribe_file(UPLOAD_WAV)
    assert page.text("status") == "Done." and not page.shown("error") and page.text("transcript")
    assert "between 0 and 100" in page.js("window.funasrPage.messages")[-1]["warning"]
    page.type("hotwords", "达摩院 30")
    settle(keyed)
    tap.sent.clear()
    page.transcribe_file(UPLOAD_WAV)
    sent = list(tap.sent)
    assert page.text("status") == "Done." and not page.shown("error")
    assert len(sent) == 1 and page.text("transcript") == sent[0]["text"] != ""


def test_plain_http_from_another_host_points_to_https_for_the_microphone(browser, offline_only, tap):
    port = offline_only.server.port
    page = Page(browser, f"http://{REMOTE_NAME}:{port}/")  # not https, not localhost: no microphone
    assert page.js("window.isSecureContext") is False
    assert page.js("document.getElementById('start').disabled") and page.shown("mic-note")
    assert f"https://{REMOTE_NAME}:{port}/" in page.text("mic-note")
    assert page.js("document.querySelector('#mic-note a').href") == f"https://{REMOTE_NAME}:{port}/"
    settle(offline_only)
    tap.sent.clear()
    page.transcribe_file(UPLOAD_WAV)  # files still work, over ws://
    sent = list(tap.sent)
    assert page.js("window.funasrPage.url") == f"ws://{REMOTE_NAME}:{port}/"
    assert len(sent) == 1 and page.text("transcript") == sent[0]["text"] != ""


# ---------------------------------------------------------------------------------- downloads, playback, SenseVoice


def test_downloads_and_playback_follow_the_current_result(browser, offline_only, tap):
    page = Page(browser, offline_only.http_url + "/")
    assert not page.shown("svs-row")  # a Paraformer: no SenseVoice controls
    assert page.js("document.getElementById('openapi-link').href") == offline_only.http_url + "/openapi.json"
    assert page.js("document.getElementById('download-srt').disabled") is True
    settle(offline_only)
    tap.sent.clear()
    page.transcribe_file(UPLOAD_WAV)
    (result,) = [m for m in tap.sent if m.get("mode") == "offline"]
    pieces = result["stamp_sents"]
    assert pieces and page.text("status") == "Done."
    # SRT and VTT: a cue per sentence, the server's times; JSON: the text and the segments
    page.click("download-srt")
    srt = page.js("window.funasrPage.lastDownload")
    assert srt["name"] == UPLOAD_WAV.stem + ".srt"
    cues = [c.split("\n") for c in srt["text"].strip().split("\n\n")]
    assert len(cues) == len(pieces)
    assert [c[1] for c in cues] == [f"{_clock(p['start'], ',')} --> {_clock(p['end'], ',')}" for p in pieces]
    page.click("download-vtt")
    vtt = page.js("window.funasrPage.lastDownload")["text"]
    assert vtt.startswith("WEBVTT\n\n") and f"{_clock(pieces[0]['start'], '.')} --> " in vtt
    page.click("download-json")
    data = json.loads(page.js("window.funasrPage.lastDownload")["text"])
    assert data["text"] == result["text"] and [s["start"] for s in data["segments"]] == [p["start"] / 1000 for p in pieces]
    # the same file over the HTTP API gives the same cues
    import urllib.request
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"response_format\"\r\n\r\nsrt\r\n--{boundary}\r\n"
            f"Content-Disposition: form-data; name=\"file\"; filename=\"{UPLOAD_WAV.name}\"\r\n\r\n").encode()
    body += UPLOAD_WAV.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(offline_only.http_url + "/v1/audio/transcriptions", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=60) as r:
        http_cues = [c.split("\n") for c in r.read().decode().strip().split("\n\n")]
    assert [c[1] for c in http_cues] == [c[1] for c in cues]
    # playback of the uploaded file highlights the sentence being played
    assert page.shown("player")
    page.wait("document.getElementById('player').readyState >= 1")
    k = len(pieces) // 2
    middle = (pieces[k]["start"] + pieces[k]["end"]) / 2000
    page.js(f"(() => {{ document.getElementById('player').currentTime = {middle}; }})()")
    page.wait(f"window.funasrPage.currentSentence === {k}")
    rows = page.js("[...document.querySelectorAll('#sentences tbody tr')].map(r => r.classList.contains('current'))")
    assert rows == [i == k for i in range(len(pieces))]


def _clock(ms: int, sep: str) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ms // 1000)) + f"{sep}{ms % 1000:03d}"


@pytest.fixture(scope="module")
def sensevoice(tap):
    from tests.paths import SENSEVOICE_DIR

    with ServerThread(fixture_settings(model_dir=str(SENSEVOICE_DIR), punc_dir=None)) as server:
        yield server


def test_sensevoice_controls_are_shown_and_sent(browser, sensevoice, tap):
    page = Page(browser, sensevoice.http_url + "/")
    assert page.shown("svs-row")
    page.js("(() => { window.sentTexts = []; const send = WebSocket.prototype.send;"
            " WebSocket.prototype.send = function (data) { if (typeof data === 'string') window.sentTexts.push(data);"
            " return send.call(this, data); }; })()")
    page.js("(() => { const s = document.getElementById('svs-lang'); s.value = 'en'; })()")
    page.click("svs-itn")  # off
    page.transcribe_file(UPLOAD_WAV)
    config = json.loads(page.js("window.sentTexts[0]"))
    assert (config["svs_lang"], config["svs_itn"]) == ("en", False)
    assert page.text("status") == "Done."
