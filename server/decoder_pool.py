"""The one bounded pool that runs all model work, off the event loop.

Sized by ``--decoder-thread-num`` like the reference.  onnxruntime releases
the GIL while it computes, so threads give real parallelism for inference;
each call itself uses ``--model-thread-num`` intra-op threads.  A connection
awaits its own jobs one at a time, so its work stays in order, and
connections only wait on each other when every thread is busy.
"""
from __future__ import annotations

import asyncio
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional, TypeVar

T = TypeVar("T")


class JobSkipped(Exception):
    """The job was not run: by the time a thread was free, its ``skip_if`` said it was no longer wanted."""


class DecoderPool:
    def __init__(self, threads: int):
        if threads < 1:
            raise ValueError("the decoder pool needs at least one thread")
        self.threads = threads
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decoder")
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        """Jobs submitted and not yet finished (queued or running)."""
        return self._pending

    async def run(self, fn: Callable[..., T], *args: Any, skip_if: Optional[Callable[[], bool]] = None, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on a decoder thread.  ``skip_if`` is asked when a thread picks
        the job up: True (the client has gone) raises :class:`JobSkipped` without running it."""
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, **kwargs)
        if skip_if is not None:
            call = functools.partial(_unless, skip_if, call)
        with self._lock:
            self._pending += 1
        try:
            return await loop.run_in_executor(self._executor, call)
        finally:
            with self._lock:
                self._pending -= 1

    def shutdown(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=not wait)


def _unless(skip_if: Callable[[], bool], call: Callable[[], T]) -> T:
    if skip_if():
        raise JobSkipped()
    return call()
