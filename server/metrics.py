"""Prometheus metrics of one server, served as text at ``GET /metrics``.

Each server has its own registry (several servers in one process, as in the
tests, do not mix their numbers).  Live values (connections by mode, jobs
waiting for a decoder thread) are read when scraped; the rest are counted as
things happen:

* ``funasr_connections{mode}``: open WebSocket sessions by their current mode;
* ``funasr_active_streams{mode}``: sessions with an utterance in flight (audio received and not yet
  answered) by mode: the load a replica carries, for autoscaling and balancing;
* ``funasr_decode_queue_depth``: model jobs submitted and not finished;
* ``funasr_audio_seconds_total{mode}``: audio recognised;
* ``funasr_stage_seconds{stage}``: time of each kind of model job, from submit to result, and
  ``stage="lm_search"``: the n-gram LM search inside them (``--lm-dir``), per utterance or 2pass segment;
* ``funasr_buffered_audio_bytes``: client audio held in memory, all connections;
* ``funasr_stage_cpu_seconds_total{stage}``: CPU seconds the process spent in each model stage
  (:mod:`models.stage_clock`; the process's CPU less their sum is protocol and scheduling);
* ``funasr_errors_total{kind}``: errors answered or refusals, by kind (``idle_timeout``
  counts connections closed for silence, ``server_audio_budget`` uploads refused for memory);
* the HTTP API's, registered here by :mod:`server.http_metrics`, by ``endpoint`` (``transcriptions``, ``models``,
  ``openapi``, ``other``): ``funasr_http_requests_total{endpoint,status}``,
  ``funasr_http_request_seconds{endpoint}`` (from the request's head to its answer, upload
  included), ``funasr_http_audio_seconds_total{endpoint}`` and
  ``funasr_http_requests_in_flight`` (transcriptions admitted and not yet answered).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

#: Job durations from a few ms (one streaming chunk) to minutes (an hour-long file).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class _LiveValues(Collector):
    def __init__(
        self,
        sessions_by_mode: Callable[[], Dict[str, int]],
        queue_depth: Callable[[], int],
        buffered_audio: Callable[[], int],
        active_streams: Callable[[], Dict[str, int]] = dict,
    ):
        self.sessions_by_mode = sessions_by_mode
        self.queue_depth = queue_depth
        self.buffered_audio = buffered_audio
        self.active_streams = active_streams

    def collect(self) -> Iterable[GaugeMetricFamily]:
        connections = GaugeMetricFamily("funasr_connections", "Open WebSocket sessions by mode", labels=["mode"])
        for mode, count in sorted(self.sessions_by_mode().items()):
            connections.add_metric([mode], count)
        yield connections
        streams = GaugeMetricFamily(
            "funasr_active_streams", "Sessions with an utterance in flight (audio not yet answered) by mode", labels=["mode"]
        )
        for mode, count in sorted(self.active_streams().items()):
            streams.add_metric([mode], count)
        yield streams
        yield GaugeMetricFamily(
            "funasr_decode_queue_depth", "Model jobs submitted to the decoder pool and not finished", value=self.queue_depth()
        )
        yield GaugeMetricFamily(
            "funasr_buffered_audio_bytes",
            "Client audio held in memory by all connections (bounded by --max-buffered-audio-mib)",
            value=self.buffered_audio(),
        )


class _StageCpu(Collector):
    """The process's CPU seconds by model stage, read when scraped (the stages count them)."""

    def collect(self) -> Iterable[CounterMetricFamily]:
        from .recognizer import cpu_seconds  # the models' clock, through the recogniser boundary

        family = CounterMetricFamily(
            "funasr_stage_cpu_seconds", "CPU seconds spent in each model stage, all threads", labels=["stage"]
        )
        for stage, seconds in sorted(cpu_seconds().items()):
            family.add_metric([stage], seconds)
        yield family


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self,
        sessions_by_mode: Callable[[], Dict[str, int]] = dict,
        queue_depth: Callable[[], int] = lambda: 0,
        buffered_audio: Callable[[], int] = lambda: 0,
        active_streams: Callable[[], Dict[str, int]] = dict,
    ):
        self.registry = CollectorRegistry()
        self.audio_seconds = Counter(
            "funasr_audio_seconds", "Seconds of audio recognised", ["mode"], registry=self.registry
        )
        self.stage_seconds = Histogram(
            "funasr_stage_seconds", "Time of model jobs by stage", ["stage"], buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.errors = Counter("funasr_errors", "Errors and refusals by kind", ["kind"], registry=self.registry)
        self.registry.register(_LiveValues(sessions_by_mode, queue_depth, buffered_audio, active_streams))
        self.registry.register(_StageCpu())

    def error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def audio(self, mode: str, seconds: float) -> None:
        if seconds > 0:
            self.audio_seconds.labels(mode).inc(seconds)

    def stage(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(stage).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


#: For sessions built without a server (unit tests): counts into a registry nobody reads.
UNUSED = ServerMetrics()
