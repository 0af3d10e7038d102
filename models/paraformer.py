"""Offline (non-streaming) Paraformer: plain, timestamp (BiCif), contextual and SeACo exports.

One instance wraps one onnxruntime session and holds no per-request state, so
the server shares it between connections and threads.

Segments can be decoded in batches (features padded to the longest, outputs
cut back to each segment's length).  The exported graphs mask the padding for
the tokens, so token ids never depend on the neighbours in a batch; the BiCif
timestamp branch does not mask it fully (its upsampling convolution sees the
padded frames), which shifts the timestamps' normalisation by ~1e-3.  On
trained models that moves a boundary by one 20 ms step at most, and rarely;
on random weights, whose CIF weights sit right at the firing threshold, it
moves many.  ``batch_size`` therefore defaults to 1 (as in FunASR's CPU
runtime), which gives exactly the reference's timestamps.

Contextual and SeACo exports take a third input, ``bias_embed`` ``[B, N, d]``
(neural hotwords; see :mod:`models.hotword_embedding`).  Such a model opens
its ``model_eb.onnx`` too, as :attr:`OfflineParaformer.hotwords`; a request's
bias travels in :class:`DecodeOptions` and is the same for every row of a
batch, since one request's segments share one hotword list.
"""
from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, cast

import numpy as np

from .batching import length_batches, ordered_batches, pad_features, run_or_isolate
from .cif_timestamps import Span, TimestampMismatch, cif_token_spans, even_spans, timestamp_onnx_spans
from .config import load_config
from .frontend import Frontend
from .hotword_embedding import HotwordEmbedder
from .lm_text import lm_words, split_lm_words
from .model_dir import ModelDirError, pick_onnx_file
from .onnx_session import RuntimeOptions, create_session
from .tokens import Vocabulary, greedy_ids, join_words, load_token_list, tokens_to_words

if TYPE_CHECKING:
    from .wfst_decoder import WfstDecoder

log = logging.getLogger(__name__)

#: The LFR frame is 60 ms (10 ms shift × lfr_n 6); CIF peak positions are a third of it.
UPSAMPLE = 3


@dataclass(frozen=True)
class DecodeOptions:
    """Per-request settings of an offline recogniser; each model reads the ones it understands.

    The server builds one per connection (hotwords) and utterance (``svs_*``)
    and hands it through the pipeline unchanged, so models stay stateless and
    shareable between connections.
    """

    #: ``[N, d]`` float32 hotword embeddings for contextual / SeACo Paraformers (the
    #: ``bias_embed`` input, batch axis added by the model), the blank entry included;
    #: None means "no hotwords" (the model then uses its blank-only embedding).
    hotword_bias: Optional[np.ndarray] = None
    #: SenseVoiceSmall: ``svs_lang`` (auto, zh, en, yue, ja, ko, nospeech).
    language: str = "auto"
    #: SenseVoiceSmall: ``svs_itn`` (the model writes punctuation and numbers itself).
    text_norm: bool = True
    #: The connection's n-gram LM search context (:class:`models.wfst_decoder.WfstContext`: its
    #: weighted hotwords and the search's carried hash size); None: a fresh one per request.
    #: Mutable and per connection, whose offline passes run one at a time.
    lm_context: Optional[Any] = None
    #: Runs a call on a thread that is idle right now and returns its ``concurrent.futures.Future``
    #: (cancellable until it starts), or returns None when no thread is idle: lets a request that
    #: runs alone decode half its segments on a core that would otherwise wait.  Results do not
    #: depend on it (it is used only where segments decode independently).
    spare_thread: Optional[Callable[[Callable[[], Any]], Optional["Future[Any]"]]] = None


NO_OPTIONS = DecodeOptions()


@dataclass
class AsrResult:
    """What one segment decodes to.  Times are ms from the segment's start."""

    token_ids: List[int] = field(default_factory=list)
    tokens: List[str] = field(default_factory=list)
    words: List[str] = field(default_factory=list)
    word_spans: Optional[List[Span]] = None  # None for models without timestamps
    text: str = ""
    #: What a rich-transcription model (SenseVoiceSmall) said about the segment besides its
    #: text: ``language``, ``emotion``, ``event`` (tag names without ``<|...|>``) and
    #: ``text_norm``; empty for Paraformers.
    tags: Dict[str, str] = field(default_factory=dict)
    #: True when ``text`` already has punctuation (SenseVoiceSmall with ``svs_itn``): the
    #: pipeline then runs neither the punctuation model nor ITN on it.
    punctuated: bool = False
    #: Wall time of the n-gram LM search of this segment (0 without ``--lm-dir``).
    lm_seconds: float = 0.0

    def shifted(self, offset_ms: int) -> "AsrResult":
        """The same result with its times moved by ``offset_ms`` (for a segment's start)."""
        spans = None
        if self.word_spans is not None:
            spans = [(s + offset_ms, e + offset_ms) for s, e in self.word_spans]
        return AsrResult(list(self.token_ids), list(self.tokens), list(self.words), spans, self.text,
                         dict(self.tags), self.punctuated, self.lm_seconds)


