"""ws:// and wss:// on one port, TLS-only and plain-only servers, the self-signed certificate."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import stat
import time
import urllib.error
import urllib.request

import pytest
from websockets.sync.client import connect

from funasr_wss.server.tls import TlsPolicy, TlsSetupError, self_signed_pair, server_context
from tests.harness import ServerThread, fixture_settings
from tests.helpers import fixture_pcm
from tests.test_server_admission import get, scrape, transcribe


@pytest.fixture(scope="module")
def models():
    from funasr_wss.server.model_loader import load_models

    return load_models(fixture_settings())


@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory):
    return self_signed_pair(tmp_path_factory.mktemp("tls"))


def verifying_client(cert) -> ssl.SSLContext:
    """A client that trusts only our self-signed certificate and checks the host name."""
    return ssl.create_default_context(cafile=str(cert))


def funasr_client_context() -> ssl.SSLContext:
    """What FunASR's Python client and xiaozhi-esp32-server do: TLS without verification."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_plain_and_tls_clients_share_one_port(models, cert_pair):
    policy = TlsPolicy(server_context(*cert_pair))
    with ServerThread(fixture_settings(), models=models, tls=policy) as server:
        audio = fixture_pcm()
        with connect(server.url) as ws:
            plain = transcribe(ws, audio, "plain")
            assert ws.request.headers["Host"] and ws.response.status_code == 101
        with connect(server.tls_url, ssl=verifying_client(cert_pair[0])) as wss:
            secure = transcribe(wss, audio, "secure")
            assert isinstance(wss.socket, ssl.SSLSocket) and wss.socket.version().startswith("TLS")
        with connect(server.tls_url, ssl=funasr_client_context()) as wss:
            unverified = transcribe(wss, audio, "unverified")
        assert plain["text"] and plain["text"] == secure["text"] == unverified["text"]
        assert (plain["wav_name"], secure["wav_name"]) == ("plain", "secure")
        # the side endpoints answer over both, on the same port
        status, body = get(server.http_url)
        assert status == 200 and json.loads(body)["status"] == "ready"
        https = urllib.request.urlopen(
            f"https://127.0.0.1:{server.server.port}/health", context=verifying_client(cert_pair[0]), timeout=10
        )
        assert https.status == 200 and json.loads(https.read())["status"] == "ready"


def test_many_interleaved_plain_and_tls_connections_at_once(models, cert_pair):
    policy = TlsPolicy(server_context(*cert_pair))
    with ServerThread(fixture_settings(), models=models, tls=policy) as server:
        audio = fixture_pcm()
        with contextlib.ExitStack() as stack:
            clients = [
                stack.enter_context(connect(server.tls_url, ssl=funasr_client_context()) if i % 2 else connect(server.url))
                for i in range(6)
            ]
            for i, ws in enumerate(clients):
                ws.send(json.dumps({"mode": "offline", "wav_name": f"w{i}"}))
                ws.send(audio)
                ws.send(json.dumps({"is_speaking": False}))
            answers = [json.loads(ws.recv(timeout=60)) for ws in clients]
        assert [a["wav_name"] for a in answers] == [f"w{i}" for i in range(6)]
        assert len({a["text"] for a in answers}) == 1


def test_tls_only_drops_plain_clients(models, cert_pair):
    policy = TlsPolicy(server_context(*cert_pair), tls_only=True)
    with ServerThread(fixture_settings(), models=models, tls=policy) as server:
        with pytest.raises(Exception):
            with connect(server.url, open_timeout=5):
                pass
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP gets no answer either
            urllib.request.urlopen(server.http_url + "/health", timeout=5)
        with connect(server.tls_url, ssl=funasr_client_context()) as wss:
            assert transcribe(wss, fixture_pcm())["text"]
        metrics = scrape(server, funasr_client_context())
        assert metrics[("funasr_errors_total", (("kind", "plain_refused"),))] == 2


def test_plain_only_server_refuses_tls_clients_and_keeps_serving(models):
    with ServerThread(fixture_settings(), models=models) as server:  # no certificate: ws:// only
        with pytest.raises(Exception):
            with connect(server.tls_url, ssl=funasr_client_context(), open_timeout=5):
                pass
        with connect(server.url) as ws:
            assert transcribe(ws, fixture_pcm())["text"]
        assert scrape(server)[("funasr_errors_total", (("kind", "tls_disabled"),))] == 1


def raw_connection(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def read_until_closed(s: socket.socket) -> bytes:
    """Everything the server sends before it closes ``s``; fails if it stays open 5 s."""
    s.settimeout(5)
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            s.close()
            return data
        data += chunk


def test_broken_handshakes_and_silent_clients_cost_nothing(models, cert_pair):
    policy = TlsPolicy(server_context(*cert_pair), handshake_timeout=0.5)
    with ServerThread(fixture_settings(), models=models, tls=policy) as server:
        port = server.server.port
        garbage = raw_connection(port)
        garbage.sendall(b"\x16\x03\x01\x00\x05hello, not a ClientHello")
        silent = raw_connection(port)
        probe = raw_connection(port)
        probe.close()  # a port scan: connects and leaves
        assert read_until_closed(garbage) != b"hello"  # at most a TLS alert, then the server closes
        assert read_until_closed(silent) == b""  # closed after the handshake timeout
        distrustful = ssl.create_default_context()  # does not trust our certificate
        with pytest.raises(Exception):
            with connect(server.tls_url, ssl=distrustful, open_timeout=5):
                pass
        with connect(server.tls_url, ssl=funasr_client_context()) as wss:
            assert transcribe(wss, fixture_pcm())["text"]
        metrics = scrape(server)
        assert metrics[("funasr_errors_total", (("kind", "tls_handshake"),))] >= 2
        assert metrics[("funasr_errors_total", (("kind", "handshake_timeout"),))] == 1
        assert not server.server.sorter.pending and server.server.active_sessions == 0


def test_self_signed_certificate_is_made_once_and_reused(tmp_path):
    directory = tmp_path / "certs"
    cert, key = self_signed_pair(directory)
    first = (cert.read_bytes(), key.read_bytes())
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    time.sleep(0.01)
    assert self_signed_pair(directory) == (cert, key)
    assert (cert.read_bytes(), key.read_bytes()) == first
    # valid for localhost and the loopback address: a verifying client accepts it by either name
    context = verifying_client(cert)
    server_ctx = server_context(cert, key)
    assert context.verify_mode == ssl.CERT_REQUIRED and server_ctx is not None
    # another directory gets its own key
    other_cert, other_key = self_signed_pair(tmp_path / "elsewhere")
    assert other_key.read_bytes() != first[1]


def test_unusable_certificates_are_reported(tmp_path):
    with pytest.raises(TlsSetupError, match="does not exist"):
        server_context(tmp_path / "missing.crt")
    bad = tmp_path / "bad.crt"
    bad.write_text("not a certificate")
    with pytest.raises(TlsSetupError, match="cannot load"):
        server_context(bad)
