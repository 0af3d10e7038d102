"""Clients that misbehave: too fast, too slow to read, gone mid-utterance. Nobody else may notice."""
from __future__ import annotations

import contextlib
import gc
import json
import socket
import struct
import threading
import time

import pytest
from websockets.sync.client import connect

from funasr_wss.server.decoder_pool import DecoderPool
from funasr_wss.server.session import Session
from tests.harness import ServerThread, fixture_settings, fixture_settings_2pass
from tests.helpers import pcm_of
from tests.test_server_2pass import CONFIG, recv_until_final, stream
from tests.test_server_admission import transcribe

CLIP = "long02_vad_30s_48k.wav"
FRAME = 1920  # 60 ms: FunASR's Python client's stride


class SlowPool(DecoderPool):
    """Every job takes at least ``delay`` seconds more: a server slower than its clients."""

    delay = 0.01

    async def run(self, fn, *args, **kwargs):
        def slow(*a, **kw):
            time.sleep(self.delay)
            return fn(*a, **kw)

        return await super().run(slow, *args, **kwargs)


@pytest.fixture(scope="module")
def models_2pass():
    from funasr_wss.server.model_loader import load_models

    return load_models(fixture_settings_2pass())


def wait_until(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_a_client_faster_than_the_decoder_is_held_back_by_backpressure(models_2pass):
    """While a client floods the server, the server stops reading its socket (websockets' queue
    is full), so the audio waits in the client's and the kernel's buffers, not in our memory;
    the results are the same as at a normal pace, and another stream is served meanwhile."""
    pcm = pcm_of(CLIP)
    with ServerThread(fixture_settings_2pass(), models=models_2pass) as normal_server:
        expected = stream(normal_server.url, pcm, "2pass", stride=FRAME).messages
    with ServerThread(fixture_settings_2pass(), models=models_2pass, pool_factory=SlowPool) as server:
        paused = []

        async def flood_paused() -> bool:
            return any(not c.transport.is_reading() for c in server.server._server.connections)

        def watch():
            while len(paused) < 1 and not done.is_set():
                if server.call(flood_paused()):
                    paused.append(True)
                time.sleep(0.01)

        done = threading.Event()
        watcher = threading.Thread(target=watch)
        watcher.start()
        other = {}
        neighbour = threading.Thread(target=lambda: other.update(run=stream(server.url, pcm_of("zh01_asr_example_zh.wav"), "2pass")))
        try:
            neighbour.start()
            flooded = stream(server.url, pcm, "2pass", stride=FRAME)
        finally:
            done.set()
            watcher.join(10)
            neighbour.join(60)
        assert paused, "the server never stopped reading from the flooding client"
        assert flooded.messages == expected
        assert other["run"].final["text"]


def test_a_client_that_does_not_read_keeps_its_results_and_hurts_nobody(models_2pass):
    pcm = pcm_of(CLIP)
    with ServerThread(fixture_settings_2pass(), models=models_2pass) as server:
        expected = stream(server.url, pcm, "2pass", stride=FRAME).messages
        with connect(server.url, max_size=None) as lazy:
            lazy.send(json.dumps({**CONFIG, "mode": "2pass"}))
            for i in range(0, len(pcm), FRAME):
                lazy.send(pcm[i : i + FRAME])
            lazy.send(json.dumps({"is_speaking": False}))
            # no WebSocket ping can cut it off; dead peers are left to TCP keep-alive
            assert server.call(keepalive_options(server)) == [(1, 60, 10, 6)]
            # it reads nothing for a while; another client is served in the meantime
            neighbour = stream(server.url, pcm_of("zh01_asr_example_zh.wav"), "offline")
            assert neighbour.final["text"]
            time.sleep(1.0)
            late = recv_until_final(lazy, timeout=60)
        assert late == expected


async def keepalive_options(server):
    out = []
    for c in server.server._server.connections:
        sock = c.transport.get_extra_info("socket")
        opts = [sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)]
        opts += [sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, n)) for n in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT")]
        out.append(tuple(opts))
    return out


def abort(ws) -> None:
    """Vanish: reset the TCP connection without a WebSocket close frame."""
    ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.socket.close()


def live_sessions() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, Session))


@pytest.mark.parametrize("profile", ["2pass", "offline"])
def test_clients_vanishing_mid_utterance_leave_nothing_behind(profile, models_2pass):
    settings = fixture_settings_2pass() if profile == "2pass" else fixture_settings()
    models = models_2pass if profile == "2pass" else None
    pcm = pcm_of(CLIP)
    modes = ["2pass", "online", "offline"] if profile == "2pass" else ["offline"]
    before = live_sessions()
    with ServerThread(settings, models=models) as server:
        for k in range(12):
            mode = modes[k % len(modes)]
            with contextlib.suppress(Exception), connect(server.url, max_size=None) as ws:
                if k % 4 != 0:  # k % 4 == 0: gone before even configuring
                    ws.send(json.dumps({**CONFIG, "mode": mode}))
                    stop = [len(pcm) // 3, len(pcm), len(pcm)][k % 3]
                    for i in range(0, stop, FRAME * 10):
                        ws.send(pcm[i : min(i + FRAME * 10, stop)])
                    if k % 3 == 2:  # gone right after the end signal, while its result is being decoded
                        ws.send(json.dumps({"is_speaking": False}))
                abort(ws) if k % 2 else ws.socket.shutdown(socket.SHUT_RDWR)
        assert wait_until(lambda: server.server.active_sessions == 0 and server.server.pool.pending == 0)
        assert wait_until(lambda: not server.server._server.connections and not server.server.sorter.pending)
        # the server is intact and serves the next client normally
        with connect(server.url) as ws:
            assert transcribe(ws, pcm_of("zh01_asr_example_zh.wav"))["text"]
        assert wait_until(lambda: server.server.active_sessions == 0)
    assert wait_until(lambda: live_sessions() == before, 5)
