"""One connection on the 2pass profile: the ``2pass``, ``online`` and ``offline`` modes (protocol §4.2–4.5).

The life of an utterance::

    config (text) ──► audio frames (binary) ──► end signal (text) ──► exactly one is_final: true
         ▲                                                                   │
         └──────────────── the connection is reused ─────────────────────────┘

* Audio before the first valid configuration is dropped.  In ``online`` and
  ``2pass`` a configuration must carry a valid ``chunk_size``; without one the
  client gets an error message (the reference stays silent) and its audio is
  dropped until it sends one.
* The first audio frame starts an utterance with the mode, format, rate,
  ITN setting and chunk size configured at that moment; later text messages
  change them for the next utterance.
* PCM goes to the recogniser as it arrives (at least 50 ms at a time), in the
  decoder pool, one job at a time per connection, so results come back in
  order; while a job runs the connection reads no further frames.
* What the recogniser reports becomes messages: online text as ``2pass-online``
  (``online`` in the online mode) deltas, never empty; each VAD segment as one
  ``2pass-offline`` message with absolute timestamps; on the end signal the
  last segment, or an empty text, with ``is_final: true``.  In the online mode
  the final message carries the last online text instead.
* Container files (``wav_format`` other than ``pcm``) are decoded after the end
  signal in the offline mode; the streaming modes answer them with the
  reference's error.
* An error (bad message, too much audio, undecodable file) is answered with
  ``is_final: true`` and an ``error`` field, and the utterance is dropped; the
  connection stays usable.
* An end signal with ``"is_end": true`` (FunASR's Python client since 2026-07)
  gets one more message after the final one: ``{"text": "", "is_final": true,
  "is_end": true}`` (``is_final`` false and the ``error`` when the utterance
  failed).  The connection stays open; that client closes it.
* Messages without a result (that acknowledgement, a hotword warning) carry the
  ``mode`` label of the final result: ``2pass-offline``, ``online`` in the
  online mode.

One utterance's state is one :class:`Utterance` object, in one of the named
:class:`UtteranceState` states::

    no configuration ──(valid config)──► CONFIGURED ──(first audio frame)──► STREAMING
                                          ▲    │                          │        │
                                          │    │ (file in a streaming     │ error  │ end signal
                                          │    │  mode)                   ▼        ▼
                                          │    └───────────────────────► FAILED  FINISHING
                                          │                               │        │ final sent
                                          └───── (end signal: ack only) ──┘        │
                                          └────────────────────────────────────────┘

At each end the old object is dropped and a fresh CONFIGURED one (the
connection's configuration carries over) takes its place; a bad control
message drops the utterance in progress the same way.  A streaming mode
without a valid ``chunk_size`` leaves no utterance at all: audio is ignored
until a valid configuration.  The audio side (VAD, online and offline passes)
is ``models/live_stream.py``, reached through
:class:`server.recognizer.LiveUtterance`.
"""
from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .decoder_pool import JobSkipped, Priority
from .logs import utterance_fields
from .protocol import ClientConfig, error_message, result_message
from .recognizer import (
    AudioDecodeError,
    LiveRecognizer,
    LiveUtterance,
    PartialText,
    SegmentText,
    StreamEvent,
    tag_fields,
)
from .session import Session

log = logging.getLogger(__name__)

STREAMING_MODES = ("online", "2pass")
#: The reference's answer to a container file in a streaming mode; kept word for word, clients match on it.
PCM_ONLY_ERROR = "ERROR. Real-time transcription service ONLY SUPPORT PCM stream."
#: PCM is handed to the recogniser in pieces of at least this much audio (the VAD's step).
MIN_PIECE_SECONDS = 0.05


class UtteranceState(enum.Enum):
    CONFIGURED = "configured"  # a valid configuration; no audio yet (it may still change)
    STREAMING = "streaming"  # audio arriving; the configuration is fixed
    FINISHING = "finishing"  # the end signal came: the last piece is being decoded and answered
    FAILED = "failed"  # an error was answered: audio is dropped until the end signal


