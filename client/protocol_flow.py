"""One utterance over one WebSocket connection: configuration, audio, end signal, result.

The messages coming back depend on the server's profile and the mode
(protocol.md §4), and this module turns all of them into one
:class:`Transcript`:

* ``offline`` profile (any mode): exactly one message, ``mode: "offline"``,
  with ``is_final: false`` although it is the only one.  Waiting for
  ``is_final: true`` there would hang, so a ``mode: "offline"`` message ends
  the utterance too.
* ``2pass``: ``2pass-online`` deltas while streaming, each replaced by the
  ``2pass-offline`` text of its VAD segment; the last segment comes with
  ``is_final: true``.
* ``online``: deltas only; the final message carries the last delta.

Audio is sent as FunASR's client sends it: in the streaming modes, strides of
``60 * chunk_size[1] / chunk_interval`` ms at the pace of real time (unless
``send_without_sleep``), because the server's latency behaviour is what a user
of these modes wants to see; in offline mode all at once.  Results are read
while audio is still being sent, so an error from the server stops the upload
at once instead of after the whole file.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Union

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .config import RecognitionSettings
from .connection import describe_closed
from .errors import ClientError
from .inputs import Pcm

#: Offline audio goes in messages of at most this size: one message for anything
#: under half a minute, and under the 1 MiB default limit of FunASR's Python server.
OFFLINE_PIECE_BYTES = 1_000_000

MessageCallback = Callable[[Dict[str, Any]], None]


class ServerError(ClientError):
    """The server answered the utterance with an error message."""


@dataclass
class Segment:
    """One offline result: the whole file (offline profile) or one VAD segment (2pass)."""

    text: str
    start_ms: Optional[int] = None
    end_ms: Optional[int] = None
    timestamps: List[List[int]] = field(default_factory=list)
    stamp_sents: List[Dict[str, Any]] = field(default_factory=list)
    #: SenseVoiceSmall's ``language``/``emotion``/``event`` when the server sent them.
    tags: Dict[str, str] = field(default_factory=dict)


#: Extra fields a SenseVoiceSmall server puts on its offline results.
TAG_FIELDS = ("language", "emotion", "event")


@dataclass
class Transcript:
    """What a server said about one utterance."""

    text: str
    mode: str
    segments: List[Segment]
    messages: int
    warnings: List[str] = field(default_factory=list)  # what the server said failed nothing (dropped hotwords)

    @property
    def timestamps(self) -> List[List[int]]:
        return [t for s in self.segments for t in s.timestamps]

    @property
    def stamp_sents(self) -> List[Dict[str, Any]]:
        return [p for s in self.segments for p in s.stamp_sents]


def _int_or_none(value: Any) -> Optional[int]:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def parse_timestamps(value: Any) -> List[List[int]]:
    """The ``timestamp`` field: a string holding a JSON list of [start, end] (or, from some
    servers, the list itself).  Anything unreadable is treated as absent, not as an error:
    the text is what the user asked for."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except ValueError:
            return []
    if not isinstance(value, list):
        return []
    pairs = []
    for pair in value:
        if isinstance(pair, (list, tuple)) and len(pair) >= 2:
            start, end = _int_or_none(pair[0]), _int_or_none(pair[1])
            if start is not None and end is not None:
                pairs.append([start, end])
    return pairs


def parse_stamp_sents(value: Any) -> List[Dict[str, Any]]:
    """Sentence pieces with usable ``start``/``end`` (ms); others are dropped."""
    if not isinstance(value, list):
        return []
    return [
        piece for piece in value
        if isinstance(piece, dict) and _int_or_none(piece.get("start")) is not None and _int_or_none(piece.get("end")) is not None
    ]


class TranscriptBuilder:
    """Folds the server's messages into the final text, FunASR-client style:
    offline texts accumulate, online deltas accumulate until an offline text replaces them."""

    def __init__(self) -> None:
        self.offline_text = ""
        self.pending_online = ""
        self.segments: List[Segment] = []
        self.messages = 0
        self.last_mode = ""
        self.warnings: List[str] = []

    def feed(self, message: Dict[str, Any]) -> bool:
        """Take one message; True when it ends the utterance.  Raises :class:`ServerError`."""
        self.messages += 1
        error = message.get("error")
        text = message.get("text")
        text = text if isinstance(text, str) else ""
        if error:
            raise ServerError(f"the server answered with an error: {error}")
        if text.startswith("ERROR. ") and message.get("is_final") is True:
            raise ServerError(f"the server answered with an error: {text}")  # the C++ servers' way
        if message.get("warning"):  # e.g. hotwords the server dropped; the rest of the message counts as usual
            self.warnings.append(str(message["warning"]))
        mode = message.get("mode")
        mode = mode if isinstance(mode, str) else ""
        self.last_mode = mode or self.last_mode
        if mode.endswith("offline"):
            self.offline_text += text
            self.pending_online = ""
            timestamps = parse_timestamps(message.get("timestamp"))
            if text or timestamps:
                start = _int_or_none(message.get("start_time"))
                end = _int_or_none(message.get("end_time"))
                self.segments.append(Segment(
                    text=text,
                    start_ms=start if start is not None else (timestamps[0][0] if timestamps else None),
                    end_ms=end if end is not None else (timestamps[-1][1] if timestamps else None),
                    timestamps=timestamps,
                    stamp_sents=parse_stamp_sents(message.get("stamp_sents")),
                    tags={k: str(message[k]) for k in TAG_FIELDS if isinstance(message.get(k), str)},
                ))
        else:
            self.pending_online += text
        return message.get("is_final") is True or mode == "offline"

    def transcript(self) -> Transcript:
        return Transcript(self.offline_text + self.pending_online, self.last_mode, self.segments, self.messages,
                          list(self.warnings))


