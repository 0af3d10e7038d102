"""FSMN voice activity detection: the network plus FunASR's end-point state machine.

The network (``speech`` [1, T, 400] → ``logits`` [1, T, 248], with four FSMN
memory caches) only says, frame by frame, how likely each 10 ms frame is to be
silence.  Turning that into speech segments is the job of FunASR's "E2E VAD"
post-processor: a sliding-window vote over frame decisions, a start/end
detector with look-back and look-ahead padding, a maximum segment length and a
silence timeout.  Its exact arithmetic (integer truncations, off-by-one end
frames, the order of checks) decides where segments start and end, and the
rest of the server cuts audio at those times, so this module reproduces the
behaviour of ``funasr_onnx`` 0.4.3 exactly (see ``tests/test_vad.py``) while
keeping only what the decision still needs: the reference keeps every frame's
score and decibel for the whole stream, this code keeps a few frames.

Three pieces:

* :class:`FsmnVadModel` - one onnxruntime session plus the model directory's
  frontend, CMVN and :class:`VadConfig`.  Stateless, shareable across threads.
* :class:`VadStream` - one audio stream: incremental fbank/LFR/CMVN, the
  network caches, and the state machine.  ``accept`` returns FunASR's online
  events (``[beg, -1]``, ``[-1, end]``, ``[beg, end]``) as :class:`SegmentEvent`.
* :meth:`FsmnVadModel.segments` - whole-file segmentation, FunASR's
  ``Fsmn_vad`` output.

Known, deliberate differences from the reference (none of them can change a
result with the shipped ``config.yaml`` and the 2pass server's 50 ms chunks):

* Streaming decibels.  When its first chunk yields four or more fbank frames
  (880 samples or more), ``Fsmn_vad_online`` hands the post-processor the
  last four frames' samples again on every later call, so its per-frame
  decibel list drifts four frames further from the frame it is read for with
  each call.  Here frame ``t``'s decibel always comes from samples
  ``[t*shift, t*shift + length)``, as in the offline path.  Decibels only
  enter through ``decibel_thres`` and ``snr_thres``; at their defaults (-100)
  no frame can fail either test (a frame's level is at least -60 dB), and with
  800-sample chunks the reference stays aligned, so results agree even with
  the gates on (tested).
* Inputs the reference crashes on give the natural answer instead: empty
  audio offline, a streaming call that yields no new frame, streams of one or
  two frames, a silence probability of exactly 0 or 1 (``log(0)``).
* Offline audio of ``6000*k + 1`` frames makes the reference run a spurious
  one-frame chunk on a freshly reset state machine; it is skipped here (it
  cannot produce a segment unless ``sil_to_speech_time_thres`` is a frame or
  less).
* A streaming call with more than 6000 new frames is scored in 6000-frame
  blocks (the network's output does not depend on the blocking).
* After ``is_final`` the whole stream, network caches included, starts afresh;
  the reference keeps the caches of the previous utterance.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import kaldi_native_fbank as knf
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .config import load_config
from .frontend import INT16_SCALE, Frontend, FrontendConfig, apply_cmvn, compute_fbank, fbank_options
from .model_dir import pick_onnx_file
from .onnx_session import RuntimeOptions, create_session
from .stage_clock import stage

log = logging.getLogger(__name__)

# The reference feeds the network at most this many frames at once when it
# segments a whole file; the same blocks are used here so that offline scores
# are computed on exactly the same inputs.
OFFLINE_BLOCK_FRAMES = 6000

# Absolute tolerance under which a vectorised speech/noise comparison is
# re-done with the reference's scalar ``math`` calls (numpy's exp/log may
# differ from libm's in the last bit on some CPUs).
_BOUNDARY_TOLERANCE = 1e-9


# --------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class VadConfig:
    """Every key of FunASR's VAD ``model_conf``, with FunASR's defaults.

    Times are in milliseconds.  The parameters that shape the result:

    * ``max_end_silence_time`` - trailing silence that ends a segment.
    * ``max_start_silence_time`` - leading silence after which single-utterance
      mode (``detect_mode=0``) gives up.
    * ``window_size_ms`` / ``sil_to_speech_time_thres`` /
      ``speech_to_sil_time_thres`` - the sliding vote: speech starts when at
      least ``sil_to_speech`` of the last ``window_size`` ms are speech frames,
      and stops when no more than ``speech_to_sil`` are.
    * ``do_extend`` with ``lookback_time_start_point`` and
      ``lookahead_time_end_point`` - padding before a start and after an end.
    * ``max_single_segment_time`` - segments are cut at this length.
    * ``speech_noise_thres`` and ``speech_2_noise_ratio`` - a frame is speech
      when ``P(speech) >= P(sil) ** ratio + thres``.
    * ``decibel_thres``, ``snr_thres`` and ``noise_frame_num_used_for_snr`` -
      level and SNR gates (off at -100).
    * ``fe_prior_thres`` - speech frames only count when ``1.0 > fe_prior_thres``.
    * ``sil_pdf_ids`` / ``silence_pdf_num`` - which network outputs are silence.
    * ``detect_mode`` - 1: many utterances per stream, 0: stop after the first.
    * ``sample_rate``, ``frame_in_ms``, ``frame_length_ms`` - frame geometry.

    ``snr_mode``, ``do_start_point_detection``, ``do_end_point_detection``,
    ``nn_eval_block_size``, ``dcd_block_size``, ``speech_noise_thresh_low``,
    ``speech_noise_thresh_high`` and ``output_frame_probs`` are accepted and
    kept because they appear in FunASR configs, but FunASR's post-processor
    does not act on them, so neither does this one.
    """

    sample_rate: int = 16000
    detect_mode: int = 1
    snr_mode: int = 0
    max_end_silence_time: int = 800
    max_start_silence_time: int = 3000
    do_start_point_detection: bool = True
    do_end_point_detection: bool = True
    window_size_ms: int = 200
    sil_to_speech_time_thres: int = 150
    speech_to_sil_time_thres: int = 150
    speech_2_noise_ratio: float = 1.0
    do_extend: int = 1
    lookback_time_start_point: int = 200
    lookahead_time_end_point: int = 100
    max_single_segment_time: int = 60000
    nn_eval_block_size: int = 8
    dcd_block_size: int = 4
    snr_thres: float = -100.0
    noise_frame_num_used_for_snr: int = 100
    decibel_thres: float = -100.0
    speech_noise_thres: float = 0.6
    fe_prior_thres: float = 1e-4
    silence_pdf_num: int = 1
    sil_pdf_ids: Tuple[int, ...] = (0,)
    speech_noise_thresh_low: float = -0.1
    speech_noise_thresh_high: float = 0.3
    output_frame_probs: bool = False
    frame_in_ms: int = 10
    frame_length_ms: int = 25

    def __post_init__(self) -> None:
        # YAML gives a list; keep the dataclass hashable and immutable
        object.__setattr__(self, "sil_pdf_ids", tuple(int(i) for i in self.sil_pdf_ids))
        self.validate()

    @classmethod
    def from_config(cls, conf: Optional[Mapping[str, Any]]) -> "VadConfig":
        """Build from a ``model_conf`` mapping; unknown keys are logged and ignored."""
        conf = dict(conf or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(conf) - known)
        if unknown:
            log.warning("ignoring unknown VAD model_conf keys: %s", ", ".join(unknown))
        return cls(**{k: conf[k] for k in known if k in conf})

    def with_overrides(self, **changes: Any) -> "VadConfig":
        """A copy with some fields changed (for example a per-server ``max_end_silence_time``)."""
        return replace(self, **changes)

    def validate(self) -> None:
        """Reject settings the reference would crash on (division by zero, log(0))."""
        if self.frame_in_ms <= 0 or self.sample_rate <= 0:
            raise ValueError("VAD frame_in_ms and sample_rate must be positive")
        if int(self.window_size_ms / self.frame_in_ms) < 1:
            raise ValueError("VAD window_size_ms must hold at least one frame")
        if not self.sil_pdf_ids or len(self.sil_pdf_ids) != self.silence_pdf_num:
            raise ValueError("VAD sil_pdf_ids must be non-empty and hold silence_pdf_num ids")
        if self.noise_frame_num_used_for_snr <= 0:
            raise ValueError("VAD noise_frame_num_used_for_snr must be positive")

    # Derived quantities, truncated exactly where FunASR truncates.
    @property
    def frame_shift_samples(self) -> int:
        return int(self.frame_in_ms * self.sample_rate / 1000)

    @property
    def frame_length_samples(self) -> int:
        return int(self.frame_length_ms * self.sample_rate / 1000)


@dataclass(frozen=True)
class _Derived:
    """The integer thresholds the state machine compares against, computed once."""

    frame_ms: int
    window_frames: int
    to_speech_frames: int
    to_sil_frames: int
    start_latency: int  # frames between the vote's decision and the padded start
    end_silence_ms: int  # trailing silence (ms) that closes a segment
    end_backoff: int  # frames from that decision back to the segment's last frame
    lookahead_frames: int
    max_segment_frames: float  # compared with a float, like the reference
    extend: bool
    single_utterance: bool
    max_start_silence_ms: float
    speech_counts: bool  # fe_prior_thres gate
    ids: Tuple[int, ...]
    ratio: float
    speech_noise_thres: float
    decibel_thres: float
    snr_thres: float
    noise_frames: int

    @classmethod
    def of(cls, cfg: VadConfig) -> "_Derived":
        f = cfg.frame_in_ms
        window = int(cfg.window_size_ms / f)
        extend = bool(cfg.do_extend)
        latency = window + (int(cfg.lookback_time_start_point / f) if extend else 0)
        end_sil = cfg.max_end_silence_time - cfg.speech_to_sil_time_thres
        backoff = int(end_sil / f)
        if extend:
            backoff = max(0, backoff - int(cfg.lookahead_time_end_point / f) - 1)
        return cls(
            frame_ms=f,
            window_frames=window,
            to_speech_frames=int(cfg.sil_to_speech_time_thres / f),
            to_sil_frames=int(cfg.speech_to_sil_time_thres / f),
            start_latency=latency,
            end_silence_ms=end_sil,
            end_backoff=backoff,
            lookahead_frames=int(cfg.lookahead_time_end_point / f),
            max_segment_frames=cfg.max_single_segment_time / f,
            extend=extend,
            single_utterance=cfg.detect_mode == 0,
            max_start_silence_ms=cfg.max_start_silence_time,
            speech_counts=math.fabs(1.0) > cfg.fe_prior_thres,
            ids=tuple(cfg.sil_pdf_ids),
            ratio=float(cfg.speech_2_noise_ratio),
            speech_noise_thres=float(cfg.speech_noise_thres),
            decibel_thres=float(cfg.decibel_thres),
            snr_thres=float(cfg.snr_thres),
            noise_frames=int(cfg.noise_frame_num_used_for_snr),
        )


# --------------------------------------------------------------------------
# per-frame evidence: decibels and speech/silence decisions
# --------------------------------------------------------------------------


def frame_decibels(samples: np.ndarray, n_frames: int, frame_length: int, frame_shift: int) -> List[float]:
    """``10*log10(sum(x**2) + 1e-6)`` of the first ``n_frames`` frames of ``samples``.

    The energy is summed in float32 (numpy's pairwise sum, row by row, exactly
    what the reference gets from ``np.square(frame).sum()``), the logarithm is
    libm's, so every value is bit-identical to the reference's.
    """
    if n_frames <= 0:
        return []
    x = np.asarray(samples, dtype=np.float32)
    windows = sliding_window_view(x[: (n_frames - 1) * frame_shift + frame_length], frame_length)[::frame_shift]
    energy = np.square(windows).sum(axis=1, dtype=np.float32).astype(np.float64) + 0.000001
    log10 = math.log10
    return [10 * log10(e) for e in energy.tolist()]


def _scalar_speech_test(p: float, ratio: float, thres: float) -> bool:
    """The reference's own formula, ``exp(log(1-p)) >= exp(log(p) * ratio) + thres``.

    ``log(0)`` (which crashes the reference) is taken as its limit.
    """
    rest = 1.0 - p
    lhs = math.exp(math.log(rest)) if rest > 0 else 0.0
    if p > 0:
        rhs = math.exp(math.log(p) * ratio)
    else:
        rhs = 0.0 if ratio > 0 else (1.0 if ratio == 0 else math.inf)
    return lhs >= rhs + thres


def speech_by_probability(scores: np.ndarray, d: _Derived) -> np.ndarray:
    """Boolean per frame: does the network alone call it speech?

    Vectorised; frames whose two sides are within ``_BOUNDARY_TOLERANCE`` of each
    other are re-decided with the scalar formula so the answer never depends on
    numpy's transcendental functions.
    """
    p = scores[:, d.ids[0]].astype(np.float64)
    for i in d.ids[1:]:
        p = p + scores[:, i].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        lhs = np.exp(np.log(np.maximum(1.0 - p, 0.0)))
        rhs = np.exp(np.log(p) * d.ratio) + d.speech_noise_thres
    decided = lhs >= rhs
    unsure = ~(np.abs(lhs - rhs) > _BOUNDARY_TOLERANCE)  # also catches NaN
    if unsure.any():
        for k in np.flatnonzero(unsure).tolist():
            decided[k] = _scalar_speech_test(float(p[k]), d.ratio, d.speech_noise_thres)
    return decided


class _FrameClassifier:
    """Level/SNR gates on top of the network's decision; owns the running noise level.

    The noise level is a running average of the decibels of frames the network
    calls silence, so it is inherently sequential; the loop is plain Python
    but only does arithmetic on floats.
    """

    def __init__(self, d: _Derived):
        self.d = d
        self.noise_db = -100.0

    def reset(self) -> None:
        self.noise_db = -100.0

    def classify(self, scores: np.ndarray, decibels: Sequence[float]) -> Tuple[List[bool], Optional[List[bool]]]:
        """Per frame: (is speech, is below ``decibel_thres``).

        Frames below the level threshold are silence and - a reference quirk
        kept on purpose - are fed to the state machine twice.  The second list
        is ``None`` when no frame is below it.
        """
        d = self.d
        by_prob = speech_by_probability(scores, d).tolist()
        n = len(by_prob)
        speech = [False] * n
        quiet: Optional[List[bool]] = None
        noise = self.noise_db
        thres_db, thres_snr, k = d.decibel_thres, d.snr_thres, d.noise_frames
        for i in range(n):
            db = decibels[i]
            if db < thres_db:
                if quiet is None:
                    quiet = [False] * n
                quiet[i] = True
                continue
            if by_prob[i]:
                speech[i] = db - noise >= thres_snr
            elif noise < -99.9:
                noise = db
            else:
                noise = (db + noise * (k - 1)) / k
        self.noise_db = noise
        if not d.speech_counts:
            speech = [False] * n
        return speech, quiet


# --------------------------------------------------------------------------
# the end-point state machine
# --------------------------------------------------------------------------

_IDLE, _IN_SPEECH, _DONE = 0, 1, 2
_SIL2SIL, _SIL2SPEECH, _SPEECH2SPEECH, _SPEECH2SIL = 0, 1, 2, 3


@dataclass
class _Segment:
    start_ms: int
    end_ms: int
    announced: bool = False


@dataclass(frozen=True)
class SegmentEvent:
    """One change reported by a :class:`VadStream`, in ms from the stream start.

    Mirrors FunASR's online VAD output: ``(beg, -1)`` a segment started and is
    still open, ``(-1, end)`` the segment announced earlier ended, ``(beg, end)``
    a whole segment started and ended within one ``accept`` call.
    """

    start_ms: int
    end_ms: int

    @property
    def starts(self) -> bool:
        return self.start_ms >= 0

    @property
    def ends(self) -> bool:
        return self.end_ms >= 0


def events_to_segments(events: Sequence[SegmentEvent]) -> List[Tuple[int, int]]:
    """Join a stream's events into ``(start, end)`` pairs; an unclosed start gets ``end=-1``."""
    out: List[Tuple[int, int]] = []
    open_start: Optional[int] = None
    for ev in events:
        if ev.starts and ev.ends:
            out.append((ev.start_ms, ev.end_ms))
        elif ev.starts:
            open_start = ev.start_ms
        elif ev.ends and open_start is not None:
            out.append((open_start, ev.end_ms))
            open_start = None
    if open_start is not None:
        out.append((open_start, -1))
    return out


