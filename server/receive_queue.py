"""A connection's receive queue, bounded in bytes as well as in frames.

websockets pauses reading from a socket when more than ``max_queue`` frames
wait unread, but a frame may be as large as ``--max-message-mib``: 16 frames
of 32 MiB are half a gigabyte per busy connection.  This queue also pauses
once the frames waiting hold more than ``max_bytes`` (and resumes below a
quarter of it), so what a connection can make the server hold is one message
being received plus ``max_bytes`` (plus the one frame that crossed the line).
The kernel's socket buffers take the rest: TCP backpressure on the client.
"""
from __future__ import annotations

from websockets.asyncio.messages import Assembler


class ByteBoundedAssembler(Assembler):
    def __init__(self, *args, max_bytes: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_bytes = max_bytes

    def queued_bytes(self) -> int:
        # At most max_queue frames wait, so summing them is cheap.
        return sum(len(frame.data) for frame in self.frames.queue)

    def maybe_pause(self) -> None:
        if not self.paused and (
            (self.high is not None and len(self.frames) > self.high) or self.queued_bytes() > self.max_bytes
        ):
            self.paused = True
            self.pause()

    def maybe_resume(self) -> None:
        if (
            self.paused
            and (self.low is None or len(self.frames) <= self.low)
            and self.queued_bytes() <= self.max_bytes // 4
        ):
            self.paused = False
            self.resume()
