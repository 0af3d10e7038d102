"""The one bounded pool that runs all model work, off the event loop, most urgent first.

Sized by ``--decoder-thread-num`` like the reference.  onnxruntime releases
the GIL while it computes, so threads give real parallelism for inference;
each call itself uses ``--model-thread-num`` intra-op threads.  A connection
awaits its own jobs one at a time, so its work stays in order, and
connections only wait on each other when every thread is busy.

When they do wait, the order is by deadline, not by arrival.  Each job has a
:class:`Priority`, and its deadline is its arrival time plus its priority's
slack: the final segment of an utterance whose end signal has arrived has none
(a user is waiting for the answer), a live-caption chunk a little, a
mid-utterance offline correction or a whole-file upload more.  The earliest
deadline runs first (arrival order among equals).  Because a deadline never
moves and every later job's deadline is at least its own arrival time, no job
starves: one submitted at ``t`` is overtaken only by jobs submitted before
``t + its slack``, so it waits at most its slack plus the work already ahead.
"""
from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

T = TypeVar("T")


class Priority(enum.IntEnum):
    """How urgently a job's result is awaited (lower is more urgent)."""

    FINAL = 0  # the end signal has arrived: the client waits for this result to finish the utterance
    ONLINE = 1  # a live stream's next audio: its captions lag while it waits
    BACKGROUND = 2  # work whose result can come a little later (mid-utterance corrections)


#: Seconds of slack each priority's deadline gets after the job's arrival.
SLACK_SECONDS: Dict[Priority, float] = {Priority.FINAL: 0.0, Priority.ONLINE: 0.3, Priority.BACKGROUND: 1.5}


class JobSkipped(Exception):
    """The job was not run: by the time a thread was free, its ``skip_if`` said it was no longer wanted."""


_Job = Tuple[float, int, Callable[[], Any], "Future[Any]"]


class DecoderPool:
    def __init__(self, threads: int, slack: Optional[Dict[Priority, float]] = None):
        if threads < 1:
            raise ValueError("the decoder pool needs at least one thread")
        self.threads = threads
        self.slack = dict(SLACK_SECONDS if slack is None else slack)
        self._queue: List[_Job] = []
        self._order = itertools.count()
        self._ready = threading.Condition()
        self._closed = False
        self._pending = 0
        self._workers = [
            threading.Thread(target=self._work, name=f"decoder_{k}", daemon=True) for k in range(threads)
        ]
        for worker in self._workers:
            worker.start()

    @property
    def pending(self) -> int:
        """Jobs submitted and not yet finished (queued or running)."""
        return self._pending

    @property
    def queued(self) -> int:
        """Jobs waiting for a thread."""
        return len(self._queue)

    async def run(self, fn: Callable[..., T], *args: Any, skip_if: Optional[Callable[[], bool]] = None,
                  priority: Priority = Priority.FINAL, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on a decoder thread, in deadline order (see the module's notes).
        ``skip_if`` is asked when a thread picks the job up: True (the client has gone) raises
        :class:`JobSkipped` without running it."""
        future = self.submit(lambda: fn(*args, **kwargs), skip_if, priority)
        try:
            return await asyncio.wrap_future(future)
        finally:
            future.cancel()  # the awaiting task was cancelled: a job not started yet is dropped

    def submit(self, call: Callable[[], T], skip_if: Optional[Callable[[], bool]] = None,
               priority: Priority = Priority.FINAL) -> "Future[T]":
        """Queue ``call``; the future holds its result."""
        future: "Future[T]" = Future()
        deadline = time.monotonic() + self.slack[Priority(priority)]
        with self._ready:
            if self._closed:
                raise RuntimeError("the decoder pool is shut down")
            self._pending += 1
            heapq.heappush(self._queue, (deadline, next(self._order), _guarded(call, skip_if), future))
            self._ready.notify()
        return future

    def spare(self, call: Callable[[], T]) -> "Optional[Future[T]]":
        """Start ``call`` at once if a thread is idle and nothing waits; otherwise None.  Lets a job
        that runs alone hand part of its work to a core that would idle; its future can be cancelled
        (and the work done by the caller) if another job took that thread first."""
        with self._ready:
            if self._closed or self._queue or self._pending >= self.threads:
                return None
        return self.submit(call, priority=Priority.FINAL)

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return  # closed and drained
                _, _, call, future = heapq.heappop(self._queue)
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        result = call()
                    except BaseException as exc:  # handed to the awaiting coroutine
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
            finally:
                with self._ready:
                    self._pending -= 1

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking jobs.  ``wait``: finish the queued ones first; otherwise they are cancelled
        (the one running on each thread still ends)."""
        with self._ready:
            self._closed = True
            if not wait:
                dropped, self._queue = self._queue, []
                self._pending -= len(dropped)
                for *_, future in dropped:
                    future.cancel()
            self._ready.notify_all()
        if wait:
            for worker in self._workers:
                if worker is not threading.current_thread():
                    worker.join()


def _guarded(call: Callable[[], T], skip_if: Optional[Callable[[], bool]]) -> Callable[[], T]:
    if skip_if is None:
        return call

    def run() -> T:
        if skip_if():
            raise JobSkipped()
        return call()

    return run


__all__ = ["DecoderPool", "JobSkipped", "Priority", "SLACK_SECONDS"]
