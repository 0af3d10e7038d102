"""CPU time by stage: where a stream's core-seconds go.

Capacity on CPU is set by core-seconds per audio second, and a profile of the whole
process cannot say which model call or which Python loop they went to without
perturbing it.  So the hot paths mark their stages with :func:`stage`, which charges
the calling thread's CPU time (``time.thread_time``: onnxruntime runs a session with
one intra-op thread on the calling thread, so a model call is counted where it is
made) to the stage's name.  A stage entered inside another is charged to itself
only, not to the outer one: the totals add up to the CPU spent inside any stage, and
the server's process CPU less that sum is what its protocol and scheduling cost.

Each thread adds to its own table (no lock on the hot path); :func:`cpu_seconds`
sums the tables.  A mark costs about a microsecond.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional

#: The stages the models mark, in the order a 2pass frame meets them.
STAGES = (
    "audio_in",  # int16 → float, resampling of other client rates
    "live_stream",  # a live stream's own bookkeeping: its audio buffer, VAD steps, segment events
    "vad",  # FSMN VAD: its fbank, the model call, the end-point state machine
    "online_frontend",  # streaming fbank, LFR, CMVN and position encoding
    "online_encoder",
    "online_cif",
    "online_decoder",  # the decoder call and its tokens
    "offline_asr",  # an offline Paraformer/SenseVoice pass: features, the model, tokens, times (and the LM search)
    "punctuation",
    "itn",
    "text",  # sentence pieces, timestamps realigned to the punctuated text
)


class _Clock(threading.local):
    def __init__(self) -> None:
        self.totals: Dict[str, float] = {}
        self.current: Optional[str] = None
        self.since = 0.0
        with _registry_lock:
            _tables.append(self.totals)


_registry_lock = threading.Lock()
_tables: List[Dict[str, float]] = []
_clock = _Clock()


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Charge the CPU this thread spends inside the block to ``name`` (exclusive of nested stages)."""
    clock = _clock
    now = time.thread_time()
    outer = clock.current
    if outer is not None:
        clock.totals[outer] = clock.totals.get(outer, 0.0) + (now - clock.since)
    clock.current, clock.since = name, now
    try:
        yield
    finally:
        now = time.thread_time()
        clock.totals[name] = clock.totals.get(name, 0.0) + (now - clock.since)
        clock.current, clock.since = outer, now


def cpu_seconds() -> Dict[str, float]:
    """CPU seconds charged to each stage so far, by every thread of the process."""
    with _registry_lock:
        tables = list(_tables)
    out: Dict[str, float] = {}
    for table in tables:
        for name, seconds in list(table.items()):
            out[name] = out.get(name, 0.0) + seconds
    return out


__all__ = ["STAGES", "cpu_seconds", "stage"]
