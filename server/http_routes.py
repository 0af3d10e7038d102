"""What the server answers over plain HTTP on its WebSocket port, before any handshake.

Every request passes through :meth:`HttpRoutes.__call__` (websockets'
``process_request`` hook):

* ``GET /health`` (readiness): 200 when the models are loaded, the server is not
  draining and below ``--max-connections``; 503 while it is loading, draining or
  full.  The body is JSON with the state and the counts (:mod:`server.health`):
  for load balancers, readiness probes and container health checks;
* ``GET /livez`` (liveness): 200 whenever the process answers, loading, draining
  and full included, with the same body: for probes that restart the process;
* ``GET /metrics``: Prometheus text (:mod:`server.metrics`);
* ``GET /`` (and the page's own files): the browser page (:mod:`server.web_page`),
  public like the two above (no API key, not counted in ``--max-connections``);
  ``--no-web-page`` turns it off;
* any other plain HTTP request: 404;
* a WebSocket handshake (``Connection: Upgrade``), on any path, ``/`` included
  (clients in the field use ``/``, ``/ws`` and others).  It is refused with 503
  while starting or draining or beyond ``--max-connections``, and with 401 when
  ``--api-key`` is set and the request does not carry it.

The key is accepted as ``Authorization: Bearer <key>``, as the
``Bearer; <key>`` form xiaozhi-esp32-server sends, or as ``?token=<key>`` for
clients that cannot set headers (browsers).

websockets logs every request it answers at INFO (``HTTP response sent (200
OK)``, then ``connection closed``): a load balancer probing ``/health`` every
second, or Prometheus scraping ``/metrics``, would fill the log with them.
:class:`QuietProbes` moves those lines to DEBUG; the lines of WebSocket
connections (on any path, ``/health`` included), of every other request, and
websockets' warnings and errors stay as they are.
"""
from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Callable, Optional
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import MultipleValuesError
from websockets.http11 import Request, Response

from .health import Health
from .metrics import ServerMetrics
from .web_page import PageState, WebPage

log = logging.getLogger(__name__)

#: Headers a request may carry once only (RFC 9110/9112: two Hosts are a 400; two keys are ambiguous).
SINGLE_HEADERS = ("Host", "Authorization", "Upgrade", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "If-None-Match")

HEALTH_PATH = "/health"
LIVENESS_PATH = "/livez"
METRICS_PATH = "/metrics"
#: Plain HTTP requests that monitoring repeats all day: websockets' INFO lines about them go to DEBUG.
PROBE_PATHS = frozenset({HEALTH_PATH, LIVENESS_PATH, METRICS_PATH})
#: The logger of websockets' server side (its connections log through it too).
WEBSOCKETS_LOGGER = "websockets.server"


class QuietProbes(logging.Filter):
    """Demote websockets' INFO records about a ``/health`` or ``/metrics`` request to DEBUG.

    websockets attaches the connection to each record it logs (``record.websocket``);
    a record whose connection asked for a probe path in plain HTTP becomes a DEBUG
    record, shown only where DEBUG is on.  Records at WARNING and above always pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not _is_probe(getattr(record, "websocket", None)):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def _is_probe(connection: object) -> bool:
    try:  # websockets passes a weak proxy: the connection may be gone
        request = getattr(connection, "request", None)
    except ReferenceError:
        return False
    if not isinstance(request, Request) or is_websocket_handshake(request):
        return False
    return urlsplit(request.path).path in PROBE_PATHS


def quiet_probe_logs(logger: logging.Logger = logging.getLogger(WEBSOCKETS_LOGGER)) -> None:
    """Put :class:`QuietProbes` on websockets' server logger (once, however often it is called)."""
    if not any(isinstance(f, QuietProbes) for f in logger.filters):
        logger.addFilter(QuietProbes())


@dataclass(frozen=True)
class AccessPolicy:
    api_key: Optional[str] = None  # None: no authentication
    max_connections: Optional[int] = None  # None: no limit


def presented_key(request: Request) -> Optional[str]:
    """The API key a request carries, in any of the accepted forms, or None."""
    auth = request.headers.get("Authorization", "")
    scheme, _, rest = auth.partition(" ")
    scheme = scheme.strip()
    if scheme.rstrip(";").lower() == "bearer":
        key = rest.strip().lstrip(";").strip()
        if key:
            return key
    tokens = parse_qs(urlsplit(request.path).query).get("token")
    return tokens[0] if tokens else None


