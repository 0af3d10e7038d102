"""``--mic``: stream the microphone to the server until Ctrl-C (or ``--mic-seconds``).

``sounddevice`` (PortAudio) is optional: it needs a native library that
servers and CI machines lack, so it is imported only here, and its absence is
a message naming the extra to install, not an ImportError.  Audio is captured
at 16 kHz int16 mono in blocks of one stride, the same messages a streamed file
produces; the live text (offline text so far plus the pending online deltas)
is redrawn on stderr when it is a terminal.
"""
from __future__ import annotations

import asyncio
import signal
import sys
import time
from types import ModuleType
from typing import IO, AsyncIterator, Optional

from .batch import FileResult
from .config import ConnectionSettings, RecognitionSettings
from .connection import open_connection
from .errors import ClientError
from .inputs import TARGET_RATE, AudioInput
from .protocol_flow import TranscriptBuilder, recognize_stream

INSTALL_HINT = (
    "live microphone input needs the sounddevice library: "
    "pip install 'funasr-wss-server[mic]' (or pip install sounddevice)"
)


def import_sounddevice() -> ModuleType:
    """The ``sounddevice`` module, or :class:`ClientError` saying how to get it."""
    try:
        import sounddevice  # type: ignore[import-not-found]
    except ImportError:
        raise ClientError(INSTALL_HINT) from None
    except OSError as exc:  # the module is there, the PortAudio library is not
        raise ClientError(f"sounddevice cannot load PortAudio ({exc}); install it, e.g. apt install libportaudio2") from None
    return sounddevice


class LiveLine:
    """The text so far, redrawn in place; only the last ``max_chars`` characters are shown."""

    def __init__(self, stream: IO[str], enabled: bool, max_chars: int):
        self.stream = stream
        self.enabled = enabled
        self.max_chars = max(1, max_chars)
        self.builder = TranscriptBuilder()
        self._shown = 0

    def on_message(self, message: dict) -> None:
        try:
            self.builder.feed(message)
        except ClientError:
            return  # the flow itself reports server errors
        if not self.enabled:
            return
        text = self.builder.transcript().text[-self.max_chars:]
        self.stream.write("\r" + text + " " * max(0, self._shown - len(text)))
        self.stream.flush()
        self._shown = len(text)

    def close(self) -> None:
        if self.enabled and self._shown:
            self.stream.write("\n")
            self.stream.flush()


async def _capture(sd: ModuleType, settings: RecognitionSettings, queue: "asyncio.Queue[Optional[bytes]]",
                   device: Optional[str]) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()

    def callback(indata, frames, time_info, status) -> None:  # PortAudio's thread
        loop.call_soon_threadsafe(queue.put_nowait, bytes(indata))

    try:
        stream = sd.RawInputStream(
            samplerate=TARGET_RATE, channels=1, dtype="int16",
            blocksize=settings.stride_bytes(TARGET_RATE) // 2, callback=callback, device=device,
        )
    except Exception as exc:  # sounddevice.PortAudioError and friends: no device, busy device
        raise ClientError(f"cannot open the microphone: {exc}") from None
    with stream:
        while True:
            piece = await queue.get()
            if piece is None:
                return
            yield piece


async def run_microphone(
    connection: ConnectionSettings,
    settings: RecognitionSettings,
    live: LiveLine,
    seconds: Optional[float] = None,
    device: Optional[str] = None,
) -> FileResult:
    """Stream until Ctrl-C or ``seconds``, then end the utterance and wait for its result."""
    sd = import_sounddevice()
    item = AudioInput(0, "microphone", "microphone")
    loop = asyncio.get_running_loop()
    queue: "asyncio.Queue[Optional[bytes]]" = asyncio.Queue()

    def stop() -> None:
        queue.put_nowait(None)

    began = time.monotonic()
    ws = await open_connection(connection)
    handled = False
    try:
        try:
            loop.add_signal_handler(signal.SIGINT, stop)
            handled = True
        except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
            pass
        if seconds is not None:
            loop.call_later(seconds, stop)
        if sys.stderr.isatty() and handled:
            sys.stderr.write("listening; press Ctrl-C to stop\n")
        transcript = await recognize_stream(
            ws, _capture(sd, settings, queue, device), TARGET_RATE, item.name, settings, live.on_message
        )
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGINT)
        live.close()
        await ws.close()
    elapsed = time.monotonic() - began
    return FileResult(item, transcript, None, elapsed, elapsed)
