"""The server's resident memory: sampled while it works, and what each open connection costs."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import List, Optional

from benchmarks.server_process import rss_mib


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a background thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid, self.interval = pid, interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "RssSampler":
        self.peak = rss_mib(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.peak = max(self.peak, rss_mib(self.pid))
            except OSError:  # the process is gone
                return


async def per_connection_mib(url: str, pid: int, count: int, mode: str = "2pass", settle: float = 1.0,
                             extra_config: Optional[dict] = None, silence: bytes = bytes(19200)) -> dict:
    """RSS growth per open connection: ``count`` clients configure a stream and send 600 ms of silence, then wait.

    Each holds a live session (VAD and online-model state, buffers) at the
    moment the server's RSS is read; the difference from before they connected,
    divided by ``count``, is what one idle connection costs.  ``extra_config``
    goes into each first message (``hotwords``: what a connection adds with an LM);
    ``silence=b""`` sends no audio, so only the configured session is counted.
    """
    from websockets.asyncio.client import connect

    before = rss_mib(pid)
    sockets: List = []
    try:
        for k in range(count):
            ws = await connect(url, max_size=None, open_timeout=60)
            sockets.append(ws)
            await ws.send(json.dumps({"mode": mode, "chunk_size": [5, 10, 5], "wav_name": f"idle{k}", "audio_fs": 16000,
                                      **(extra_config or {})}, ensure_ascii=False))
            if silence:
                await ws.send(silence)
        await asyncio.sleep(settle)
        during = rss_mib(pid)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    time.sleep(settle)
    return {"connections": count, "mode": mode, "rss_before_mib": round(before, 1), "rss_with_them_mib": round(during, 1),
            "per_connection_kib": round((during - before) * 1024 / max(1, count), 1)}
