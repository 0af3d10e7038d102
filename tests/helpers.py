"""Helpers shared by the test modules (fixtures built on them are in conftest.py).

Two kinds of PCM are used, and they are not interchangeable: a WAV fixture's own int16 samples
(:func:`wav_pcm`, :func:`wav_pcm_and_rate`, :func:`fixture_pcm`), and a decoded float waveform converted
to int16 (:func:`pcm_of`: clipped, times 32767, truncated). ``tests/test_client.py``'s ``client_pcm`` is a
third, on purpose: the client's own conversion (``client.inputs.float_to_pcm16``: times 32768, rounded).
"""
from __future__ import annotations

import socket
import wave
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np

import funasr_wss.server.model_dirs as model_dir_module
from funasr_wss.models.audio import load_audio_file
from tests.paths import AUDIO

#: The clip most tests send (16 kHz mono int16).
ZH01 = "zh01_asr_example_zh.wav"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _audio_path(clip: Union[str, Path]) -> Path:
    return clip if isinstance(clip, Path) else AUDIO / clip


def wav_pcm_and_rate(clip: Union[str, Path]) -> Tuple[bytes, int]:
    """A WAV file's frames as they are, and its sample rate (a name is a file under ``tests/fixtures/audio``)."""
    with wave.open(str(_audio_path(clip))) as w:
        return w.readframes(w.getnframes()), w.getframerate()


def wav_pcm(clip: Union[str, Path]) -> bytes:
    """The int16 samples of a 16 kHz mono 16-bit WAV file (asserted), as they are in the file."""
    with wave.open(str(_audio_path(clip))) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return w.readframes(w.getnframes())


def fixture_pcm() -> bytes:
    """zh01's samples."""
    return wav_pcm(ZH01)


def pcm_of(name: str, rate: int = 16000) -> bytes:
    """A clip decoded (and resampled to ``rate``) by PyAV, as int16: clipped to [-1, 1], times 32767, truncated."""
    wave_ = load_audio_file(AUDIO / name, rate)
    return (np.clip(wave_, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class Hub:
    """ModelScope as the resolver sees it: unreachable, and every probe and download attempt counted."""

    def __init__(self, monkeypatch):
        self.probes = 0
        self.downloads: List[str] = []
        monkeypatch.setattr(model_dir_module, "_hub_reachable", self._probe)

    def _probe(self, timeout: float = 5.0) -> bool:
        self.probes += 1
        return False


def encode_audio(wave: np.ndarray, fmt: str, codec: str, rate: int = 16000, out_rate: Optional[int] = None,
                 layout: str = "mono", bit_rate: int = 0) -> bytes:
    """A file made with PyAV's encoders, in memory: ``wave`` is float32 ``[channels, samples]`` at ``rate``,
    resampled to ``out_rate`` (default ``rate``) in the codec's own frame size and sample format."""
    import io

    import av

    out_rate = out_rate or rate
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=out_rate, layout=layout)
        if bit_rate:
            stream.bit_rate = bit_rate
        sample_format = stream.codec_context.codec.audio_formats[0].name
        frame_size = stream.codec_context.frame_size or 1024
        whole = av.AudioFrame.from_ndarray(wave, format="fltp", layout=layout)
        whole.sample_rate = rate
        chunker = av.AudioResampler(format=sample_format, layout=layout, rate=out_rate, frame_size=frame_size)
        pts = 0
        for frame in chunker.resample(whole) + chunker.resample(None):
            frame.pts = pts
            pts += frame.samples
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()
