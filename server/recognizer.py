"""The bridge between sessions and models: bytes + client settings in, a result out.

Sessions call these functions through the decoder pool; they are the only
place in ``server/`` that calls into ``models/``.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from funasr_wss.models.audio import (
    DEFAULT_MAX_DECODE_SECONDS,
    AudioDecodeCancelled,
    AudioDecodeError,
    AudioDecodeTimeout,
    AudioTooLongError,
    StreamResampler,
    decode_container,
    pcm16_to_float,
    resample,
)
from funasr_wss.models.live_stream import LiveRecognizer, PartialText, SegmentText, StreamEvent
from funasr_wss.models.offline_pipeline import REPORTED_TAGS, OfflinePipeline, Transcript
from funasr_wss.models.paraformer import DecodeOptions
from funasr_wss.models.sensevoice import SenseVoiceSmall
from funasr_wss.models.stage_clock import cpu_seconds, stage
from funasr_wss.models.wfst_decoder import WfstContext

__all__ = [
    "AudioDecodeCancelled",
    "AudioDecodeError",
    "AudioDecodeTimeout",
    "AudioTooLongError",
    "cpu_seconds",  # CPU by model stage, for /metrics
    "OfflinePipeline",  # the two recognisers, for the sessions' types
    "LiveRecognizer",
    "DecodeLimits",
    "HotwordEmbedding",
    "LiveUtterance",
    "OfflineOutcome",
    "PartialText",
    "SegmentText",
    "StreamEvent",
    "decode_options",
    "decode_utterance",
    "embed_hotwords",
    "failed_outcome",
    "lm_context",
    "offline_model_name",
    "offline_pipeline",
    "sentences_json",
    "supports_hotwords",
    "tag_fields",
    "takes_language",
    "transcribe_upload",
    "transcribe_utterance",
    "uses_lm",
]

log = logging.getLogger(__name__)

Models = Union[OfflinePipeline, LiveRecognizer]


def _offline_model(models: Optional[Models]):
    pipeline = models.pipeline if isinstance(models, LiveRecognizer) else models
    return getattr(pipeline, "asr", None)


def supports_hotwords(models: Models) -> bool:
    """Whether the offline model steers its decoding with hotwords (contextual / SeACo Paraformer)."""
    return bool(getattr(_offline_model(models), "supports_hotwords", False))


@dataclass(frozen=True)
class HotwordEmbedding:
    """A connection's hotwords, embedded once for all its offline passes."""

    bias: Optional[np.ndarray] = None
    #: (word, why) for each hotword the model cannot take (characters outside its vocabulary).
    rejected: Tuple[Tuple[str, str], ...] = field(default_factory=tuple)


@functools.lru_cache(maxsize=16)
def _embed_cached(embedder: Any, words: Tuple[str, ...]) -> HotwordEmbedding:
    # Most connections send the same list (the server's, or one app's): embed it once.
    # At most 16 lists of ≤ 1001 × d floats (2 MB each for d = 512) stay cached.
    result = embedder.embed(list(words))
    return HotwordEmbedding(result.bias, tuple((w, why) for w, why in result.rejected))


def embed_hotwords(models: Models, words: Sequence[str]) -> HotwordEmbedding:
    """Embed ``words`` for the offline model (runs in the decoder pool); nothing for other models."""
    asr = _offline_model(models)
    if not words or not getattr(asr, "supports_hotwords", False):
        return HotwordEmbedding()
    return _embed_cached(asr.hotwords, tuple(words))


def decode_options(
    hotwords: HotwordEmbedding, svs_lang: str = "auto", svs_itn: bool = True, lm_context: Optional[WfstContext] = None,
    spare_thread: Optional[Callable[[Callable[[], Any]], Any]] = None,
) -> DecodeOptions:
    """One utterance's model settings: the connection's hotwords (neural and LM), the request's SenseVoice
    fields, and the decoder pool's offer of an idle thread (``DecodeOptions.spare_thread``)."""
    return DecodeOptions(hotword_bias=hotwords.bias, language=svs_lang, text_norm=svs_itn, lm_context=lm_context,
                         spare_thread=spare_thread)


def uses_lm(models: Optional[Models]) -> bool:
    """Whether the offline passes decode through an n-gram LM (``--lm-dir``)."""
    return getattr(_offline_model(models), "lm", None) is not None


def lm_context(models: Models, hotwords: Dict[str, int]) -> Optional[WfstContext]:
    """A connection's LM search context with its weighted hotwords spelt (runs in the decoder pool
    when there are hotwords); None without an LM."""
    decoder = getattr(_offline_model(models), "lm", None)
    return decoder.new_context(hotwords) if decoder is not None else None


def tag_fields(transcript: Transcript) -> Dict[str, str]:
    """SenseVoiceSmall's ``language``/``emotion``/``event`` as extra message fields (none for Paraformers)."""
    return {name: transcript.tags[name] for name in REPORTED_TAGS if name in transcript.tags}


