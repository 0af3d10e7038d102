"""Streaming Paraformer: chunked SANM encoder (``model.onnx``), CIF in Python, FSMN decoder (``decoder.onnx``).

:class:`OnlineParaformer` holds the two onnxruntime sessions and no
per-stream state, so one instance serves every connection and thread;
:class:`OnlineStream` carries one utterance's state between chunks:

* the streaming frontend: the samples short of a whole fbank frame and the
  fbank rows short of a whole LFR window;
* the last ``chunk_size[0] + chunk_size[2]`` encoder input frames (look-back
  and look-ahead context of the next chunk) and the position-encoding offset;
* the CIF remainder (one hidden vector and its accumulated weight);
* the decoder's FSMN memories (``in_cache_*``, ``K`` of them, read from the model).

Audio is processed in whole chunks of ``chunk_size[1] * 960`` samples (one
LFR frame is 60 ms); :meth:`OnlineStream.accept` takes pieces of any size and
keeps the remainder.  On ``is_final`` the remainder is the last chunk: it is
decoded with FunASR's end-of-stream rules (a tail CIF weight flushes the
pending token) and the stream resets for the next segment.

Behaviour follows FunASR's Python runtime (``funasr_onnx.Paraformer`` online,
fed whole chunks) step for step, including its arithmetic (the CIF weights
are summed in float64, products taken in float32) so the token ids are the
same.  Its end-of-stream edge cases are kept because the text depends on
them (see :meth:`OnlineStream._final_chunk`); one of them, a slicing slip
that decodes the first window twice when ``chunk_size[0] == 0``, only on
request (``funasr_onnx_lookback=True``), since FunASR's C++ server, which
this server replaces, does not have it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from .config import load_config
from .frontend import FrontendConfig, apply_cmvn, compute_fbank, load_cmvn
from .model_dir import pick_onnx_file
from .onnx_session import RuntimeOptions, create_session
from .stage_clock import stage
from .tokens import Vocabulary, join_words, load_token_list, tokens_to_words

log = logging.getLogger(__name__)

#: Samples per LFR frame at 16 kHz (10 ms shift × lfr_n 6).
SAMPLES_PER_LFR_FRAME = 960
#: A final piece shorter than this (60 ms) is not featurised: only the context already held is decoded.
MIN_FINAL_SAMPLES = 16 * 60

ChunkSize = Tuple[int, int, int]


@dataclass
class OnlineResult:
    """What one :meth:`OnlineStream.accept` call adds: new tokens and the text they spell."""

    token_ids: List[int] = field(default_factory=list)
    tokens: List[str] = field(default_factory=list)
    text: str = ""

    def extend(self, other: "OnlineResult") -> None:
        self.token_ids.extend(other.token_ids)
        self.tokens.extend(other.tokens)
        self.text += other.text


def _static_dim(shape: Sequence[Any], index: int) -> Optional[int]:
    try:
        value = shape[index]
    except IndexError:
        return None
    return value if isinstance(value, int) and value > 0 else None


class _StreamingFrontend:
    """fbank → LFR → CMVN over a stream, giving the frames FunASR's ``WavFrontendOnline`` gives.

    Each push featurises the held samples plus the new ones, keeps the samples
    past the last whole fbank frame, and emits every LFR window that is
    complete; the fbank rows from the first incomplete window on wait for the
    next push.  The first window is left-padded with ``(lfr_m - 1) // 2``
    copies of the first fbank row; on the final push the last windows are
    right-padded with the last row.
    """

    def __init__(self, cfg: FrontendConfig, cmvn: Optional[np.ndarray]):
        self.cfg = cfg
        self.cmvn = cmvn
        self.frame_len = int(cfg.frame_length * cfg.fs / 1000)
        self.frame_shift = int(cfg.frame_shift * cfg.fs / 1000)
        self.m, self.n = int(cfg.lfr_m), int(cfg.lfr_n)
        self.dim = int(cfg.n_mels) * self.m
        self.reset()

    def reset(self) -> None:
        self.samples = np.zeros(0, dtype=np.float32)
        self.rows: Optional[np.ndarray] = None  # fbank rows not yet consumed; None before the first row

    def retained(self) -> int:
        return int(self.samples.size) + (0 if self.rows is None else int(self.rows.size))

    def push(self, waveform: np.ndarray, final: bool) -> np.ndarray:
        data = np.concatenate([self.samples, np.asarray(waveform, dtype=np.float32)])
        n_frames = 0
        if data.size >= self.frame_len:
            n_frames = (data.size - self.frame_len) // self.frame_shift + 1
        out = np.zeros((0, self.dim), dtype=np.float32)
        if n_frames > 0:
            fbank = compute_fbank(data, self.cfg)[:n_frames]
            self.samples = data[n_frames * self.frame_shift :]
            if self.rows is None:
                self.rows = np.repeat(fbank[:1], (self.m - 1) // 2, axis=0)
            rows = np.concatenate([self.rows, fbank], axis=0)
            if rows.shape[0] >= self.m:
                out = self._windows(rows, final)
            else:
                self.rows = rows
        else:
            self.samples = data
            if final and self.rows is not None and self.rows.shape[0] > 0:
                out = self._windows(self.rows, final)
        if final:
            self.reset()
        return out

    def _windows(self, rows: np.ndarray, final: bool) -> np.ndarray:
        total = rows.shape[0]
        if final:
            count = max(0, -(-(total - (self.m - 1) // 2) // self.n))
        else:
            count = (total - self.m) // self.n + 1
        self.rows = rows[count * self.n :] if not final else None
        if count == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        index = np.arange(count)[:, None] * self.n + np.arange(self.m)[None, :]
        stacked = rows[np.minimum(index, total - 1)].reshape(count, self.dim).astype(np.float32)
        if self.cmvn is not None:
            stacked = apply_cmvn(stacked, self.cmvn)
        return stacked


def position_encoding(start: int, count: int, depth: int) -> np.ndarray:
    """Sinusoidal encodings of positions ``start + 1 .. start + count`` (FunASR counts from 1), float32."""
    positions = np.arange(start + 1, start + count + 1).astype(np.float32)
    step = np.log(np.array([10000], dtype=np.float32)) / (depth / 2 - 1)
    inv = np.exp(np.arange(depth / 2).astype(np.float32) * (-step))
    scaled = positions[:, None] * inv[None, :]
    return np.concatenate([np.sin(scaled), np.cos(scaled)], axis=1).astype(np.float32)


class OnlineParaformer:
    """Encoder ``speech, speech_lengths → enc, enc_len, alphas``; decoder
    ``enc, enc_len, acoustic_embeds, acoustic_embeds_len, in_cache_* → logits, sample_ids, out_cache_*``."""

    def __init__(self, model_dir: Path, quantized: bool = False, options: RuntimeOptions = RuntimeOptions()):
        self.model_dir = Path(model_dir)
        config = load_config(self.model_dir)
        self.frontend_cfg = FrontendConfig.from_config(config.get("frontend_conf"))
        mvn = self.model_dir / "am.mvn"
        self.cmvn = load_cmvn(mvn) if mvn.is_file() else None
        self.vocab = Vocabulary.from_tokens(load_token_list(self.model_dir))
        predictor = config.get("predictor_conf") or {}
        self.cif_threshold = float(predictor.get("threshold", 1.0))
        self.tail_threshold = float(predictor.get("tail_threshold", 0.45))

        self.encoder_path = pick_onnx_file(self.model_dir, quantized)
        self.decoder_path = pick_onnx_file(self.model_dir, quantized, stem="decoder")
        self.encoder = create_session(self.encoder_path, options)
        self.decoder = create_session(self.decoder_path, options)
        self._enc_in = [i.name for i in self.encoder.get_inputs()]
        self._enc_out = [o.name for o in self.encoder.get_outputs()]
        dec_inputs = self.decoder.get_inputs()
        self._dec_in = [i.name for i in dec_inputs]
        self._dec_out = [o.name for o in self.decoder.get_outputs()]
        caches = [i for i in dec_inputs if i.name.startswith("in_cache")]
        caches.sort(key=lambda i: int(i.name.rsplit("_", 1)[-1]))
        self._cache_names = [i.name for i in caches]
        self._out_cache_names = [n.replace("in_cache", "out_cache") for n in self._cache_names]

        encoder_conf = config.get("encoder_conf") or {}
        decoder_conf = config.get("decoder_conf") or {}
        #: Encoder output width (512 for the released model).
        self.hidden_size = (
            _static_dim(self.encoder.get_outputs()[0].shape, -1)
            or (caches and _static_dim(caches[0].shape, 1))
            or int(encoder_conf["output_size"])
        )
        #: Frames each FSMN memory keeps (``kernel_size - 1``).
        self.fsmn_lorder = (caches and _static_dim(caches[0].shape, -1)) or int(decoder_conf.get("kernel_size", 11)) - 1
        self.feature_scale = np.float32(self.hidden_size**0.5)

    @property
    def sample_rate(self) -> int:
        return int(self.frontend_cfg.fs)

    @property
    def num_decoder_caches(self) -> int:
        return len(self._cache_names)

    def new_stream(self, chunk_size: Sequence[int] = (5, 10, 5), funasr_onnx_lookback: bool = False) -> "OnlineStream":
        return OnlineStream(self, chunk_size, funasr_onnx_lookback)

    def initial_caches(self) -> List[np.ndarray]:
        return [np.zeros((1, self.hidden_size, self.fsmn_lorder), dtype=np.float32) for _ in self._cache_names]

    def encode(self, feats: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``[T, dim]`` → ``enc [1, T, d]``, ``enc_len [1]``, ``alphas [T]``."""
        speech = np.ascontiguousarray(feats[None], dtype=np.float32)
        lengths = np.array([feats.shape[0]], dtype=np.int32)
        enc, enc_len, alphas = self.encoder.run(None, {self._enc_in[0]: speech, self._enc_in[1]: lengths})[:3]
        return enc, enc_len, np.array(alphas[0], dtype=np.float32)

    def decode(
        self, enc: np.ndarray, enc_len: np.ndarray, embeds: np.ndarray, caches: Sequence[np.ndarray]
    ) -> Tuple[np.ndarray, List[np.ndarray]]:
        """Logits ``[n, vocab]`` for ``n`` acoustic embeddings, and the FSMN memories to carry on."""
        feed = {
            self._dec_in[0]: enc,
            self._dec_in[1]: enc_len,
            self._dec_in[2]: np.ascontiguousarray(embeds[None], dtype=np.float32),
            self._dec_in[3]: np.array([embeds.shape[0]], dtype=np.int32),
        }
        feed.update(zip(self._cache_names, caches))
        outputs = dict(zip(self._dec_out, self.decoder.run(None, feed)))
        logits = outputs.get("logits", next(iter(outputs.values())))
        new_caches = [
            np.ascontiguousarray(outputs[name][:, :, -self.fsmn_lorder :]) for name in self._out_cache_names
        ]
        return logits[0], new_caches

    def tokens_of(self, logits: np.ndarray, count: int) -> List[int]:
        ids = np.asarray(logits).argmax(axis=-1).tolist()
        kept = [i for i in ids if i != self.vocab.blank_id and i != self.vocab.eos_id]
        return kept[:count]


