"""SenseVoiceSmall as an offline recogniser (a drop-in for :class:`OfflineParaformer`).

SenseVoiceSmall is a CTC model with a "rich transcription" vocabulary: besides
text pieces it has tag pieces written ``<|...|>``.  The exported graph takes
two extra per-row inputs, a *language* and a *textnorm* query (embedding-row
indices, not token ids), and prepends them to the speech frames, so the
output has four more frames than the input.  A trained model answers with
four tags before the text::

    <|zh|><|NEUTRAL|><|Speech|><|withitn|>今天天气不错。

* language: ``zh en yue ja ko nospeech`` (what it heard, or the forced language);
* emotion: ``HAPPY SAD ANGRY NEUTRAL FEARFUL DISGUSTED SURPRISED EMO_UNKNOWN``;
* audio event: ``Speech BGM Applause Laughter Cry Sneeze Breath Cough Sing
  Speech_Noise Event_UNK GBG``;
* text normalisation: ``withitn`` (the model writes punctuation and numbers
  itself) or ``woitn``.

What one segment decodes to (:class:`AsrResult`):

* ``token_ids``: CTC greedy search, exactly as FunASR's runtimes do it: argmax
  per frame over the first ``encoder_out_lens`` frames, repeats collapsed on
  the raw argmax sequence, *then* blanks (id 0) dropped.  Tags are kept.
* ``tokens``: the pieces of those ids.
* ``text``: the pieces that are not tags, decoded the way sentencepiece does
  (joined, ``▁`` read as a space, ``<s>``/``</s>`` dropped), then stripped.
* ``tags``: the first tag of each category found anywhere in the sequence,
  under the keys ``language``, ``emotion``, ``event`` and ``text_norm`` (names
  without ``<|...|>``); a category with no tag has no key.  A trained model
  puts the tags first; untrained ones scatter them, and we do not rely on
  positions (FunASR's C++ runtime reads positions 0-3 blindly).  Any other
  ``<|...|>`` piece is dropped from the text and otherwise ignored.
* ``words``: see :func:`split_words`; ``word_spans`` is None (CTC here gives
  no timestamps); ``punctuated`` is the request's ``text_norm``: with ITN the
  model has punctuated and normalised the text, so the pipeline must run
  neither the punctuation model nor ITN over it.

Segments can be decoded in batches (features padded to the longest, outputs
cut back to each row's ``encoder_out_lens``).  The fp32 graph masks the
padding, so batched rows give exactly what they give alone.  The quantized
graph does not: its ``DynamicQuantizeLinear`` nodes pick one activation scale
per tensor, i.e. over the whole batch, padding and neighbours included, so a
row's ids change with its company.  ``batch_size`` therefore defaults to 1
(as in FunASR's runtimes), which gives exactly the reference's output.

One instance wraps one onnxruntime session and holds no per-request state, so
it can be shared between connections and threads.
"""
from __future__ import annotations

import logging
import unicodedata
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .batching import length_batches, pad_features, run_or_isolate
from .config import load_config
from .frontend import Frontend
from .model_dir import pick_onnx_file
from .onnx_session import RuntimeOptions, create_session
from .paraformer import NO_OPTIONS, AsrResult, DecodeOptions
from .tokens import is_cjk_char, load_token_list

log = logging.getLogger(__name__)

#: The ``svs_lang`` values the model understands, mapped to the row of its language-query
#: embedding fed as the ``language`` input (the numbers of FunASR's runtimes).
LANGUAGE_IDS: Dict[str, int] = {"auto": 0, "zh": 3, "en": 4, "yue": 7, "ja": 11, "ko": 12, "nospeech": 13}
#: Accepted ``svs_lang`` values, for validating requests before they reach the model.
LANGUAGES = tuple(LANGUAGE_IDS)
#: Rows of the textnorm-query embedding: ``svs_itn`` true → with ITN, false → without.
TEXTNORM_IDS: Dict[str, int] = {"withitn": 14, "woitn": 15}

#: Tag names of each category, as they appear inside ``<|...|>``.
TAG_CATEGORIES: Dict[str, frozenset] = {
    "language": frozenset({"zh", "en", "yue", "ja", "ko", "nospeech"}),
    "emotion": frozenset({"HAPPY", "SAD", "ANGRY", "NEUTRAL", "FEARFUL", "DISGUSTED", "SURPRISED", "EMO_UNKNOWN"}),
    "event": frozenset({"Speech", "BGM", "Applause", "Laughter", "Cry", "Sneeze", "Breath", "Cough", "Sing",
                        "Speech_Noise", "Event_UNK", "GBG"}),
    "text_norm": frozenset({"withitn", "woitn"}),
}

