"""Live recognition of one audio stream: the streaming VAD drives an online and an offline pass.

This is the audio side of FunASR's 2pass profile (its ``2pass``, ``online``
and ``offline`` modes; the protocol side is ``server/streaming_session.py``).  Samples arrive in pieces
of any size; the VAD looks at them in 50 ms steps, as FunASR's runtime does,
and its segment events decide everything else:

* while a speech segment is open, its samples (from the segment's start,
  which the VAD reports a little after the fact) go to the online Paraformer,
  whose new text comes out as :class:`PartialText`; silence is never fed to it;
* when the VAD closes a segment, the offline Paraformer decodes the whole
  segment again (:meth:`OfflinePipeline.recognize_segment`) and the stream's
  :class:`SegmentFinisher` punctuates it (the realtime model with the
  stream's carried sentence, or the offline one), applies ITN and realigns
  the times: a :class:`SegmentText`, times absolute within the stream;
* the final call flushes the VAD, closes a still-open segment at the end of
  the audio, marks the last segment (which gets a closing ``。``), and leaves
  the stream ready for a new utterance.

Which passes run is per stream: ``online`` only (no re-decoding), ``offline``
only (the VAD segments are decoded but nothing is shown while speaking), or
both (``2pass``).  In 2pass the online model's last chunk of a segment is not
decoded: its text would be replaced by the offline result in the same
instant (FunASR's server computes it and throws it away).

Memory is bounded: only the open segment (at most the VAD's longest segment,
60 s by default) and the last two seconds are kept.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union, cast

import numpy as np

from .model_dir import ModelDirError
from .offline_pipeline import OfflinePipeline, Transcript
from .paraformer import NO_OPTIONS, AsrResult, DecodeOptions
from .paraformer_online import OnlineParaformer, OnlineStream
from .punctuation import PunctuationCache, RealtimePunctuator
from .sentences import CLOSING_MARKS
from .stage_clock import stage
from .vad import FsmnVadModel, VadStream

log = logging.getLogger(__name__)

#: The VAD step: FunASR's 2pass server feeds its VAD 800 samples (50 ms at 16 kHz) at a time.
VAD_STEP_MS = 50
#: Audio kept before the present while no segment is open: the VAD reports a
#: segment's start a few hundred ms after it (detection window plus look-back).
KEEP_BEFORE_MS = 2000
#: Appended to the text of an utterance's last segment when it lacks a closing mark.
FINAL_MARK = "。"


@dataclass
class PartialText:
    """New text from the online model (never empty); clients append it to what they show."""

    text: str
    segment: int  # ordinal of the speech segment within the stream, from 0
    heard_ms: int  # how much of the stream (ms from its start) the online model had been given
    ends_segment: bool = False  # the segment's last online text (online-only streams)


@dataclass
class SegmentText:
    """One VAD segment decoded by the offline model; it replaces the segment's partial text."""

    segment: int
    start_ms: int
    end_ms: int
    transcript: Transcript
    last: bool = False  # the stream's last segment before the end of the utterance


StreamEvent = Union[PartialText, SegmentText]


class _RecentAudio:
    """The stream's recent samples, addressed by absolute sample index."""

    def __init__(self) -> None:
        self._pieces: List[np.ndarray] = []
        self.start = 0  # absolute index of the first sample held
        self.end = 0  # absolute index one past the last sample held

    def append(self, samples: np.ndarray) -> None:
        if samples.size:
            self._pieces.append(samples)
            self.end += samples.size

    def slice(self, lo: int, hi: int) -> np.ndarray:
        lo, hi = max(lo, self.start), min(hi, self.end)
        if hi <= lo:
            return np.zeros(0, dtype=np.float32)
        out, pos = [], self.start
        for piece in self._pieces:
            a, b = max(lo, pos), min(hi, pos + piece.size)
            if a < b:
                out.append(piece[a - pos : b - pos])
            pos += piece.size
            if pos >= hi:
                break
        return out[0] if len(out) == 1 else np.concatenate(out)

    def drop_before(self, index: int) -> None:
        while self._pieces and self.start + self._pieces[0].size <= index:
            self.start += self._pieces.pop(0).size
        if self._pieces and self.start < index:
            self._pieces[0] = self._pieces[0][index - self.start :]
            self.start = index

    @property
    def size(self) -> int:
        return self.end - self.start