class OnlineStream:
    """One utterance's streaming state; not thread-safe (one stream per connection)."""

    def __init__(self, model: OnlineParaformer, chunk_size: Sequence[int] = (5, 10, 5), funasr_onnx_lookback: bool = False):
        chunk = tuple(int(c) for c in chunk_size)
        if len(chunk) != 3 or chunk[1] <= 0 or chunk[0] < 0 or chunk[2] < 0:
            raise ValueError(f"chunk_size must be three non-negative ints with a positive middle, got {chunk_size!r}")
        self.model = model
        self.chunk_size: ChunkSize = chunk  # type: ignore[assignment]
        self.chunk_samples = chunk[1] * SAMPLES_PER_LFR_FRAME
        #: Reproduce funasr-onnx's ``[-0:]`` look-back slice (see :meth:`_final_chunk`); for oracle tests.
        self.funasr_onnx_lookback = funasr_onnx_lookback
        self.frontend = _StreamingFrontend(model.frontend_cfg, model.cmvn)
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next :meth:`accept` starts a new segment."""
        self.frontend.reset()
        self._pending = np.zeros(0, dtype=np.float32)  # samples short of a whole chunk
        self._started = False  # some chunk produced encoder frames
        self._position = 0  # encoder frames seen, for the position encoding
        c0, _, c2 = self.chunk_size
        self._context = np.zeros((c0 + c2, self.frontend.dim), dtype=np.float32)
        self._cif_hidden = np.zeros(self.model.hidden_size, dtype=np.float32)
        self._cif_weight = 0.0
        self._caches = self.model.initial_caches()

    def retained_size(self) -> int:
        """Numbers held between calls (bounded: it does not grow with the stream's length)."""
        return (
            int(self._pending.size)
            + self.frontend.retained()
            + int(self._context.size)
            + int(self._cif_hidden.size)
            + sum(int(c.size) for c in self._caches)
        )

    def completes_chunk(self, more: int) -> bool:
        """Whether ``more`` samples would complete a chunk: fewer only wait in :meth:`accept`."""
        return self._pending.size + more >= self.chunk_samples

    def accept(self, waveform: np.ndarray, is_final: bool = False) -> OnlineResult:
        """Add samples (float32 in [-1, 1] at 16 kHz); decode every chunk completed, and the rest if final."""
        samples = np.asarray(waveform, dtype=np.float32).reshape(-1)
        data = np.concatenate([self._pending, samples]) if self._pending.size else samples
        result = OnlineResult()
        start = 0
        size = self.chunk_samples
        # On the final call the last (possibly whole) chunk is kept for the end-of-stream rules.
        while data.size - start > size or (not is_final and data.size - start == size):
            result.extend(self._chunk(data[start : start + size]))
            start += size
        if is_final:
            try:
                result.extend(self._final_chunk(data[start:]))
            finally:
                self.reset()
        else:
            self._pending = np.array(data[start:], dtype=np.float32)
        return result

    # -- one chunk ---------------------------------------------------------

    def _features(self, samples: np.ndarray, final: bool) -> np.ndarray:
        with stage("online_frontend"):
            feats = self.frontend.push(samples, final)
            if feats.shape[0] == 0:
                return feats
            feats = feats * self.model.feature_scale
            feats = feats + position_encoding(self._position, feats.shape[0], feats.shape[1])
            self._position += feats.shape[0]
            self._started = True
            return feats

    def _chunk(self, samples: np.ndarray) -> OnlineResult:
        feats = self._features(samples, final=False)
        if feats.shape[0] == 0:
            return OnlineResult()
        c0, _, c2 = self.chunk_size
        window = np.concatenate([self._context, feats], axis=0)
        self._context = window[window.shape[0] - (c0 + c2) :]
        return self._run(window, tail=False)

    def _final_chunk(self, samples: np.ndarray) -> OnlineResult:
        """The end of the segment, as FunASR's runtime ends it.

        * Under 60 ms of new audio (none at all included), the new samples and
          the frontend's leftovers are dropped and only the held context is
          decoded, with the tail weight.
        * Otherwise the new frames (right-padded LFR) are decoded in one
          window padded with zeros to ``sum(chunk_size)``, or, when they do not
          fit with the look-ahead, in a full window and then a last one.

        The last ``chunk_size[0]`` frames are the look-back of the last
        window.  funasr-onnx slices them as ``[-chunk_size[0]:]``, which for
        ``chunk_size[0] == 0`` keeps *all* frames of the first window, so their
        tokens come out a second time; FunASR's C++ runtime keeps none.  We
        follow the C++ runtime unless ``funasr_onnx_lookback`` asks for the
        Python one (to compare with it).
        """
        c0, c1, c2 = self.chunk_size
        if samples.size < MIN_FINAL_SAMPLES and self._started:
            return self._run(self._context, tail=True)
        feats = self._features(samples, final=True)
        n = feats.shape[0]
        if n == 0:
            return OnlineResult()
        if n + c2 <= c1:
            return self._run(self._last_window(feats, pad=False), tail=True)
        result = self._run(self._last_window(feats[:c1], pad=True), tail=False)
        result.extend(self._run(self._last_window(feats[c1 - c2 - n :], pad=False), tail=True))
        return result

    def _last_window(self, feats: np.ndarray, pad: bool) -> np.ndarray:
        """Context + frames for a final-call window; ``pad``: not the very last one, zero-padded to full size."""
        c0 = self.chunk_size[0]
        window = np.concatenate([self._context, feats], axis=0)
        if c0 > 0:
            self._context = window[window.shape[0] - c0 :]
        else:
            self._context = window if self.funasr_onnx_lookback else window[:0]
        if not pad:
            return window
        full = sum(self.chunk_size)
        if window.shape[0] < full:
            window = np.concatenate([window, np.zeros((full - window.shape[0], window.shape[1]), np.float32)])
        return window

    def _run(self, window: np.ndarray, tail: bool) -> OnlineResult:
        model = self.model
        c0, c1, _ = self.chunk_size
        if window.shape[0] == 0:
            return OnlineResult()
        with stage("online_encoder"):
            enc, enc_len, alphas = model.encode(window)
        with stage("online_cif"):
            alphas[:c0] = 0.0
            alphas[c0 + c1 :] = 0.0
            embeds = self._cif(enc[0], alphas, tail)
        if embeds.shape[0] == 0:
            return OnlineResult()  # no token fired: the decoder has nothing to decode
        with stage("online_decoder"):
            logits, self._caches = model.decode(enc, enc_len, embeds, self._caches)
            ids = model.tokens_of(logits, embeds.shape[0])
            tokens = [model.vocab.tokens[i] for i in ids]
            words, _ = tokens_to_words(tokens)
            return OnlineResult(ids, tokens, join_words(words))

    def _cif(self, hidden: np.ndarray, alphas: np.ndarray, tail: bool) -> np.ndarray:
        """Continuous integrate-and-fire over this window, starting from the carried remainder.

        The running weight is a float64 sum and each weighted frame a float32
        product, which is how the reference's arithmetic falls out.
        """
        threshold = self.model.cif_threshold
        weights = [self._cif_weight] + alphas.astype(np.float64).tolist()
        rows = [self._cif_hidden] + list(hidden)
        if tail:
            weights.append(float(np.float32(self.model.tail_threshold)))
            rows.append(np.zeros_like(self._cif_hidden))
        fired: List[np.ndarray] = []
        acc = 0.0
        frame = np.zeros_like(self._cif_hidden)
        for weight, row in zip(weights, rows):
            if weight + acc < threshold:
                acc += weight
                frame = frame + np.float32(weight) * row
            else:
                frame = frame + np.float32(threshold - acc) * row
                fired.append(frame)
                acc += weight
                acc -= threshold
                frame = np.float32(acc) * row
        self._cif_weight = acc
        self._cif_hidden = (frame / np.float32(acc) if acc > 0.0 else frame).astype(np.float32)
        if not fired:
            return np.zeros((0, hidden.shape[1]), dtype=np.float32)
        return np.stack(fired).astype(np.float32)