async def paced_pieces(pcm: Pcm, settings: RecognitionSettings) -> AsyncIterator[Union[bytes, memoryview]]:
    """The audio as the binary messages to send, each at the moment to send it."""
    data = memoryview(pcm.data)
    if settings.mode == "offline":
        for start in range(0, len(data), OFFLINE_PIECE_BYTES):
            yield data[start : start + OFFLINE_PIECE_BYTES]
        return
    stride = settings.stride_bytes(pcm.sample_rate)
    stride_seconds = stride / 2 / pcm.sample_rate
    loop = asyncio.get_running_loop()
    began = loop.time()
    for n, start in enumerate(range(0, len(data), stride)):
        yield data[start : start + stride]
        if settings.send_without_sleep:
            await asyncio.sleep(0)  # let the reader run
        else:
            # against the clock, not piece by piece, so scheduling delays do not add up
            await asyncio.sleep(max(0.0, began + (n + 1) * stride_seconds - loop.time()))


async def _send(ws: ClientConnection, pieces: AsyncIterator[Union[bytes, memoryview]]) -> None:
    async for piece in pieces:
        await ws.send(piece)
    await ws.send(json.dumps({"is_speaking": False}))


async def _receive(ws: ClientConnection, builder: TranscriptBuilder, seen: List[float],
                   on_message: Optional[MessageCallback]) -> Transcript:
    loop = asyncio.get_running_loop()
    while True:
        try:
            raw = await ws.recv()
        except ConnectionClosed as exc:
            raise ClientError(describe_closed(exc)) from None
        seen[0] = loop.time()
        if not isinstance(raw, str):
            continue  # no FunASR server sends binary frames; ignore rather than fail
        try:
            message = json.loads(raw)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            raise ServerError(f"the server sent a message that is not a JSON object: {raw[:100]!r}")
        if on_message is not None:
            on_message(message)
        if builder.feed(message):
            return builder.transcript()


async def recognize_stream(
    ws: ClientConnection,
    pieces: AsyncIterator[Union[bytes, memoryview]],
    sample_rate: int,
    wav_name: str,
    settings: RecognitionSettings,
    on_message: Optional[MessageCallback] = None,
) -> Transcript:
    """Send one utterance from ``pieces`` and return its transcript.

    ``settings.result_timeout`` bounds the wait once all audio is sent: that
    many seconds without any message from the server is an error (a long file
    may take a while to decode, but a server that decodes says nothing only
    between segments).
    """
    loop = asyncio.get_running_loop()
    builder = TranscriptBuilder()
    seen = [loop.time()]
    try:
        await ws.send(json.dumps(settings.config_message(wav_name, sample_rate), ensure_ascii=False))
    except ConnectionClosed as exc:
        raise ClientError(describe_closed(exc)) from None
    receiver = asyncio.ensure_future(_receive(ws, builder, seen, on_message))
    sender = asyncio.ensure_future(_send(ws, pieces))
    try:
        await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
        if receiver.done():  # an error (or an early result) while audio was still going out
            return receiver.result()
        if isinstance(sender.exception(), ConnectionClosed):
            # the connection ended under the sender: the reader says why (an error message?)
            return await asyncio.wait_for(receiver, 10)
        sender.result()
        ended = loop.time()
        while True:
            remaining = max(ended, seen[0]) + settings.result_timeout - loop.time()
            if remaining <= 0:
                raise ClientError(
                    f"no answer from the server within {settings.result_timeout:g} s after the end of the audio"
                )
            await asyncio.wait({receiver}, timeout=remaining)
            if receiver.done():
                return receiver.result()
    except asyncio.TimeoutError:
        raise ClientError("the connection to the server was lost before the result came") from None
    finally:
        for task in (sender, receiver):
            if not task.done():
                task.cancel()
        await asyncio.gather(sender, receiver, return_exceptions=True)


async def recognize(
    ws: ClientConnection,
    pcm: Pcm,
    wav_name: str,
    settings: RecognitionSettings,
    on_message: Optional[MessageCallback] = None,
) -> Transcript:
    """Send a whole recording as one utterance (see :func:`recognize_stream`)."""
    return await recognize_stream(ws, paced_pieces(pcm, settings), pcm.sample_rate, wav_name, settings, on_message)