class SegmentFinisher:
    """One stream's text finisher: a decoded segment → its punctuated, normalised, timed text.

    It owns the stream's punctuation state: with the realtime CT-Transformer
    (FunASR's 2pass ``vad_realtime`` model) the sentence carried from one
    segment to the next, and the closing mark of the utterance's last segment;
    without it the pipeline's offline punctuator, whose text always ends a
    sentence.  Text the model punctuated itself (SenseVoiceSmall with
    ``svs_itn``) skips punctuation and ITN and leaves the carried sentence alone.
    """

    def __init__(self, pipeline: OfflinePipeline, realtime: Optional[RealtimePunctuator] = None, use_itn: bool = True):
        self.pipeline = pipeline
        self.realtime = realtime
        self.use_itn = use_itn
        self.cache = PunctuationCache()

    def reset(self) -> None:
        """A new utterance: no sentence carried over."""
        self.cache = PunctuationCache()

    def retained_size(self) -> int:
        return len(self.cache.words)

    def finish(self, result: AsrResult, start_ms: int, end_ms: int, last: bool) -> Transcript:
        """``result``'s times are absolute; ``last``: the utterance's last segment."""
        if self.realtime is None:
            transcript = self.pipeline.finish([result], use_itn=self.use_itn)
        else:
            punctuate = self._punctuate_last if last else self._punctuate
            transcript = self.pipeline.finish([result], use_itn=self.use_itn, punctuate=punctuate)
        transcript.segments = [(start_ms, end_ms)]
        return transcript

    def _punctuate(self, text: str) -> str:
        return cast(RealtimePunctuator, self.realtime).punctuate(text, self.cache).text

    def _punctuate_last(self, text: str) -> str:
        return _close_sentence(self._punctuate(text))


class LiveRecognizer:
    """The shared, stateless models of the 2pass profile; :meth:`new_stream` gives per-connection state.

    It serves all three of the profile's modes: a stream may run the online
    pass, the offline pass, or both.

    ``pipeline`` is the offline recogniser (its ITN, and its punctuator when no
    realtime one is given); ``vad`` segments the stream; ``online`` is needed
    only for streams with an online pass.  The stream runs at the VAD's rate
    (the online model must share it); an offline model at another rate (the
    8 kHz telephone Paraformer) gets each segment resampled to its own.
    """

    def __init__(
        self,
        pipeline: OfflinePipeline,
        vad: FsmnVadModel,
        online: Optional[OnlineParaformer] = None,
        realtime_punctuator: Optional[RealtimePunctuator] = None,
    ):
        if online is not None and online.sample_rate != vad.sample_rate:
            raise ModelDirError(
                f"the VAD and the online model must share one sample rate, got {vad.sample_rate} "
                f"and {online.sample_rate} Hz"
            )
        self.pipeline = pipeline
        self.vad = vad
        self.online = online
        self.realtime_punctuator = realtime_punctuator

    @property
    def sample_rate(self) -> int:
        """The rate streams take their audio at (the VAD's)."""
        return self.vad.sample_rate

    def new_stream(
        self,
        online: bool,
        offline: bool,
        chunk_size: Sequence[int] = (5, 10, 5),
        use_itn: bool = True,
        options: DecodeOptions = NO_OPTIONS,
    ) -> "LiveStream":
        return LiveStream(self, self.new_finisher(use_itn), online, offline, chunk_size, options)

    def new_finisher(self, use_itn: bool = True) -> SegmentFinisher:
        """A stream's text finisher (its own punctuation state over the shared models)."""
        return SegmentFinisher(self.pipeline, self.realtime_punctuator, use_itn)


