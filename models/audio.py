"""Turning client bytes into the mono float waveform the models expect.

Raw PCM is int16 little-endian mono at the client's ``audio_fs``; anything else
is a container file (wav, mp3, m4a, flac, ogg ...) decoded in memory by
ffmpeg's libraries through PyAV.  Every path ends at float32 in [-1, 1] at the
model's sample rate; resampling uses libswresample, also through PyAV.

Container bytes come from clients and are untrusted, and ffmpeg's demuxers are
far more than audio parsers: ``concat`` reads the files a playlist names, ``sdp``
and ``rtp`` bind UDP ports, ``hls`` and ``dash`` fetch URLs, ``image2`` opens
numbered files.  :func:`decode_container` is therefore the boundary where
client bytes meet ffmpeg, and it:

* lets ffmpeg instantiate only the audio demuxers in :data:`ALLOWED_FORMATS`
  (``format_whitelist``; probing only runs each demuxer's ``read_probe`` over
  the bytes in memory, and the whitelist is checked before any demuxer reads
  its header, so a refused format has done nothing: no file, no socket);
* allows no I/O protocol at all (``protocol_whitelist``), so even an allowed
  demuxer cannot open a second input: the only input is the in-memory buffer;
* lets the probing step open audio decoders only (``codec_whitelist``);
* refuses sample rates outside [:data:`MIN_SAMPLE_RATE`,
  :data:`MAX_SAMPLE_RATE`] and more than :data:`MAX_CHANNELS` channels before
  resampling (a header claiming 1 Hz turns kilobytes into gigabytes at 16 kHz);
* stops as soon as the audio would pass ``max_seconds`` (checked on each frame
  before it is resampled), when decoding has taken ``max_decode_seconds`` of
  wall time, or when the caller's ``cancelled`` says the client has gone;
* refuses NaN and infinite samples, and samples so large that the filterbank would
  overflow (:data:`MAX_SAMPLE_MAGNITUDE`), which the models cannot take.

Every refusal is an :class:`AudioDecodeError` whose message is built here, not
taken from ffmpeg's log, so it cannot echo file names or contents.
"""
from __future__ import annotations

import errno
import functools
import io
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional, Union, cast

import av
import numpy as np

#: ffmpeg demuxers that may read client bytes: audio containers that never open
#: a second input.  Names as ffmpeg spells them; a demuxer with several names
#: (``mov,mp4,m4a,3gp,3g2,mj2``, ``matroska,webm``) matches on any of them.
#: ``aac`` is ffmpeg's ADTS demuxer; opus and vorbis come in ``ogg`` or webm.
ALLOWED_FORMATS = (
    "wav",  # also RF64 / BW64
    "w64",
    "mp3",  # MPEG audio layers 1-3
    "flac",
    "ogg",
    "mov,mp4,m4a,3gp,3g2,mj2",
    "matroska,webm",
    "aac",
    "amr",
    "amrnb",
    "amrwb",
    "aiff",
    "caf",
    "au",
    "asf",  # wma
)
#: Sample rates a container may claim, the same bounds the protocol puts on ``audio_fs``.
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 384000
#: The largest float sample accepted.  Float files normally lie in [-1, 1]; some tools write
#: int16-scaled floats (up to 32768), which still work.  Far beyond that, the filterbank's
#: squared energies overflow float32 and the models see NaN.
MAX_SAMPLE_MAGNITUDE = 1e5
#: The most channels a stream may have (each one costs memory before the downmix).
MAX_CHANNELS = 64
#: Wall-time limit of one :func:`decode_container` call unless the caller gives another.
DEFAULT_MAX_DECODE_SECONDS = 30.0

_FORMAT_WHITELIST = ",".join(ALLOWED_FORMATS)
_ALLOWED_NAMES = frozenset(name for entry in ALLOWED_FORMATS for name in entry.split(","))
# No protocol has this name, so every nested open (a concat entry, an http:// in a
# playlist, an rtp:// in an sdp, a mov data reference) is refused.
_NO_PROTOCOL = "none"
_UNSUPPORTED_FORMAT = (
    "cannot decode audio: unsupported container format "
    "(accepted: wav, mp3, flac, ogg/opus, m4a/mp4, webm/mkv, aac, amr, aiff, caf, w64, au, wma)"
)


