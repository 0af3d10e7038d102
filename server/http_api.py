"""The OpenAI-compatible HTTP API on the WebSocket port: ``/v1/audio/transcriptions``, ``/v1/models``, ``/openapi.json``.

websockets reads a request's line and headers only, never a body, so an upload
cannot be served through its ``process_request`` hook.  Instead
:class:`~server.port_sharing.PortSorter` looks at the request line of every
plain or TLS connection and hands those whose path is the API's
(:func:`claims`) to :meth:`HttpApi.take`, which serves them with h11 (the
pure-Python HTTP/1.1 state machine behind httpx and uvicorn's h11 mode) over
an asyncio stream.  Everything else, WebSocket handshakes and ``/health``,
``/metrics`` and the page, goes to websockets exactly as before.  The
multipart body is read by :mod:`server.form_reader` (python-multipart).

A transcription is a WebSocket offline utterance by another road: the form
becomes the configuration message (:mod:`server.transcription`), an
:class:`HttpSession` (a :class:`~server.session.Session`) reads it with the
same parser and hotword handling, holds the upload against the same caps and
audio budget, and the decode runs in the same decoder pool through
:func:`server.recognizer.transcribe_upload`, the function behind the WebSocket
offline result.  So text, sentence pieces and times are the WebSocket ones.

It shares the WebSocket side's security: ``--api-key`` (Bearer, as the
handshake takes it), ``--max-connections`` (a transcription in flight counts as
one connection), 503 while the models load or the server drains, every size
bounded before it is kept (413 as soon as the declared or counted body passes
the cap), and timeouts on a silent client.  Errors use OpenAI's JSON shape.
"""
from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

import h11
from websockets.datastructures import Headers
from websockets.http11 import Request

from .audio_budget import AudioBudget
from .decoder_pool import DecoderPool, JobSkipped
from .form_reader import FormLimits, FormReader, FormRefused, FormTooLarge, boundary_of
from .http_metrics import HttpMetrics
from .http_routes import AccessPolicy, presented_key
from .logs import ConnectionLog
from .metrics import ServerMetrics
from .openapi import MODELS_PATH, OPENAPI_PATH, TRANSCRIPTIONS_PATH, openapi_document
from .recognizer import (
    AudioDecodeCancelled,
    AudioDecodeError,
    AudioDecodeTimeout,
    AudioTooLongError,
    LiveRecognizer,
    OfflinePipeline,
    offline_model_name,
    offline_pipeline,
    tag_fields,
    takes_language,
    transcribe_upload,
)
from .session import Session, SessionLimits
from .transcription import FormError, build_result, error_body, parse_form, render, stream_events, websocket_config

log = logging.getLogger(__name__)

Models = Union[OfflinePipeline, LiveRecognizer]

#: Request line and headers of one request, at most (h11 answers 431-worthy heads with an error).
MAX_HEAD_BYTES = 16 << 10
#: Bytes of a body beyond the file itself: the other fields and the part headers.
FORM_OVERHEAD_BYTES = 1 << 20
#: A keep-alive connection waiting for its next request is closed after this long.
KEEP_ALIVE_SECONDS = 30.0
#: Reads from the socket, at most (the stream pauses the socket beyond twice this, unread).
READ_BYTES = 64 << 10
API_PREFIX = b"/v1/"
#: The body of a request to an endpoint that takes none is read and dropped up to this size (then: 413).
MAX_IGNORED_BODY = 64 << 10


def claims(request_line: bytes) -> bool:
    """Whether a request line (``POST /v1/audio/transcriptions HTTP/1.1``) is the HTTP API's: a path
    under ``/v1/``, or ``/openapi.json``.  Any other request, on any other path, is websockets'."""
    parts = request_line.strip().split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return False
    path = parts[1].split(b"?", 1)[0]
    return path.startswith(API_PREFIX) or path in (b"/v1", OPENAPI_PATH.encode())


