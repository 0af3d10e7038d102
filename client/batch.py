"""Many files over a few connections: ``--thread_num`` workers, one shared queue.

Each worker holds one WebSocket and sends its files one after another over it
(a FunASR server takes the next utterance once it has sent the final message),
so a batch of a thousand files opens ``--thread_num`` connections, not a
thousand.  A failure is the failing file's alone: it is recorded in its
:class:`FileResult`, the worker drops its connection (its state on the server
is unknown) and opens a fresh one for its next file.

Asyncio tasks rather than FunASR's processes: the client waits on the network
almost all the time, and decoding audio (PyAV) runs in threads.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

from websockets.asyncio.client import ClientConnection

from .config import ConnectionSettings, RecognitionSettings
from .connection import open_connection
from .errors import ClientError
from .inputs import AudioInput, load_pcm
from .protocol_flow import Transcript, recognize


@dataclass
class FileResult:
    """The outcome for one input: a transcript, or the reason there is none."""

    item: AudioInput
    transcript: Optional[Transcript] = None
    error: Optional[str] = None
    audio_seconds: float = 0.0
    elapsed_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.transcript is not None


ResultCallback = Callable[[FileResult], None]


async def _close(ws: Optional[ClientConnection]) -> None:
    if ws is not None:
        try:
            await ws.close()
        except Exception:  # closing a broken connection may fail again; nothing left to do
            pass


async def _process(
    item: AudioInput,
    ws: Optional[ClientConnection],
    connection: ConnectionSettings,
    settings: RecognitionSettings,
) -> Tuple[FileResult, Optional[ClientConnection]]:
    """Recognise one file on ``ws`` (opened if None); returns the result and the connection
    to use next (None when it must not be reused)."""
    began = time.monotonic()
    try:
        pcm = await asyncio.to_thread(load_pcm, item, settings.audio_fs)
    except ClientError as exc:
        return FileResult(item, error=str(exc)), ws
    except Exception as exc:  # a decoder failure nobody anticipated is still this file's problem
        return FileResult(item, error=f"cannot read the audio: {exc}"), ws
    try:
        if ws is None:
            ws = await open_connection(connection)
        transcript = await recognize(ws, pcm, item.name, settings)
    except ClientError as exc:
        await _close(ws)
        return FileResult(item, error=str(exc), audio_seconds=pcm.seconds,
                          elapsed_seconds=time.monotonic() - began), None
    return FileResult(item, transcript, None, pcm.seconds, time.monotonic() - began), ws


async def run_batch(
    items: Sequence[AudioInput],
    connection: ConnectionSettings,
    settings: RecognitionSettings,
    workers: int = 1,
    on_result: Optional[ResultCallback] = None,
) -> List[FileResult]:
    """Recognise every item with ``workers`` connections at once; results in input order.

    ``on_result`` is called as each file finishes (in finishing order), from
    the event loop: printing and writing files there needs no locks.
    """
    queue: "asyncio.Queue[AudioInput]" = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    results: List[Optional[FileResult]] = [None] * len(items)
    position = {id(item): n for n, item in enumerate(items)}

    async def worker() -> None:
        ws: Optional[ClientConnection] = None
        try:
            while not queue.empty():
                item = queue.get_nowait()
                result, ws = await _process(item, ws, connection, settings)
                results[position[id(item)]] = result
                if on_result is not None:
                    on_result(result)
        finally:
            await _close(ws)

    count = max(1, min(int(workers), len(items)))
    await asyncio.gather(*(worker() for _ in range(count)))
    return [r for r in results if r is not None]
