"""A one-line progress bar on stderr for batches, redrawn in place with ``\\r``.

Drawn only on a terminal: in a log file or a pipe the carriage returns would
be noise.  Callers clear it before printing anything else to the same terminal.
"""
from __future__ import annotations

import time
from typing import IO


class Progress:
    def __init__(self, total: int, stream: IO[str], enabled: bool, width: int = 24):
        self.total = total
        self.stream = stream
        self.enabled = enabled and total > 0
        self.width = width
        self.done = 0
        self.failed = 0
        self.audio_seconds = 0.0
        self.began = time.monotonic()
        self._shown = 0

    def advance(self, ok: bool, audio_seconds: float = 0.0) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        self.audio_seconds += audio_seconds
        self.draw()

    def line(self) -> str:
        filled = self.width * self.done // max(1, self.total)
        elapsed = time.monotonic() - self.began
        failed = f", {self.failed} failed" if self.failed else ""
        speed = f", {self.audio_seconds / elapsed:.1f}x real time" if elapsed >= 1 and self.audio_seconds else ""
        return f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} files{failed}, {elapsed:.0f} s{speed}"

    def draw(self) -> None:
        if not self.enabled:
            return
        text = self.line()
        self.stream.write("\r" + text + " " * max(0, self._shown - len(text)))
        self.stream.flush()
        self._shown = len(text)

    def clear(self) -> None:
        if self.enabled and self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self.stream.flush()
            self._shown = 0
