"""What every connection's session shares: its client configuration, hotwords and error answers.

The profiles differ in what they do with audio (:mod:`server.offline_session`,
:mod:`server.streaming_session`); reading control messages is the same for both.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import AbstractSet, Any, Awaitable, Callable, Dict, List, Optional, Set, Tuple, TypeVar

from .audio_budget import AudioBudget, unlimited
from .decoder_pool import DecoderPool, Priority
from .hotwords import (
    ClientHotwordsUnreadable,
    lm_spelling_text,
    merge_hotwords,
    parse_client_hotwords,
    unreadable_text,
    unspellable,
    warning_text,
)
from .logs import ConnectionLog
from .metrics import UNUSED, ServerMetrics
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
from .recognizer import (
    DecodeLimits,
    HotwordEmbedding,
    decode_options,
    embed_hotwords,
    lm_context,
    supports_hotwords,
    uses_lm,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
Send = Callable[[str], Awaitable[None]]


#: Text frames longer than this are parsed in a worker thread, not on the event loop.  Below it
#: ``json.loads`` and the hotword parser take well under a millisecond; above it, up to the
#: text-message cap, a few milliseconds that other connections must not wait for.
OFF_LOOP_CHARS = 16 << 10

#: The server's own ``--hotword`` words the n-gram LM cannot spell, as (word, why), already logged:
#: every connection finds the same ones, so each is logged once per process, not per connection.
_LOGGED_SERVER_LM_PROBLEMS: Set[Tuple[str, str]] = set()


@dataclass(frozen=True)
class SessionLimits:
    """Per-connection bounds, so no client can make a connection grow without limit.

    * ``max_utterance_seconds``: audio per utterance, counted at the rate it is
      stored (PCM at the client's ``audio_fs`` as it arrives; a container file
      by its decoded samples at the model's rate, whatever its header claims).
    * ``max_utterance_bytes``: bytes per utterance as stored, PCM or file: at
      ``audio_fs: 384000`` a second costs 24× the bytes of 16 kHz.
    * ``max_text_bytes``: one JSON text frame, checked before it is parsed (a
      thousand hotwords fit many times over).
    * ``max_decode_seconds``: wall time for decoding one container file.
    * ``idle_timeout``: seconds without any message before the connection is
      closed (0: never), so idle clients cannot hold connection slots.
    """

    max_utterance_seconds: float = 3 * 3600
    max_utterance_bytes: int = 512 << 20
    max_text_bytes: int = 256 << 10
    max_decode_seconds: float = 120.0
    idle_timeout: float = 300.0


def _size(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n} bytes"


def text_bytes_over(text: str, limit: int) -> Optional[int]:
    """The UTF-8 size of ``text`` when it is over ``limit`` bytes, else None (cheap for short texts)."""
    if len(text) * 4 <= limit:  # no UTF-8 character takes more than 4 bytes
        return None
    size = len(text) if len(text) > limit else len(text.encode("utf-8", "surrogatepass"))
    return size if size > limit else None


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
        budget: Optional[AudioBudget] = None,
        alive: Callable[[], bool] = lambda: True,
    ):
        self.models = models
        self.pool = pool
        self.send = send
        self.limits = limits
        self.server_hotwords = server_hotwords or {}
        self.conn_id = conn_id
        self.log = ConnectionLog(log, conn_id)
        self.metrics = metrics
        self.budget = budget if budget is not None else unlimited()
        self.held_bytes = 0  # this connection's share of the budget
        #: Whether the client is still connected: jobs of a client that has gone are not started.
        self.alive = alive
        self.config = ClientConfig()
        self.seen_first_message = False  # audio before the first text message is dropped (C++ behaviour)
        #: The server's ``--hotword`` list merged with the client's (its first message only).
        self.hotwords: Dict[str, int] = dict(self.server_hotwords)
        #: :attr:`hotwords` embedded for the offline model, once, at the first message.
        self.hotword_embedding = HotwordEmbedding()
        #: The n-gram LM's search context (BiasLm of :attr:`hotwords`), once, at the first message.
        self.lm_context: Any = None  # the recogniser's WfstContext for these hotwords (None: no LM)
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
            size = text_bytes_over(text, self.limits.max_text_bytes)
            if size is not None:
                raise ProtocolError(
                    f"text message too large: {size} bytes, the limit is {self.limits.max_text_bytes} (--max-text-kib)"
                )
            if len(text) > OFF_LOOP_CHARS:
                message = await asyncio.to_thread(parse_control_message, text)
            else:
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

    async def run_job(self, fn: Callable[..., T], *args: Any, priority: Priority = Priority.FINAL) -> T:
        """Run model work in the decoder pool, in ``priority``'s deadline order; a job whose client has
        gone by the time a thread is free is not run (:class:`JobSkipped`), so vanished clients cannot
        keep the pool busy."""
        return await self.pool.run(fn, *args, skip_if=lambda: not self.alive(), priority=priority)

    def hold_audio(self, n: int, stored_bytes: int) -> Optional[str]:
        """Account for ``n`` more bytes of this utterance (``stored_bytes`` in all with them).

        Returns the error to answer when they break the utterance's byte cap or the
        server-wide budget; the bytes are then not counted."""
        if stored_bytes > self.limits.max_utterance_bytes:
            self.metrics.error("too_long")
            return f"utterance too large: more than {_size(self.limits.max_utterance_bytes)} before the end signal (--max-utterance-mib)"
        if not self.budget.reserve(n):
            self.metrics.error("server_audio_budget")
            return (
                f"the server is holding all the audio it may ({_size(self.budget.limit_bytes)} for all connections, "
                f"--max-buffered-audio-mib); this utterance was dropped, try again shortly"
            )
        self.held_bytes += n
        return None

    def decode_limits(self) -> DecodeLimits:
        """The bounds of decoding this connection's uploads; decoding stops if the client goes."""
        return DecodeLimits(
            max_seconds=self.limits.max_utterance_seconds,
            max_decode_seconds=self.limits.max_decode_seconds or None,
            cancelled=lambda: not self.alive(),
        )

    def release_audio(self) -> None:
        """The utterance's buffered audio is gone (decoded, dropped or the connection closed)."""
        self.budget.release(self.held_bytes)
        self.held_bytes = 0

    def decode_options(self, cfg: Optional[ClientConfig] = None):
        """The model settings of an utterance configured by ``cfg`` (the current configuration by default)."""
        cfg = cfg or self.config
        return decode_options(self.hotword_embedding, cfg.svs_lang, cfg.svs_itn, self.lm_context, self.pool.spare)

    async def _read_hotwords(self, value: object) -> None:
        """Merge the client's hotwords into the server's, embed them once when the model takes
        hotwords, and tell the client about any it loses (bad entries, words the model cannot spell).

        Each unusable hotword of the client's is logged once, in the warning's line; the
        server's own are logged at start-up (and the n-gram LM's problems with them once)."""
        warning: Optional[str] = None
        client: Dict[str, int] = {}
        dropped: List[Tuple[str, str]] = []
        if value is not None:
            try:
                if isinstance(value, str) and len(value) > OFF_LOOP_CHARS:
                    client, dropped = await asyncio.to_thread(parse_client_hotwords, value)
                else:
                    client, dropped = parse_client_hotwords(value)
            except ClientHotwordsUnreadable as exc:
                warning = unreadable_text(str(exc))
        sent = set(client)  # the client's words, also those dropped below: the warning names those
        if value is not None:
            self.hotwords, over = merge_hotwords(self.server_hotwords, client)
            dropped += over
            client = {w: v for w, v in client.items() if w not in {o for o, _ in over}}
        if self.hotwords and supports_hotwords(self.models):
            self.hotword_embedding = await self.run_job(embed_hotwords, self.models, list(self.hotwords))
            client, lost = unspellable(client, list(self.hotword_embedding.rejected))
            dropped += lost
        lm_notes = await self._prepare_lm(client, sent)
        if dropped:
            warning = warning_text(dropped, kept=len(client))
        if lm_notes:
            warning = f"{warning}; {lm_notes}" if warning else lm_notes
        if value is not None or self.hotwords:
            self.log.info("%d hotwords for this connection (%d from the server's list)", len(self.hotwords), len(self.server_hotwords))
        if warning is not None:
            self.log.info("hotwords: %s", warning)
            self.metrics.error("bad_hotword")
            await self.send_warning(warning)

    async def _prepare_lm(self, client: Dict[str, int], sent: AbstractSet[str] = frozenset()) -> Optional[str]:
        """Spell the merged hotwords for the n-gram LM (BiasLm) once for the connection.

        Returns what the client should hear about its own words (``client``, those still
        used): those the LM's lexicon or the model's vocabulary cannot spell (the
        reference drops them without a word), or None.  Problems with the server's own
        words are logged, once per process; those with words the client sent and lost
        already (``sent``, not in ``client``) are not: its warning names them."""
        if not uses_lm(self.models):
            return None
        if not self.hotwords:
            self.lm_context = lm_context(self.models, {})
            return None
        self.lm_context = await self.run_job(lm_context, self.models, self.hotwords)
        for word, why in self.lm_context.problems:
            if word in client or word in sent or (word, why) in _LOGGED_SERVER_LM_PROBLEMS:
                continue
            _LOGGED_SERVER_LM_PROBLEMS.add((word, why))
            self.log.info("--hotword %r and the n-gram LM: %s", word, why)
        return lm_spelling_text(
            [(w, why) for w, why in self.lm_context.problems if w in client],
            reaches_lm=self.lm_context.bias is not None,
        )

    async def send_warning(self, warning: str) -> None:
        """Tell the client something that failed nothing: one message without text, not final."""
        await self.send(warning_message(self.reply_label(self.served_mode()), self.config.wav_name, warning))

    async def send_end_ack(self, mode: str, wav_name: str, error: Optional[str] = None) -> None:
        """Answer an end signal that carried ``"is_end": true`` (utterance in ``mode``), after its last result."""
        await self.send(end_ack_message(self.reply_label(mode), wav_name, error))
