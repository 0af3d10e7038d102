"""The browser page at ``/``: speak into the microphone or upload a file, watch the text appear.

The page is a few static files in ``server/web/`` (shipped as package data),
read once when the server starts and served by the ``process_request`` hook
(:mod:`server.http_routes`) on the WebSocket port itself, over http:// and
https:// alike.  The page then opens a WebSocket to the address it was loaded
from, so it needs nothing but this server: no CDN, no build step.

``index.html`` is filled in per request with what the page cannot find out by
itself: the profile (``2pass``, ``offline``, or empty while the models load),
so it offers only the modes the server has, whether an API key is needed, and
the offline model's family (``sensevoice`` shows SenseVoiceSmall's controls).
Every answer carries ``Cache-Control: no-cache`` with an ``ETag`` (a browser
revalidates and gets a 304 when nothing changed) and security headers: a
Content-Security-Policy that lets the page load only its own files (and play
the file the user picked, a ``blob:`` URL) and connect only back to this server, ``nosniff``, no framing, no referrer.
"""
from __future__ import annotations

import email.utils
import hashlib
import logging
import re
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Callable, Dict, Optional

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
INDEX = "index.html"

#: URL path → (file in WEB_DIR, Content-Type).
ROUTES: Dict[str, tuple] = {
    "/": (INDEX, "text/html; charset=utf-8"),
    "/index.html": (INDEX, "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/capture-worklet.js": ("capture-worklet.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}

# A Host header we are willing to repeat in the CSP: a name or address and a port, nothing else.
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


def content_security_policy(host: Optional[str]) -> str:
    """Own files only; WebSockets only back to this server (``'self'`` covers ws: in new browsers only)."""
    connect = "'self'"
    if host and _HOST.match(host):
        connect += f" ws://{host} wss://{host}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src blob:; "
        f"connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Permissions-Policy", "microphone=(self)"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)


@dataclass(frozen=True)
class PageState:
    """What ``index.html`` tells the page about this server."""

    profile: str  # "2pass", "offline", or "" while the models load
    api_key_required: bool


class WebPage:
    """The page's files, in memory; :meth:`respond` answers one HTTP request for them."""

    def __init__(self, directory: Path = WEB_DIR, model: Callable[[], str] = lambda: ""):
        #: The offline model's family, for the controls only it has: "sensevoice", "paraformer", "" (loading).
        self.model = model
        self.files: Dict[str, bytes] = {}
        for name in {name for name, _ in ROUTES.values()}:
            try:
                self.files[name] = (directory / name).read_bytes()
            except OSError as exc:  # a broken install: the WebSocket still works, the page says why
                log.error("the web page is incomplete (%s): %s", name, exc)

    def serves(self, path: str) -> bool:
        return path in ROUTES

    def body(self, path: str, state: PageState) -> Optional[bytes]:
        name, _ = ROUTES[path]
        data = self.files.get(name)
        if data is not None and name == INDEX:
            data = data.replace(b"{{profile}}", state.profile.encode()).replace(
                b"{{api_key}}", b"required" if state.api_key_required else b"none"
            ).replace(b"{{model}}", self.model().encode())
        return data

    def respond(self, request: Request, path: str, state: PageState) -> Response:
        method = getattr(request, "method", "GET")  # older websockets parse GET requests only
        if method not in ("GET", "HEAD"):
            response = _response(HTTPStatus.METHOD_NOT_ALLOWED, b"GET or HEAD only\n", "text/plain; charset=utf-8")
            response.headers["Allow"] = "GET, HEAD"
            return response
        data = self.body(path, state)
        if data is None:
            return _response(HTTPStatus.NOT_FOUND, b"the web page is not installed\n", "text/plain; charset=utf-8")
        _, content_type = ROUTES[path]
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        headers = [
            ("Cache-Control", "no-cache"),
            ("ETag", etag),
            ("Content-Security-Policy", content_security_policy(request.headers.get("Host"))),
            *SECURITY_HEADERS,
        ]
        if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
            return _response(HTTPStatus.NOT_MODIFIED, b"", None, headers)
        return _response(HTTPStatus.OK, data, content_type, headers, head=method == "HEAD")


def _response(status: HTTPStatus, body: bytes, content_type: Optional[str], extra=(), head: bool = False) -> Response:
    headers = Headers([("Date", email.utils.formatdate(usegmt=True)), ("Connection", "close")])
    if status != HTTPStatus.NOT_MODIFIED:
        headers["Content-Length"] = str(len(body))  # for HEAD too: the length a GET would get
    if content_type:
        headers["Content-Type"] = content_type
    for key, value in extra:
        headers[key] = value
    return Response(status.value, status.phrase, headers, b"" if head else body)
