"""The offline recognition pipeline: VAD → Paraformer per segment → punctuation → ITN → times.

This is what the offline profile runs once per utterance and what 2pass runs
per VAD segment.  Every stage is optional except the recogniser, as in the
reference (a server may run without VAD, punctuation or ITN).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, cast

import numpy as np

from .audio import resample
from .frontend import compute_fbank, fbank_frame_count, same_fbank
from .paraformer import NO_OPTIONS, AsrResult, DecodeOptions, OfflineParaformer
from .punctuation import to_ascii_marks
from .sentences import SentencePiece, realign_spans, sentence_pieces, split_span_evenly, timed_units
from .stage_clock import stage
from .tokens import join_words

log = logging.getLogger(__name__)

Span = Tuple[int, int]

UNKNOWN_MARK = "<unk>"


@dataclass
class Transcript:
    """A finished utterance.  Times are ms from the start of the audio given."""

    text: str = ""
    timestamps: Optional[List[Span]] = None  # one per timed unit of ``text``; None without a timestamp model
    sentences: Optional[List[SentencePiece]] = None
    segments: List[Span] = field(default_factory=list)  # the VAD's speech segments
    raw_text: str = ""  # before punctuation and ITN
    #: SenseVoiceSmall's ``language``/``emotion``/``event``: for each, the tag that covers the
    #: most speech among the segments (see :func:`dominant_tags`); empty for Paraformers.
    tags: Dict[str, str] = field(default_factory=dict)
    #: Wall time the n-gram LM search took over all segments (0 without ``--lm-dir``).
    lm_seconds: float = 0.0


#: The tags a result message carries (``text_norm`` only echoes the request).
REPORTED_TAGS = ("language", "emotion", "event")


def dominant_tags(results: Sequence[AsrResult], durations: Sequence[int]) -> Dict[str, str]:
    """Per tag, the value said over the most milliseconds of speech (ties: the earliest said).

    An utterance of several VAD segments may get a different tag per segment
    (one laugh in a long speech); the message has room for one of each.
    """
    out: Dict[str, str] = {}
    for name in REPORTED_TAGS:
        weight: Dict[str, int] = defaultdict(int)
        order: List[str] = []
        for result, ms in zip(results, durations):
            value = result.tags.get(name)
            if value:
                if value not in weight:
                    order.append(value)
                weight[value] += max(int(ms), 1)
        if order:
            out[name] = max(order, key=lambda v: (weight[v], -order.index(v)))
    return out


def join_texts(texts: Sequence[str]) -> str:
    """Finished segment texts in a row: a space only where two Latin-script texts meet."""
    out = ""
    for text in texts:
        text = text.strip()
        if not text:
            continue
        if out and out[-1].isascii() and not out[-1].isspace() and text[0].isascii() and text[0].isalnum():
            out += " "
        out += text
    return out


def words_to_unit_spans(words: Sequence[str], spans: Sequence[Span]) -> List[Span]:
    """One span per timed unit of ``join_words(words)``.

    A word that the unit splitter cuts further (``12`` → ``1``, ``2``) shares
    its span evenly, so text and times always line up.
    """
    out: List[Span] = []
    for word, span in zip(words, spans):
        n = len(timed_units(word))
        if n:
            out.extend(split_span_evenly(span, n))
    return out


def split_by_length(lengths: Sequence[int]) -> Tuple[List[int], List[int]]:
    """Indices of ``lengths`` in two groups of about equal total (the longest placed first, each on
    the lighter side), each in its original order."""
    groups: Tuple[List[int], List[int]] = ([], [])
    totals = [0, 0]
    for i in sorted(range(len(lengths)), key=lambda k: -lengths[k]):
        side = 0 if totals[0] <= totals[1] else 1
        groups[side].append(i)
        totals[side] += lengths[i]
    return sorted(groups[0]), sorted(groups[1])


class OfflinePipeline:
    """Holds the shared, stateless models; :meth:`transcribe` is thread-safe."""

    def __init__(
        self,
        asr: OfflineParaformer,
        vad=None,
        punctuator=None,
        itn: Optional[Callable[[str], str]] = None,
        english: bool = False,
    ):
        """``asr`` is an :class:`OfflineParaformer` or anything with its interface
        (:class:`models.sensevoice.SenseVoiceSmall`).  ``english``: the recogniser writes
        English (an ``en-bpe`` vocabulary), so punctuation marks come out ASCII."""
        self.asr = asr
        self.vad = vad
        self.punctuator = punctuator
        self.itn = itn
        self.english = english

    @property
    def sample_rate(self) -> int:
        return self.asr.sample_rate

    @property
    def has_timestamps(self) -> bool:
        return self.asr.has_timestamps

    def speech_segments(self, waveform: np.ndarray, fbank: Optional[np.ndarray] = None) -> List[Span]:
        """VAD segments ``(start_ms, end_ms)``; ``fbank`` from :meth:`shared_fbank` saves recomputing it."""
        if waveform.size == 0:
            return []
        duration_ms = int(waveform.size * 1000 // self.sample_rate)
        if self.vad is None:
            return [(0, duration_ms)]
        if self.vad.sample_rate != self.sample_rate:
            # An 8 kHz recogniser with the 16 kHz VAD: the VAD hears its own rate; its
            # segments are in ms, which both rates share.
            waveform, fbank = resample(waveform, self.sample_rate, self.vad.sample_rate), None
        return [(int(s), int(e)) for s, e in self.vad.segments(waveform, fbank=fbank)]

    def shared_fbank(self, waveform: np.ndarray) -> Optional[np.ndarray]:
        """The waveform's fbank frames, when the VAD and the recogniser compute the same ones.

        FunASR's VAD and Paraformer both use 80-bin Hamming fbank at 25/10 ms;
        computing it once for the whole file and slicing it per segment gives
        the very frames a per-segment computation would (a segment starting on
        a frame boundary sees the same windows), and saves a third of the
        Python-side work of an offline request.  ``None`` when not shareable.
        """
        if self.vad is None or waveform.size == 0 or not same_fbank(self.vad.frontend.cfg, self.asr.frontend.cfg):
            return None
        with stage("offline_asr"):
            return compute_fbank(waveform, self.asr.frontend.cfg)

    def segment_features(self, waveform: np.ndarray, segments: Sequence[Span],
                         fbank: Optional[np.ndarray] = None) -> List[np.ndarray]:
        """The recogniser's input for each segment: sliced from ``fbank`` where exact, else computed."""
        cfg = self.asr.frontend.cfg
        per_ms = self.sample_rate / 1000.0
        out = []
        for s, e in segments:
            piece = waveform[int(s * per_ms) : int(e * per_ms)]
            if fbank is not None and s % cfg.frame_shift == 0:
                first = s // cfg.frame_shift
                count = fbank_frame_count(piece.size, cfg)
                if first + count <= fbank.shape[0]:
                    out.append(self.asr.frontend.from_fbank(fbank[first : first + count]))
                    continue
            out.append(self.asr.features(piece))
        return out

    def recognize_segments(self, waveform: np.ndarray, segments: Sequence[Span],
                           fbank: Optional[np.ndarray] = None,
                           options: DecodeOptions = NO_OPTIONS) -> List[AsrResult]:
        """Decode each segment; times are shifted to be absolute within ``waveform``."""
        with stage("offline_asr"):
            results = self._recognize_features(self.segment_features(waveform, segments, fbank), options)
            return [r.shifted(int(s)) for r, (s, _) in zip(results, segments)]

    def _recognize_features(self, feats: Sequence[np.ndarray], options: DecodeOptions) -> List[AsrResult]:
        """The recogniser on each segment's features; half of them on a spare thread when the server
        has one idle (``options.spare_thread``) and the segments decode independently."""
        spare = options.spare_thread
        if spare is None or len(feats) < 2 or not getattr(self.asr, "independent_segments", False):
            return self.asr.recognize_features(feats, options)
        mine, theirs = split_by_length([f.shape[0] for f in feats])

        def decode(indices: Sequence[int]) -> List[AsrResult]:
            with stage("offline_asr"):
                return self.asr.recognize_features([feats[i] for i in indices], options)

        future = spare(lambda: decode(theirs))
        if future is None:
            return self.asr.recognize_features(feats, options)
        try:
            own = decode(mine)
        except BaseException:
            future.cancel()
            raise
        # not started yet (the other thread was taken meanwhile): decode that half here after all
        other = decode(theirs) if future.cancel() else future.result()
        results: List[AsrResult] = [AsrResult()] * len(feats)
        for indices, part in ((mine, own), (theirs, other)):
            for i, result in zip(indices, part):
                results[i] = result
        return results

    def recognize_segment(self, audio: np.ndarray, sample_rate: int, start_ms: int = 0,
                          options: DecodeOptions = NO_OPTIONS) -> AsrResult:
        """Decode one segment's audio (mono float32 at ``sample_rate``, resampled to the recogniser's
        when it differs); times are shifted by ``start_ms``, the segment's place in its stream."""
        with stage("offline_asr"):
            if sample_rate != self.sample_rate:
                audio = resample(audio, sample_rate, self.sample_rate)
            return self.asr.recognize([audio], options)[0].shifted(start_ms)

    def is_english(self, results: Sequence[AsrResult]) -> bool:
        """Whether punctuation should be ASCII: an English model, or SenseVoice hearing English."""
        if self.english:
            return True
        languages = {r.tags.get("language") for r in results if r.words}
        return languages == {"en"}

    def finish(self, results: Sequence[AsrResult], use_itn: bool = True, punctuate: Optional[Callable[[str], str]] = None,
               durations: Sequence[int] = ()) -> Transcript:
        """Join segment results, punctuate, normalise and time the text.

        ``punctuate`` overrides the offline punctuator (a 2pass stream's
        :class:`models.live_stream.SegmentFinisher` passes the realtime model
        with its per-stream cache).  Results the model already
        punctuated (SenseVoiceSmall with ``svs_itn``) skip punctuation and ITN:
        its text is written the way the client asked for.  ``durations`` (ms per
        result) weigh the tags; equal weights without them.
        """
        with stage("text"):
            return self._finish(results, use_itn, punctuate, durations)

    def _finish(self, results: Sequence[AsrResult], use_itn: bool, punctuate: Optional[Callable[[str], str]],
                durations: Sequence[int]) -> Transcript:
        tags = dominant_tags(results, durations or [1] * len(results))
        lm_seconds = sum(r.lm_seconds for r in results)
        if results and all(r.punctuated for r in results):
            text = join_texts([r.text for r in results])
            return Transcript(text=text, raw_text=text, tags=tags,
                              timestamps=[] if self.has_timestamps else None,
                              sentences=[] if self.has_timestamps else None)
        words: List[str] = [w for r in results for w in r.words]
        raw = join_words(words)
        spans: Optional[List[Span]] = None
        if self.has_timestamps:
            spans = words_to_unit_spans(words, [s for r in results for s in (r.word_spans or [])])
        text = raw
        if text:
            with stage("punctuation"):
                if punctuate is not None:
                    text = punctuate(text)
                elif self.punctuator is not None:
                    text = self.punctuator.punctuate(text).text
            # The CT-Transformer's class 0 is "<unk>", which FunASR writes out verbatim;
            # trained models never predict it, untrained ones do.  It is no punctuation.
            text = text.replace(UNKNOWN_MARK, "")
            if text != raw and self.is_english(results):
                text = to_ascii_marks(text)
        if spans is not None and text != raw:
            spans = realign_spans(raw, text, spans) or spans
        if use_itn and self.itn is not None and text:
            with stage("itn"):
                normalised = self._normalise(text, results)
            if spans is not None and normalised != text:
                moved = realign_spans(text, normalised, spans)
                if moved is None:
                    log.debug("ITN timestamp realignment failed; keeping the pre-ITN times")
                else:
                    spans = moved
            text = normalised
        sentences = sentence_pieces(text, spans) if spans is not None else None
        return Transcript(text=text, timestamps=spans, sentences=sentences, raw_text=raw, tags=tags,
                          lm_seconds=lm_seconds)

    def _normalise(self, text: str, results: Sequence[AsrResult]) -> str:
        """ITN in the text's language: English text (the English model, SenseVoice hearing English)
        through the English grammar where the ITN has one, otherwise the Chinese grammar as always."""
        english = getattr(self.itn, "english", None)
        if english is not None and self.is_english(results):
            return english(text)
        return cast(Callable[[str], str], self.itn)(text)  # called only with an ITN

    def transcribe(self, waveform: np.ndarray, use_itn: bool = True, options: DecodeOptions = NO_OPTIONS) -> Transcript:
        """The whole offline pipeline on one utterance (mono float32 at :attr:`sample_rate`).

        ``options``: the connection's hotword embedding and the request's SenseVoice settings.
        """
        fbank = self.shared_fbank(waveform)
        segments = self.speech_segments(waveform, fbank)
        results = self.recognize_segments(waveform, segments, fbank, options) if segments else []
        transcript = self.finish(results, use_itn=use_itn, durations=[e - s for s, e in segments])
        transcript.segments = list(segments)
        return transcript
