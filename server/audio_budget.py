"""The server-wide budget of client audio held in memory, shared by every connection.

Each connection's own cap (``--max-utterance-mib``) bounds one utterance;
this bounds their sum, so many connections each buffering a large upload
cannot take the process past its memory: a connection whose next frame does
not fit is told so (its utterance dropped with an error naming
``--max-buffered-audio-mib``) instead of the server running out of memory.
Used from the event loop only, so it needs no lock.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AudioBudget:
    limit_bytes: int
    used_bytes: int = 0

    def reserve(self, n: int) -> bool:
        """Take ``n`` bytes from the budget; False (nothing taken) when they do not fit."""
        if n < 0:
            raise ValueError("cannot reserve a negative size")
        if self.used_bytes + n > self.limit_bytes:
            return False
        self.used_bytes += n
        return True

    def release(self, n: int) -> None:
        self.used_bytes = max(0, self.used_bytes - n)


#: For sessions built without a server (unit tests): no server-wide bound.
def unlimited() -> AudioBudget:
    return AudioBudget(limit_bytes=1 << 62)
