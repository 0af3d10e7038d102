"""Run a real server on a loopback port in a background thread, for protocol tests."""
from __future__ import annotations

import asyncio
import threading
from typing import Optional

from funasr_wss.server.app import AsrServer, ServerOptions
from funasr_wss.server.decoder_pool import DecoderPool
from funasr_wss.server.http_routes import AccessPolicy
from funasr_wss.server.model_loader import load_models
from funasr_wss.server.session import SessionLimits
from funasr_wss.server.settings import ServerSettings
from funasr_wss.server.tls import TlsPolicy
from tests.paths import ASR_ONLINE_DIR, ASR_TIMESTAMP_DIR, PUNC_DIR, PUNC_REALTIME_DIR, VAD_DIR


def fixture_settings(**overrides) -> ServerSettings:
    base = dict(
        listen_ip="127.0.0.1",
        port=0,
        model_dir=str(ASR_TIMESTAMP_DIR),
        vad_dir=str(VAD_DIR),
        punc_dir=str(PUNC_DIR),
        quantize=False,
        vad_quant=False,
        punc_quant=False,
        decoder_thread_num=2,
    )
    base.update(overrides)
    return ServerSettings(**base)


def fixture_settings_2pass(**overrides) -> ServerSettings:
    """The 2pass profile on the fixture models (realtime punctuation, as ``funasr-wss-server-2pass``)."""
    base = dict(online_model_dir=str(ASR_ONLINE_DIR), punc_dir=str(PUNC_REALTIME_DIR))
    base.update(overrides)
    return fixture_settings(**base)


class ServerThread:
    """Starts :class:`AsrServer` with its own event loop; ``url`` points at it."""

    def __init__(
        self,
        settings: ServerSettings,
        models=None,
        limits: Optional[SessionLimits] = None,
        max_message_bytes: Optional[int] = None,
        access: AccessPolicy = AccessPolicy(),
        load: bool = True,
        tls: TlsPolicy = TlsPolicy(),
        pool_factory=DecoderPool,
        web_page: bool = True,
        max_buffered_audio_bytes: Optional[int] = None,
        max_queue_bytes: Optional[int] = None,
        server_hotwords: Optional[dict] = None,
    ):
        self.tls = tls
        self.server_hotwords = server_hotwords
        self.extra_options = {
            k: v
            for k, v in (("max_buffered_audio_bytes", max_buffered_audio_bytes), ("max_queue_bytes", max_queue_bytes))
            if v is not None
        }
        self.web_page = web_page
        self.pool_factory = pool_factory
        self.settings = settings
        self.models = models or (load_models(settings) if load else None)
        self.access = access
        self.limits = limits or SessionLimits()
        self.max_message_bytes = max_message_bytes or settings.max_message_mib * (1 << 20)
        self.loop = asyncio.new_event_loop()
        self.server: Optional[AsrServer] = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        pool = self.pool_factory(self.settings.decoder_thread_num)
        options = ServerOptions(
            host="127.0.0.1", port=0, max_message_bytes=self.max_message_bytes, limits=self.limits, access=self.access,
            tls=self.tls, web_page=self.web_page, **self.extra_options,
        )
        self.server = AsrServer(self.models, pool, options, self.server_hotwords)
        self.loop.run_until_complete(self.server.start())
        self._started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.server.close())
        pool.shutdown()

    def __enter__(self) -> "ServerThread":
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("server did not start")
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def call(self, coroutine, timeout: float = 60):
        """Run a coroutine on the server's event loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start_call(self, coroutine):
        """Run a coroutine on the server's event loop without waiting (a concurrent.futures.Future)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    @property
    def http_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"ws://127.0.0.1:{self.server.port}"

    @property
    def tls_url(self) -> str:
        assert self.server is not None
        return f"wss://127.0.0.1:{self.server.port}"