@dataclass
class ApiError(Exception):
    """An answer in OpenAI's error shape."""

    status: int
    message: str
    kind: str = "invalid_request_error"
    param: Optional[str] = None
    code: Optional[str] = None
    headers: List[Tuple[str, str]] = field(default_factory=list)


@dataclass
class Reply:
    """A response to send: a whole body, or server-sent events."""

    status: int
    content_type: str
    body: bytes = b""
    events: Optional[List[bytes]] = None
    headers: List[Tuple[str, str]] = field(default_factory=list)
    audio_seconds: float = 0.0


class HttpSession(Session):
    """One transcription request as a session: the WebSocket side's configuration parsing, hotwords,
    LM context, upload caps and audio budget, with the answers kept for the HTTP reply instead of sent."""

    def __init__(self, models: Models, pool: DecoderPool, **kwargs: Any):
        super().__init__(models, pool, self._keep, **kwargs)
        self.error: Optional[str] = None  # of the configuration message (a ProtocolError)
        self.warning: Optional[str] = None  # hotwords dropped
        self.decoding = False

    @property
    def busy(self) -> bool:
        return self.decoding

    def served_mode(self) -> str:
        return "offline"

    async def _keep(self, message: str) -> None:
        self.error = json.loads(message).get("error") or self.error

    async def send_warning(self, warning: str) -> None:
        self.warning = warning


