"""Whether a connection holds input its session has not seen yet: for draining without loss.

A client's messages reach its session in steps: the kernel's socket buffer, websockets'
frame parser (a frame larger than one read waits there, in pieces, until it is whole),
the connection's receive queue (whole frames the handler has not taken yet), and only
then the session, which counts the audio as an utterance in flight.  A drain that looked
at the sessions alone closed, with 1001, connections whose configuration and audio had
arrived but were still queued: an offline upload sent just before SIGTERM was lost.
:func:`has_unread_input` looks at the two middle steps; the kernel's buffer is read by
the event loop's next turn, which :meth:`server.app.AsrServer.drain` waits for.

websockets keeps both in documented-as-internal attributes (``recv_messages.frames``,
``protocol.reader.buffer``), stable since the asyncio implementation appeared; a version
without them reads as "nothing unread", which is the old behaviour, never an error.
"""
from __future__ import annotations


def has_unread_input(connection: object) -> bool:
    """Whether ``connection`` (a websockets ServerConnection) has received bytes of a frame its handler
    has not taken yet: whole frames in its receive queue, or the start of a frame still arriving."""
    frames = getattr(getattr(connection, "recv_messages", None), "frames", None)
    if frames is not None and len(getattr(frames, "queue", ())) > 0:
        return True
    reader = getattr(getattr(connection, "protocol", None), "reader", None)
    return len(getattr(reader, "buffer", b"")) > 0