@dataclass
class Utterance:
    """One utterance on the connection, from its configuration to its answer."""

    config: ClientConfig  # fixed at the first audio frame (STREAMING on)
    state: UtteranceState = UtteranceState.CONFIGURED
    live: Optional[LiveUtterance] = None  # the recogniser's side, STREAMING and FINISHING
    container: Optional[bytearray] = None  # a whole file being received (offline mode)
    pending: bytearray = field(default_factory=bytearray)  # PCM not yet handed to the recogniser
    pcm_bytes: int = 0
    min_piece_bytes: int = 0
    failure: Optional[str] = None  # FAILED: the error that was sent
    sentence_started: bool = False  # a delta of the current sentence has been sent
    started_at: float = 0.0

    @property
    def in_flight(self) -> bool:
        return self.state in (UtteranceState.STREAMING, UtteranceState.FINISHING)


class StreamingSession(Session):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.recognizer: LiveRecognizer = self.models
        #: None until a valid configuration has arrived (audio is ignored meanwhile).
        self.utterance: Optional[Utterance] = None
        self.sentence_index = 0  # the reference's ``index``: segments finished on this connection

    @property
    def configured(self) -> bool:
        """A valid configuration has arrived: audio counts from now on."""
        return self.utterance is not None

    @property
    def busy(self) -> bool:
        return self.utterance is not None and self.utterance.in_flight

    def served_mode(self) -> str:
        utt = self.utterance
        return utt.config.mode if utt is not None and utt.in_flight else self.config.mode

    def reply_label(self, mode: str) -> str:
        return "online" if mode == "online" else "2pass-offline"

    # ------------------------------------------------------------------ frames in

    async def on_text(self, text: str) -> None:
        message = await self.read_control(text)
        if message is None:
            self._end_utterance()
            return
        if self.config.mode in STREAMING_MODES and self.config.chunk_size is None:
            self.metrics.error("protocol")
            error = (
                f"mode '{self.config.mode}' needs 'chunk_size' (look-back, chunk, look-ahead in 60 ms frames), "
                'e.g. "chunk_size": [5, 10, 5]; audio is ignored until it is set'
            )
            await self.send(error_message(error, self.config.wav_name, self.config.mode))
            self.release_audio()
            self.utterance = None
            if message.end_of_input:
                await self.send_end_ack(self.config.mode, self.config.wav_name, error)
            return
        if self.utterance is None:
            self.utterance = Utterance(self.config)
        if message.end_of_utterance:
            await self._finish_utterance(self.utterance, end_ack=message.end_of_input)

    async def on_audio(self, data: bytes) -> None:
        utt = self.utterance
        if utt is None or utt.state in (UtteranceState.FAILED, UtteranceState.FINISHING):
            return
        if utt.state is UtteranceState.CONFIGURED:
            if not await self._start_utterance(utt):
                return
        if utt.container is not None:
            error = self.hold_audio(len(data), len(utt.container) + len(data))
            if error is not None:
                await self._fail(error, kind=None)
                return
            utt.container += data
            return
        utt.pcm_bytes += len(data)
        if utt.pcm_bytes / 2 / utt.config.audio_fs > self.limits.max_utterance_seconds:
            await self._fail(
                f"utterance too long: more than {self.limits.max_utterance_seconds:.0f} s of audio before the end signal "
                f"(--max-utterance-seconds)",
                kind="too_long",
            )
            return
        utt.pending += data
        if len(utt.pending) >= utt.min_piece_bytes and utt.live is not None:
            piece, utt.pending = utt.pending, bytearray()
            started = time.perf_counter()
            try:
                # live captions wait on this piece; an offline-mode stream has nothing to show until its end
                urgency = Priority.BACKGROUND if utt.config.mode == "offline" else Priority.ONLINE
                events = await self.run_job(utt.live.feed_pcm, piece, False, priority=urgency)
            except JobSkipped:  # the client has gone
                return
            except Exception:  # a model failure costs this utterance, not the connection
                self.log.exception("decoding failed")
                await self._fail("internal error while decoding this utterance; it was dropped", kind="internal")
                return
            self.metrics.stage("stream_piece", time.perf_counter() - started)
            await self._send_events(utt, events, final=False)

    # ------------------------------------------------------------------ utterance

    def _end_utterance(self) -> None:
        """Drop the utterance; the next one starts CONFIGURED when the connection was configured."""
        self.release_audio()
        if self.utterance is not None:
            self.utterance = Utterance(self.config)

    async def _start_utterance(self, utt: Utterance) -> bool:
        """CONFIGURED → STREAMING at the first audio frame, the configuration fixed (or → FAILED)."""
        cfg = ClientConfig(**vars(self.config))
        if cfg.mode in STREAMING_MODES and not cfg.is_pcm:
            await self._fail(
                f"{PCM_ONLY_ERROR} (wav_format '{cfg.wav_format}'; only the offline mode takes files)",
                text=PCM_ONLY_ERROR,
                kind="format",
            )
            return False
        utt.config = cfg
        utt.live = LiveUtterance(
            self.recognizer, cfg.mode, cfg.chunk_size or (5, 10, 5), cfg.itn, cfg.audio_fs, self.decode_options(cfg)
        )
        utt.container = None if cfg.is_pcm else bytearray()
        utt.min_piece_bytes = 2 * max(1, int(cfg.audio_fs * MIN_PIECE_SECONDS))
        utt.started_at = time.perf_counter()
        utt.state = UtteranceState.STREAMING
        return True

    async def _finish_utterance(self, utt: Utterance, end_ack: bool = False) -> None:
        """Flush and answer the utterance (one ``is_final`` message); with ``end_ack``
        (``"is_end": true``) acknowledge the end after that final message."""
        if utt.state is UtteranceState.FAILED:
            failure, cfg = utt.failure, self.config
            self._end_utterance()
            if end_ack:
                await self.send_end_ack(cfg.mode, cfg.wav_name, failure)
            return
        live = utt.live if utt.state is UtteranceState.STREAMING else None
        cfg = utt.config if live is not None else self.config
        events: List[StreamEvent] = []
        error: Optional[str] = None
        started = time.perf_counter()
        if live is not None:
            utt.state = UtteranceState.FINISHING
            try:
                if utt.container is not None:
                    events = await self.run_job(live.feed_file, utt.container, self.decode_limits())
                else:
                    piece, utt.pending = utt.pending, bytearray()
                    events = await self.run_job(live.feed_pcm, piece, True)
            except JobSkipped:  # the client has gone: nobody to answer
                self._end_utterance()
                return
            except AudioDecodeError as exc:
                error = str(exc)
                self.metrics.error("audio")
            except Exception:
                self.log.exception("decoding failed")
                error = "internal error while decoding this utterance"
                self.metrics.error("internal")
            self.metrics.stage("stream_final", time.perf_counter() - started)
            self.metrics.audio(cfg.mode, live.seconds)
        await self._send_events(utt, events, final=True, cfg=cfg, error=error)
        if end_ack:
            await self.send_end_ack(cfg.mode, cfg.wav_name, error)
        self.utterances += 1
        if live is not None:
            seconds = time.perf_counter() - utt.started_at
            self.log.info(
                "%s %s: %.2f s audio, %.3f s after the first frame%s",
                cfg.mode,
                cfg.wav_name,
                live.seconds,
                seconds,
                f", error: {error}" if error else "",
                extra=utterance_fields(cfg.mode, cfg.wav_name, live.seconds, seconds, error),
            )
        self._end_utterance()

    async def _fail(self, error: str, text: str = "", kind: Optional[str] = "protocol") -> None:
        """Answer with an error, drop this utterance's audio until the end signal (→ FAILED).
        (``kind`` None: the error was counted where it was found.)"""
        self.log.info("utterance dropped: %s", error)
        if kind is not None:
            self.metrics.error(kind)
        utt = self.utterance
        cfg = utt.config if utt is not None and utt.in_flight else self.config
        await self.send(result_message(cfg.mode, cfg.wav_name, text, is_final=True, error=error))
        self.release_audio()
        self.utterance = Utterance(self.config, UtteranceState.FAILED, failure=error)

    # ------------------------------------------------------------------ messages out

    async def _send_events(
        self,
        utt: Utterance,
        events: List[StreamEvent],
        final: bool,
        cfg: Optional[ClientConfig] = None,
        error: Optional[str] = None,
    ) -> None:
        cfg = cfg or utt.config
        if cfg.mode == "online":
            await self._send_online(utt, events, final, cfg, error)
            return
        segments = [ev for ev in events if isinstance(ev, SegmentText)]
        for seg in segments:
            if seg.transcript.lm_seconds:
                self.metrics.stage("lm_search", seg.transcript.lm_seconds)
        last_segment = segments[-1] if final and segments else None
        for ev in events:
            if isinstance(ev, PartialText):
                if cfg.mode == "2pass":
                    await self.send(self._delta_message(utt, "2pass-online", ev, cfg))
            else:
                await self.send(self._segment_message(utt, ev, cfg, is_final=ev is last_segment))
        if final and last_segment is None:
            extra: Dict[str, Any] = {"error": error} if error else {}
            await self.send(result_message("2pass-offline", cfg.wav_name, "", is_final=True, **extra))

    async def _send_online(
        self, utt: Utterance, events: List[StreamEvent], final: bool, cfg: ClientConfig, error: Optional[str]
    ) -> None:
        partials = [ev for ev in events if isinstance(ev, PartialText)]
        if not final:
            for ev in partials:
                await self.send(self._delta_message(utt, "online", ev, cfg))
            return
        # the end signal: the tail's text, all in the one final message
        text = "".join(ev.text for ev in partials)
        extra: Dict[str, Any] = {"error": error} if error else {}
        if text:
            extra.update(self._slice_fields(utt, ends_segment=True))
        await self.send(result_message("online", cfg.wav_name, text, is_final=True, **extra))

    def _slice_fields(self, utt: Utterance, ends_segment: bool, whole: bool = False) -> Dict[str, Any]:
        """The reference's ``slice_type`` (0 first text of a sentence, 1 more, 2 a finished segment's
        offline text) and ``index``: the one place that counts the connection's segments."""
        slice_type = 2 if whole else (1 if utt.sentence_started else 0)
        fields = {"slice_type": slice_type, "index": self.sentence_index}
        ends = ends_segment or whole
        utt.sentence_started = not ends
        if ends:
            self.sentence_index += 1
        return fields

    def _delta_message(self, utt: Utterance, mode: str, ev: PartialText, cfg: ClientConfig) -> str:
        """A delta; ``end_time`` says how far into the utterance (ms) the server had heard when it
        produced the text: live captions can be placed by it, and a client can measure its lag."""
        return result_message(
            mode, cfg.wav_name, ev.text, is_final=False, end_time=ev.heard_ms, **self._slice_fields(utt, ev.ends_segment)
        )

    def _segment_message(self, utt: Utterance, ev: SegmentText, cfg: ClientConfig, is_final: bool) -> str:
        t = ev.transcript
        return result_message(
            "2pass-offline",
            cfg.wav_name,
            t.text,
            is_final=is_final,
            timestamps=t.timestamps,
            sentences=[s.to_json() for s in t.sentences] if t.sentences is not None else None,
            start_time=ev.start_ms,
            end_time=ev.end_ms,
            **self._slice_fields(utt, ends_segment=True, whole=True),
            **tag_fields(t),
        )
