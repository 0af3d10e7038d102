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

from typing import List, Optional, Tuple

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


# --- FunASR C++ ``TimestampOnnx`` (runtime/onnxruntime/src/util.cpp), alpha fallback included -----------------
#
# The C++ runtime does what :func:`cif_token_spans` does when the peaks fit the tokens; when they do not (an LM
# decode whose English words cover several CIF positions, so fewer units than peaks - 1), it does not give up
# but rebuilds the peaks from ``us_alphas``.  Everything there is float32 (``std::vector<float>``), with the
# threshold comparisons and subtractions of ``1.0 - 1e-4`` done in double and stored back to float.

#: ``const float TIME_RATE = 10.0 * 6 / 1000 / 3``: the double quotient rounded to float32.
TIME_RATE_F32 = np.float32(10.0 * 6 / 1000 / 3)

PositionSpan = Tuple[float, float]


def alpha_fire_positions(us_alphas: np.ndarray, num_tokens: int, num_frames: int) -> Optional[np.ndarray]:
    """The C++ fallback's fire positions (already shifted by -1.5) rebuilt from one segment's ``us_alphas``.

    * ``scale = sum(alphas) / (num_tokens + 1)`` (float32 running sum, as ``std::accumulate`` with ``0.0f``);
      a zero scale gives None (the C++ returns without timestamps);
    * each alpha is divided by ``scale`` and integrated; the running sum is recorded per position and, when it
      reaches ``1 - 1e-4``, ``1 - 1e-4`` is subtracted (after recording);
    * fix-up: while the leftover sum is still ``>= 1 - 1e-4``, walking backwards from the end, each position
      that did not fire takes the leftover and ``1 - 1e-4`` is subtracted again;
    * a position fires when its recorded value is ``> 1 - 1e-4``.  Only the first ``num_frames``
      (``len(us_cif_peak)``) positions are looked at, as in the C++.
    """
    alphas = np.asarray(us_alphas, dtype=np.float32).reshape(-1)
    total = np.float32(0.0)
    for a in alphas:
        total = np.float32(total + a)
    scale = np.float32(total / np.float32(num_tokens + 1))
    if scale == 0:
        return None
    peak: List[float] = []
    acc = np.float32(0.0)
    for a in alphas:
        acc = np.float32(acc + np.float32(a / scale))
        peak.append(float(acc))
        if float(acc) >= FIRE_THRESHOLD:
            acc = np.float32(float(acc) - FIRE_THRESHOLD)
    idx = len(peak) - 1
    while float(acc) >= FIRE_THRESHOLD and idx >= 0:
        if peak[idx] < FIRE_THRESHOLD:
            peak[idx] = float(acc)
            acc = np.float32(float(acc) - FIRE_THRESHOLD)
        idx -= 1
    limit = min(num_frames, len(peak))
    return np.array([i + PEAK_OFFSET for i in range(limit) if peak[i] > FIRE_THRESHOLD], dtype=np.float64)


def timestamp_onnx_positions(us_alphas: np.ndarray, us_cif_peak: np.ndarray, num_tokens: int) -> List[PositionSpan]:
    """Per-unit ``(start, end)`` in CIF positions (20 ms each), exactly as C++ ``TimestampOnnx`` computes them.

    The fire positions are the ``us_cif_peak`` ones, shifted by -1.5, or, when their number is not
    ``num_tokens + 1``, :func:`alpha_fire_positions`.  Then the usual rules: the tokens are the gaps between
    consecutive fires, a gap of 30 positions or more is cut to 30 (the rest is silence), and the last token
    ends halfway to the end of the audio when more than 5 positions remain, else at the end.

    All positions are multiples of 0.25, so they are exact in float32 and float64 alike.  Raises
    :class:`TimestampMismatch` where the C++ has no well-defined answer: a zero alpha sum, no fire at all, or
    a fire count that is still not ``num_tokens + 1`` after the fallback (the C++ then reads past the end of one
    of its vectors).
    """
    if num_tokens <= 0:
        return []
    num_frames = int(np.asarray(us_cif_peak).size)
    fire = peak_positions(us_cif_peak)
    if len(fire) != num_tokens + 1:
        rebuilt = alpha_fire_positions(us_alphas, num_tokens, num_frames)
        if rebuilt is None:
            raise TimestampMismatch(f"{len(fire)} CIF peaks for {num_tokens} tokens and the alphas sum to 0")
        if len(rebuilt) != num_tokens + 1:
            raise TimestampMismatch(
                f"{len(fire)} CIF peaks for {num_tokens} tokens, {len(rebuilt)} after rebuilding them from the alphas"
            )
        fire = rebuilt
    pieces: List[List[float]] = []
    for i in range(num_tokens):
        a, b = float(fire[i]), float(fire[i + 1])
        if i == num_tokens - 1 or b - a < MAX_TOKEN_POSITIONS:
            pieces.append([a, b])
        else:
            pieces.append([a, a + MAX_TOKEN_POSITIONS])  # the rest, up to b, is silence
    last_peak = float(fire[-1])
    pieces[-1][1] = (num_frames + last_peak) / 2 if num_frames - last_peak > EDGE_POSITIONS else float(num_frames)
    return [(a, b) for a, b in pieces]


def timestamp_onnx_spans(us_alphas: np.ndarray, us_cif_peak: np.ndarray, num_tokens: int) -> List[Span]:
    """Per-unit ``(start_ms, end_ms)`` of one segment as C++ ``TimestampOnnx`` places them, alpha fallback included.

    For LM decodes (see :mod:`models.lm_text`): ``num_tokens`` is the number of units
    (:func:`models.lm_text.split_lm_words`), which need not be the peak count - 1.  ``us_alphas`` and
    ``us_cif_peak`` must cover only this segment's frames.  When the peaks fit (``num_tokens + 1`` of them)
    this equals :func:`cif_token_spans`; ms are computed the same way (positions × 20 ms in double,
    truncated), the project's convention.  The C++ server's own ms can differ by 1 (see :func:`cpp_server_ms`).
    Raises :class:`TimestampMismatch` as :func:`timestamp_onnx_positions` does.
    """
    rate = SECONDS_PER_POSITION
    return [
        (int(a * rate * 1000), int(b * rate * 1000))
        for a, b in timestamp_onnx_positions(us_alphas, us_cif_peak, num_tokens)
    ]


def cpp_stamp_seconds(positions: List[PositionSpan]) -> List[Tuple[np.float32, np.float32]]:
    """The C++ stamps in seconds: ``float(position) * TIME_RATE`` in float32 (what ``PostProcess`` prints with ``%f``)."""
    return [
        (np.float32(np.float32(a) * TIME_RATE_F32), np.float32(np.float32(b) * TIME_RATE_F32)) for a, b in positions
    ]


def cpp_server_ms(seconds: float, segment_start_s: float = 0.0) -> int:
    """The ms FunASR's C++ offline API makes of one stamp (funasrruntime.cpp ``FunOfflineInferBuffer``).

    The stamp travels as ``std::to_string`` text (6 decimals), is read back with ``std::stof``, the segment start
    (``(float)start_sample / rate``) is added in float32, and ``(int)(1000 * t)`` truncates in float32.  Because
    of that, it is often 1 ms below the double-precision value (4.035 s → 4034 ms).
    """
    stamp = np.float32(float("%f" % float(seconds)))
    t = np.float32(stamp + np.float32(segment_start_s))
    return int(np.float32(np.float32(1000) * t))
