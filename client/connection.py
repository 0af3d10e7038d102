"""Opening a WebSocket to the server, and saying plainly why it failed when it does.

The options copy what FunASR's client does where it matters to servers in the
field: the ``binary`` subprotocol is offered, TLS is not verified, no pings are
sent (some servers do not answer them).  Per-message compression is off: audio
does not compress, and deflating it costs CPU on both sides.
"""
from __future__ import annotations

import asyncio
import inspect
import socket
import ssl
from typing import Any, Dict

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)

from .config import ConnectionSettings
from .errors import ClientError

#: Results are small, but one for a three-hour file carries a timestamp per token.
MAX_RESULT_BYTES = 64 << 20


def unverified_tls() -> ssl.SSLContext:
    """TLS without certificate or host name checks: what every FunASR client does."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _connect_options(settings: ConnectionSettings) -> Dict[str, Any]:
    options: Dict[str, Any] = dict(
        subprotocols=["binary"],
        compression=None,
        ping_interval=None,
        max_size=MAX_RESULT_BYTES,
        open_timeout=settings.open_timeout,
        close_timeout=2,
    )
    if settings.secure:
        options["ssl"] = unverified_tls()
    if settings.headers():
        options["additional_headers"] = settings.headers()
    # websockets >= 15 would route through $HTTPS_PROXY; FunASR servers are reached
    # directly (usually on a LAN), as FunASR's client reaches them.
    if "proxy" in inspect.signature(connect.__init__).parameters:
        options["proxy"] = None
    return options


def describe_connect_error(url: str, exc: BaseException, secure: bool) -> str:
    """One sentence saying what went wrong and, where there is one, what to do about it."""
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status == 401:
            return f"the server at {url} refused the connection: HTTP 401 unauthorized (give the right --api-key)"
        if status == 503:
            return f"the server at {url} refused the connection: HTTP 503 (it is starting, shutting down or full)"
        return f"the server at {url} refused the WebSocket connection: HTTP {status}"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or exc.strerror or str(exc)
        return f"TLS handshake with {url} failed ({reason}); if the server does not use TLS, use --ssl 0 or a ws:// URL"
    if isinstance(exc, (InvalidMessage, ConnectionClosed, EOFError, ConnectionResetError)):
        hint = (
            "; if the server does not use TLS, use --ssl 0 or a ws:// URL" if secure
            else "; if the server only accepts TLS, use --ssl 1 or a wss:// URL"
        )
        return f"the server at {url} closed the connection during the handshake{hint}"
    if isinstance(exc, InvalidURI):
        return f"invalid server URL {url!r}"
    if isinstance(exc, InvalidHandshake):
        return f"WebSocket handshake with {url} failed: {exc}"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return f"cannot connect to {url}: no answer (timed out)"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to {url}: connection refused (is the server running on that host and port?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot connect to {url}: unknown host"
    if isinstance(exc, OSError):
        return f"cannot connect to {url}: {exc.strerror or exc}"
    return f"cannot connect to {url}: {exc}"


async def open_connection(settings: ConnectionSettings) -> ClientConnection:
    """A connected WebSocket, or :class:`ClientError` with a message a person can act on."""
    try:
        return await connect(settings.url, **_connect_options(settings))
    except (OSError, asyncio.TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed, EOFError, ssl.SSLError) as exc:
        raise ClientError(describe_connect_error(settings.url, exc, settings.secure)) from None


def describe_closed(exc: ConnectionClosed) -> str:
    """Why an open connection ended while a result was awaited."""
    close = exc.rcvd
    if close is None:
        return "the connection to the server was lost before the result came"
    if close.code == 1009:
        return "the server closed the connection: a message was too big for it (code 1009)"
    reason = f": {close.reason}" if close.reason else ""
    return f"the server closed the connection before the result came (code {close.code}{reason})"
