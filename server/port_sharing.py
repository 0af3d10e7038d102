"""``ws://`` and ``wss://`` on one port, told apart by the first byte each client sends.

A TLS connection opens with a handshake record, whose first byte is 0x16; an
HTTP request (a WebSocket handshake, ``GET /health``) opens with a letter.
So every accepted connection starts paused: nothing is read until the first
byte has arrived and has been looked at without consuming it (``MSG_PEEK`` on
a duplicate of the socket's descriptor).  A TLS client's connection is then
upgraded in place with :meth:`asyncio.loop.start_tls`, which reads that same
first byte; a plain one simply resumes.  Only then does the WebSocket
connection see its transport, so websockets' handshake, limits and handler
run unchanged on either.

This is why a ``ws://`` client that meets our TLS-enabled port gets a normal
answer instead of the reference's "TLS handshake failed".  Clients that send
nothing within the handshake timeout, or a plain request to a TLS-only
server, are dropped with a log line and never reach a session.

With an HTTP API (:mod:`server.http_api`) the request line is read too, on
plain and TLS connections alike, before websockets sees anything: a request
the API claims (``POST /v1/audio/transcriptions``, a path under ``/v1/``) is
handed over with the bytes read so far, since websockets never reads a
request body; every other request goes to websockets as before, those bytes
replayed to it.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from typing import Callable, Optional, Protocol, Set, cast

from websockets.asyncio.server import ServerConnection

from .receive_queue import ByteBoundedAssembler
from .tls import TlsPolicy

log = logging.getLogger(__name__)

TLS_HANDSHAKE_RECORD = 0x16
#: A request line longer than this is not the HTTP API's: it goes to websockets, which refuses it.
MAX_REQUEST_LINE = 8 << 10


class HttpHandoff(Protocol):
    """Who serves the requests websockets cannot (those with a body): :class:`server.http_api.HttpApi`."""

    def claims(self, request_line: bytes) -> bool:
        """Whether the request starting with this line (CRLF excluded) is served here."""

    def take(self, transport: asyncio.Transport, data: bytes) -> None:
        """Serve ``transport`` from now on; ``data`` was read from it already."""


class PortSorter:
    """Shared by every connection of one server: the TLS policy and the connections not yet sorted."""

    def __init__(
        self, policy: TlsPolicy, on_error: Callable[[str], None] = lambda kind: None, queue_bytes: Optional[int] = None,
        http: Optional[HttpHandoff] = None,
    ):
        self.policy = policy
        self.queue_bytes = queue_bytes  # bound of each connection's receive queue (server.receive_queue)
        self.on_error = on_error  # counts refusals by kind (metrics)
        self.http = http  # None: every connection goes to websockets
        self.pending: Set[asyncio.Task] = set()

    def connection_class(self) -> Callable[..., ServerConnection]:
        """The ``create_connection`` factory to hand to websockets' ``serve``."""
        sorter = self

        def create(*args, **kwargs) -> ServerConnection:
            return SortedConnection(*args, sorter=sorter, **kwargs)

        return create

    def abort_pending(self) -> None:
        """Drop connections still being sorted (the server is closing)."""
        for task in list(self.pending):
            task.cancel()


