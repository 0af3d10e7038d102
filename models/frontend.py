"""Acoustic frontend: Kaldi fbank, low-frame-rate stacking (LFR) and CMVN.

The numbers must match what the models were trained with, so every setting
comes from the model's ``config.yaml`` ``frontend_conf`` and its ``am.mvn``;
dither is always 0 so that the same audio always gives the same text.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Optional

import kaldi_native_fbank as knf
import numpy as np

INT16_SCALE = float(1 << 15)


@dataclass(frozen=True)
class FrontendConfig:
    """The subset of FunASR's ``frontend_conf`` that shapes the features."""

    fs: int = 16000
    window: str = "hamming"
    n_mels: int = 80
    frame_length: int = 25  # ms
    frame_shift: int = 10  # ms
    lfr_m: int = 1
    lfr_n: int = 1

    @classmethod
    def from_config(cls, conf: Optional[Mapping[str, Any]]) -> "FrontendConfig":
        conf = dict(conf or {})
        known = {f.name for f in fields(cls)}
        return cls(**{k: conf[k] for k in known if k in conf})


def same_fbank(a: FrontendConfig, b: FrontendConfig) -> bool:
    """Whether two frontends compute identical fbank frames (they may still differ in LFR)."""
    return (a.fs, a.window, a.n_mels, a.frame_length, a.frame_shift) == (b.fs, b.window, b.n_mels, b.frame_length, b.frame_shift)


def fbank_frame_count(samples: int, cfg: FrontendConfig) -> int:
    """Frames Kaldi's fbank gives for ``samples`` samples (``snip_edges``: whole windows only)."""
    length = int(cfg.fs * cfg.frame_length // 1000)
    shift = int(cfg.fs * cfg.frame_shift // 1000)
    return (samples - length) // shift + 1 if samples >= length else 0


def fbank_options(cfg: FrontendConfig) -> "knf.FbankOptions":
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = float(cfg.fs)
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = cfg.window
    opts.frame_opts.frame_shift_ms = float(cfg.frame_shift)
    opts.frame_opts.frame_length_ms = float(cfg.frame_length)
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = int(cfg.n_mels)
    opts.mel_opts.debug_mel = False
    opts.energy_floor = 0.0
    return opts


def compute_fbank(waveform: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """Log-mel filterbank of a mono float waveform in [-1, 1] → ``[frames, n_mels]`` float32.

    Kaldi expects int16-scale samples, hence the scaling.
    """
    samples = np.asarray(waveform, dtype=np.float32) * np.float32(INT16_SCALE)
    opts = fbank_options(cfg)
    extractor = knf.OnlineFbank(opts)
    extractor.accept_waveform(float(cfg.fs), samples)
    extractor.input_finished()
    n = extractor.num_frames_ready
    out = np.empty((n, cfg.n_mels), dtype=np.float32)
    for i in range(n):
        out[i] = extractor.get_frame(i)
    return out


def apply_lfr(feats: np.ndarray, lfr_m: int, lfr_n: int) -> np.ndarray:
    """Stack ``lfr_m`` frames every ``lfr_n`` frames.

    The sequence is left-padded with ``(lfr_m - 1) // 2`` copies of the first
    frame and, where the last windows run past the end, right-padded with
    copies of the last frame (the layout FunASR trained with).
    """
    if lfr_m == 1 and lfr_n == 1:
        return np.ascontiguousarray(feats, dtype=np.float32)
    t, dim = feats.shape
    if t == 0:
        return np.zeros((0, dim * lfr_m), dtype=np.float32)
    t_lfr = int(np.ceil(t / lfr_n))
    left = (lfr_m - 1) // 2
    need = (t_lfr - 1) * lfr_n + lfr_m  # rows the last window reaches, in padded coordinates
    right = max(0, need - (t + left))
    padded = np.concatenate(
        [np.repeat(feats[:1], left, axis=0), feats, np.repeat(feats[-1:], right, axis=0)], axis=0
    )
    index = np.arange(t_lfr)[:, None] * lfr_n + np.arange(lfr_m)[None, :]
    return padded[index].reshape(t_lfr, lfr_m * dim).astype(np.float32, copy=False)


def load_cmvn(path: Path) -> np.ndarray:
    """Read Kaldi-nnet ``am.mvn``: row 0 is ``<AddShift>``, row 1 ``<Rescale>`` (float64)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    shift: Optional[list] = None
    scale: Optional[list] = None
    for i, line in enumerate(lines[:-1]):
        head = line.split()
        if not head:
            continue
        nxt = lines[i + 1].split()
        if not nxt or nxt[0] != "<LearnRateCoef>":
            continue
        values = nxt[3:-1]  # "<LearnRateCoef> 0 [ v1 v2 ... ]"
        if head[0] == "<AddShift>":
            shift = values
        elif head[0] == "<Rescale>":
            scale = values
    if shift is None or scale is None or len(shift) != len(scale):
        raise ValueError(f"{path}: not a CMVN file with <AddShift> and <Rescale> rows")
    return np.array([shift, scale], dtype=np.float64)


def apply_cmvn(feats: np.ndarray, cmvn: np.ndarray) -> np.ndarray:
    """``(x + shift) * scale``, computed in float64 like the reference, returned as float32."""
    dim = feats.shape[1]
    out = (feats.astype(np.float64) + cmvn[0, :dim]) * cmvn[1, :dim]
    return out.astype(np.float32)


class Frontend:
    """Whole-utterance features for one model: fbank → LFR → CMVN."""

    def __init__(self, cfg: FrontendConfig, cmvn: Optional[np.ndarray]):
        self.cfg = cfg
        self.cmvn = cmvn

    @classmethod
    def from_model_dir(cls, model_dir: Path, config: Mapping[str, Any]) -> "Frontend":
        cfg = FrontendConfig.from_config(config.get("frontend_conf"))
        mvn = Path(model_dir) / "am.mvn"
        return cls(cfg, load_cmvn(mvn) if mvn.is_file() else None)

    @property
    def sample_rate(self) -> int:
        return int(self.cfg.fs)

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        return self.from_fbank(compute_fbank(waveform, self.cfg))

    def from_fbank(self, fbank: np.ndarray) -> np.ndarray:
        """LFR → CMVN on fbank frames already computed with this frontend's settings."""
        feats = apply_lfr(fbank, self.cfg.lfr_m, self.cfg.lfr_n)
        if self.cmvn is not None:
            feats = apply_cmvn(feats, self.cmvn)
        return feats
