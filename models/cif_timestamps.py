"""Token times from the BiCif Paraformer's upsampled CIF peaks.

The timestamp export outputs ``us_cif_peak``: the CIF firing weights upsampled
3× over the LFR frames (60 ms / 3 = 20 ms per position).  A position whose
weight reaches 1 fires a token; a trained BiCif model fires when a token
*starts*, so a token lasts from its peak to the next one.  The constants and
edge rules are FunASR's (``time_stamp_lfr6_onnx`` in its runtimes):

* peaks are shifted 1.5 positions earlier;
* a token longer than 30 positions is cut, the rest counted as silence;
* the last token ends halfway to the end of audio when more than 5 positions remain.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

Span = Tuple[int, int]

SECONDS_PER_POSITION = 10.0 * 6 / 1000 / 3  # 10 ms frames × LFR 6 ÷ upsampling 3
PEAK_OFFSET = -1.5
EDGE_POSITIONS = 5
MAX_TOKEN_POSITIONS = 30
FIRE_THRESHOLD = 1.0 - 1e-4


class TimestampMismatch(ValueError):
    """The number of CIF peaks does not match the number of tokens."""


def peak_positions(us_cif_peak: np.ndarray) -> np.ndarray:
    peaks = np.asarray(us_cif_peak).reshape(-1)
    return np.where(peaks > FIRE_THRESHOLD)[0] + PEAK_OFFSET


def cif_token_spans(us_cif_peak: np.ndarray, num_tokens: int) -> List[Span]:
    """Per-token ``(start_ms, end_ms)`` from one utterance's ``us_cif_peak`` row.

    The row must cover only this utterance's frames (slice away batch padding
    first): its length decides where the audio ends.  Expects one more peak
    than tokens (the sentence end); raises :class:`TimestampMismatch` otherwise.
    """
    if num_tokens == 0:
        return []
    total = int(np.asarray(us_cif_peak).size)
    fire = peak_positions(us_cif_peak)
    if len(fire) != num_tokens + 1:
        raise TimestampMismatch(f"{len(fire)} CIF peaks for {num_tokens} tokens")
    # Each entry: (is_token, start_pos, end_pos) in fractional positions.
    pieces: List[List[float]] = []
    for i in range(num_tokens):
        a, b = float(fire[i]), float(fire[i + 1])
        if i == num_tokens - 1 or b - a < MAX_TOKEN_POSITIONS:
            pieces.append([1, a, b])
        else:
            cut = a + MAX_TOKEN_POSITIONS
            pieces.append([1, a, cut])
            pieces.append([0, cut, b])
    last_peak = float(fire[-1])
    if total - last_peak > EDGE_POSITIONS:
        pieces[-1][2] = (total + last_peak) / 2
    else:
        pieces[-1][2] = float(total)
    rate = SECONDS_PER_POSITION
    return [
        (int(start * rate * 1000), int(end * rate * 1000))
        for is_token, start, end in pieces
        if is_token
    ]


def even_spans(num_tokens: int, duration_ms: int) -> List[Span]:
    """Fallback when peaks and tokens disagree: spread tokens evenly over the audio."""
    if num_tokens == 0:
        return []
    step = duration_ms / num_tokens
    return [(int(i * step), int((i + 1) * step)) for i in range(num_tokens)]
