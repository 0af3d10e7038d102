"""Neural hotwords for the contextual and SeACo Paraformers.

Those graphs take an extra input, ``bias_embed`` ``[B, N, d]``: one vector per
hotword, computed by a small companion graph ``model_eb.onnx`` from the
hotwords' token ids.  This module turns a hotword list into that matrix.

How the list becomes rows (as FunASR's C++ runtime, which the server
replaces, does it, with two additions marked; its Python runtime
``funasr_onnx`` differs where noted):

* a word made only of Chinese characters is one token per character
  (``funasr_onnx`` spells every word this way, English ones included);
* any other word is split into pieces by the model's ``seg_dict``
  (``word<TAB>piece piece ...``); added here: a word missing there is looked
  up again in lower case, and then used as a single token when the
  vocabulary has it whole (the C++ runtime skips both);
* a row holds at most :data:`MAX_HOTWORD_TOKENS` ids, zero-padded; longer words
  are cut (``funasr_onnx`` fails on them instead);
* a word whose kept tokens are not all in the vocabulary is left out and
  reported, never fatal (the C++ runtime skips it with a log line;
  ``funasr_onnx`` substitutes id 8403, which only exists in the full-size
  vocabulary);
* a final blank row ``[<s>, 0, ...]`` of length 1 is always appended, so the
  smallest input is that single row ("no hotwords").

``model_eb`` returns ``hw_embed`` ``[10, N, d]``: the state after every token of
every row.  A word's vector is the one after its last token,
``hw_embed[length - 1, row]``.  Rows are independent of each other, so the
bias rows follow the input order.  The recognisers attend over the rows with
no notion of position, so reordering the hotwords only reorders the rows and
leaves the decoded tokens unchanged (up to floating-point summation order;
identical on every fixture case, see tests/test_hotword_embedding.py).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .model_dir import pick_onnx_file
from .onnx_session import RuntimeOptions, create_session
from .tokens import is_cjk_char, load_token_list

log = logging.getLogger(__name__)

#: Token slots per hotword row; the exported ``model_eb`` graphs take ``[N, 10]``.
MAX_HOTWORD_TOKENS = 10
#: The id of ``<s>``, the only token of the blank row (both FunASR runtimes hard-code 1).
BLANK_TOKEN_ID = 1
SEG_DICT_NAME = "seg_dict"

Rejection = Tuple[str, str]


@dataclass(frozen=True)
class HotwordTokens:
    """The ``model_eb`` input for a hotword list, and what was left out of it."""

    #: ``[N + 1, 10]`` int32 token ids, zero-padded; the last row is the blank ``<s>`` row.
    matrix: np.ndarray
    #: ``[N + 1]`` int32 number of real tokens per row (1 for the blank row).
    lengths: np.ndarray
    #: The N embedded words, in row order.
    words: List[str] = field(default_factory=list)
    #: ``(word, offending)`` for each word left out; ``offending`` is the characters or
    #: pieces the vocabulary lacks (space-separated), or the word itself when it could
    #: not be split into known pieces at all.
    rejected: List[Rejection] = field(default_factory=list)


@dataclass(frozen=True)
class HotwordBias:
    """What a contextual / SeACo Paraformer takes as ``bias_embed`` (without the batch axis)."""

    #: ``[N + 1, d]`` float32, one row per word in :attr:`words` and the blank row last.
    bias: np.ndarray
    words: List[str] = field(default_factory=list)
    #: ``(word, reason)`` for each hotword that could not be embedded; readable, for logs.
    rejected: List[Rejection] = field(default_factory=list)


def load_seg_dict(model_dir: Path) -> Dict[str, List[str]]:
    """``seg_dict`` as ``{word: [piece, ...]}``; an absent file is an empty dictionary.

    Without the file only Chinese words and words that are themselves a vocabulary
    token can be hotwords, which is better than refusing the whole model.
    """
    path = Path(model_dir) / SEG_DICT_NAME
    table: Dict[str, List[str]] = {}
    if not path.is_file():
        return table
    with path.open("r", encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) > 1 and parts[0]:
                pieces = parts[1].split()
                if pieces:
                    table[parts[0]] = pieces
    return table


def is_chinese_word(word: str) -> bool:
    """True when every character is a CJK ideograph (the C++ runtime's test, widened to the extensions)."""
    return bool(word) and all(is_cjk_char(c) for c in word)


def hotword_units(word: str, vocab: Mapping[str, int], seg_dict: Mapping[str, Sequence[str]]) -> Optional[List[str]]:
    """The tokens ``word`` is spelled with, before the vocabulary check; None when unknown.

    Chinese words go one character per token; other words through ``seg_dict``
    (exact spelling first, then lower case, since the dictionaries are lower
    case and clients type "Hello"), else as a single token if the vocabulary
    has it whole.
    """
    if is_chinese_word(word):
        return list(word)
    for key in (word, word.lower()):
        pieces = seg_dict.get(key)
        if pieces:
            return list(pieces)
    if word in vocab:
        return [word]
    return None


def tokenize_hotwords(
    words: Sequence[str], vocab: Mapping[str, int], seg_dict: Mapping[str, Sequence[str]]
) -> HotwordTokens:
    """Build the ``[N + 1, 10]`` ``model_eb`` input for ``words``.

    Each entry is split on whitespace, as the C++ runtime splits the
    space-joined hotword string: "hello world" is two hotwords (a plain string
    is taken as one such entry, not as a sequence of characters).  Empty entries
    are skipped silently; words that cannot be spelled with the vocabulary are
    returned in ``rejected``.  Words keep their order and duplicates (each row is
    embedded on its own, so a duplicate costs one row and changes nothing else).
    """
    if isinstance(words, str):  # one space-separated string, as both FunASR runtimes take them
        words = [words]
    rows: List[List[int]] = []
    lengths: List[int] = []
    kept: List[str] = []
    rejected: List[Rejection] = []
    for entry in words:
        for word in str(entry).split():
            units = hotword_units(word, vocab, seg_dict)
            if units is None:
                rejected.append((word, word))
                continue
            units = units[:MAX_HOTWORD_TOKENS]  # the C++ runtime keeps the first ten tokens
            missing = [u for u in units if u not in vocab]
            if missing:
                rejected.append((word, " ".join(dict.fromkeys(missing))))
                continue
            rows.append([vocab[u] for u in units])
            lengths.append(len(units))
            kept.append(word)
    rows.append([BLANK_TOKEN_ID])
    lengths.append(1)
    matrix = np.zeros((len(rows), MAX_HOTWORD_TOKENS), dtype=np.int32)
    for i, row in enumerate(rows):
        matrix[i, : len(row)] = row
    return HotwordTokens(matrix, np.asarray(lengths, dtype=np.int32), kept, rejected)


def select_last_states(hw_embed: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Row i of the bias is ``hw_embed[lengths[i] - 1, i]``: the encoder state after the word's last token."""
    hw_embed = np.asarray(hw_embed)
    if hw_embed.ndim != 3 or hw_embed.shape[1] != len(lengths):
        raise ValueError(f"hw_embed of shape {hw_embed.shape} does not match {len(lengths)} hotword rows")
    index = np.asarray(lengths, dtype=np.int64) - 1
    return np.ascontiguousarray(hw_embed[index, np.arange(len(lengths))], dtype=np.float32)


class HotwordEmbedder:
    """One ``model_eb[_quant].onnx`` session plus the vocabulary and ``seg_dict`` to feed it.

    Holds no per-request state: :meth:`embed` only reads the session and tables,
    and onnxruntime sessions may run from several threads at once, so one
    instance serves every connection (the server embeds once per connection).
    """

    def __init__(self, model_dir: Path, quantized: bool = False, options: RuntimeOptions = RuntimeOptions()):
        self.model_dir = Path(model_dir)
        self.model_path = pick_onnx_file(self.model_dir, quantized, stem="model_eb")
        self.session = create_session(self.model_path, options)
        self._input_name = self.session.get_inputs()[0].name
        self._output_name = self.session.get_outputs()[0].name
        self.vocab: Dict[str, int] = {}
        for i, token in enumerate(load_token_list(self.model_dir)):
            self.vocab.setdefault(token, i)
        self.seg_dict = load_seg_dict(self.model_dir)
        blank = self._run(tokenize_hotwords([], self.vocab, self.seg_dict))
        blank.setflags(write=False)  # shared by every request without hotwords
        self._blank = blank
        #: Width of one hotword vector (512 in the released models); read from the graph's output.
        self.dim = int(blank.shape[1])

    @property
    def blank_bias(self) -> np.ndarray:
        """``[1, d]``: the bias of a request without hotwords (computed once, read-only)."""
        return self._blank

    def tokenize(self, words: Sequence[str]) -> HotwordTokens:
        return tokenize_hotwords(words, self.vocab, self.seg_dict)

    def embed(self, words: Sequence[str]) -> HotwordBias:
        """The ``[N + 1, d]`` bias for ``words`` (blank row last), with the words left out."""
        tokens = self.tokenize(words)
        rejected = [(word, self._reason(word, offending)) for word, offending in tokens.rejected]
        for word, reason in rejected:  # the callers tell the client (or the operator) once
            log.debug("hotword %r not used: %s", word, reason)
        if not tokens.words:
            return HotwordBias(self._blank, [], rejected)
        return HotwordBias(self._run(tokens), list(tokens.words), rejected)

    def _run(self, tokens: HotwordTokens) -> np.ndarray:
        (hw_embed,) = self.session.run([self._output_name], {self._input_name: tokens.matrix})
        return select_last_states(hw_embed, tokens.lengths)

    def _reason(self, word: str, offending: str) -> str:
        if hotword_units(word, self.vocab, self.seg_dict) is None:
            return "neither in seg_dict nor a token of the model's vocabulary"
        return f"not in the model's vocabulary: {offending}"
