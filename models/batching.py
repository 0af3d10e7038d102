"""Grouping segments into onnxruntime calls: the offline recognisers share this.

Segments are sorted by length so that a call pads little, and a call stops
growing at ``batch_size`` segments or ``max_frames`` padded LFR frames (the
memory of one call).  Each recogniser decides its own ``batch_size``.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple, TypeVar

import numpy as np

R = TypeVar("R")


def length_batches(lengths: Sequence[int], batch_size: int, max_frames: int) -> List[List[int]]:
    """Indices into ``lengths``, shortest first, cut into calls of at most ``batch_size`` segments
    whose padded size (longest × count) stays within ``max_frames`` (a lone long segment is its own call)."""
    batches: List[List[int]] = []
    batch: List[int] = []
    for idx in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        longest = lengths[idx]
        if batch and (len(batch) >= batch_size or longest * (len(batch) + 1) > max_frames):
            batches.append(batch)
            batch = []
        batch.append(idx)
    if batch:
        batches.append(batch)
    return batches


def ordered_batches(lengths: Sequence[int], batch_size: int, max_frames: int) -> List[List[int]]:
    """Like :func:`length_batches` but in the segments' own order (consecutive runs).

    For decoders with per-request state that carries from segment to segment
    in order (the n-gram LM search's hash size, as in the reference).
    """
    batches: List[List[int]] = []
    batch: List[int] = []
    longest = 0
    for idx, length in enumerate(lengths):
        top = max(longest, length)
        if batch and (len(batch) >= batch_size or top * (len(batch) + 1) > max_frames):
            batches.append(batch)
            batch, top = [], length
        batch.append(idx)
        longest = top
    if batch:
        batches.append(batch)
    return batches


def pad_features(feats: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """``[B, T_max, D]`` float32 zero-padded features and their ``[B]`` int32 lengths (non-empty input)."""
    lengths = np.array([f.shape[0] for f in feats], dtype=np.int32)
    speech = np.zeros((len(feats), int(lengths.max()), feats[0].shape[1]), dtype=np.float32)
    for row, f in enumerate(feats):
        speech[row, : lengths[row]] = f
    return speech, lengths


def run_or_isolate(
    run: Callable[[], R],
    rows: Sequence[int],
    run_alone: Callable[[int], None],
    give_up: Callable[[int, Exception], None],
) -> Optional[R]:
    """``run()`` (one onnxruntime call over the segments ``rows``), or None when it failed.

    onnxruntime raises its own types (and silence can trip a graph), so any exception counts.  A failed
    call of several segments is retried one segment at a time (``run_alone(i)``), so one bad segment
    cannot lose its neighbours; a lone segment that fails gets ``give_up(i, exc)`` (log it, store an
    empty result).  The caller stops when None comes back: every row has been dealt with.
    """
    try:
        return run()
    except Exception as exc:
        if len(rows) > 1:
            for i in rows:
                run_alone(i)
        else:
            give_up(rows[0], exc)
        return None