class AudioDecodeError(ValueError):
    """The bytes are not audio that ffmpeg can decode, or not audio this server accepts."""


class AudioTooLongError(AudioDecodeError):
    """The decoded audio is longer than the caller allows (a small file can decode to hours)."""


class UnsupportedFormatError(AudioDecodeError):
    """The bytes are not in one of :data:`ALLOWED_FORMATS` (maybe a playlist, an SDP, an image)."""


class AudioDecodeTimeout(AudioDecodeError):
    """Decoding took longer than ``max_decode_seconds`` of wall time."""


class AudioDecodeCancelled(AudioDecodeError):
    """The caller's ``cancelled`` hook said stop (the client went away); not the file's fault."""


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


@functools.lru_cache(maxsize=1)
def _audio_decoders() -> str:
    """ffmpeg's audio decoders, comma-separated: the ``codec_whitelist`` of a container.

    Probing (``avformat_find_stream_info``) opens a decoder for every stream it
    has to look into; with this list it can never run a video or image decoder
    on, say, a huge picture stored next to the audio.
    """
    names = []
    for name in sorted(av.codecs_available):
        try:
            codec = av.Codec(name, "r")
        except Exception:  # an encoder only
            continue
        if codec.type == "audio":
            names.append(codec.name)
    return ",".join(dict.fromkeys(names))


def _container_options() -> dict:
    """What every client container is opened with (see the module docstring for why)."""
    return {
        "format_whitelist": _FORMAT_WHITELIST,
        "protocol_whitelist": _NO_PROTOCOL,
        "codec_whitelist": _audio_decoders(),
    }


def _reason(exc: BaseException) -> str:
    """A short reason for a failure inside ffmpeg: its error text, without file names or log lines."""
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return str(exc.strerror)
    return str(exc) or type(exc).__name__


def _check_rate(rate: int) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioDecodeError(
            f"cannot decode audio: sample rate {rate} Hz is not supported "
            f"(must be between {MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz)"
        )


def _check_channels(channels: int) -> None:
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioDecodeError(
            f"cannot decode audio: {channels} channels is not supported (must be between 1 and {MAX_CHANNELS})"
        )


def _cancel_check(cancelled: Union[None, Callable[[], bool], threading.Event]) -> Callable[[], bool]:
    if cancelled is None:
        return lambda: False
    is_set = getattr(cancelled, "is_set", None)  # a threading.Event (or anything like it)
    return cast(Callable[[], bool], is_set if callable(is_set) else cancelled)


