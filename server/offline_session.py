"""One connection on the offline profile (protocol §4.1).

Audio is buffered until the end signal, then the whole utterance goes through
VAD → Paraformer → punctuation → ITN in the decoder pool, and exactly one
message comes back.  The connection then starts a fresh utterance.
"""
from __future__ import annotations

import logging
import time

from models.offline_pipeline import OfflinePipeline

from .logs import utterance_fields
from .protocol import error_message, result_message
from .recognizer import sentences_json, transcribe_utterance
from .session import Session

log = logging.getLogger(__name__)


class OfflineSession(Session):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pipeline: OfflinePipeline = self.models
        self.audio = bytearray()
        self.overflowed = False
        self.decoding = False

    @property
    def busy(self) -> bool:
        return self.decoding or bool(self.audio)

    def served_mode(self) -> str:
        return "offline"

    async def on_text(self, text: str) -> None:
        message = await self.read_control(text)
        if message is None:
            self._reset_utterance()
            return
        if message.end_of_utterance:
            await self._finish_utterance()

    async def on_audio(self, data: bytes) -> None:
        if not self.seen_first_message or self.overflowed:
            return
        size = len(self.audio) + len(data)
        if self.config.is_pcm:
            too_long = size / 2 / self.config.audio_fs > self.limits.max_utterance_seconds
        else:
            too_long = size > self.limits.max_container_bytes
        if too_long:
            self.metrics.error("too_long")
            self.overflowed = True
            self.audio = bytearray()
            await self.send(
                error_message(
                    f"utterance too long: more than {self.limits.max_utterance_seconds:.0f} s "
                    f"(or {self.limits.max_container_bytes >> 20} MiB of a compressed file) before the end signal",
                    self.config.wav_name,
                    "offline",
                )
            )
            return
        self.audio += data

    async def _finish_utterance(self) -> None:
        if self.overflowed:
            self._reset_utterance()
            return
        # Hand the buffer itself to the pool (no copy on the event loop); start a new one.
        audio, cfg = self.audio, self.config
        self.audio = bytearray()
        started = time.perf_counter()
        self.decoding = True
        try:
            outcome = await self.pool.run(
                transcribe_utterance,
                self.pipeline,
                audio,
                cfg.wav_format,
                cfg.audio_fs,
                cfg.itn,
                self.limits.max_utterance_seconds,
            )
        finally:
            self.decoding = False
        self.metrics.stage("offline_utterance", time.perf_counter() - started)
        self.metrics.audio("offline", outcome.audio_seconds)
        if outcome.error:
            self.metrics.error("audio")
        t = outcome.transcript
        extra = {"error": outcome.error} if outcome.error else {}
        await self.send(
            result_message(
                "offline",
                cfg.wav_name,
                t.text,
                is_final=False,  # the reference says false for the only, final, offline message
                timestamps=t.timestamps,
                sentences=sentences_json(t),
                **extra,
            )
        )
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
        self.overflowed = False
