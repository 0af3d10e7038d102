"""The asyncio WebSocket server: accepts connections and feeds each one's frames to its session."""
from __future__ import annotations

import itertools
import logging
import ssl
from dataclasses import dataclass
from typing import Dict, Optional, Union

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from models.offline_pipeline import OfflinePipeline
from models.two_pass import TwoPassRecognizer

from .decoder_pool import DecoderPool
from .offline_session import OfflineSession
from .session import SessionLimits
from .streaming_session import StreamingSession

log = logging.getLogger(__name__)

MIB = 1 << 20


@dataclass(frozen=True)
class ServerOptions:
    host: str = "0.0.0.0"
    port: int = 10096
    max_message_bytes: int = 32 * MIB  # one frame may hold a whole utterance, like the C++ server's limit
    limits: SessionLimits = SessionLimits()
    ssl_context: Optional[ssl.SSLContext] = None


Models = Union[OfflinePipeline, TwoPassRecognizer]


class AsrServer:
    """Owns the shared models and the decoder pool; one session per connection.

    The models decide the profile (protocol §1): an :class:`OfflinePipeline`
    serves the offline profile (every connection offline), a
    :class:`TwoPassRecognizer` the 2pass profile (``offline``/``online``/``2pass``
    chosen per connection).
    """

    def __init__(self, models: Models, pool: DecoderPool, options: ServerOptions, server_hotwords: Optional[Dict[str, int]] = None):
        self.models = models
        self.pool = pool
        self.options = options
        self.server_hotwords = server_hotwords or {}
        self._ids = itertools.count(1)
        self.active_sessions = 0
        self._server: Optional[Server] = None

    @property
    def profile(self) -> str:
        return "2pass" if isinstance(self.models, TwoPassRecognizer) else "offline"

    async def handle(self, ws: ServerConnection) -> None:
        conn_id = f"c{next(self._ids)}"
        log.info("[%s] connected from %s", conn_id, ws.remote_address)
        session_class = StreamingSession if self.profile == "2pass" else OfflineSession
        session = session_class(self.models, self.pool, ws.send, self.options.limits, self.server_hotwords, conn_id)
        self.active_sessions += 1
        try:
            async for message in ws:
                if isinstance(message, str):
                    await session.on_text(message)
                else:
                    await session.on_audio(message)
        except ConnectionClosed:
            pass
        except Exception:  # a bug must cost one connection, never the server
            log.exception("[%s] session failed", conn_id)
            await ws.close(1011, "internal error")
        finally:
            self.active_sessions -= 1
            log.info("[%s] closed after %d utterances", conn_id, session.utterances)

    async def start(self) -> Server:
        self._server = await serve(
            self.handle,
            self.options.host,
            self.options.port,
            subprotocols=["binary"],
            select_subprotocol=_select_subprotocol,
            max_size=self.options.max_message_bytes,
            max_queue=16,
            ping_interval=None,  # the reference never pings and clients do not answer reliably
            compression=None,
            ssl=self.options.ssl_context,
        )
        return self._server

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def _select_subprotocol(connection: ServerConnection, subprotocols):
    """Accept ``binary`` when offered; never require a subprotocol."""
    return "binary" if "binary" in subprotocols else None
