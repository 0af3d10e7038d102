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
    """Per-utterance bounds, so no client can make a connection grow without limit.

    Duration is what costs memory and time downstream (a 1 kHz PCM stream or a
    compressed file is resampled/decoded to 16 kHz), so the cap is in seconds:
    PCM is checked as it arrives, container files when decoded.  Container
    bytes have their own cap.
    """

    max_utterance_seconds: float = 3 * 3600
    max_container_bytes: int = 512 << 20


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
        size = len(self.audio) + len(data)
        if self.config.is_pcm:
            too_long = size / 2 / self.config.audio_fs > self.limits.max_utterance_seconds
        else:
            too_long = size > self.limits.max_container_bytes
        if too_long:
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
        outcome = await self.pool.run(
            transcribe_utterance,
            self.pipeline,
            audio,
            cfg.wav_format,
            cfg.audio_fs,
            cfg.itn,
            self.limits.max_utterance_seconds,
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
