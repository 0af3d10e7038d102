"""The asyncio WebSocket server: accepts connections and feeds each one's frames to its session.

Lifecycle: the port opens before the models are loaded (``/health`` says 503
and handshakes are refused until :meth:`AsrServer.set_models`), and
:meth:`AsrServer.drain` stops it gracefully: no new connections, in-flight
utterances get a grace period to finish, then every connection is closed
with 1001 (going away).
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
import weakref
from dataclasses import dataclass
from typing import Dict, Optional, Set, Union

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.typing import Subprotocol

from .audio_budget import AudioBudget
from .decoder_pool import DecoderPool
from .http_routes import AccessPolicy, HttpRoutes
from .logs import ConnectionLog
from .metrics import ServerMetrics
from .offline_session import OfflineSession
from .port_sharing import PortSorter
from .recognizer import LiveRecognizer, OfflinePipeline
from .session import Session, SessionLimits
from .streaming_session import StreamingSession
from .tls import TlsPolicy
from .web_page import WebPage

log = logging.getLogger(__name__)

MIB = 1 << 20
#: At shutdown, how long closing handshakes and connection handlers get before they are cut off.
CLOSE_SECONDS = 2.0


@dataclass(frozen=True)
class ServerOptions:
    host: str = "0.0.0.0"
    port: int = 10096
    max_message_bytes: int = 32 * MIB  # one frame may hold a whole utterance, like the C++ server's limit
    max_queue_bytes: int = 8 * MIB  # unread frames per connection before reading pauses (server.receive_queue)
    max_buffered_audio_bytes: int = 2048 * MIB  # client audio held by all connections together (server.audio_budget)
    limits: SessionLimits = SessionLimits()
    tls: TlsPolicy = TlsPolicy()  # plain ws:// only unless it holds a certificate
    access: AccessPolicy = AccessPolicy()
    web_page: bool = True  # serve the browser page at / (server.web_page)
    #: The offline profile's one result says ``"is_final": true`` (--offline-is-final; the reference says false).
    offline_is_final: bool = False


Models = Union[OfflinePipeline, LiveRecognizer]


class AsrServer:
    """Owns the shared models and the decoder pool; one session per connection.

    The models decide the profile (protocol §1): an :class:`OfflinePipeline`
    serves the offline profile (every connection offline), a
    :class:`LiveRecognizer` the 2pass profile (``offline``/``online``/``2pass``
    chosen per connection).
    """

    def __init__(
        self,
        models: Optional[Models],
        pool: DecoderPool,
        options: ServerOptions,
        server_hotwords: Optional[Dict[str, int]] = None,
    ):
        self.models = models  # None while they load: the server answers but accepts no session
        self.pool = pool
        self.options = options
        self.server_hotwords = server_hotwords or {}
        self._ids = itertools.count(1)
        self.sessions: Set[Session] = set()
        self.draining = False
        self._server: Optional[Server] = None
        self._handlers: Set[asyncio.Task] = set()  # connection handlers running
        # Connections admitted by the handshake hook and not closed yet; weak, so a handshake
        # that fails after admission cannot leak a slot.
        self._admitted: "weakref.WeakSet[ServerConnection]" = weakref.WeakSet()
        self.metrics = ServerMetrics(self._sessions_by_mode, lambda: pool.pending, lambda: self.audio_budget.used_bytes)
        self.routes = HttpRoutes(
            options.access,
            self.accepting,
            self.admit,
            self.metrics,
            web=WebPage() if options.web_page else None,
            profile=lambda: self.profile if self.models is not None else "",
        )
        self.sorter = PortSorter(options.tls, self.metrics.error, queue_bytes=options.max_queue_bytes)
        self.audio_budget = AudioBudget(options.max_buffered_audio_bytes)

    @property
    def profile(self) -> str:
        return "2pass" if isinstance(self.models, LiveRecognizer) else "offline"

    @property
    def active_sessions(self) -> int:
        return len(self.sessions)

    def _sessions_by_mode(self) -> Dict[str, int]:
        return dict(collections.Counter(s.served_mode() for s in list(self.sessions)))

    def set_models(self, models: Models) -> None:
        """The models are loaded: start taking connections."""
        self.models = models

    def accepting(self) -> bool:
        return self.models is not None and not self.draining

    def admit(self, connection: ServerConnection) -> int:
        """Count ``connection`` as open; return how many others were open before it."""
        others = sum(1 for c in self._admitted if c.state in (State.CONNECTING, State.OPEN))
        self._admitted.add(connection)
        return others

    async def handle(self, ws: ServerConnection) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        conn_id = f"c{next(self._ids)}"
        conn_log = ConnectionLog(log, conn_id)
        peer = _peer(ws)
        tls = ws.transport.get_extra_info("ssl_object") is not None
        conn_log.info("connected from %s%s", peer, " (TLS)" if tls else "", extra={"event": "connected", "peer": peer, "tls": tls})
        two_pass = self.profile == "2pass"
        session_class = StreamingSession if two_pass else OfflineSession
        profile_options = {} if two_pass else {"is_final": self.options.offline_is_final}
        session = session_class(
            self.models,
            self.pool,
            ws.send,
            self.options.limits,
            self.server_hotwords,
            conn_id,
            metrics=self.metrics,
            budget=self.audio_budget,
            alive=lambda: ws.state is State.OPEN,
            **profile_options,
        )
        self.sessions.add(session)
        idle = self.options.limits.idle_timeout or None
        try:
            while True:
                try:
                    message = await asyncio.wait_for(ws.recv(), idle)  # cancelling recv() loses nothing
                except asyncio.TimeoutError:
                    conn_log.info("closing: no message for %.0f s (--idle-timeout)", idle, extra={"event": "idle_timeout"})
                    self.metrics.error("idle_timeout")
                    await ws.close(1000, f"idle for {idle:.0f} s")
                    break
                if isinstance(message, str):
                    await session.on_text(message)
                else:
                    await session.on_audio(message)
                del message  # an idle connection must not keep its last (up to --max-message-mib) frame alive
        except ConnectionClosed:
            pass
        except Exception:  # a bug must cost one connection, never the server
            conn_log.exception("session failed")
            await ws.close(1011, "internal error")
        finally:
            self.sessions.discard(session)
            session.release_audio()
            conn_log.info(
                "closed after %d utterances",
                session.utterances,
                extra={"event": "closed", "utterances": session.utterances, "close_code": ws.close_code},
            )

    async def start(self) -> Server:
        self._server = await serve(
            self.handle,
            self.options.host,
            self.options.port,
            subprotocols=[Subprotocol("binary")],
            select_subprotocol=_select_subprotocol,
            max_size=self.options.max_message_bytes,
            max_queue=16,
            # No WebSocket pings: a client whose receive queue is full cannot answer them and would be
            # cut off; dead peers are found by TCP keep-alive instead (port_sharing.enable_tcp_keepalive).
            ping_interval=None,
            compression=None,
            process_request=self.routes,
            open_timeout=self.options.tls.handshake_timeout,
            # ws:// and wss:// share the port: each connection is sorted by its first byte.
            create_connection=self.sorter.connection_class(),  # type: ignore[arg-type]  # websockets: any factory
        )
        self._port = self._server.sockets[0].getsockname()[1]
        return self._server

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._port

    async def drain(self, grace_seconds: float) -> None:
        """Stop gracefully: refuse new connections, give utterances in flight up to
        ``grace_seconds`` to finish, then close every connection with 1001."""
        self.draining = True
        if self._server is None:
            return
        self._server.close(close_connections=False)  # stop listening; open connections go on
        self.sorter.abort_pending()
        deadline = time.monotonic() + grace_seconds
        # Utterances get the grace period less the time to say goodbye (closing handshakes, handlers).
        finish_by = deadline - min(CLOSE_SECONDS, grace_seconds / 10)
        while any(s.busy for s in self.sessions) and time.monotonic() < finish_by:
            await asyncio.sleep(0.05)
        busy = sum(1 for s in self.sessions if s.busy)
        if busy:
            log.warning("grace period over: closing %d connections with utterances in flight", busy)
        # The listener is closed already, so Server.close() would not close connections again.
        closing = asyncio.gather(
            *(c.close(1001, "server shutting down") for c in self._server.connections), return_exceptions=True
        )
        try:
            await asyncio.wait_for(closing, max(0.1, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            pass
        await self._stop_handlers(max(0.1, deadline - time.monotonic()))
        await self._server.wait_closed()

    async def _stop_handlers(self, timeout: float) -> None:
        """Let connection handlers return for up to ``timeout`` s, then cancel them: a handler still
        awaiting a model job would otherwise hold the shutdown until that job ends.  (The job itself
        is abandoned; queued jobs never start, see :meth:`DecoderPool.shutdown`.)"""
        tasks = [t for t in self._handlers if not t.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

    async def close(self) -> None:
        """Close at once: every connection gets 1001 (going away)."""
        if self._server is not None:
            self.sorter.abort_pending()
            self._server.close(close_connections=True)
            await self._stop_handlers(CLOSE_SECONDS)
            await self._server.wait_closed()


def _peer(ws: ServerConnection) -> str:
    address = ws.remote_address
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) and len(address) >= 2 else str(address)


def _select_subprotocol(connection: ServerConnection, subprotocols):
    """Accept ``binary`` when offered; never require a subprotocol."""
    return "binary" if "binary" in subprotocols else None
