"""The bridge between sessions and models: bytes + client settings in, a result out.

Sessions call these functions through the decoder pool; they are the only
place in ``server/`` that calls into ``models/``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Union

import numpy as np

from models.audio import AudioDecodeError, decode_container, pcm16_to_float, resample
from models.offline_pipeline import OfflinePipeline, Transcript


@dataclass
class OfflineOutcome:
    """What the offline profile answers for one utterance."""

    transcript: Transcript
    audio_seconds: float
    error: Optional[str] = None


def decode_utterance(
    audio: Union[bytes, bytearray], wav_format: str, audio_fs: int, target_rate: int, max_seconds: Optional[float] = None
) -> np.ndarray:
    """Client bytes → mono float32 at ``target_rate`` (raises AudioDecodeError)."""
    if wav_format.lower() == "pcm":
        return resample(pcm16_to_float(audio), audio_fs, target_rate)
    return decode_container(audio, target_rate, max_seconds)


def transcribe_utterance(
    pipeline: OfflinePipeline,
    audio: Union[bytes, bytearray],
    wav_format: str,
    audio_fs: int,
    use_itn: bool,
    max_seconds: Optional[float] = None,
) -> OfflineOutcome:
    try:
        waveform = decode_utterance(audio, wav_format, audio_fs, pipeline.sample_rate, max_seconds)
    except AudioDecodeError as exc:
        empty = Transcript(timestamps=[] if pipeline.has_timestamps else None, sentences=[] if pipeline.has_timestamps else None)
        return OfflineOutcome(empty, 0.0, error=str(exc))
    transcript = pipeline.transcribe(waveform, use_itn=use_itn)
    return OfflineOutcome(transcript, waveform.size / float(pipeline.sample_rate))


def sentences_json(transcript: Transcript) -> Optional[List[dict]]:
    if transcript.sentences is None:
        return None
    return [s.to_json() for s in transcript.sentences]
