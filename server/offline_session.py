"""One connection on the offline profile (protocol §4.1).

Audio is buffered until the end signal, then the whole utterance goes through
VAD → Paraformer → punctuation → ITN in the decoder pool, and exactly one
message comes back, saying ``"is_final": false`` as the reference's does (``true`` with
``--offline-is-final``); then, when the end signal carried ``"is_end": true``, the
end acknowledgement of :func:`server.protocol.end_ack_message`.  A warning
about the configuration (dropped hotwords) rides on that one message as its
``warning`` field.  The connection then starts a fresh utterance.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Dict, Optional

from .decoder_pool import JobSkipped
from .logs import utterance_fields
from .protocol import error_message, result_message
from .recognizer import OfflinePipeline, failed_outcome, sentences_json, tag_fields, transcribe_utterance
from .session import Session

log = logging.getLogger(__name__)


class OfflineSession(Session):
    """``is_final``: the value of the result's ``is_final`` field: False as in the reference and FunASR's
    guides; True for clients that wait for it (``--offline-is-final``)."""

    def __init__(self, *args, is_final: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.result_is_final = is_final
        self.pipeline: OfflinePipeline = self.models
        self.audio = bytearray()
        self.overflowed: Optional[str] = None  # the error sent when the utterance grew too long
        self.decoding = False
        self.pending_warning: Optional[str] = None  # for the next result (see send_warning)

    @property
    def busy(self) -> bool:
        return self.decoding or bool(self.audio)

    def served_mode(self) -> str:
        return "offline"

    def reply_label(self, mode: str) -> str:
        return "offline"

    async def send_warning(self, warning: str) -> None:
        """Here a warning rides on the next result, as its ``warning`` field: this profile answers each
        end signal with exactly one message, and clients take the first ``"offline"`` message for
        the result (FunASR's Python client until 2026-07, our web page and client)."""
        self.pending_warning = warning

    async def on_text(self, text: str) -> None:
        message = await self.read_control(text)
        if message is None:
            self._reset_utterance()
            return
        if message.end_of_utterance:
            await self._finish_utterance(end_ack=message.end_of_input)

    async def on_audio(self, data: bytes) -> None:
        if not self.seen_first_message or self.overflowed:
            return
        size = len(self.audio) + len(data)
        error: Optional[str] = None
        if self.config.is_pcm and size / 2 / self.config.audio_fs > self.limits.max_utterance_seconds:
            self.metrics.error("too_long")
            error = (
                f"utterance too long: more than {self.limits.max_utterance_seconds:.0f} s of audio before the end "
                f"signal (--max-utterance-seconds)"
            )
        else:
            error = self.hold_audio(len(data), size)
        if error is not None:
            self.overflowed = error
            self.audio = bytearray()
            self.release_audio()
            await self.send(error_message(error, self.config.wav_name, "offline"))
            return
        self.audio += data

    async def _finish_utterance(self, end_ack: bool = False) -> None:
        """Decode and answer the utterance; with ``end_ack`` (``"is_end": true``) acknowledge it after the result."""
        if self.overflowed:
            error = self.overflowed
            self._reset_utterance()
            if end_ack:
                await self.send_end_ack("offline", self.config.wav_name, error)
            return
        # Hand the buffer itself to the pool (no copy on the event loop); start a new one.
        audio, cfg = self.audio, self.config
        self.audio = bytearray()
        started = time.perf_counter()
        self.decoding = True
        try:
            outcome = await self.run_job(
                transcribe_utterance,
                self.pipeline,
                audio,
                cfg.wav_format,
                cfg.audio_fs,
                cfg.itn,
                self.decode_limits(),
                self.decode_options(cfg),
            )
        except JobSkipped:  # the client left before a decoder thread was free
            return
        except Exception:  # a model failure costs this utterance, not the connection
            self.log.exception("decoding failed")
            self.metrics.error("internal")
            outcome = failed_outcome(self.pipeline, "internal error while decoding this utterance; it was dropped")
        finally:
            self.decoding = False
            del audio
            self.release_audio()
        self.metrics.stage("offline_utterance", time.perf_counter() - started)
        if outcome.transcript.lm_seconds:
            self.metrics.stage("lm_search", outcome.transcript.lm_seconds)
        self.metrics.audio("offline", outcome.audio_seconds)
        if outcome.error:
            self.metrics.error("audio")
        t = outcome.transcript
        extra: Dict[str, Any] = tag_fields(t)
        if outcome.error:
            extra["error"] = outcome.error
        if self.pending_warning is not None:
            extra["warning"], self.pending_warning = self.pending_warning, None
        await self.send(
            result_message(
                "offline",
                cfg.wav_name,
                t.text,
                is_final=self.result_is_final,  # the reference says false for the only, final, offline message
                timestamps=t.timestamps,
                sentences=sentences_json(t),
                **extra,
            )
        )
        if end_ack:
            await self.send_end_ack("offline", cfg.wav_name, outcome.error)
        self.utterances += 1
        seconds = time.perf_counter() - started
        self.log.info(
            "offline %s: %.2f s audio in %.3f s, %d segments%s",
            cfg.wav_name,
            outcome.audio_seconds,
            seconds,
            len(t.segments),
            f", error: {outcome.error}" if outcome.error else "",
            extra=utterance_fields("offline", cfg.wav_name, outcome.audio_seconds, seconds, outcome.error),
        )
        self._reset_utterance()

    def _reset_utterance(self) -> None:
        self.audio = bytearray()
        self.overflowed = None
        self.release_audio()
