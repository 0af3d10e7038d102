"""One connection on the offline profile (protocol §4.1).

Audio is buffered until the end signal, then the whole utterance goes through
VAD → Paraformer → punctuation → ITN in the decoder pool, and exactly one
message comes back.  The connection then starts a fresh utterance.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Dict, Optional

from models.offline_pipeline import OfflinePipeline

from .decoder_pool import DecoderPool
from .hotwords import HotwordError, merge_hotwords, parse_client_hotwords
from .protocol import ClientConfig, ProtocolError, apply_fields, error_message, parse_control_message, result_message
from .recognizer import sentences_json, transcribe_utterance

log = logging.getLogger(__name__)

Send = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class SessionLimits:
    """Per-utterance bounds, so no client can make a connection grow without limit."""

    max_utterance_bytes: int = 16000 * 2 * 3600 * 3  # three hours of 16 kHz PCM


class OfflineSession:
    def __init__(
        self,
        pipeline: OfflinePipeline,
        pool: DecoderPool,
        send: Send,
        limits: SessionLimits = SessionLimits(),
        server_hotwords: Optional[Dict[str, int]] = None,
        conn_id: str = "-",
    ):
        self.pipeline = pipeline
        self.pool = pool
        self.send = send
        self.limits = limits
        self.server_hotwords = server_hotwords or {}
        self.conn_id = conn_id
        self.config = ClientConfig()
        self.configured = False  # audio before the first text message is dropped (C++ behaviour)
        self.hotwords: Dict[str, int] = dict(self.server_hotwords)
        self.audio = bytearray()
        self.overflowed = False
        self.utterances = 0

    async def on_text(self, text: str) -> None:
        try:
            message = parse_control_message(text)
            first = not self.configured
            if first and "hotwords" in message.fields:
                self.hotwords = merge_hotwords(self.server_hotwords, parse_client_hotwords(message.fields["hotwords"]))
            apply_fields(self.config, message.fields, first_message=first)
        except (ProtocolError, HotwordError) as exc:
            log.info("[%s] bad control message: %s", self.conn_id, exc)
            await self.send(error_message(str(exc), self.config.wav_name, "offline"))
            self._reset_utterance()
            return
        self.configured = True
        if message.end_of_utterance:
            await self._finish_utterance()

    async def on_audio(self, data: bytes) -> None:
        if not self.configured or self.overflowed:
            return
        if len(self.audio) + len(data) > self.limits.max_utterance_bytes:
            self.overflowed = True
            self.audio = bytearray()
            limit_mb = self.limits.max_utterance_bytes / (1 << 20)
            await self.send(
                error_message(
                    f"utterance too long: more than {limit_mb:.0f} MiB of audio before the end signal",
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
        audio, cfg = bytes(self.audio), self.config
        self.audio = bytearray()
        started = time.perf_counter()
        outcome = await self.pool.run(
            transcribe_utterance, self.pipeline, audio, cfg.wav_format, cfg.audio_fs, cfg.itn
        )
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
        log.info(
            "[%s] offline %s: %.2f s audio in %.3f s, %d segments%s",
            self.conn_id,
            cfg.wav_name,
            outcome.audio_seconds,
            time.perf_counter() - started,
            len(t.segments),
            f", error: {outcome.error}" if outcome.error else "",
        )
        self._reset_utterance()

    def _reset_utterance(self) -> None:
        self.audio = bytearray()
        self.overflowed = False
