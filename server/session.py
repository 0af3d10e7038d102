"""What every connection's session shares: its client configuration, hotwords and error answers.

The profiles differ in what they do with audio (:mod:`server.offline_session`,
:mod:`server.streaming_session`); reading control messages is the same for both.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Dict, Optional

from .decoder_pool import DecoderPool
from .hotwords import HotwordError, merge_hotwords, parse_client_hotwords
from .logs import ConnectionLog
from .metrics import UNUSED, ServerMetrics
from .protocol import ClientConfig, ControlMessage, ProtocolError, apply_fields, error_message, parse_control_message

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
        self.utterances = 0

    @property
    def busy(self) -> bool:
        """An utterance is in progress (audio received and not yet answered)."""
        raise NotImplementedError

    def served_mode(self) -> str:
        """The mode this session serves now (the ``mode`` of its error answers, the metrics' label)."""
        return self.config.mode

    async def read_control(self, text: str) -> Optional[ControlMessage]:
        """Parse one text frame and apply it to :attr:`config`.

        A bad frame is answered with an error message and gives None; the
        configuration is then left as it was.
        """
        try:
            message = parse_control_message(text)
            first = not self.seen_first_message
            hotwords = self.hotwords
            if first and "hotwords" in message.fields:
                hotwords = merge_hotwords(self.server_hotwords, parse_client_hotwords(message.fields["hotwords"]))
            apply_fields(self.config, message.fields, first_message=first)
        except (ProtocolError, HotwordError) as exc:
            self.log.info("bad control message: %s", exc)
            self.metrics.error("protocol")
            await self.send(error_message(str(exc), self.config.wav_name, self.served_mode()))
            return None
        if hotwords is not self.hotwords:
            self.log.info("%d hotwords for this connection (%d from the server's list)", len(hotwords), len(self.server_hotwords))
        self.hotwords = hotwords
        self.seen_first_message = True
        return message