class _EndPointer:
    """FunASR's E2E VAD decision logic, fed one block of frame decisions at a time.

    State kept: the vote window, the detector state, a handful of frame indices,
    and the segment being built.  The reference additionally copies every frame
    into an output buffer; the only thing that buffer influences is the
    "earliest frame still available" index (``_avail`` here), which is tracked
    as a number.
    """

    def __init__(self, d: _Derived):
        self.d = d
        self.window = [0] * d.window_frames
        self.reset()

    def reset(self) -> None:
        """Forget everything (the reference's reset after the final block)."""
        self._avail = 0  # first frame not yet consumed (reference: data_buf_start_frame)
        self._ends = 0  # end points found, fake ones included
        self.finished: List[_Segment] = []  # closed since the caller last took them
        self.open: Optional[_Segment] = None
        self._next_frame = 0
        self._reset_detection()

    def _reset_detection(self) -> None:
        """Back to "no start yet" after an end point (multi-utterance mode)."""
        self._state = _IDLE
        self._sil_run = 0
        self._last_speech = 0
        self._last_sil = -1
        self._start = -1
        self._end = -1
        for i in range(len(self.window)):
            self.window[i] = 0
        self._wpos = 0
        self._wsum = 0
        self._w_speech = False

    @property
    def frames_seen(self) -> int:
        return self._next_frame

    # -- consuming frames -------------------------------------------------
    def _take(self, first: int, last: int) -> None:
        """Frames ``first..last`` (inclusive) go into the open segment."""
        if first > last:
            return
        self._last_speech = last
        self._avail = max(self._avail, first) + (last - first + 1)
        if self.open is not None:
            self.open.end_ms = (last + 1) * self.d.frame_ms

    def _voice_start(self, frame: int, fake: bool) -> None:
        if self._start == -1:
            self._start = frame
        if not fake and self._state == _IDLE:
            ms = self.d.frame_ms
            self.open = _Segment(self._start * ms, (self._start + 1) * ms)
            self._avail = max(self._avail, self._start) + 1

    def _voice_end(self, frame: int, fake: bool) -> None:
        self._take(self._last_speech + 1, frame - 1)
        if self._end == -1:
            self._end = frame
        if not fake:
            self._avail = max(self._avail, self._end) + 1
            if self.open is not None:
                self.open.end_ms = (self._end + 1) * self.d.frame_ms
                self.finished.append(self.open)
                self.open = None
        self._ends += 1

    def _silence(self, frame: int) -> None:
        self._last_sil = frame
        if self._state == _IDLE and frame > self._avail:
            self._avail = frame

    def _continue_or_close(self, t: int, last: bool) -> None:
        """Shared tail of the speech-state branches: cut if too long, else extend, else close."""
        if t - self._start + 1 > self.d.max_segment_frames:
            self._voice_end(t, False)
            self._state = _DONE
        elif not last:
            self._take(t, t)
        else:
            self._voice_end(t, False)
            self._state = _DONE

    def _step(self, speech: bool, t: int, last: bool) -> None:
        d = self.d
        # the sliding vote
        v = 1 if speech else 0
        w = self.window
        pos = self._wpos
        self._wsum += v - w[pos]
        w[pos] = v
        self._wpos = pos + 1 if pos + 1 < d.window_frames else 0
        if not self._w_speech:
            if self._wsum >= d.to_speech_frames:
                self._w_speech = True
                change = _SIL2SPEECH
            else:
                change = _SIL2SIL
        elif self._wsum <= d.to_sil_frames:
            self._w_speech = False
            change = _SPEECH2SIL
        else:
            change = _SPEECH2SPEECH

        state = self._state
        if change == _SIL2SIL:
            self._sil_run += 1
            if state == _IDLE:
                if (d.single_utterance and self._sil_run * d.frame_ms > d.max_start_silence_ms) or (
                    last and self._ends == 0
                ):
                    if self._last_sil + 1 < t:
                        self._silence(t - 1)
                    self._voice_start(0, True)
                    self._voice_end(0, True)
                    self._state = _DONE
                elif t >= d.start_latency:
                    self._silence(t - d.start_latency)
            elif state == _IN_SPEECH:
                if self._sil_run * d.frame_ms >= d.end_silence_ms:
                    self._voice_end(t - d.end_backoff, False)
                    self._state = _DONE
                elif t - self._start + 1 > d.max_segment_frames:
                    self._voice_end(t, False)
                    self._state = _DONE
                elif d.extend and not last:
                    if self._sil_run <= d.lookahead_frames:
                        self._take(t, t)
                elif last:
                    self._voice_end(t, False)
                    self._state = _DONE
        elif change == _SIL2SPEECH:
            self._sil_run = 0
            if state == _IDLE:
                start = max(self._avail, t - d.start_latency)
                self._voice_start(start, False)
                self._state = _IN_SPEECH
                self._take(start + 1, t)
            elif state == _IN_SPEECH:
                self._take(self._last_speech + 1, t - 1)
                self._continue_or_close(t, last)
        else:  # speech → speech, speech → silence
            self._sil_run = 0
            if state == _IN_SPEECH:
                self._continue_or_close(t, last)

        if self._state == _DONE and not d.single_utterance:
            self._reset_detection()

    def feed(self, speech: Sequence[bool], quiet: Optional[Sequence[bool]], final: bool) -> None:
        """Run the next ``len(speech)`` frames; ``final`` marks the stream's last frame."""
        d = self.d
        t = self._next_frame
        n = len(speech)
        self._next_frame += n
        if self._state == _DONE:  # single-utterance mode, already finished
            return
        step = self._step
        last_index = n - 1 if final else -1
        if quiet is None:
            for k in range(n):
                step(speech[k], t + k, k == last_index)
                if self._state == _DONE and d.single_utterance:
                    return
        else:
            for k in range(n):
                if quiet[k]:
                    step(False, t + k, False)
                    if self._state == _DONE and d.single_utterance:
                        return
                step(speech[k], t + k, k == last_index)
                if self._state == _DONE and d.single_utterance:
                    return

    def take_events(self) -> List[SegmentEvent]:
        """Online reporting: what changed since the previous call."""
        events = [SegmentEvent(-1 if s.announced else s.start_ms, s.end_ms) for s in self.finished]
        self.finished.clear()
        if self.open is not None and not self.open.announced:
            self.open.announced = True
            events.append(SegmentEvent(self.open.start_ms, -1))
        return events


