"""Turning client bytes into the mono float waveform the models expect.

Raw PCM is int16 little-endian mono at the client's ``audio_fs``; anything else
is a container file (wav, mp3, m4a, flac, ogg ...) decoded in memory by
ffmpeg's libraries through PyAV.  Every path ends at float32 in [-1, 1] at the
model's sample rate; resampling uses libswresample, also through PyAV.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import List, Optional, Union

import av
import numpy as np


class AudioDecodeError(ValueError):
    """The bytes are not audio that ffmpeg can decode."""


class AudioTooLongError(AudioDecodeError):
    """The decoded audio is longer than the caller allows (a small file can decode to hours)."""


def pcm16_to_float(data: Union[bytes, bytearray, memoryview]) -> np.ndarray:
    """int16 LE bytes → float32 in [-1, 1].  A dangling odd byte is ignored."""
    usable = (len(data) // 2) * 2
    return np.frombuffer(data, dtype="<i2", count=usable // 2).astype(np.float32) / np.float32(32768.0)


def resample(waveform: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample mono float32 audio with libswresample (PyAV)."""
    waveform = np.ascontiguousarray(waveform, dtype=np.float32)
    if src_rate == dst_rate or waveform.size == 0:
        return waveform
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"invalid sample rates {src_rate} -> {dst_rate}")
    frame = av.AudioFrame.from_ndarray(waveform[None, :], format="flt", layout="mono")
    frame.sample_rate = int(src_rate)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=int(dst_rate))
    pieces = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    pieces += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    if not pieces:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(pieces).astype(np.float32, copy=False)


class StreamResampler:
    """Resamples a live stream piece by piece, with the filter state carried across pieces.

    Resampling each piece on its own would put a click at every boundary; one
    libswresample context per stream gives exactly the samples that resampling
    the whole stream at once gives.  Output lags input by the filter's delay
    (a few dozen samples) until :meth:`push` is called with ``final``.
    """

    def __init__(self, src_rate: int, dst_rate: int):
        if src_rate <= 0 or dst_rate <= 0:
            raise ValueError(f"invalid sample rates {src_rate} -> {dst_rate}")
        self.src_rate = int(src_rate)
        self.dst_rate = int(dst_rate)
        self._resampler: Optional[av.AudioResampler] = None

    def push(self, waveform: np.ndarray, final: bool = False) -> np.ndarray:
        waveform = np.ascontiguousarray(waveform, dtype=np.float32).reshape(-1)
        if self.src_rate == self.dst_rate:
            return waveform
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.dst_rate)
        pieces: List[np.ndarray] = []
        if waveform.size:
            frame = av.AudioFrame.from_ndarray(waveform[None, :], format="flt", layout="mono")
            frame.sample_rate = self.src_rate
            pieces += [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        if final:
            pieces += [f.to_ndarray().reshape(-1) for f in self._resampler.resample(None)]
            self._resampler = None  # the next push starts a new stream
        if not pieces:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(pieces).astype(np.float32, copy=False)


def decode_container(
    data: Union[bytes, bytearray, memoryview], target_rate: int, max_seconds: Optional[float] = None
) -> np.ndarray:
    """Decode a whole audio file held in memory → mono float32 at ``target_rate``.

    Multi-channel audio is downmixed by the resampler.  Raises
    :class:`AudioDecodeError` for anything ffmpeg cannot read, and
    :class:`AudioTooLongError` as soon as the output passes ``max_seconds``.
    """
    max_samples = None if max_seconds is None else int(max_seconds * target_rate)
    if len(data) == 0:
        return np.zeros(0, dtype=np.float32)
    try:
        with av.open(io.BytesIO(bytes(data)), mode="r") as container:
            streams = container.streams.audio
            if not streams:
                raise AudioDecodeError("the file has no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=int(target_rate))
            pieces: List[np.ndarray] = []
            total = 0
            for frame in container.decode(streams[0]):
                for out in resampler.resample(frame):
                    pieces.append(out.to_ndarray().reshape(-1))
                    total += pieces[-1].size
                if max_samples is not None and total > max_samples:
                    raise AudioTooLongError(f"the audio is longer than {max_seconds:.0f} s")
            for out in resampler.resample(None):
                pieces.append(out.to_ndarray().reshape(-1))
    except AudioDecodeError:
        raise
    except (av.error.FFmpegError, ValueError, EOFError) as exc:
        raise AudioDecodeError(f"cannot decode audio: {exc}") from exc
    if not pieces:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(pieces).astype(np.float32, copy=False)


def load_audio_file(path: Union[str, Path], target_rate: int = 16000) -> np.ndarray:
    """Read any audio file from disk → mono float32 at ``target_rate``."""
    return decode_container(Path(path).read_bytes(), target_rate)