class LiveStream:
    """One connection's utterance in progress; not thread-safe (calls must not overlap).

    The recogniser builds it (:meth:`LiveRecognizer.new_stream`) with the text
    finisher its offline passes end with.
    """

    def __init__(
        self,
        recognizer: LiveRecognizer,
        finisher: SegmentFinisher,
        online: bool,
        offline: bool,
        chunk_size: Sequence[int] = (5, 10, 5),
        options: DecodeOptions = NO_OPTIONS,
    ):
        """``options``: hotwords and SenseVoice settings for every offline pass of the stream."""
        if not (online or offline):
            raise ValueError("a stream needs the online pass, the offline pass, or both")
        if online and recognizer.online is None:
            raise ValueError("this recognizer has no online model")
        self.recognizer = recognizer
        self.run_online = online
        self.run_offline = offline
        self.options = options
        self.finisher = finisher
        self.samples_per_ms = recognizer.sample_rate // 1000
        self._vad_step = VAD_STEP_MS * self.samples_per_ms
        self._vad: VadStream = recognizer.vad.new_stream()
        self._online: Optional[OnlineStream] = cast(OnlineParaformer, recognizer.online).new_stream(chunk_size) if online else None
        self._reset()

    def _reset(self) -> None:
        self._audio = _RecentAudio()
        self._vad.reset()
        if self._online is not None:
            self._online.reset()
        self.finisher.reset()
        self._segments = 0  # segments closed so far
        self._open_ms: Optional[int] = None  # start of the open segment
        self._online_pos = 0  # next sample (absolute) the online model has not seen
        #: how far the online model has been offered audio (the VAD's position while a segment is open);
        #: samples between _online_pos and here wait until they complete a chunk or the segment closes
        self._online_due = 0
        self._vad_pos = 0  # next sample (absolute) the VAD has not seen
        self._held: Optional[Tuple[int, int, int]] = None  # in the final call: a closed segment not yet decoded

    # ------------------------------------------------------------------ public

    @property
    def samples_seen(self) -> int:
        """Samples accepted since the utterance began."""
        return self._audio.end

    @property
    def segment_open(self) -> bool:
        return self._open_ms is not None

    def retained_size(self) -> int:
        """Numbers held between calls (for memory checks); bounded by the VAD's longest segment."""
        online = self._online.retained_size() if self._online is not None else 0
        return self._audio.size + self._vad.retained_size() + online + self.finisher.retained_size()

    def accept(self, waveform: np.ndarray, is_final: bool = False) -> List[StreamEvent]:
        """Feed the next samples (float32 mono at the models' rate); return what they produced, in order.

        After a call with ``is_final`` the stream starts a new utterance (times from 0).
        """
        with stage("live_stream"):
            return self._accept(waveform, is_final)

    def _accept(self, waveform: np.ndarray, is_final: bool) -> List[StreamEvent]:
        samples = np.ascontiguousarray(waveform, dtype=np.float32).reshape(-1)
        events: List[StreamEvent] = []
        self._audio.append(samples)
        # The VAD steps are whole 50 ms from the stream's start, whatever the pieces were,
        # so the results do not depend on how the client cut its audio.
        end, step = self._audio.end, self._vad_step
        stops = list(range(self._vad_pos + step, end + 1, step))
        if is_final and (not stops or stops[-1] != end):
            stops.append(end)
        # One VAD call for the whole piece, its events told apart by step (VadStream.accept_steps).
        sizes = np.diff([self._vad_pos, *stops]).tolist()
        by_step = self._vad.accept_steps(self._audio.slice(self._vad_pos, stops[-1]), sizes, is_final) if stops else []
        try:
            for hi, step_events in zip(stops, by_step):
                for ev in step_events:
                    if ev.starts:
                        self._open_segment(ev.start_ms)
                    if ev.ends:
                        self._close_segment(ev.end_ms, is_final, events)
                self._vad_pos = hi
                self._feed_online(hi, events)
            if is_final:
                if self._open_ms is not None:  # the VAD leaves a segment begun on the last frame open
                    self._close_segment(end // self.samples_per_ms, True, events)
                if self._held is not None:
                    events.append(self._decode(*self._held, last=True))
        finally:
            if is_final:
                self._reset()
            else:
                self._forget_old_audio()
        return events

    # ------------------------------------------------------------------ segments

    def _open_segment(self, start_ms: int) -> None:
        self._open_ms = max(int(start_ms), self._audio.start // self.samples_per_ms)
        self._online_pos = self._online_due = self._open_ms * self.samples_per_ms
        if self._online is not None:
            self._online.reset()

    def _feed_online(self, upto: int, events: List[StreamEvent]) -> None:
        """Give the online model the open segment's samples up to ``upto`` (what the VAD has seen)."""
        if self._online is None or self._open_ms is None or upto <= self._online_pos:
            return
        self._online_due = max(self._online_due, upto)
        if not self._online.completes_chunk(upto - self._online_pos):
            return  # no text before a chunk is whole: the samples wait in the stream's audio, uncopied
        piece = self._audio.slice(self._online_pos, upto)
        self._online_pos = upto
        text = self._online.accept(piece).text
        if text:
            events.append(PartialText(text, self._segments, upto // self.samples_per_ms))

    def _close_segment(self, end_ms: int, final_call: bool, events: List[StreamEvent]) -> None:
        if self._open_ms is None:
            # FunASR's VAD does not do this; if it ever does, the segment starts at the oldest audio held.
            log.warning("VAD closed a segment it never opened; taking the oldest audio held as its start")
            self._open_ms = self._audio.start // self.samples_per_ms
        start_ms, end_ms = self._open_ms, max(int(end_ms), self._open_ms)
        end = min(end_ms * self.samples_per_ms, self._audio.end)
        if self._online is not None:
            if self.run_offline:
                self._online.reset()  # its tail text would be replaced at once by the offline pass
            else:
                # The VAD reports a segment's end up to its end silence (800 ms) after it, and the
                # online model has had that audio already: its last text comes from all it was
                # given, so that is what it "heard" (the segment's end would go back in time).
                heard = max(self._online_due, end)
                text = self._online.accept(self._audio.slice(self._online_pos, heard), is_final=True).text
                if text:
                    events.append(PartialText(text, self._segments, heard // self.samples_per_ms, ends_segment=True))
        if self.run_offline:
            segment = (self._segments, start_ms, end_ms)
            if final_call:
                # Only the utterance's last segment gets the closing mark; hold each until the next one closes.
                if self._held is not None:
                    events.append(self._decode(*self._held, last=False))
                self._held = segment
            else:
                events.append(self._decode(*segment, last=False))
        self._segments += 1
        self._open_ms = None

    def _decode(self, index: int, start_ms: int, end_ms: int, last: bool) -> SegmentText:
        per_ms = self.samples_per_ms
        audio = self._audio.slice(start_ms * per_ms, end_ms * per_ms)
        result = self.recognizer.pipeline.recognize_segment(audio, self.recognizer.sample_rate, start_ms, self.options)
        return SegmentText(index, start_ms, end_ms, self.finisher.finish(result, start_ms, end_ms, last), last)

    def _forget_old_audio(self) -> None:
        keep_from = min(self._vad_pos, self._audio.end - KEEP_BEFORE_MS * self.samples_per_ms)
        if self._open_ms is not None:
            keep_from = min(keep_from, self._open_ms * self.samples_per_ms)
        self._audio.drop_before(keep_from)


def _close_sentence(text: str) -> str:
    """The utterance is over: end its text with a closing mark (FunASR appends ``。``)."""
    stripped = text.rstrip()
    if not stripped or stripped[-1] in CLOSING_MARKS:
        return text
    return stripped + FINAL_MARK


__all__ = [
    "FINAL_MARK",
    "LiveRecognizer",
    "LiveStream",
    "PartialText",
    "SegmentText",
    "SegmentFinisher",
    "StreamEvent",
    "VAD_STEP_MS",
]
