"""What every connection's session shares: its client configuration, hotwords and error answers.

The profiles differ in what they do with audio (:mod:`server.offline_session`,
:mod:`server.streaming_session`); reading control messages is the same for both.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Dict, Optional

from .decoder_pool import DecoderPool
from .hotwords import (
    ClientHotwordsUnreadable,
    merge_hotwords,
    parse_client_hotwords,
    unreadable_text,
    unspellable,
    warning_text,
)
from .logs import ConnectionLog
from .metrics import UNUSED, ServerMetrics
from .recognizer import HotwordEmbedding, decode_options, embed_hotwords, supports_hotwords
from .protocol import (
    ClientConfig,
    ControlMessage,
    ProtocolError,
    apply_fields,
    end_ack_message,
    error_message,
    parse_control_message,
    warning_message,
)

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


class Session:
    def __init__(
        self,
        models,
        pool: DecoderPool,
        send: Send,
        limits: SessionLimits = SessionLimits(),
        server_hotwords: Optional[Dict[str, int]] = None,
        conn_id: str = "-",
        metrics: ServerMetrics = UNUSED,
    ):
        self.models = models
        self.pool = pool
        self.send = send
        self.limits = limits
        self.server_hotwords = server_hotwords or {}
        self.conn_id = conn_id
        self.log = ConnectionLog(log, conn_id)
        self.metrics = metrics
        self.config = ClientConfig()
        self.seen_first_message = False  # audio before the first text message is dropped (C++ behaviour)
        #: The server's ``--hotword`` list merged with the client's (its first message only).
        self.hotwords: Dict[str, int] = dict(self.server_hotwords)
        #: :attr:`hotwords` embedded for the offline model, once, at the first message.
        self.hotword_embedding = HotwordEmbedding()
        self.utterances = 0

    @property
    def busy(self) -> bool:
        """An utterance is in progress (audio received and not yet answered)."""
        raise NotImplementedError

    def served_mode(self) -> str:
        """The mode this session serves now (the ``mode`` of its error answers, the metrics' label)."""
        return self.config.mode

    def reply_label(self, mode: str) -> str:
        """The ``mode`` field of a message without a result (a warning, the end acknowledgement) on a
        connection in ``mode``: the label of that mode's final results, so that clients which act on
        the label (FunASR's Python client ends its offline mode on any ``"offline"`` message) take it
        like the final result they know, with an empty text."""
        return mode

    async def read_control(self, text: str) -> Optional[ControlMessage]:
        """Parse one text frame and apply it to :attr:`config`.

        A bad frame is answered with an error message and gives None; the
        configuration is then left as it was.  Bad hotwords are not a bad
        frame: they are dropped with a warning (:meth:`_read_hotwords`).
        """
        try:
            message = parse_control_message(text)
        except ProtocolError as exc:
            self.log.info("bad control message: %s", exc)
            self.metrics.error("protocol")
            await self.send(error_message(str(exc), self.config.wav_name, self.served_mode()))
            if exc.end_of_input:  # its sender still waits for the end acknowledgement
                await self.send_end_ack(self.served_mode(), self.config.wav_name, str(exc))
            return None
        first = not self.seen_first_message
        apply_fields(self.config, message.fields, first_message=first)
        self.seen_first_message = True
        if first:
            await self._read_hotwords(message.fields.get("hotwords"))
        return message

    def decode_options(self, cfg: Optional[ClientConfig] = None):
        """The model settings of an utterance configured by ``cfg`` (the current configuration by default)."""
        cfg = cfg or self.config
        return decode_options(self.hotword_embedding, cfg.svs_lang, cfg.svs_itn)

    async def _read_hotwords(self, value: object) -> None:
        """Merge the client's hotwords into the server's, embed them once when the model takes
        hotwords, and tell the client about any it loses (bad entries, words the model cannot spell)."""
        warning: Optional[str] = None
        client: Dict[str, int] = {}
        dropped = []
        if value is not None:
            try:
                client, dropped = parse_client_hotwords(value)
            except ClientHotwordsUnreadable as exc:
                warning = unreadable_text(str(exc))
            self.hotwords, over = merge_hotwords(self.server_hotwords, client)
            dropped += over
            client = {w: v for w, v in client.items() if w not in {o for o, _ in over}}
        if self.hotwords and supports_hotwords(self.models):
            self.hotword_embedding = await self.pool.run(embed_hotwords, self.models, list(self.hotwords))
            client, lost = unspellable(client, list(self.hotword_embedding.rejected))
            dropped += lost
        if dropped:
            warning = warning_text(dropped, kept=len(client))
        if value is not None or self.hotwords:
            self.log.info("%d hotwords for this connection (%d from the server's list)", len(self.hotwords), len(self.server_hotwords))
        if warning is not None:
            self.log.info("hotwords: %s", warning)
            self.metrics.error("bad_hotword")
            await self.send_warning(warning)

    async def send_warning(self, warning: str) -> None:
        """Tell the client something that failed nothing: one message without text, not final."""
        await self.send(warning_message(self.reply_label(self.served_mode()), self.config.wav_name, warning))

    async def send_end_ack(self, mode: str, wav_name: str, error: Optional[str] = None) -> None:
        """Answer an end signal that carried ``"is_end": true`` (utterance in ``mode``), after its last result."""
        await self.send(end_ack_message(self.reply_label(mode), wav_name, error))