def decode_container(
    data: Union[bytes, bytearray, memoryview],
    target_rate: int,
    max_seconds: Optional[float] = None,
    *,
    max_decode_seconds: Optional[float] = DEFAULT_MAX_DECODE_SECONDS,
    cancelled: Union[None, Callable[[], bool], threading.Event] = None,
) -> np.ndarray:
    """Decode a whole audio file held in memory → mono float32 at ``target_rate``.

    ``data`` is untrusted (a client upload): only the demuxers in
    :data:`ALLOWED_FORMATS` may read it and they may open nothing else (see the
    module docstring).  Multi-channel audio is downmixed by the resampler; the
    first audio stream is decoded.

    ``max_seconds``: the most audio (at ``target_rate``) the caller takes, None
    for no limit; checked on each decoded frame *before* it is resampled.
    ``max_decode_seconds``: wall-time limit of the whole call, None for none.
    ``cancelled``: a callable returning True, or a ``threading.Event`` that is
    set, when decoding should stop (the client has gone); asked between packets.

    Raises :class:`AudioDecodeError`, or one of its subclasses:
    :class:`UnsupportedFormatError` for bytes that are not an accepted audio
    container (the same message whatever the bytes refer to),
    :class:`AudioTooLongError` as soon as the output would pass ``max_seconds``,
    :class:`AudioDecodeTimeout` past ``max_decode_seconds`` and
    :class:`AudioDecodeCancelled` when ``cancelled`` says so.
    """
    if target_rate <= 0:
        raise ValueError(f"invalid target rate {target_rate}")
    started = time.monotonic()
    is_cancelled = _cancel_check(cancelled)

    def checkpoint() -> None:
        # between packets: both checks are cheap next to decoding one
        if is_cancelled():
            raise AudioDecodeCancelled("decoding was cancelled")
        if max_decode_seconds is not None and time.monotonic() - started > max_decode_seconds:
            raise AudioDecodeTimeout(f"cannot decode audio: decoding took longer than {max_decode_seconds:g} s")

    max_samples = None if max_seconds is None else int(max_seconds * target_rate)

    def too_long() -> AudioTooLongError:
        return AudioTooLongError(f"the audio is longer than {max_seconds:.0f} s")

    pieces: List[np.ndarray] = []
    total = 0  # samples out of the resampler
    projected = 0.0  # samples the frames decoded so far make at target_rate

    def keep(frames) -> None:
        nonlocal total
        for out in frames:
            piece = out.to_ndarray().reshape(-1)
            if not np.isfinite(piece).all():
                raise AudioDecodeError("cannot decode audio: the audio contains NaN or infinite samples")
            if piece.size and np.abs(piece).max() > MAX_SAMPLE_MAGNITUDE:
                raise AudioDecodeError(
                    f"cannot decode audio: samples of magnitude above {MAX_SAMPLE_MAGNITUDE:g} "
                    "(float audio should lie in [-1, 1])"
                )
            pieces.append(piece)
            total += piece.size

    checkpoint()
    if len(data) == 0:
        return np.zeros(0, dtype=np.float32)
    try:
        try:
            container = av.open(
                io.BytesIO(bytes(data)),
                mode="r",
                container_options=_container_options(),
                metadata_errors="replace",  # tags are not used; a latin-1 title is no reason to refuse the audio
            )
        except av.error.FFmpegError as exc:
            if exc.errno == errno.EINVAL:
                # "Format not on whitelist" (or a nested open refused by the protocol whitelist):
                # the allowed demuxers report broken files as invalid data, not EINVAL
                raise UnsupportedFormatError(_UNSUPPORTED_FORMAT) from exc
            raise
        with container:
            if not _ALLOWED_NAMES.intersection(container.format.name.split(",")):
                raise UnsupportedFormatError(_UNSUPPORTED_FORMAT)  # the whitelist should have said so already
            streams = container.streams.audio
            if not streams:
                raise AudioDecodeError("the file has no audio stream")
            stream = streams[0]
            context = stream.codec_context
            if context is None:
                raise AudioDecodeError("cannot decode audio: the audio codec is not supported")
            # what the header claims, refused before anything is decoded; 0 means "unknown
            # until decoded", and every frame is checked again below
            if context.sample_rate:
                _check_rate(context.sample_rate)
            if context.channels > MAX_CHANNELS:
                _check_channels(context.channels)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=int(target_rate))
            for packet in container.demux(stream):
                checkpoint()
                for frame in packet.decode():
                    _check_rate(frame.sample_rate)
                    _check_channels(len(frame.layout.channels))
                    projected += frame.samples * target_rate / frame.sample_rate
                    if max_samples is not None and projected > max_samples + 1:
                        raise too_long()  # before the resampler allocates the output
                    keep(resampler.resample(frame))
                    if max_samples is not None and total > max_samples:
                        raise too_long()
                    checkpoint()
            keep(resampler.resample(None))
    except AudioDecodeError:
        raise
    except (av.error.FFmpegError, ValueError, EOFError) as exc:
        raise AudioDecodeError(f"cannot decode audio: {_reason(exc)}") from exc
    if not pieces:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(pieces).astype(np.float32, copy=False)


def load_audio_file(path: Union[str, Path], target_rate: int = 16000) -> np.ndarray:
    """Read any audio file from disk → mono float32 at ``target_rate``.

    For files the user picked: the same format checks as client uploads (a
    playlist is no more welcome here), but no limit on length or decoding time.
    """
    return decode_container(Path(path).read_bytes(), target_rate, max_decode_seconds=None)
