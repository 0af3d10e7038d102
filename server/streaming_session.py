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
"""
from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Optional, cast

from .decoder_pool import JobSkipped
from .logs import utterance_fields
from .protocol import ClientConfig, error_message, result_message
from .recognizer import (
    AudioDecodeError,
    LiveUtterance,
    PartialText,
    SegmentText,
    StreamEvent,
    TwoPassRecognizer,
    tag_fields,
)
from .session import Session

log = logging.getLogger(__name__)

STREAMING_MODES = ("online", "2pass")
#: The reference's answer to a container file in a streaming mode; kept word for word, clients match on it.
PCM_ONLY_ERROR = "ERROR. Real-time transcription service ONLY SUPPORT PCM stream."
#: PCM is handed to the recogniser in pieces of at least this much audio (the VAD's step).
MIN_PIECE_SECONDS = 0.05


class StreamingSession(Session):
    # the utterance's state (set by _reset_utterance)
    pending: bytearray
    pcm_bytes: int
    min_piece_bytes: int
    failed: bool

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.recognizer: TwoPassRecognizer = self.models
        self.configured = False  # a valid configuration has arrived; audio counts from now on
        self.sentence_index = 0  # the reference's ``index``: segments finished on this connection
        self._reset_utterance()

    @property
    def busy(self) -> bool:
        return self.utterance is not None

    def served_mode(self) -> str:
        return self.fixed.mode if self.utterance is not None else self.config.mode

    def reply_label(self, mode: str) -> str:
        return "online" if mode == "online" else "2pass-offline"

    # ------------------------------------------------------------------ frames in

    async def on_text(self, text: str) -> None:
        message = await self.read_control(text)
        if message is None:
            self._reset_utterance()
            return
        if self.config.mode in STREAMING_MODES and self.config.chunk_size is None:
            self.metrics.error("protocol")
            self.configured = False
            error = (
                f"mode '{self.config.mode}' needs 'chunk_size' (look-back, chunk, look-ahead in 60 ms frames), "
                'e.g. "chunk_size": [5, 10, 5]; audio is ignored until it is set'
            )
            await self.send(error_message(error, self.config.wav_name, self.config.mode))
            self._reset_utterance()
            if message.end_of_input:
                await self.send_end_ack(self.config.mode, self.config.wav_name, error)
            return
        self.configured = True
        if message.end_of_utterance:
            await self._finish_utterance(end_ack=message.end_of_input)

    async def on_audio(self, data: bytes) -> None:
        if not self.configured or self.failed:
            return
        if self.utterance is None:
            if not await self._start_utterance():
                return
        if self.container is not None:
            error = self.hold_audio(len(data), len(self.container) + len(data))
            if error is not None:
                await self._fail(error, kind=None)
                return
            self.container += data
            return
        self.pcm_bytes += len(data)
        if self.pcm_bytes / 2 / self.fixed.audio_fs > self.limits.max_utterance_seconds:
            await self._fail(
                f"utterance too long: more than {self.limits.max_utterance_seconds:.0f} s of audio before the end signal "
                f"(--max-utterance-seconds)",
                kind="too_long",
            )
            return
        self.pending += data
        if len(self.pending) >= self.min_piece_bytes:
            piece, self.pending = self.pending, bytearray()
            started = time.perf_counter()
            try:
                events = await self.run_job(cast(LiveUtterance, self.utterance).feed_pcm, piece, False)
            except JobSkipped:  # the client has gone
                return
            except Exception:  # a model failure costs this utterance, not the connection
                self.log.exception("decoding failed")
                await self._fail("internal error while decoding this utterance; it was dropped", kind="internal")
                return
            self.metrics.stage("stream_piece", time.perf_counter() - started)
            await self._send_events(events, final=False)

    # ------------------------------------------------------------------ utterance

    def _reset_utterance(self) -> None:
        self.release_audio()
        self.utterance: Optional[LiveUtterance] = None
        self.fixed: ClientConfig = self.config  # the configuration the utterance started with
        self.container: Optional[bytearray] = None  # a whole file being received (offline mode)
        self.pending = bytearray()  # PCM not yet handed to the recogniser
        self.pcm_bytes = 0
        self.min_piece_bytes = 0
        self.failed = False  # an error was sent; drop audio until the end signal
        self.failure: Optional[str] = None  # that error
        self.sentence_started = False
        self.started_at = 0.0

    async def _start_utterance(self) -> bool:
        cfg = ClientConfig(**vars(self.config))
        if cfg.mode in STREAMING_MODES and not cfg.is_pcm:
            await self._fail(
                f"{PCM_ONLY_ERROR} (wav_format '{cfg.wav_format}'; only the offline mode takes files)",
                text=PCM_ONLY_ERROR,
                kind="format",
            )
            return False
        self.fixed = cfg
        self.utterance = LiveUtterance(
            self.recognizer, cfg.mode, cfg.chunk_size or (5, 10, 5), cfg.itn, cfg.audio_fs, self.decode_options(cfg)
        )
        self.container = None if cfg.is_pcm else bytearray()
        self.min_piece_bytes = 2 * max(1, int(cfg.audio_fs * MIN_PIECE_SECONDS))
        self.started_at = time.perf_counter()
        return True

    async def _finish_utterance(self, end_ack: bool = False) -> None:
        """Flush and answer the utterance (one ``is_final`` message); with ``end_ack``
        (``"is_end": true``) acknowledge the end after that final message."""
        if self.failed:
            failure, cfg = self.failure, self.config
            self._reset_utterance()
            if end_ack:
                await self.send_end_ack(cfg.mode, cfg.wav_name, failure)
            return
        utterance = self.utterance
        cfg = self.fixed if utterance is not None else self.config
        events: List[StreamEvent] = []
        error: Optional[str] = None
        started = time.perf_counter()
        if utterance is not None:
            try:
                if self.container is not None:
                    events = await self.run_job(utterance.feed_file, self.container, self.decode_limits())
                else:
                    piece, self.pending = self.pending, bytearray()
                    events = await self.run_job(utterance.feed_pcm, piece, True)
            except JobSkipped:  # the client has gone: nobody to answer
                self._reset_utterance()
                return
            except AudioDecodeError as exc:
                error = str(exc)
                self.metrics.error("audio")
            except Exception:
                self.log.exception("decoding failed")
                error = "internal error while decoding this utterance"
                self.metrics.error("internal")
            self.metrics.stage("stream_final", time.perf_counter() - started)
            self.metrics.audio(cfg.mode, utterance.seconds)
        await self._send_events(events, final=True, cfg=cfg, error=error)
        if end_ack:
            await self.send_end_ack(cfg.mode, cfg.wav_name, error)
        self.utterances += 1
        if utterance is not None:
            seconds = time.perf_counter() - self.started_at
            self.log.info(
                "%s %s: %.2f s audio, %.3f s after the first frame%s",
                cfg.mode,
                cfg.wav_name,
                utterance.seconds,
                seconds,
                f", error: {error}" if error else "",
                extra=utterance_fields(cfg.mode, cfg.wav_name, utterance.seconds, seconds, error),
            )
        self._reset_utterance()

    async def _fail(self, error: str, text: str = "", kind: Optional[str] = "protocol") -> None:
        """Answer with an error, drop this utterance's audio until the end signal.
        (``kind`` None: the error was counted where it was found.)"""
        self.log.info("utterance dropped: %s", error)
        if kind is not None:
            self.metrics.error(kind)
        cfg = self.fixed if self.utterance is not None else self.config
        await self.send(result_message(cfg.mode, cfg.wav_name, text, is_final=True, error=error))
        self._reset_utterance()
        self.failed = True
        self.failure = error

    # ------------------------------------------------------------------ messages out

    async def _send_events(
        self, events: List[StreamEvent], final: bool, cfg: Optional[ClientConfig] = None, error: Optional[str] = None
    ) -> None:
        cfg = cfg or self.fixed
        if cfg.mode == "online":
            await self._send_online(events, final, cfg, error)
            return
        segments = [ev for ev in events if isinstance(ev, SegmentText)]
        for seg in segments:
            if seg.transcript.lm_seconds:
                self.metrics.stage("lm_search", seg.transcript.lm_seconds)
        last_segment = segments[-1] if final and segments else None
        for ev in events:
            if isinstance(ev, PartialText):
                if cfg.mode == "2pass":
                    await self.send(self._delta_message("2pass-online", ev, cfg))
            else:
                await self.send(self._segment_message(ev, cfg, is_final=ev is last_segment))
        if final and last_segment is None:
            extra: Dict[str, Any] = {"error": error} if error else {}
            await self.send(result_message("2pass-offline", cfg.wav_name, "", is_final=True, **extra))

    async def _send_online(self, events: List[StreamEvent], final: bool, cfg: ClientConfig, error: Optional[str]) -> None:
        partials = [ev for ev in events if isinstance(ev, PartialText)]
        if not final:
            for ev in partials:
                await self.send(self._delta_message("online", ev, cfg))
            return
        # the end signal: the tail's text, all in the one final message
        text = "".join(ev.text for ev in partials)
        extra: Dict[str, Any] = {"error": error} if error else {}
        if text:
            extra.update(self._slice_fields(ends_segment=True))
        await self.send(result_message("online", cfg.wav_name, text, is_final=True, **extra))

    def _slice_fields(self, ends_segment: bool = False) -> Dict[str, Any]:
        """The reference's ``slice_type`` (0 first text of a sentence, 1 more, 2 finished) and ``index``."""
        fields = {"slice_type": 1 if self.sentence_started else 0, "index": self.sentence_index}
        self.sentence_started = True
        if ends_segment:
            self.sentence_index += 1
            self.sentence_started = False
        return fields

    def _delta_message(self, mode: str, ev: PartialText, cfg: ClientConfig) -> str:
        """A delta; ``end_time`` says how far into the utterance (ms) the server had heard when it
        produced the text: live captions can be placed by it, and a client can measure its lag."""
        return result_message(
            mode, cfg.wav_name, ev.text, is_final=False, end_time=ev.heard_ms, **self._slice_fields(ev.ends_segment)
        )

    def _segment_message(self, ev: SegmentText, cfg: ClientConfig, is_final: bool) -> str:
        t = ev.transcript
        msg = result_message(
            "2pass-offline",
            cfg.wav_name,
            t.text,
            is_final=is_final,
            timestamps=t.timestamps,
            sentences=[s.to_json() for s in t.sentences] if t.sentences is not None else None,
            start_time=ev.start_ms,
            end_time=ev.end_ms,
            slice_type=2,
            index=self.sentence_index,
            **tag_fields(t),
        )
        self.sentence_index += 1
        self.sentence_started = False
        return msg