class HttpRoutes:
    """The ``process_request`` hook; reads the server's state through the callables it is given."""

    def __init__(
        self,
        policy: AccessPolicy,
        accepting: Callable[[], bool],
        admit: Callable[[ServerConnection], int],
        metrics: ServerMetrics,
        web: Optional[WebPage] = None,
        profile: Callable[[], str] = lambda: "",
        health: Optional[Callable[[], Health]] = None,
    ):
        self.policy = policy
        self.metrics = metrics
        self.web = web  # None: no page (--no-web-page)
        self.profile = profile  # "2pass", "offline", or "" while the models load
        self.accepting = accepting  # models loaded and not draining
        self.admit = admit  # counts a connection in; returns how many others are open
        #: The state /health and /livez report; without one, only whether the server accepts connections.
        self.health = health or (lambda: Health(loaded=accepting(), draining=False, connections=0, max_connections=None))
        quiet_probe_logs()  # websockets would log each probe of /health and /metrics at INFO

    def __call__(self, connection: ServerConnection, request: Request) -> Optional[Response]:
        try:
            return self._route(connection, request)
        except MultipleValuesError as exc:  # a header repeated that may appear once (Host, Authorization, ...)
            self.metrics.error("bad_request")
            log.info("refused %s: header %s sent more than once", connection.remote_address, exc)
            return connection.respond(HTTPStatus.BAD_REQUEST, f"header {exc} may appear only once\n")

    def _route(self, connection: ServerConnection, request: Request) -> Optional[Response]:
        for name in SINGLE_HEADERS:
            if len(request.headers.get_all(name)) > 1:
                raise MultipleValuesError(name)
        path = urlsplit(request.path).path
        if not is_websocket_handshake(request):
            return self.plain_http(connection, request, path)
        if not self.accepting():
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "the server is starting or shutting down\n")
        key = self.policy.api_key
        if key is not None:
            given = presented_key(request)
            if given is None or not hmac.compare_digest(given.encode(), key.encode()):
                log.info("refused %s: missing or wrong API key", connection.remote_address)
                self.metrics.error("unauthorized")
                response = connection.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong API key\n")
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
        others = self.admit(connection)
        limit = self.policy.max_connections
        if limit is not None and others >= limit:
            log.warning("refused %s: %d connections already open (--max-connections)", connection.remote_address, limit)
            self.metrics.error("over_capacity")
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, f"too many connections (limit {limit})\n")
        return None

    def plain_http(self, connection: ServerConnection, request: Request, path: str) -> Response:
        """A request that is not a WebSocket handshake: the side endpoints, the page, or 404."""
        if path in (HEALTH_PATH, LIVENESS_PATH):
            health = self.health()
            status = HTTPStatus.OK if health.ready or path == LIVENESS_PATH else HTTPStatus.SERVICE_UNAVAILABLE
            response = connection.respond(status, health.body())
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json"
            response.headers["Cache-Control"] = "no-store"
            return response
        if path == METRICS_PATH:
            response = connection.respond(HTTPStatus.OK, self.metrics.render().decode("utf-8"))
            del response.headers["Content-Type"]  # Headers appends: replace text/plain, do not add a second one
            response.headers["Content-Type"] = self.metrics.content_type
            return response
        if self.web is not None and self.web.serves(path):
            state = PageState(profile=self.profile(), api_key_required=self.policy.api_key is not None)
            return self.web.respond(request, path, state)
        return connection.respond(
            HTTPStatus.NOT_FOUND,
            "not found: this port serves WebSocket connections on any path, "
            + ("the web page at /, " if self.web is not None else "")
            + "/health, /livez and /metrics\n",
        )


def is_websocket_handshake(request: Request) -> bool:
    """Whether ``request`` asks for a WebSocket (anything else is plain HTTP: /health, the page)."""
    connection = ",".join(request.headers.get_all("Connection"))  # a list header: it may be repeated
    return "upgrade" in connection.lower() or "Upgrade" in request.headers