# --------------------------------------------------------------------------
# streaming features
# --------------------------------------------------------------------------


def lfr_rows(fbank: np.ndarray, fbank_first: int, first: int, stop: int, total: int, m: int, n: int) -> np.ndarray:
    """LFR frames ``first..stop-1`` of a ``total``-frame utterance, from the fbank rows held.

    ``fbank[k]`` is fbank frame ``fbank_first + k``.  LFR frame ``j`` stacks fbank
    frames ``j*n - (m-1)//2 ... j*n - (m-1)//2 + m - 1``, clamped to the first
    and last frame - the same edge padding as :func:`models.frontend.apply_lfr`.
    """
    j = np.arange(first, stop)
    idx = j[:, None] * n - (m - 1) // 2 + np.arange(m)[None, :]
    np.clip(idx, 0, total - 1, out=idx)
    idx -= fbank_first
    return fbank[idx].reshape(stop - first, m * fbank.shape[1])


class _StreamingFeatures:
    """fbank → LFR → CMVN on audio that arrives in pieces, plus per-frame decibels.

    Frames are emitted exactly as FunASR's online frontend emits them: an LFR
    frame as soon as its right context exists, the last ones (padded with the
    final fbank frame) only at ``final``.  Whatever the chunking, the frames are
    the ones the whole-file frontend computes.  Only the samples of the next
    incomplete frame, the LFR context and the decibels of frames not yet emitted
    are kept.
    """

    def __init__(self, fcfg: FrontendConfig, cmvn: Optional[np.ndarray], vcfg: VadConfig):
        self.fcfg = fcfg
        self.cmvn = cmvn
        self.shift = int(fcfg.frame_shift * fcfg.fs / 1000)
        self.length = int(fcfg.frame_length * fcfg.fs / 1000)
        self.db_shift = vcfg.frame_shift_samples
        self.db_length = vcfg.frame_length_samples
        if (self.db_shift, self.db_length) != (self.shift, self.length):
            raise ValueError("VAD model_conf frame geometry differs from frontend_conf")
        self.m, self.n = int(fcfg.lfr_m), int(fcfg.lfr_n)
        self.left = (self.m - 1) // 2
        self._options = fbank_options(fcfg)
        self.reset()

    def reset(self) -> None:
        # One extractor per stream: building one computes the mel bank (~0.1 ms),
        # too much to repeat every 50 ms.  Frames read are popped from it at once.
        self._extractor = knf.OnlineFbank(self._options)
        self._tail = np.zeros(0, dtype=np.float32)  # samples from fbank frame self._frames on (decibels)
        self._frames = 0  # fbank frames computed
        self._ctx = np.zeros((0, self.fcfg.n_mels), dtype=np.float32)
        self._ctx_first = 0  # fbank index of self._ctx[0]
        self._emitted = 0  # LFR frames emitted
        self._db: List[float] = []
        self._db_first = 0  # frame index of self._db[0]

    def retained(self) -> int:
        """Numbers held between calls (samples + feature values + decibels): bounded."""
        return int(self._tail.size + self._ctx.size + len(self._db))

    def push(self, samples: np.ndarray, final: bool) -> Tuple[np.ndarray, List[float], int]:
        """Add samples; return (new LFR+CMVN frames, their decibels, index of the first)."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        buf = np.concatenate([self._tail, x])
        n_new = (buf.size - self.length) // self.shift + 1 if buf.size >= self.length else 0
        if x.size:
            # same int16 scaling as models.frontend.compute_fbank
            self._extractor.accept_waveform(float(self.fcfg.fs), x * np.float32(INT16_SCALE))
        if n_new:
            ready = self._extractor.num_frames_ready
            if ready != self._frames + n_new:  # pragma: no cover - kaldi framing is fixed
                raise RuntimeError(f"fbank has {ready} frames, expected {self._frames + n_new}")
            get = self._extractor.get_frame
            fb = np.array([get(i) for i in range(self._frames, ready)], dtype=np.float32)
            self._extractor.pop(n_new)
            self._ctx = np.concatenate([self._ctx, fb]) if self._ctx.size else fb
            self._db.extend(frame_decibels(buf, n_new, self.db_length, self.db_shift))
            self._frames = ready
        self._tail = buf[n_new * self.shift :].copy()

        total = self._frames
        stop = -(-total // self.n) if final else self._complete_lfr_frames(total)
        first = self._emitted
        if stop <= first:
            return np.zeros((0, self.m * self.fcfg.n_mels), dtype=np.float32), [], first
        rows = lfr_rows(self._ctx, self._ctx_first, first, stop, total, self.m, self.n)
        feats = apply_cmvn(rows, self.cmvn) if self.cmvn is not None else rows
        dbs = self._db[first - self._db_first : stop - self._db_first]
        self._emitted = stop
        # drop what no later frame needs
        keep_from = max(0, stop * self.n - self.left)
        if keep_from > self._ctx_first:
            self._ctx = self._ctx[keep_from - self._ctx_first :].copy()
            self._ctx_first = keep_from
        del self._db[: stop - self._db_first]
        self._db_first = stop
        return feats, dbs, first

    def emitted_after(self, sizes: Sequence[int], final: bool) -> List[int]:
        """LFR frames emitted in all, had ``sizes[0]`` samples been pushed, then ``sizes[1]`` more, ...
        (``final`` on the last push); the state is not touched.  What :meth:`push` of the same
        samples in one call emits is the last number: frames do not depend on the pieces."""
        out = []
        held, frames, emitted = self._tail.size, self._frames, self._emitted
        for k, size in enumerate(sizes):
            held += int(size)
            n_new = (held - self.length) // self.shift + 1 if held >= self.length else 0
            frames += n_new
            held -= n_new * self.shift
            last = final and k == len(sizes) - 1
            emitted = max(emitted, -(-frames // self.n) if last else self._complete_lfr_frames(frames))
            out.append(emitted)
        return out

    def _complete_lfr_frames(self, total: int) -> int:
        """How many LFR frames have their full right context among ``total`` fbank frames."""
        # frame j needs fbank frame j*n - left + m - 1 <= total - 1
        top = total - self.m + self.left
        return top // self.n + 1 if top >= 0 else 0


# --------------------------------------------------------------------------
# the model and the stream
# --------------------------------------------------------------------------


class FsmnVadModel:
    """One FSMN VAD network and its model directory's settings; safe to share between streams.

    Per-stream state (caches, frontend remainder, decisions) lives in
    :class:`VadStream`; this object only reads its session and settings, and
    onnxruntime sessions may be run from several threads at once.
    """

    def __init__(
        self,
        model_dir: Union[str, Path],
        quantized: bool = False,
        options: RuntimeOptions = RuntimeOptions(),
        config: Optional[VadConfig] = None,
    ):
        self.model_dir = Path(model_dir)
        conf = load_config(self.model_dir)
        self.frontend = Frontend.from_model_dir(self.model_dir, conf)
        self.config: VadConfig = config if config is not None else VadConfig.from_config(conf.get("model_conf"))
        self.model_path = pick_onnx_file(self.model_dir, quantized)
        self.session = create_session(self.model_path, options)
        #: Whether the scores of frames are the same however they are split between calls: true of a
        #: float model; a dynamically quantised one (``*_quant.onnx``) scales each call's activations.
        self.cut_invariant = not self.model_path.name.endswith("_quant.onnx")
        inputs = self.session.get_inputs()
        self._feat_name = inputs[0].name
        self._cache_names = [i.name for i in inputs[1:]]
        self._cache_shapes = [self._cache_shape(i.shape, conf.get("encoder_conf") or {}) for i in inputs[1:]]
        self._output_names = [o.name for o in self.session.get_outputs()]
        # fail at load time, not on the first stream, if the frame geometry is inconsistent
        _StreamingFeatures(self.frontend.cfg, self.frontend.cmvn, self.config)

    @staticmethod
    def _cache_shape(shape: Sequence[Any], encoder_conf: Mapping[str, Any]) -> Tuple[int, ...]:
        """The cache input's static shape; symbolic dims fall back to ``encoder_conf``."""
        fallback = [1, int(encoder_conf.get("proj_dim", 128)), int(encoder_conf.get("lorder", 20)) - 1, 1]
        dims = []
        for k, dim in enumerate(shape):
            if isinstance(dim, int) and dim > 0:
                dims.append(dim)
            elif k < len(fallback):
                dims.append(fallback[k])
            else:
                dims.append(1)
        return tuple(dims)

    @property
    def sample_rate(self) -> int:
        return self.frontend.sample_rate

    def initial_caches(self) -> List[np.ndarray]:
        """Zeroed FSMN memories, shaped as the model declares them."""
        return [np.zeros(s, dtype=np.float32) for s in self._cache_shapes]

    def infer(self, feats: np.ndarray, caches: Sequence[np.ndarray]) -> Tuple[np.ndarray, List[np.ndarray]]:
        """Run the network on ``feats`` ([T, D] or [1, T, D]); return (probabilities [T, C], new caches)."""
        x = np.asarray(feats, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        feed = {self._feat_name: x}
        feed.update(zip(self._cache_names, caches))
        out = self.session.run(self._output_names, feed)
        return out[0][0], list(out[1:])

    def new_stream(self, config: Optional[VadConfig] = None) -> "VadStream":
        """A fresh stream (optionally with its own :class:`VadConfig`)."""
        return VadStream(self, config)

    def segments(self, waveform: np.ndarray, config: Optional[VadConfig] = None,
                 fbank: Optional[np.ndarray] = None) -> List[Tuple[int, int]]:
        """Speech segments ``(start_ms, end_ms)`` of a whole 16 kHz mono float waveform.

        Equal to FunASR's offline ``Fsmn_vad``.  Features and scores are computed
        in blocks of at most ~6000 frames (the reference's blocks), so memory
        stays proportional to one block plus the audio itself.  ``fbank``: the
        waveform's fbank frames when the caller already has them (the offline
        pipeline computes them once for the VAD and the recogniser).
        """
        with stage("vad"):
            return self._segments(waveform, config, fbank)

    def _segments(self, waveform: np.ndarray, config: Optional[VadConfig],
                  fbank: Optional[np.ndarray]) -> List[Tuple[int, int]]:
        cfg = config if config is not None else self.config
        d = _Derived.of(cfg)
        x = np.asarray(waveform, dtype=np.float32).reshape(-1)
        shift, length = cfg.frame_shift_samples, cfg.frame_length_samples
        total = (x.size - length) // shift + 1 if x.size >= length else 0
        if total == 0:
            return []
        fcfg, cmvn = self.frontend.cfg, self.frontend.cmvn
        if fbank is None:
            fbank = compute_fbank(x, fcfg)
        if fbank.shape[0] != total:
            raise RuntimeError(f"fbank gave {fbank.shape[0]} frames, expected {total}")
        m, n = int(fcfg.lfr_m), int(fcfg.lfr_n)
        n_lfr = -(-total // n)
        classifier = _FrameClassifier(d)
        machine = _EndPointer(d)
        caches = self.initial_caches()
        result: List[Tuple[int, int]] = []
        for lo, hi in offline_blocks(n_lfr):
            feats = lfr_rows(fbank, 0, lo, hi, total, m, n)
            if cmvn is not None:
                feats = apply_cmvn(feats, cmvn)
            scores, caches = self.infer(feats, caches)
            dbs = frame_decibels(x[lo * shift :], hi - lo, length, shift)
            speech, quiet = classifier.classify(scores, dbs)
            machine.feed(speech, quiet, final=hi == n_lfr)
            result.extend((s.start_ms, s.end_ms) for s in machine.finished)
            machine.finished.clear()
        if machine.open is not None:
            result.append((machine.open.start_ms, machine.open.end_ms))
        return result


def offline_blocks(total: int, block: int = OFFLINE_BLOCK_FRAMES) -> List[Tuple[int, int]]:
    """The reference's whole-file blocks: ``block`` frames each, the last one up to ``block + 1``."""
    out = []
    lo = 0
    while lo < total:
        if lo + block >= total - 1:
            out.append((lo, total))
            break
        out.append((lo, lo + block))
        lo += block
    return out


class VadStream:
    """Voice activity detection on one live audio stream.

    ``accept`` takes the next samples (any length, 16 kHz mono float in
    [-1, 1]) and returns the :class:`SegmentEvent` list FunASR's online VAD
    returns for the same call; times are ms from the stream start (or from the
    last ``reset``/final call).  With ``is_final`` the stream flushes its last
    frames, closes an open segment where FunASR does, and starts afresh.

    Note (as in FunASR): a segment whose start is only found on the very last
    frame is announced ``(beg, -1)`` and never closed; the caller should treat
    the end of the audio as its end.
    """

    def __init__(self, model: FsmnVadModel, config: Optional[VadConfig] = None):
        self.model = model
        self.config = config if config is not None else model.config
        self._d = _Derived.of(self.config)
        self._features = _StreamingFeatures(model.frontend.cfg, model.frontend.cmvn, self.config)
        self._classifier = _FrameClassifier(self._d)
        self._machine = _EndPointer(self._d)
        self._caches = model.initial_caches()

    def reset(self) -> None:
        """Forget all audio: the next sample is time 0 again."""
        self._features.reset()
        self._classifier.reset()
        self._machine.reset()
        self._caches = self.model.initial_caches()

    @property
    def frames_decided(self) -> int:
        """Frames (10 ms each) the state machine has consumed since the last reset."""
        return self._machine.frames_seen

    def retained_size(self) -> int:
        """How many numbers the stream carries between calls (for memory checks); bounded."""
        machine = self._machine
        return (
            self._features.retained()
            + sum(c.size for c in self._caches)
            + len(machine.window)
            + len(machine.finished)
        )

    def accept_steps(self, waveform: np.ndarray, sizes: Sequence[int], is_final: bool = False) -> List[List[SegmentEvent]]:
        """:meth:`accept` of ``waveform`` cut into pieces of ``sizes`` samples (summing to its length),
        ``is_final`` on the last: the events of each piece, exactly as those calls return them.

        The features are computed once for the whole waveform (they do not depend on the cut).  The
        network runs once too when its scores do not depend on the cut either (a float model); a
        dynamically quantised one scales its activations by each call's input, so it is run on each
        piece's frames, as :meth:`accept` would.  The end-point state machine is stepped piece by
        piece, so each event comes with the piece it belongs to.
        """
        with stage("vad"):
            stops = self._features.emitted_after(sizes, is_final)
            first_frame = self._features._emitted
            feats, dbs, _first = self._features.push(waveform, is_final)
            if first_frame + feats.shape[0] != (stops[-1] if stops else first_frame):  # pragma: no cover
                raise RuntimeError("VAD frame count differs from the pieces' count")
            bounds = [0] + [stop - first_frame for stop in stops]
            if self.model.cut_invariant:
                speech, quiet = self._score(feats, dbs)
            out: List[List[SegmentEvent]] = []
            for k in range(len(stops)):
                lo, hi = bounds[k], bounds[k + 1]
                if hi > lo:  # a piece that completes no frame does not step the machine
                    if self.model.cut_invariant:
                        piece_speech = speech[lo:hi]
                        piece_quiet = None if quiet is None else quiet[lo:hi]
                    else:
                        piece_speech, piece_quiet = self._score(feats[lo:hi], dbs[lo:hi])
                    self._machine.feed(piece_speech, piece_quiet, final=is_final and k == len(stops) - 1)
                out.append(self._machine.take_events())
            if is_final:
                self.reset()
            return out

    def _score(self, feats: np.ndarray, dbs: Sequence[float]) -> Tuple[List[bool], Optional[List[bool]]]:
        """The network and the level gates on consecutive frames: (is speech, is quiet) per frame."""
        speech: List[bool] = []
        quiet: Optional[List[bool]] = None
        n = feats.shape[0]
        for lo in range(0, n, OFFLINE_BLOCK_FRAMES):
            hi = min(n, lo + OFFLINE_BLOCK_FRAMES)
            scores, self._caches = self.model.infer(feats[lo:hi], self._caches)
            block_speech, block_quiet = self._classifier.classify(scores, dbs[lo:hi])
            if block_quiet is not None and quiet is None:
                quiet = [False] * len(speech)
            speech += block_speech
            if quiet is not None:
                quiet += block_quiet if block_quiet is not None else [False] * len(block_speech)
        return speech, quiet

    def accept(self, waveform: np.ndarray, is_final: bool = False) -> List[SegmentEvent]:
        """Feed the next samples; return the segment events they produced."""
        with stage("vad"):
            feats, dbs, _first = self._features.push(waveform, is_final)
            n = feats.shape[0]
            # very long chunks are scored in bounded blocks (the network's result does not depend on it)
            for lo in range(0, n, OFFLINE_BLOCK_FRAMES):
                hi = min(n, lo + OFFLINE_BLOCK_FRAMES)
                scores, self._caches = self.model.infer(feats[lo:hi], self._caches)
                speech, quiet = self._classifier.classify(scores, dbs[lo:hi])
                self._machine.feed(speech, quiet, final=is_final and hi == n)
            events = self._machine.take_events()
            if is_final:
                self.reset()
            return events
