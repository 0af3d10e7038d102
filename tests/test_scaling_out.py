"""Replicas behind a real HAProxy running the shipped deploy/compose/haproxy.cfg, all on loopback.

Two or three real server processes (the 2pass profile, which serves 2pass and offline connections),
sometimes a third replica still loading its models (a server in this process, models not set yet),
and HAProxy in front with its health checks on /health every 100 ms.  What a user of the proxy
must see: clients spread over the replicas and get exactly what one server alone answers; a
replica still loading gets nothing; a replica drained by SIGTERM mid-stream finishes its streams
while new connections go elsewhere; a replica killed outright costs only its own connections,
which reconnect through the proxy and succeed.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import re
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional

import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.sync.client import connect

from benchmarks.replicas import (
    haproxy_binary,
    haproxy_servers,
    loopback_haproxy_config,
    running_haproxy,
    wait_for_servers,
)
from benchmarks.server_process import _wait_healthy, free_port, server_command
from funasr_wss.server.model_loader import load_models
from tests.harness import ServerThread, fixture_settings_2pass
from tests.helpers import fixture_pcm
from tests.paths import MODELS

pytestmark = pytest.mark.skipif(haproxy_binary() is None, reason="needs haproxy (.ci/run installs Debian's)")

CHUNK = 19200  # 600 ms of 16 kHz PCM: one 2pass chunk [5, 10, 5]
GRACE = 20


@dataclass
class Cluster:
    url: str  # the proxy
    stats_port: int
    processes: Dict[str, subprocess.Popen]  # server name in haproxy.cfg -> replica process
    ports: Dict[str, int]
    threads: Dict[str, ServerThread] = field(default_factory=dict)

    def sessions(self) -> Dict[str, float]:
        """How many connections HAProxy has sent to each replica so far."""
        return {name: s.get("sessions_total", 0) for name, s in haproxy_servers(self.stats_port).items()}


@contextlib.contextmanager
def cluster(processes: int, loading: int = 0) -> Iterator[Cluster]:
    """``processes`` replica processes (funasr1, ...) and ``loading`` replicas still loading (after them)."""
    with contextlib.ExitStack() as stack:
        certs = stack.enter_context(tempfile.TemporaryDirectory())
        ports = [free_port() for _ in range(processes)]
        procs = []
        for port in ports:  # started together: the replicas load their models in parallel
            cmd = server_command(MODELS, "2pass", False, 1, port,
                                 ["--self-signed-dir", certs, "--shutdown-grace", str(GRACE)])
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            procs.append(proc)
            stack.callback(_stop, proc)
        threads = [stack.enter_context(ServerThread(fixture_settings_2pass(), load=False)) for _ in range(loading)]
        for proc, port in zip(procs, ports):
            _wait_healthy(proc, port, timeout=60)
        all_ports = ports + [t.server.port for t in threads]
        names = [f"funasr{i}" for i in range(1, len(all_ports) + 1)]
        frontend, stats = free_port(), free_port()
        stack.enter_context(running_haproxy(loopback_haproxy_config(frontend, stats, all_ports, "100ms"), stats))
        wait_for_servers(stats, {name: i < processes for i, name in enumerate(names)})
        yield Cluster(
            url=f"ws://127.0.0.1:{frontend}",
            stats_port=stats,
            processes=dict(zip(names, procs)),
            ports=dict(zip(names, all_ports)),
            threads=dict(zip(names[processes:], threads)),
        )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    if proc.stderr:
        proc.stderr.close()


# ---- clients ------------------------------------------------------------------------------------

class Stream:
    """A 2pass client: configuration, the audio in 600 ms chunks, the end signal; collects messages."""

    def __init__(self, url: str, name: str):
        self._closing = contextlib.ExitStack()
        self.ws = self._closing.enter_context(connect(url, open_timeout=20))
        self.name = name
        self.ws.send(json.dumps({"mode": "2pass", "chunk_size": [5, 10, 5], "wav_name": name, "itn": False}))

    def send(self, pcm: bytes) -> None:
        for i in range(0, len(pcm), CHUNK):
            self.ws.send(pcm[i:i + CHUNK])

    def finish(self) -> List[str]:
        """The end signal; the final texts of the utterance (one per VAD segment), then close."""
        self.ws.send(json.dumps({"is_speaking": False}))
        finals = []
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg["mode"] == "2pass-offline":
                finals.append(msg["text"])
            if msg.get("is_final"):
                break
        self._closing.close()
        return finals


def stream_2pass(url: str, pcm: bytes, name: str) -> List[str]:
    s = Stream(url, name)
    s.send(pcm)
    return s.finish()


def offline(url: str, pcm: bytes, name: str) -> dict:
    with connect(url, open_timeout=20) as ws:
        ws.send(json.dumps({"mode": "offline", "wav_name": name, "itn": False}))
        ws.send(pcm)
        ws.send(json.dumps({"is_speaking": False}))
        return json.loads(ws.recv(timeout=60))


def with_reconnect(fn, *args, attempts: int = 3):
    """What a client does when its replica vanishes: the utterance again, from the start, on a new connection."""
    for attempt in range(attempts):
        try:
            return fn(*args), attempt
        except (ConnectionClosed, OSError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def reference() -> dict:
    """What one server alone answers (a replica straight, no proxy)."""
    pcm = fixture_pcm()
    with cluster(1) as one:
        url = f"ws://127.0.0.1:{one.ports['funasr1']}"
        return {"2pass": stream_2pass(url, pcm, "ref"), "offline": offline(url, pcm, "ref")}


def same_as_alone(result, reference: dict, kind: str, name: str) -> None:
    if kind == "offline":
        assert result == {**reference["offline"], "wav_name": name}
    else:
        assert result == reference["2pass"] and result


# ---- the tests ----------------------------------------------------------------------------------

def test_clients_spread_over_the_replicas_and_get_the_single_server_result_and_a_loading_one_gets_none(reference):
    pcm = fixture_pcm()
    with cluster(2, loading=1) as c:
        kinds = ["2pass", "offline"] * 4
        with concurrent.futures.ThreadPoolExecutor(len(kinds)) as pool:
            futures = [
                pool.submit(stream_2pass if kind == "2pass" else offline, c.url, pcm, f"c{i}")
                for i, kind in enumerate(kinds)
            ]
            for i, (kind, future) in enumerate(zip(kinds, futures)):
                same_as_alone(future.result(120), reference, kind, f"c{i}")
        sessions = c.sessions()
        assert sessions["funasr1"] > 0 and sessions["funasr2"] > 0, sessions  # least connections spread them
        assert sessions["funasr1"] + sessions["funasr2"] == len(kinds)
        assert sessions["funasr3"] == 0  # still loading: /health 503, out of rotation
        loading = c.threads["funasr3"].server
        assert loading.open_connections() == 0 and not loading.sessions

        # Loaded at last: in rotation after its checks pass, and it takes connections.
        c.threads["funasr3"].call(_set_models(loading, load_models(fixture_settings_2pass())))
        wait_for_servers(c.stats_port, {"funasr3": True})
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            streams = [pool.submit(Stream, c.url, f"late{i}") for i in range(3)]  # open together: one each
            opened = [s.result(30) for s in streams]
            for s in opened:
                s.send(pcm)
            for s in opened:
                assert s.finish() == reference["2pass"]
        assert c.sessions()["funasr3"] >= 1


async def _set_models(server, models) -> None:
    server.set_models(models)


def test_metrics_of_each_replica_through_the_proxy(reference):
    pcm = fixture_pcm()
    with cluster(2) as c:
        direct = f"ws://127.0.0.1:{c.ports['funasr2']}"
        assert offline(direct, pcm, "only-on-2")["text"]  # audio on replica 2 only
        http = c.url.replace("ws://", "http://")
        texts = {n: urllib.request.urlopen(f"{http}/replicas/{n}/metrics", timeout=5).read().decode() for n in (1, 2)}
        assert 'funasr_audio_seconds_total{mode="offline"}' not in texts[1]
        assert 'funasr_audio_seconds_total{mode="offline"}' in texts[2]
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{http}/replicas/3/metrics", timeout=5)
        assert missing.value.code == 404


def test_a_replica_drained_by_sigterm_finishes_its_streams_while_new_ones_go_elsewhere(reference):
    pcm = fixture_pcm()
    half = (len(pcm) // 2) // CHUNK * CHUNK
    with cluster(2) as c:
        streams = [Stream(c.url, f"s{i}") for i in range(4)]  # least connections: two on each replica
        for s in streams:
            s.send(pcm[:half])
        target = c.processes["funasr1"]
        assert haproxy_servers(c.stats_port)["funasr1"]["current_sessions"] == 2
        target.send_signal(signal.SIGTERM)  # mid-stream: half of each utterance sent
        # New connections meanwhile: every one lands on the other replica and succeeds.
        before = c.sessions()["funasr2"]
        for i in range(3):
            assert offline(c.url, pcm, f"new{i}")["text"] == reference["offline"]["text"]
        assert c.sessions()["funasr2"] - before == 3
        for s in streams:  # the rest of each utterance, also on the draining replica
            s.send(pcm[half:])
        for s in streams:
            assert s.finish() == reference["2pass"]
        assert target.wait(GRACE + 10) == 0  # drained and exited once its streams were answered


def test_a_replica_killed_costs_only_its_own_connections_which_reconnect_and_succeed(reference):
    pcm = fixture_pcm()
    half = (len(pcm) // 2) // CHUNK * CHUNK
    with cluster(2) as c:
        streams = [Stream(c.url, f"k{i}") for i in range(4)]
        for s in streams:
            s.send(pcm[:half])
        victim = c.processes["funasr1"]
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        survived, reconnected = 0, 0
        for s in streams:
            try:
                s.send(pcm[half:])
                finals: Optional[List[str]] = s.finish()
            except (ConnectionClosed, OSError) as exc:
                assert not isinstance(exc, ConnectionClosedOK)  # cut, not closed by the server
                finals, attempt = with_reconnect(stream_2pass, c.url, pcm, s.name)
                reconnected += 1
            else:
                survived += 1
            assert finals == reference["2pass"]
        assert (survived, reconnected) == (2, 2)  # the other replica's streams never noticed


def test_the_shipped_proxy_settings_fit_the_server():
    """What the runs above cannot wait for: the tunnel outlives the server's own idle limit, so the
    proxy never cuts a stream the server would keep; the checks ask /health; least connections."""
    from benchmarks.replicas import HAPROXY_CFG
    from funasr_wss.server.cli import settings_from_args

    text = HAPROXY_CFG.read_text("utf-8")
    tunnel = re.search(r"^    timeout tunnel (\d+)(ms|s|m|h)$", text, re.MULTILINE)
    assert tunnel, "no timeout tunnel: WebSockets would be cut at timeout client/server"
    seconds = int(tunnel.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[tunnel.group(2)]
    assert seconds > settings_from_args([]).idle_timeout
    assert "    balance leastconn\n" in text and "    http-check send meth GET uri /health\n" in text
    assert re.search(r"^    retry-on .*\b503\b", text, re.MULTILINE) and "    option redispatch" in text


def test_the_compose_recipe_matches_its_proxy():
    """deploy/compose: as many server slots as replicas, HAProxy's maxconn = --max-connections, the
    shipped haproxy.cfg mounted, and docker's stop grace beyond the drain."""
    import yaml

    from benchmarks.replicas import HAPROXY_CFG
    from funasr_wss.server.cli import settings_from_args

    compose = yaml.safe_load((HAPROXY_CFG.parent / "docker-compose.yml").read_text("utf-8"))["services"]
    server, proxy = compose["funasr"], compose["proxy"]
    settings = settings_from_args(server["command"][1:], server["command"][0])
    text = HAPROXY_CFG.read_text("utf-8")
    slots = [int(n) for n in re.findall(r"^    server-template funasr (\d+) funasr:(?:\d+)", text, re.MULTILINE)]
    assert slots == [server["deploy"]["replicas"]] * 2
    assert re.findall(r"funasr:(\d+)", text) == [str(settings.port)] * 2
    assert f"maxconn {settings.max_connections}" in text
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in proxy["volumes"]
    assert float(server["stop_grace_period"].rstrip("s")) > settings.shutdown_grace
    assert "ports" not in server, "the replicas are reached through the proxy only"