class SortedConnection(ServerConnection):
    """A websockets server connection whose transport is chosen (plain or TLS) before it starts."""

    def __init__(self, *args, sorter: PortSorter, **kwargs):
        super().__init__(*args, **kwargs)
        self._sorter = sorter
        self._started = False
        self._sorting: Optional[asyncio.Task] = None
        self._sniffing = False  # reading the request line (HTTP API)
        self._head = bytearray()  # the bytes read while sniffing, replayed to whoever serves them
        self._line: Optional[asyncio.Future] = None
        self._sniffed: Optional[asyncio.Transport] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        enable_tcp_keepalive(transport.get_extra_info("socket"))
        transport.pause_reading()  # nothing may be consumed before the first byte is known
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._sort(transport))
        loop.call_soon(self._stay_paused, transport)
        self._sorting = task
        self._sorter.pending.add(task)
        task.add_done_callback(self._sorter.pending.discard)

    def _stay_paused(self, transport: asyncio.Transport) -> None:
        """Pause again once the transport has finished setting itself up.

        Before Python 3.11.7 / 3.12.1 (CPython gh-103607) a socket transport
        starts reading *after* ``connection_made`` whatever the protocol said
        there, so the pause above would be lost and the request bytes consumed
        before they are sorted.  Resuming and pausing again removes the reader
        on every version (and cancels a read already queued); on fixed versions
        it changes nothing.
        """
        if not self._started and not self._sniffing and not transport.is_closing():
            transport.resume_reading()
            transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        if self._started:
            super().data_received(data)
            return
        self._head += data
        if self._line is not None and not self._line.done():
            end = self._head.find(b"\n")
            if end >= 0 or len(self._head) > MAX_REQUEST_LINE:
                self._pause_sniffed()
                self._line.set_result(bytes(self._head[: end if end >= 0 else MAX_REQUEST_LINE]).rstrip(b"\r"))

    def eof_received(self) -> None:
        if self._started:
            super().eof_received()
        elif self._line is not None and not self._line.done():
            self._line.set_result(bytes(self._head))

    def _pause_sniffed(self) -> None:
        """Stop reading once the request line is in (the rest is read by whoever serves the request)."""
        if self._sniffed is not None and not self._sniffed.is_closing():
            self._sniffed.pause_reading()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self._started:
            super().connection_lost(exc)
        elif self._sorting is not None and self._sorting is not asyncio.current_task():
            self._sorting.cancel()

    def _start(self, transport: asyncio.Transport) -> None:
        self._started = True
        self._sniffing = False
        super().connection_made(transport)  # websockets takes over: handshake, then the handler
        if self._sorter.queue_bytes is not None:
            self.recv_messages = ByteBoundedAssembler(
                self.max_queue_high,
                self.max_queue_low,
                pause=transport.pause_reading,
                resume=transport.resume_reading,
                max_bytes=self._sorter.queue_bytes,
            )

    async def _sort(self, transport: asyncio.Transport) -> None:
        policy = self._sorter.policy
        peer = transport.get_extra_info("peername")
        try:
            try:
                first = await asyncio.wait_for(_peek_first_byte(transport), policy.handshake_timeout)
            except asyncio.TimeoutError:
                log.info("dropped %s: nothing received within %.0f s", peer, policy.handshake_timeout)
                self._sorter.on_error("handshake_timeout")
                transport.abort()
                return
            if first is None:  # closed before sending anything (a port probe)
                transport.close()
            elif first == TLS_HANDSHAKE_RECORD and policy.context is not None:
                try:
                    tls_transport = await asyncio.get_running_loop().start_tls(
                        transport, self, policy.context, server_side=True, ssl_handshake_timeout=policy.handshake_timeout
                    )
                except (OSError, ssl.SSLError) as exc:  # a bad ClientHello, an untrusted certificate, a reset
                    log.info("TLS handshake with %s failed: %s", peer, exc)
                    self._sorter.on_error("tls_handshake")
                    transport.abort()
                    return
                await self._route(cast(asyncio.Transport, tls_transport), resume=False)  # start_tls returns one or raises
            elif first == TLS_HANDSHAKE_RECORD:
                log.info("refused %s: a TLS client, but this server has TLS turned off (--certfile 0)", peer)
                self._sorter.on_error("tls_disabled")
                transport.abort()
            elif policy.tls_only:
                log.info("refused %s: a plain connection to a TLS-only server", peer)
                self._sorter.on_error("plain_refused")
                transport.abort()
            else:
                await self._route(transport, resume=True)
        except asyncio.CancelledError:
            transport.abort()
            raise
        except OSError as exc:  # the peer reset the connection while we waited
            log.debug("connection from %s lost before its handshake: %s", peer, exc)
            transport.abort()


    async def _route(self, transport: asyncio.Transport, resume: bool) -> None:
        """Hand ``transport`` to websockets, or to the HTTP API when it claims the request line."""
        http = self._sorter.http
        if http is None:
            if resume:
                transport.resume_reading()
            self._start(transport)
            if self._head:  # a TLS client's first bytes, decrypted before websockets took over
                head, self._head = bytes(self._head), bytearray()
                super().data_received(head)
            return
        self._sniffing = True
        self._sniffed = transport
        self._line = asyncio.get_running_loop().create_future()
        if self._head.find(b"\n") >= 0 or len(self._head) > MAX_REQUEST_LINE:
            self.data_received(b"")
        transport.resume_reading()
        try:
            line = await asyncio.wait_for(self._line, self._sorter.policy.handshake_timeout)
        except asyncio.TimeoutError:
            log.info("dropped %s: no request within %.0f s", transport.get_extra_info("peername"),
                     self._sorter.policy.handshake_timeout)
            self._sorter.on_error("handshake_timeout")
            transport.abort()
            return
        head, self._head = bytes(self._head), bytearray()
        self._sniffing = False
        if not head:  # closed before sending a request
            transport.close()
        elif http.claims(line):
            http.take(transport, head)
        else:
            self._start(transport)
            transport.resume_reading()
            super().data_received(head)


#: A peer silent this long is probed; after the probes go unanswered the kernel closes the socket.
KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_PROBES = 60, 10, 6


def enable_tcp_keepalive(sock) -> None:
    """Find peers that vanished without closing (a device losing power, a dropped NAT mapping).

    TCP keep-alive is answered by the client's kernel, so unlike WebSocket pings
    it never fails a healthy client that is merely slow to read its messages;
    such a connection is left alone, however long its queue stays full.
    """
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", KEEPALIVE_IDLE_S), ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
                            ("TCP_KEEPCNT", KEEPALIVE_PROBES)):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    except OSError:  # pragma: no cover - a socket type without these options
        pass


async def _peek_first_byte(transport: asyncio.Transport) -> Optional[int]:
    """The first byte waiting on ``transport``'s socket, left unread; None if the peer closed."""
    loop = asyncio.get_running_loop()
    fd = transport.get_extra_info("socket").fileno()
    # The transport owns ``fd``, so asyncio will not watch it for us; a duplicate descriptor
    # refers to the same socket and can be watched and peeked at freely.
    peeker = socket.socket(fileno=os.dup(fd))
    try:
        while True:
            readable = loop.create_future()
            loop.add_reader(peeker.fileno(), lambda: None if readable.done() else readable.set_result(None))
            try:
                await readable
            finally:
                loop.remove_reader(peeker.fileno())
            try:
                data = peeker.recv(1, socket.MSG_PEEK)
            except (BlockingIOError, InterruptedError):  # woken without data: wait again
                continue
            return data[0] if data else None
    finally:
        peeker.close()  # closes the duplicate only; the connection stays open
