"""The asyncio WebSocket server: accepts connections and feeds each one's frames to its session.

Lifecycle: the port opens before the models are loaded (``/health`` says 503
and handshakes are refused until :meth:`AsrServer.set_models`), and
:meth:`AsrServer.drain` stops it gracefully: no new connections (``/health``
says 503, ``/livez`` 200), in-flight utterances get a grace period to finish,
then the port closes and every connection is closed with 1001 (going away).
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
from .health import Health
from .http_api import HttpApi
from .http_routes import AccessPolicy, HttpRoutes
from .logs import ConnectionLog
from .metrics import ServerMetrics
from .offline_session import OfflineSession
from .port_sharing import PortSorter
from .recognizer import LiveRecognizer, OfflinePipeline, takes_language
from .session import Session, SessionLimits
from .streaming_session import StreamingSession
from .tls import TlsPolicy
from .unread_input import has_unread_input
from .web_page import WebPage

log = logging.getLogger(__name__)

MIB = 1 << 20
#: At shutdown, how long closing handshakes and connection handlers get before they are cut off.
CLOSE_SECONDS = 2.0
#: While draining, how often the utterances in flight are counted again.
DRAIN_POLL_SECONDS = 0.05


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
        self._connection_of: Dict[Session, ServerConnection] = {}  # each session's connection
        self.draining = False
        self._server: Optional[Server] = None
        self._handlers: Set[asyncio.Task] = set()  # connection handlers running
        # Connections admitted by the handshake hook and not closed yet; weak, so a handshake
        # that fails after admission cannot leak a slot.
        self._admitted: "weakref.WeakSet[ServerConnection]" = weakref.WeakSet()
        self.metrics = ServerMetrics(
            self._sessions_by_mode,
            lambda: pool.pending,
            lambda: self.audio_budget.used_bytes,
            active_streams=self._streams_by_mode,
        )
        self.routes = HttpRoutes(
            options.access,
            self.accepting,
            self.admit,
            self.metrics,
            web=WebPage(model=self._model_family) if options.web_page else None,
            profile=lambda: self.profile if self.models is not None else "",
            health=self.health,
        )
        self.audio_budget = AudioBudget(options.max_buffered_audio_bytes)
        # POST /v1/audio/transcriptions and the API's other paths (server.http_api): same models, pool and limits.
        self.http_api = HttpApi(
            lambda: self.models,
            pool,
            options.limits,
            options.access,
            self.accepting,
            self.open_connections,
            self.metrics,
            self.audio_budget,
            self.server_hotwords,
            head_timeout=options.tls.handshake_timeout,
        )
        self.sorter = PortSorter(options.tls, self.metrics.error, queue_bytes=options.max_queue_bytes, http=self.http_api)

    @property
    def profile(self) -> str:
        return "2pass" if isinstance(self.models, LiveRecognizer) else "offline"

    @property
    def active_sessions(self) -> int:
        return len(self.sessions)

    def _sessions_by_mode(self) -> Dict[str, int]:
        return dict(collections.Counter(s.served_mode() for s in list(self.sessions)))

    def _streams_by_mode(self) -> Dict[str, int]:
        """Sessions with an utterance in flight, by the mode they serve (``funasr_active_streams``)."""
        return dict(collections.Counter(s.served_mode() for s in list(self.sessions) if s.busy))

    def open_connections(self) -> int:
        """WebSocket connections admitted and not closed: what ``--max-connections`` counts."""
        return sum(1 for c in self._admitted if c.state in (State.CONNECTING, State.OPEN))

    def health(self) -> Health:
        """The state ``/health`` (readiness) and ``/livez`` (liveness) report (:mod:`server.health`)."""
        return Health(
            loaded=self.models is not None,
            draining=self.draining,
            connections=self.open_connections() + self.http_api.in_flight,  # as admit() counts them
            max_connections=self.options.access.max_connections,
            profile=self.profile if self.models is not None else "",
            active_streams=self._streams_by_mode(),
            queue_depth=self.pool.pending,
        )

    def in_flight(self) -> int:
        """Connections holding work a client already sent and has not had answered: an utterance
        in progress in its session (:attr:`Session.busy`), or frames received that the session has
        not read yet (:func:`has_unread_input`: a configuration and an upload still queued behind
        the handler, or a large frame still arriving).  Drain waits for these."""
        busy = [s for s in list(self.sessions) if s.busy]
        counted = {self._connection_of.get(s) for s in busy}
        connections = self._server.connections if self._server is not None else set()
        return len(busy) + sum(1 for c in connections if c not in counted and has_unread_input(c))

    def _model_family(self) -> str:
        """For the page: "sensevoice" (its language and ITN controls), "paraformer", or "" while loading."""
        if self.models is None:
            return ""
        return "sensevoice" if takes_language(self.models) else "paraformer"

    def set_models(self, models: Models) -> None:
        """The models are loaded: start taking connections."""
        self.models = models

    def accepting(self) -> bool:
        return self.models is not None and not self.draining

    def admit(self, connection: ServerConnection) -> int:
        """Count ``connection`` as open; return how many others were open before it (HTTP
        transcriptions in flight count as connections too)."""
        others = self.open_connections() + self.http_api.in_flight
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
        self._connection_of[session] = ws
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
            self._connection_of.pop(session, None)
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
        ``grace_seconds`` to finish, then close every connection with 1001.

        The port stays open while the utterances finish: ``/health`` answers 503 (draining),
        so a balancer takes the replica out of rotation, ``/livez`` 200, so a supervisor does
        not kill it, and WebSocket handshakes get 503, which a balancer may retry elsewhere.
        What counts as in flight is :meth:`in_flight`: input already received counts too."""
        self.draining = True
        if self._server is None:
            return
        deadline = time.monotonic() + grace_seconds
        # Utterances get the grace period less the time to say goodbye (closing handshakes, handlers).
        finish_by = deadline - min(CLOSE_SECONDS, grace_seconds / 10)
        # Sleep first: what the kernel already holds for a connection is read on the loop's next turns,
        # and counts as unread input from then on.
        await asyncio.sleep(min(DRAIN_POLL_SECONDS, grace_seconds))
        while self.in_flight() and time.monotonic() < finish_by:
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        while self.http_api.in_flight and time.monotonic() < finish_by:  # HTTP transcriptions being answered
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        busy = self.in_flight()
        if busy:
            log.warning("grace period over: closing %d connections with utterances in flight", busy)
        self._server.close(close_connections=False)  # stop listening; the open connections are closed below
        self.sorter.abort_pending()
        # The listener is closed already, so Server.close() would not close connections again.
        closing = asyncio.gather(
            *(c.close(1001, "server shutting down") for c in self._server.connections), return_exceptions=True
        )
        try:
            await asyncio.wait_for(closing, max(0.1, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            pass
        await self._stop_handlers(max(0.1, deadline - time.monotonic()))
        self.http_api.abort_all()
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
            self.http_api.abort_all()
            await self._stop_handlers(CLOSE_SECONDS)
            await self._server.wait_closed()


def _peer(ws: ServerConnection) -> str:
    address = ws.remote_address
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) and len(address) >= 2 else str(address)


def _select_subprotocol(connection: ServerConnection, subprotocols):
    """Accept ``binary`` when offered; never require a subprotocol."""
    return "binary" if "binary" in subprotocols else None