@dataclass
class OfflineOutcome:
    """What the offline profile answers for one utterance."""

    transcript: Transcript
    audio_seconds: float
    error: Optional[str] = None


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds on turning one client upload into samples (the untrusted-input boundary of models.audio)."""

    max_seconds: Optional[float] = None  # decoded audio, at the model's rate
    max_decode_seconds: Optional[float] = DEFAULT_MAX_DECODE_SECONDS  # wall time of a container decode
    cancelled: Callable[[], bool] = lambda: False  # the client has gone: stop decoding


def decode_utterance(
    audio: Union[bytes, bytearray], wav_format: str, audio_fs: int, target_rate: int, limits: DecodeLimits = DecodeLimits()
) -> np.ndarray:
    """Client bytes → mono float32 at ``target_rate`` (raises AudioDecodeError)."""
    if wav_format.lower() == "pcm":
        return resample(pcm16_to_float(audio), audio_fs, target_rate)
    return decode_container(
        audio, target_rate, limits.max_seconds, max_decode_seconds=limits.max_decode_seconds, cancelled=limits.cancelled
    )


def failed_outcome(pipeline: OfflinePipeline, error: str) -> OfflineOutcome:
    """The answer to an utterance that produced no text: empty fields shaped as the pipeline's results."""
    stamps: Optional[List[Tuple[int, int]]] = [] if pipeline.has_timestamps else None
    return OfflineOutcome(Transcript(timestamps=stamps, sentences=[] if pipeline.has_timestamps else None), 0.0, error=error)


def transcribe_utterance(
    pipeline: OfflinePipeline,
    audio: Union[bytes, bytearray],
    wav_format: str,
    audio_fs: int,
    use_itn: bool,
    limits: DecodeLimits = DecodeLimits(),
    options: DecodeOptions = DecodeOptions(),
) -> OfflineOutcome:
    try:
        return transcribe_upload(pipeline, audio, wav_format, audio_fs, use_itn, limits, options)
    except AudioDecodeError as exc:
        return failed_outcome(pipeline, str(exc))


def transcribe_upload(
    pipeline: OfflinePipeline,
    audio: Union[bytes, bytearray],
    wav_format: str,
    audio_fs: int,
    use_itn: bool,
    limits: DecodeLimits = DecodeLimits(),
    options: DecodeOptions = DecodeOptions(),
) -> OfflineOutcome:
    """:func:`transcribe_utterance` raising the :class:`AudioDecodeError` (its subclass says why)
    instead of answering it: the HTTP API gives each kind its own status."""
    waveform = decode_utterance(audio, wav_format, audio_fs, pipeline.sample_rate, limits)
    transcript = pipeline.transcribe(waveform, use_itn=use_itn, options=options)
    return OfflineOutcome(transcript, waveform.size / float(pipeline.sample_rate))


def offline_pipeline(models: Models) -> OfflinePipeline:
    """The whole-file offline pipeline of either profile (the 2pass profile's offline pass)."""
    return models.pipeline if isinstance(models, LiveRecognizer) else models


def offline_model_name(models: Models) -> str:
    """The offline model's directory name: the ``model`` id the HTTP API lists."""
    model_dir = getattr(_offline_model(models), "model_dir", None)
    return Path(model_dir).name if model_dir is not None else "funasr"


def takes_language(models: Optional[Models]) -> bool:
    """Whether the offline model reads ``svs_lang``/``svs_itn`` (SenseVoiceSmall)."""
    return isinstance(_offline_model(models), SenseVoiceSmall)


def sentences_json(transcript: Transcript) -> Optional[List[dict]]:
    if transcript.sentences is None:
        return None
    return [s.to_json() for s in transcript.sentences]


class LiveUtterance:
    """One utterance on the 2pass profile: client bytes in, stream events out.

    Its methods run in the decoder pool, one at a time per connection.  PCM is
    fed as it arrives (a sample split across two frames is put back together;
    other rates are resampled with the filter state carried across frames); a
    container file (offline mode only) is decoded whole after the end signal.
    """

    def __init__(
        self,
        recognizer: LiveRecognizer,
        mode: str,
        chunk_size: Sequence[int],
        use_itn: bool,
        audio_fs: int,
        options: DecodeOptions = DecodeOptions(),
    ):
        self.stream = recognizer.new_stream(
            online=mode in ("online", "2pass"),
            offline=mode in ("offline", "2pass"),
            chunk_size=chunk_size,
            use_itn=use_itn,
            options=options,
        )
        self.sample_rate = recognizer.sample_rate
        self._resampler = StreamResampler(audio_fs, recognizer.sample_rate)
        self._odd_byte = b""
        self._samples = 0  # the stream forgets its length at the final call; this does not

    @property
    def seconds(self) -> float:
        """Audio accepted so far, in seconds."""
        return self._samples / float(self.sample_rate)

    def feed_pcm(self, data: Union[bytes, bytearray], final: bool = False) -> List[StreamEvent]:
        with stage("audio_in"):
            if self._odd_byte:
                data = self._odd_byte + bytes(data)
            usable = len(data) // 2 * 2
            self._odd_byte = bytes(data[usable:])
            samples = self._resampler.push(pcm16_to_float(memoryview(data)[:usable]), final=final)
        if final:
            self._odd_byte = b""
        self._samples += samples.size
        return self.stream.accept(samples, is_final=final)

    def feed_file(self, data: Union[bytes, bytearray], limits: DecodeLimits = DecodeLimits()) -> List[StreamEvent]:
        """Decode a whole container file and run it through the stream as one final piece.

        Raises :class:`AudioDecodeError` (the stream is then reset, ready for the next utterance).
        """
        try:
            samples = decode_utterance(data, "file", 0, self.sample_rate, limits)
        except AudioDecodeError:
            self.stream.accept(np.zeros(0, dtype=np.float32), is_final=True)
            raise
        self._samples += samples.size
        return self.stream.accept(samples, is_final=True)