class HttpApi:
    """Serves the connections :class:`~server.port_sharing.PortSorter` hands over; shared by all of them."""

    def __init__(
        self,
        models: Callable[[], Optional[Models]],
        pool: DecoderPool,
        limits: SessionLimits,
        access: AccessPolicy,
        accepting: Callable[[], bool],
        open_connections: Callable[[], int],
        metrics: ServerMetrics,
        budget: AudioBudget,
        server_hotwords: Optional[Dict[str, int]] = None,
        head_timeout: float = 10.0,
        version: str = "0",
    ):
        self.models = models
        self.pool = pool
        self.limits = limits
        self.access = access
        self.accepting = accepting  # models loaded and not draining
        self.open_connections = open_connections  # WebSocket connections admitted and open
        self.metrics = metrics
        self.budget = budget
        self.server_hotwords = server_hotwords or {}
        self.head_timeout = head_timeout
        self.version = version
        self.form_limits = FormLimits(max_field_bytes=limits.max_text_bytes)
        #: Transcriptions admitted and not yet answered: ``--max-connections`` and the drain count them.
        self.in_flight = 0
        self.http_metrics = HttpMetrics(metrics, lambda: self.in_flight)
        self.started = int(time.time())
        self._ids = itertools.count(1)
        self._transports: Set[asyncio.Transport] = set()
        self._tasks: Set[asyncio.Task] = set()

    # ------------------------------------------------------------ connections

    def claims(self, request_line: bytes) -> bool:
        return claims(request_line)

    def take(self, transport: asyncio.Transport, data: bytes) -> None:
        """Serve ``transport`` from now on; ``data`` is what was read from it already."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=READ_BYTES, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        if data:
            protocol.data_received(data)
        transport.resume_reading()
        task = loop.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        self._transports.add(transport)

        def done(finished: asyncio.Task) -> None:
            self._tasks.discard(finished)
            self._transports.discard(transport)

        task.add_done_callback(done)

    def abort_all(self) -> None:
        """Close every HTTP connection now (the server is closing; answers in flight are lost)."""
        for transport in list(self._transports):
            transport.abort()
        for task in list(self._tasks):
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn_id = f"h{next(self._ids)}"
        clog = ConnectionLog(log, conn_id)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        timeout = self.head_timeout
        try:
            while True:
                event = await _next_event(conn, reader, timeout)
                if not isinstance(event, h11.Request):
                    break
                keep = await self._handle(conn, event, reader, writer, clog)
                if not keep or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    break
                conn.start_next_cycle()
                timeout = KEEP_ALIVE_SECONDS
        except h11.RemoteProtocolError as exc:
            self.metrics.error("bad_request")
            clog.info("bad HTTP request: %s", exc)
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                status = exc.error_status_hint if 400 <= exc.error_status_hint < 500 else 400
                error = ApiError(status, f"malformed HTTP request: {exc}")
                await _send(conn, writer, self._error_reply(error), head=False, close=True)
        except (asyncio.TimeoutError, ConnectionError, h11.LocalProtocolError):
            pass
        finally:
            writer.transport.close()

    async def _handle(self, conn: h11.Connection, request: h11.Request, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter, clog: ConnectionLog) -> bool:
        """Answer one request; whether the connection may carry another."""
        started = time.perf_counter()
        method = request.method.decode("ascii", "replace").upper()
        target = request.target.decode("latin-1")
        path = target.split("?", 1)[0]
        headers = Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers])
        endpoint = _endpoint(path)
        counted = False
        try:
            if path == TRANSCRIPTIONS_PATH:
                _allow(method, "POST")
                self._authorize(headers, target, clog)
                self._admit(clog)
                self.in_flight += 1
                counted = True
                reply = await self._transcribe(conn, headers, reader, writer, clog)
            elif not await _skip_body(conn, reader, self.head_timeout):
                raise ApiError(413, f"this endpoint takes no body (at most {MAX_IGNORED_BODY} bytes are skipped)")
            elif path == OPENAPI_PATH:
                _allow(method, "GET", "HEAD")
                reply = _json_reply(200, openapi_document(self.version))
            elif path == MODELS_PATH or path.startswith(MODELS_PATH + "/"):
                _allow(method, "GET", "HEAD")
                self._authorize(headers, target, clog)
                reply = self._models_reply(path)
            else:
                raise ApiError(404, f"no such endpoint: {method} {path[:100]}; this server has POST {TRANSCRIPTIONS_PATH}, "
                               f"GET {MODELS_PATH} and GET {OPENAPI_PATH}", code="not_found")
        except ApiError as error:
            reply = self._error_reply(error)
        try:
            if reply is None:  # the client went away during the decode
                return False
            close = not self.accepting() or conn.their_state is not h11.DONE
            await _send(conn, writer, reply, head=method == "HEAD", close=close)
            return not close
        finally:
            if counted:
                self.in_flight -= 1
            if reply is not None:
                seconds = time.perf_counter() - started
                self.http_metrics.request(endpoint, reply.status, seconds, reply.audio_seconds)
                clog.info("%s %s %d: %.2f s audio in %.3f s", method, path[:100], reply.status, reply.audio_seconds,
                          seconds, extra={"event": "http_request", "method": method, "path": path[:100],
                                          "endpoint": endpoint, "status": reply.status,
                                          "audio_seconds": round(reply.audio_seconds, 3), "seconds": round(seconds, 3)})

    # ------------------------------------------------------------ checks

    def _authorize(self, headers: Headers, target: str, clog: ConnectionLog) -> None:
        key = self.access.api_key
        if key is None:
            return
        given = presented_key(Request(target, headers))
        if given is None or not hmac.compare_digest(given.encode(), key.encode()):
            self.metrics.error("unauthorized")
            clog.info("refused: missing or wrong API key")
            raise ApiError(401, "missing or wrong API key: send it as 'Authorization: Bearer <key>'",
                           code="invalid_api_key", headers=[("WWW-Authenticate", "Bearer")])

    def _admit(self, clog: ConnectionLog) -> None:
        if not self.accepting():
            raise ApiError(503, "the server is starting (its models are loading) or shutting down; try again shortly",
                           kind="server_error", code="unavailable", headers=[("Retry-After", "5")])
        limit = self.access.max_connections
        if limit is not None and self.open_connections() + self.in_flight >= limit:
            self.metrics.error("over_capacity")
            clog.warning("refused: %d connections and requests already open (--max-connections)", limit)
            raise ApiError(503, f"too many connections (limit {limit}); try again shortly", kind="server_error",
                           code="overloaded", headers=[("Retry-After", "1")])

    def _models_reply(self, path: str) -> Reply:
        models = self.models()
        if models is None:
            raise ApiError(503, "the models are still loading", kind="server_error", code="unavailable")
        name = offline_model_name(models)
        entry = {"id": name, "object": "model", "created": self.started, "owned_by": "funasr"}
        if path == MODELS_PATH:
            return _json_reply(200, {"object": "list", "data": [entry]})
        if path[len(MODELS_PATH) + 1:] == name:
            return _json_reply(200, entry)
        raise ApiError(404, f"no such model; this server has {name!r}", param="model", code="model_not_found")

    def _error_reply(self, error: ApiError) -> Reply:
        return Reply(error.status, "application/json", error_body(error.message, error.kind, error.param, error.code),
                     headers=list(error.headers))

    # ------------------------------------------------------------ the transcription

    async def _transcribe(self, conn: h11.Connection, headers: Headers, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter, clog: ConnectionLog) -> Optional[Reply]:
        models = self.models()
        assert models is not None  # _admit checked
        boundary = boundary_of(headers.get("Content-Type", ""))
        if boundary is None:
            self.metrics.error("format")
            raise ApiError(415, "the body must be multipart/form-data (with a boundary), as OpenAI's API takes it",
                           code="unsupported_media_type")
        max_body = self.limits.max_utterance_bytes + FORM_OVERHEAD_BYTES
        length = headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_body:
            self.metrics.error("too_long")
            raise self._too_large()
        transport = writer.transport
        session = HttpSession(models, self.pool, limits=self.limits, server_hotwords=self.server_hotwords,
                              conn_id=str((clog.extra or {}).get("conn", "-")), metrics=self.metrics,
                              budget=self.budget, alive=lambda: not transport.is_closing())
        try:
            fields, upload = await self._read_form(conn, reader, writer, boundary, max_body, session)
            form = parse_form(fields, upload, takes_language(models))
            assert upload is not None
            if await session.read_control(websocket_config(form)) is None:
                raise ApiError(400, session.error or "bad form fields")
            cfg = session.config
            if cfg.is_pcm and len(upload.data) / 2 / cfg.audio_fs > self.limits.max_utterance_seconds:
                self.metrics.error("too_long")
                raise ApiError(413, f"the audio is longer than {self.limits.max_utterance_seconds:.0f} s "
                               "(--max-utterance-seconds)", param="file", code="audio_too_long")
            session.decoding = True
            try:
                outcome = await session.run_job(transcribe_upload, offline_pipeline(models), upload.data, cfg.wav_format,
                                                cfg.audio_fs, cfg.itn, session.decode_limits(), session.decode_options(cfg))
            finally:
                session.decoding = False
                del upload
        except FormError as exc:
            self.metrics.error("protocol")
            raise ApiError(400, str(exc), param=exc.param) from None
        except (JobSkipped, AudioDecodeCancelled):  # the client has gone
            return None
        except (AudioTooLongError, AudioDecodeTimeout) as exc:
            self.metrics.error("too_long")
            raise ApiError(413, f"{exc} (--max-utterance-seconds, --max-decode-seconds)", param="file",
                           code="audio_too_long") from None
        except AudioDecodeError as exc:
            self.metrics.error("audio")
            raise ApiError(415, str(exc), param="file", code="audio_undecodable") from None
        finally:
            session.release_audio()
        t = outcome.transcript
        if t.lm_seconds:
            self.metrics.stage("lm_search", t.lm_seconds)
        result = build_result(t.text, outcome.audio_seconds, t.sentences, t.segments, tag_fields(t), session.warning)
        extra = [("X-FunASR-Warning", session.warning[:500].encode("ascii", "replace").decode())] if session.warning else []
        if form.stream:
            return Reply(200, "text/event-stream; charset=utf-8", events=stream_events(result),
                         headers=[("Cache-Control", "no-cache"), *extra], audio_seconds=outcome.audio_seconds)
        content_type, body = render(result, form)
        return Reply(200, content_type, body, headers=extra, audio_seconds=outcome.audio_seconds)

    def _too_large(self) -> ApiError:
        return ApiError(413, f"the upload is larger than {self.limits.max_utterance_bytes >> 20} MiB "
                        "(--max-utterance-mib)", param="file", code="file_too_large")

    async def _read_form(self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         boundary: bytes, max_body: int, session: HttpSession):
        """Read the body into a form, every size checked as the bytes come (see :mod:`server.form_reader`)."""

        def hold(n: int, total: int) -> Optional[Exception]:
            if total > self.limits.max_utterance_bytes:
                return FormTooLarge(self._too_large().message)
            refusal = session.hold_audio(n, total)
            return FormRefused(refusal) if refusal is not None else None

        form = FormReader(boundary, hold, self.form_limits)
        if conn.they_are_waiting_for_100_continue:
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        received = 0
        idle = self.limits.idle_timeout or None
        try:
            while True:
                event = await _next_event(conn, reader, idle)
                if isinstance(event, h11.Data):
                    received += len(event.data)
                    if received > max_body:
                        raise FormTooLarge(self._too_large().message)
                    form.feed(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    return form.finish()
                else:
                    raise FormError("the request body ended early")
        except FormTooLarge as exc:
            self.metrics.error("too_long")
            raise ApiError(413, str(exc), param="file", code="file_too_large") from None
        except FormRefused as exc:
            raise ApiError(503, str(exc), kind="server_error", code="overloaded", headers=[("Retry-After", "5")]) from None


def _endpoint(path: str) -> str:
    """The metrics' ``endpoint`` label: one of a few fixed values, never the client's path."""
    if path == TRANSCRIPTIONS_PATH:
        return "transcriptions"
    if path == MODELS_PATH or path.startswith(MODELS_PATH + "/"):
        return "models"
    if path == OPENAPI_PATH:
        return "openapi"
    return "other"


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise ApiError(405, f"method {method[:20]} not allowed here; use {' or '.join(allowed)}",
                       code="method_not_allowed", headers=[("Allow", ", ".join(allowed))])


def _json_reply(status: int, body: Any) -> Reply:
    return Reply(status, "application/json", json.dumps(body, ensure_ascii=False).encode("utf-8"))


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader, timeout: Optional[float]):
    """h11's next event, reading from the socket as it needs (``timeout`` s per read; EOF ends it)."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        data = await asyncio.wait_for(reader.read(READ_BYTES), timeout)
        conn.receive_data(data)  # b"": the peer closed


async def _skip_body(conn: h11.Connection, reader: asyncio.StreamReader, timeout: Optional[float]) -> bool:
    """Read a body nobody wants to its end, so that the connection can carry the next request;
    False when it is longer than :data:`MAX_IGNORED_BODY` (the connection is then closed)."""
    skipped = 0
    while conn.their_state is h11.SEND_BODY:
        event = await _next_event(conn, reader, timeout)
        if isinstance(event, h11.Data):
            skipped += len(event.data)
            if skipped > MAX_IGNORED_BODY:
                return False
        elif not isinstance(event, h11.EndOfMessage):
            return False
    return True


async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, reply: Reply, head: bool, close: bool) -> None:
    headers = [("Content-Type", reply.content_type), *reply.headers]
    if reply.events is None:
        headers.append(("Content-Length", str(len(reply.body))))
    if close:
        headers.append(("Connection", "close"))
    writer.write(conn.send(h11.Response(status_code=reply.status, headers=headers)) or b"")
    if not head:
        for chunk in reply.events if reply.events is not None else [reply.body]:
            if chunk:
                writer.write(conn.send(h11.Data(data=chunk)) or b"")
                await writer.drain()
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    await writer.drain()
