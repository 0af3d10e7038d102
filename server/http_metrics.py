"""The HTTP API's Prometheus metrics, in the server's own registry (:mod:`server.metrics`).

Their own names, with an ``endpoint`` label of a few fixed values (never the
client's path, so a scan of random URLs cannot grow the label set), next to
the WebSocket side's metrics, whose names and labels stay as they are.  Errors
and refusals still count in ``funasr_errors_total{kind}`` with the WebSocket
side's kinds (``unauthorized``, ``too_long``, ``audio``, ...).
"""
from __future__ import annotations

from typing import Callable

from prometheus_client import Counter, Gauge, Histogram

from .metrics import LATENCY_BUCKETS, ServerMetrics


class HttpMetrics:
    def __init__(self, metrics: ServerMetrics, in_flight: Callable[[], int] = lambda: 0):
        registry = metrics.registry
        self.requests = Counter(
            "funasr_http_requests", "HTTP API requests answered, by endpoint and status", ["endpoint", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "funasr_http_request_seconds", "HTTP API requests from head to answer (upload included), by endpoint",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.audio_seconds = Counter(
            "funasr_http_audio_seconds", "Seconds of audio recognised through the HTTP API, by endpoint", ["endpoint"],
            registry=registry,
        )
        gauge = Gauge("funasr_http_requests_in_flight", "HTTP transcriptions admitted and not yet answered",
                      registry=registry)
        gauge.set_function(lambda: float(in_flight()))

    def request(self, endpoint: str, status: int, seconds: float, audio_seconds: float = 0.0) -> None:
        """One HTTP API answer."""
        self.requests.labels(endpoint, str(status)).inc()
        self.seconds.labels(endpoint).observe(seconds)
        if audio_seconds > 0:
            self.audio_seconds.labels(endpoint).inc(audio_seconds)