#: The extra input of contextual and SeACo Paraformer graphs.
BIAS_INPUT = "bias_embed"


class OfflineParaformer:
    """``speech``, ``speech_lengths`` [, ``bias_embed``] → ``logits``, ``token_num`` [, ``us_alphas``, ``us_cif_peak``].

    ``hotword_quantized`` picks ``model_eb_quant.onnx`` for the hotword embedder.
    It is independent of ``quantized`` because FunASR's C++ runtime always
    loads ``model_eb.onnx``, also next to ``model_quant.onnx`` (``funasr_onnx``
    pairs the quantized files instead); the embedder runs once per connection,
    so the full-precision one costs nothing that matters.
    """

    def __init__(
        self,
        model_dir: Path,
        quantized: bool = False,
        options: RuntimeOptions = RuntimeOptions(),
        batch_size: int = 1,
        max_batch_frames: int = 6000,
        hotword_quantized: bool = False,
    ):
        self.model_dir = Path(model_dir)
        config = load_config(self.model_dir)
        self.frontend = Frontend.from_model_dir(self.model_dir, config)
        self.vocab = Vocabulary.from_tokens(load_token_list(self.model_dir))
        self.predictor_bias = int((config.get("model_conf") or {}).get("predictor_bias", 0))
        self.model_path = pick_onnx_file(self.model_dir, quantized)
        self.session = create_session(self.model_path, options)
        self._input_names = [i.name for i in self.session.get_inputs()]
        self._output_names = [o.name for o in self.session.get_outputs()]
        self.has_timestamps = "us_cif_peak" in self._output_names or len(self._output_names) >= 4
        #: The hotword embedder of a contextual / SeACo graph (one that takes ``bias_embed``); else None.
        self.hotwords: Optional[HotwordEmbedder] = None
        if BIAS_INPUT in self._input_names:
            self.hotwords = self._open_embedder(hotword_quantized, options)
        #: Most segments per onnxruntime call, and most padded LFR frames per call.
        self.batch_size = max(1, int(batch_size))
        self.max_batch_frames = max_batch_frames
        #: The n-gram LM search that replaces the greedy argmax (``--lm-dir``); None: greedy.
        self.lm: Optional["WfstDecoder"] = None

    def use_lm(self, decoder: Optional["WfstDecoder"]) -> None:
        """Decode through ``decoder`` (an n-gram LM over this model's vocabulary) from now on; None: greedy."""
        self.lm = decoder

    def _open_embedder(self, quantized: bool, options: RuntimeOptions) -> HotwordEmbedder:
        """The ``model_eb`` graph next to the model, checked against ``bias_embed``'s width."""
        try:
            embedder = HotwordEmbedder(self.model_dir, quantized, options)
        except ModelDirError as exc:
            raise ModelDirError(
                f"{self.model_path.name} in {self.model_dir} is a hotword (contextual/SeACo) Paraformer: "
                f"it takes {BIAS_INPUT!r} and needs model_eb.onnx from the same export ({exc})"
            ) from exc
        width = self.session.get_inputs()[self._input_names.index(BIAS_INPUT)].shape[-1]
        if isinstance(width, int) and width != embedder.dim:
            raise ModelDirError(
                f"{embedder.model_path.name} gives {embedder.dim}-wide hotword vectors but "
                f"{self.model_path.name} takes {width}-wide {BIAS_INPUT!r}; they are from different exports"
            )
        return embedder

    @property
    def supports_hotwords(self) -> bool:
        """True for contextual and SeACo Paraformers (their graph takes ``bias_embed``)."""
        return self.hotwords is not None

    @property
    def independent_segments(self) -> bool:
        """Whether a segment's result is the same whichever others it is decoded with: one segment
        per call, and no n-gram LM search state carried from segment to segment."""
        return self.batch_size == 1 and self.lm is None

    @property
    def sample_rate(self) -> int:
        return self.frontend.sample_rate

    def features(self, waveform: np.ndarray) -> np.ndarray:
        return self.frontend(waveform)

    def recognize(self, waveforms: Sequence[np.ndarray], options: DecodeOptions = NO_OPTIONS) -> List[AsrResult]:
        """Decode each waveform (mono float32 at :attr:`sample_rate`)."""
        return self.recognize_features([self.features(w) for w in waveforms], options)

    def recognize_features(self, feats: Sequence[np.ndarray], options: DecodeOptions = NO_OPTIONS) -> List[AsrResult]:
        """Decode precomputed features, batching by length to limit padding.

        With an LM the segments go in their own order: the search's state
        carries from one segment to the next, as in the reference (whose CPU
        runtime decodes one segment at a time), and a request without a
        connection context gets one context for all its segments.
        """
        results: List[Optional[AsrResult]] = [None] * len(feats)
        lengths = [f.shape[0] for f in feats]
        if self.lm is not None:
            if options.lm_context is None:
                options = replace(options, lm_context=self.lm.new_context())
            batches = ordered_batches(lengths, self.batch_size, self.max_batch_frames)
        else:
            batches = length_batches(lengths, self.batch_size, self.max_batch_frames)
        for batch in batches:
            self._run_batch(feats, batch, results, options)
        return [r if r is not None else AsrResult() for r in results]

    def _bias_for(self, options: DecodeOptions) -> Optional[np.ndarray]:
        """The ``[N, d]`` bias to feed, or None for graphs without ``bias_embed`` (which ignore hotwords)."""
        if self.hotwords is None:
            return None
        if options.hotword_bias is None:
            return self.hotwords.blank_bias
        bias = np.asarray(options.hotword_bias, dtype=np.float32)
        if bias.ndim != 2 or bias.shape[0] < 1 or bias.shape[1] != self.hotwords.dim:
            raise ValueError(
                f"hotword_bias must be [N, {self.hotwords.dim}] with N >= 1 (the blank row included), "
                f"got {list(bias.shape)}"
            )
        return bias

    def _run_batch(
        self,
        feats: Sequence[np.ndarray],
        batch: List[int],
        results: List[Optional[AsrResult]],
        options: DecodeOptions = NO_OPTIONS,
    ) -> None:
        live = [i for i in batch if feats[i].shape[0] > 0]
        for i in batch:
            if feats[i].shape[0] == 0:
                results[i] = AsrResult(word_spans=[] if self.has_timestamps else None)
        if not live:
            return
        speech, lengths = pad_features([feats[i] for i in live])
        inputs = {self._input_names[0]: speech, self._input_names[1]: lengths}
        bias = self._bias_for(options)
        if bias is not None:
            # One hotword list per request: every row of the batch gets the same bias.
            inputs[BIAS_INPUT] = np.ascontiguousarray(np.broadcast_to(bias, (len(live),) + bias.shape))
        def give_up(i: int, exc: Exception) -> None:
            log.warning("Paraformer failed on a %d-frame segment: %s", int(lengths[0]), exc)
            results[i] = AsrResult(word_spans=[] if self.has_timestamps else None)

        outputs = run_or_isolate(lambda: self.session.run(None, inputs), live,
                                 lambda i: self._run_batch(feats, [i], results, options), give_up)
        if outputs is None:
            return
        named = dict(zip(self._output_names, outputs))
        logits = named.get("logits", outputs[0])
        token_num = named.get("token_num", outputs[1])
        peaks = named.get("us_cif_peak", outputs[3] if len(outputs) >= 4 else None)
        alphas = named.get("us_alphas", outputs[2] if len(outputs) >= 4 else None)
        for row, i in enumerate(live):
            peak_row = alpha_row = None
            if peaks is not None:
                peak_row = peaks[row][: int(lengths[row]) * UPSAMPLE]
                alpha_row = alphas[row][: int(lengths[row]) * UPSAMPLE] if alphas is not None else None
            if self.lm is not None:
                results[i] = self._decode_with_lm(logits[row], int(token_num[row]), alpha_row, peak_row,
                                                  int(lengths[row]), options.lm_context)
            else:
                results[i] = self._decode_one(logits[row], int(token_num[row]), peak_row, int(lengths[row]))

    def _decode_with_lm(self, logits: np.ndarray, token_num: int, alpha_row: Optional[np.ndarray],
                        peak_row: Optional[np.ndarray], frames: int, context: Any) -> AsrResult:
        """The n-gram LM's words instead of the argmax (shared/lm-decoding.md §2).

        The LM emits one AM token per CIF position, but its words (an English word
        spelt by several BPE pieces) need not match the peaks one to one; the
        times then come from the CIF weights, rescaled to the LM's unit count, as
        FunASR's C++ ``TimestampOnnx`` does, not from an even spread.
        """
        decoded = cast("WfstDecoder", self.lm).decode(logits, token_num, context)  # called only with an LM
        units = split_lm_words(decoded.words)
        spans: Optional[List[Span]] = None
        if peak_row is not None:
            try:
                if alpha_row is None:
                    raise TimestampMismatch("the model gives no us_alphas")
                spans = timestamp_onnx_spans(alpha_row, peak_row, len(units))
            except TimestampMismatch as exc:
                log.debug("LM timestamps fall back to even spacing: %s", exc)
                spans = even_spans(len(units), frames * 60)
        words, word_spans = lm_words(units, spans)
        return AsrResult(decoded.word_ids, list(decoded.words), words, word_spans if spans is not None else None,
                         join_words(words), lm_seconds=decoded.seconds)

    def _decode_one(self, logits: np.ndarray, token_num: int, peak_row: Optional[np.ndarray], frames: int) -> AsrResult:
        ids = greedy_ids(logits, token_num, self.predictor_bias, self.vocab)
        tokens = [self.vocab.tokens[i] for i in ids]
        spans: Optional[List[Span]] = None
        if peak_row is not None:
            try:
                spans = cif_token_spans(peak_row, len(tokens))
            except TimestampMismatch as exc:
                log.debug("timestamps fall back to even spacing: %s", exc)
                spans = even_spans(len(tokens), frames * 60)
        # Like FunASR's runtimes, the i-th token that survives special-token
        # removal takes the i-th span (tokens_to_words does the pairing).
        words, word_spans = tokens_to_words(tokens, spans)
        return AsrResult(ids, tokens, words, word_spans, join_words(words))