BLANK_ID = 0
WORD_BOUNDARY = "\u2581"  # sentencepiece's "▁": a space before the piece
#: sentencepiece control pieces: they decode to nothing.
CONTROL_PIECES = frozenset({"<s>", "</s>"})


def language_id(language: str) -> int:
    """The ``language`` input for ``svs_lang``; ValueError naming the accepted values otherwise."""
    try:
        return LANGUAGE_IDS[language]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown SenseVoice language {language!r}; expected one of {', '.join(LANGUAGES)}"
        ) from None


def textnorm_id(text_norm: bool) -> int:
    """The ``textnorm`` input: 14 asks for punctuated, normalised text, 15 for plain words."""
    return TEXTNORM_IDS["withitn" if text_norm else "woitn"]


def is_tag(piece: str) -> bool:
    """A rich-transcription tag piece such as ``<|zh|>`` or ``<|Speech|>``."""
    return len(piece) > 4 and piece.startswith("<|") and piece.endswith("|>")


def ctc_greedy_ids(logits: np.ndarray, frames: int, blank_id: int = BLANK_ID) -> List[int]:
    """Greedy CTC path of one row: argmax of the first ``frames`` frames, repeats merged, blanks dropped.

    Repeats are merged before blanks go, so ``a <blank> a`` stays two ``a`` (the
    standard CTC rule, and what FunASR's Python and C++ runtimes do).
    """
    best = np.asarray(logits)[: max(0, int(frames))].argmax(axis=-1)
    if best.size == 0:
        return []
    keep = np.ones(best.shape, dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    best = best[keep]
    return [int(i) for i in best[best != blank_id]]


def decode_pieces(pieces: Sequence[str]) -> str:
    """Text of sentencepiece pieces: tags and control pieces dropped, ``▁`` → space, stripped.

    This is what ``SentencePieceProcessor.DecodeIds`` gives for the same ids
    once tags are removed and the ends stripped.  Byte-fallback pieces
    (``<0xE4>``) would come out verbatim; the SenseVoice bpe model we test
    with is trained without byte fallback, so it has none.
    """
    text = "".join(p for p in pieces if not is_tag(p) and p not in CONTROL_PIECES)
    return text.replace(WORD_BOUNDARY, " ").strip()


def read_tags(pieces: Sequence[str]) -> Dict[str, str]:
    """The first tag of each category anywhere in ``pieces`` (see the module docstring)."""
    found: Dict[str, str] = {}
    for piece in pieces:
        if not is_tag(piece):
            continue
        name = piece[2:-2]
        for category, names in TAG_CATEGORIES.items():
            if name in names and category not in found:
                found[category] = name
    return found


def _is_punctuation(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P")


def split_words(text: str) -> List[str]:
    """Words of SenseVoice text, for counting and display.

    The text is split at whitespace (English, Korean, numbers); inside each
    chunk every CJK ideograph is a word of its own, as with FunASR's Chinese
    models, and what lies between ideographs (Latin letters, digits, kana)
    stays together.  Punctuation right after an ideograph goes with it
    (``你好，`` → ``你``, ``好，``; ``world.`` stays one word, as it is one run),
    and punctuation right before one opens it (``“你``), so the number of words
    is the number of spoken units.  The words are for display and counting:
    :attr:`AsrResult.text` is authoritative (``" ".join`` of the words loses
    the exact spacing between scripts).
    """
    words: List[str] = []
    for chunk in text.split():
        chunk_words: List[str] = []
        current = ""  # an unfinished run of non-ideographs
        for ch in chunk:
            if is_cjk_char(ch):
                if current and all(_is_punctuation(c) for c in current):
                    chunk_words.append(current + ch)  # an opening quote or bracket
                else:
                    if current:
                        chunk_words.append(current)
                    chunk_words.append(ch)
                current = ""
            elif not current and chunk_words and _is_punctuation(ch):
                chunk_words[-1] += ch
            else:
                current += ch
        if current:
            chunk_words.append(current)
        words.extend(chunk_words)
    return words


class SenseVoiceSmall:
    """``speech``, ``speech_lengths``, ``language``, ``textnorm`` → ``ctc_logits``, ``encoder_out_lens``.

    Same interface as :class:`OfflineParaformer`, so the offline pipeline can
    run either; the request's ``svs_lang`` / ``svs_itn`` arrive in
    :class:`DecodeOptions`.
    """

    has_timestamps = False

    def __init__(
        self,
        model_dir: Path,
        quantized: bool = False,
        options: RuntimeOptions = RuntimeOptions(),
        batch_size: int = 1,
        max_batch_frames: int = 6000,
    ):
        self.model_dir = Path(model_dir)
        config = load_config(self.model_dir)
        self.frontend = Frontend.from_model_dir(self.model_dir, config)
        self.token_list: List[str] = load_token_list(self.model_dir)
        self.model_path = pick_onnx_file(self.model_dir, quantized)
        self.session = create_session(self.model_path, options)
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = self.session.get_outputs()
        if len(inputs) < 4 or len(outputs) < 2:
            raise ValueError(
                f"{self.model_path} does not look like a SenseVoiceSmall export "
                f"(inputs {inputs}, expected speech, speech_lengths, language, textnorm)"
            )
        # Feed by name when the export uses FunASR's names, else by position.
        wanted = ("speech", "speech_lengths", "language", "textnorm")
        self._input_names = list(wanted) if set(wanted) <= set(inputs) else inputs[:4]
        vocab_dim = outputs[0].shape[-1] if outputs[0].shape else None
        if isinstance(vocab_dim, int) and vocab_dim != len(self.token_list):
            raise ValueError(
                f"{self.model_dir}: tokens.json has {len(self.token_list)} pieces but the model "
                f"scores {vocab_dim}; the files come from different models"
            )
        #: Most segments per onnxruntime call, and most padded LFR frames per call.
        #: Batch size 1 is FunASR's default and gives exactly its results.
        self.batch_size = max(1, int(batch_size))
        self.max_batch_frames = max_batch_frames

    @property
    def independent_segments(self) -> bool:
        """Whether a segment's result is the same whichever others it is decoded with (one per call)."""
        return self.batch_size == 1

    @property
    def sample_rate(self) -> int:
        return self.frontend.sample_rate

    def features(self, waveform: np.ndarray) -> np.ndarray:
        return self.frontend(waveform)

    def recognize(self, waveforms: Sequence[np.ndarray], options: DecodeOptions = NO_OPTIONS) -> List[AsrResult]:
        """Decode each waveform (mono float32 at :attr:`sample_rate`)."""
        language_id(options.language)  # fail before spending time on features
        return self.recognize_features([self.features(w) for w in waveforms], options)

    def recognize_features(self, feats: Sequence[np.ndarray], options: DecodeOptions = NO_OPTIONS) -> List[AsrResult]:
        """Decode precomputed features, batching by length to limit padding.

        Raises ValueError for an unknown ``options.language``; a segment the
        graph fails on gives an empty result (and a warning) instead.
        """
        lid = language_id(options.language)
        tnid = textnorm_id(options.text_norm)
        results: List[Optional[AsrResult]] = [None] * len(feats)
        for batch in length_batches([f.shape[0] for f in feats], self.batch_size, self.max_batch_frames):
            self._run_batch(feats, batch, results, lid, tnid, options.text_norm)
        return [r if r is not None else AsrResult(punctuated=options.text_norm) for r in results]

    def _run_batch(self, feats: Sequence[np.ndarray], batch: List[int], results: List[Optional[AsrResult]],
                   lid: int, tnid: int, punctuated: bool) -> None:
        live = [i for i in batch if feats[i].shape[0] > 0]
        for i in batch:
            if feats[i].shape[0] == 0:
                results[i] = AsrResult(punctuated=punctuated)
        if not live:
            return
        speech, lengths = pad_features([feats[i] for i in live])
        feed = dict(zip(self._input_names, (
            speech,
            lengths,
            np.full(len(live), lid, dtype=np.int32),
            np.full(len(live), tnid, dtype=np.int32),
        )))
        def give_up(i: int, exc: Exception) -> None:
            log.warning("SenseVoiceSmall failed on a %d-frame segment: %s", int(lengths[0]), exc)
            results[i] = AsrResult(punctuated=punctuated)

        outputs = run_or_isolate(lambda: self.session.run(None, feed), live,
                                 lambda i: self._run_batch(feats, [i], results, lid, tnid, punctuated), give_up)
        if outputs is None:
            return
        logits, out_lens = outputs[:2]
        for row, i in enumerate(live):
            # Rows shorter than the longest are padded; only their own frames count.
            ids = ctc_greedy_ids(logits[row], int(out_lens[row]))
            results[i] = self._result(ids, punctuated)

    def _result(self, ids: List[int], punctuated: bool) -> AsrResult:
        tokens = [self.token_list[i] for i in ids]
        text = decode_pieces(tokens)
        return AsrResult(
            token_ids=ids,
            tokens=tokens,
            words=split_words(text),
            word_spans=None,
            text=text,
            tags=read_tags(tokens),
            punctuated=punctuated,
        )
