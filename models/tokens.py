"""Turning Paraformer token ids into words, text and per-word times.

Paraformer's vocabulary mixes single Chinese characters with English BPE
pieces; a piece ending in ``@@`` continues into the next token.  The rules
here follow FunASR's Python runtime (``funasr-onnx``), which the C++ server
matches on trained models:

* ids are picked greedily; blanks and ``</s>`` are dropped, then the list is
  cut to ``token_num - predictor_bias`` (the last CIF output is the sentence end);
* ``<s>``, ``</s>`` and ``<unk>`` never reach the text;
* ``xx@@`` pieces are glued to the following English piece;
* runs of single letters separated by spaces become an upper-case acronym
  (``a i`` → ``AI``);
* text puts a space between two English words and nothing around Chinese.

Where ``funasr-onnx`` raises on a token it does not classify (``&``, ``.``,
characters outside the basic CJK block), we treat it as part of a word
instead of failing the request.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, cast

import numpy as np

from .model_dir import ModelDirError

#: The vocabulary file of every model directory that has one.
TOKENS_FILE = "tokens.json"

Span = Tuple[int, int]

SPECIAL_TOKENS = frozenset({"<s>", "</s>", "<unk>", "<blank>"})


def load_token_list(model_dir: Path) -> List[str]:
    """A model directory's ``tokens.json``: a non-empty JSON list of strings (every model that has one reads it
    here); :class:`~models.model_dir.ModelDirError` when it is missing or is not such a list."""
    path = Path(model_dir) / TOKENS_FILE
    if not path.is_file():
        raise ModelDirError(f"model directory {model_dir} is missing {TOKENS_FILE}")
    try:
        with path.open("r", encoding="utf-8") as f:
            tokens = json.load(f)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelDirError(f"{path}: not a JSON list of tokens ({exc})") from None
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise ModelDirError(f"{path}: expected a non-empty JSON list of strings (the tokens)")
    return tokens


@dataclass(frozen=True)
class Vocabulary:
    tokens: Sequence[str]
    blank_id: int = 0
    eos_id: int = 2

    @classmethod
    def from_tokens(cls, tokens: Sequence[str]) -> "Vocabulary":
        index = {t: i for i, t in enumerate(tokens)}
        return cls(tokens=list(tokens), blank_id=index.get("<blank>", 0), eos_id=index.get("</s>", 2))

    def __len__(self) -> int:
        return len(self.tokens)


def greedy_ids(logits: np.ndarray, token_num: int, predictor_bias: int, vocab: Vocabulary) -> List[int]:
    """Greedy ids of one utterance: argmax, drop blank and ``</s>``, keep ``token_num - bias``.

    Only the first ``token_num`` decoder positions are real; in a batch the
    rest is padding for longer neighbours, so it is cut before filtering.
    """
    ids = np.asarray(logits)[: max(0, int(token_num))].argmax(axis=-1).tolist()
    kept = [i for i in ids if i != vocab.blank_id and i != vocab.eos_id]
    return kept[: max(0, int(token_num) - int(predictor_bias))]


def is_cjk_char(ch: str) -> bool:
    """One CJK ideograph (the basic block and the extensions FunASR vocabularies use)."""
    if len(ch) != 1:
        return False
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2FA1F
        or 0xF900 <= cp <= 0xFAFF
    )


def _is_chinese_token(token: str) -> bool:
    """funasr-onnx counts digits as 'Chinese': they are written without spaces."""
    return bool(token) and all(is_cjk_char(c) or "0" <= c <= "9" for c in token)


def _is_ascii_letter(s: str) -> bool:
    return len(s) == 1 and s.isascii() and s.isalpha()


def tokens_to_words(
    tokens: Sequence[str], times: Optional[Sequence[Span]] = None
) -> Tuple[List[str], Optional[List[Span]]]:
    """Glue BPE pieces into words and merge acronyms; carry each word's time span.

    ``times`` holds one span per token after the special tokens are removed.
    A word's span runs from its first piece's start to its last piece's end.
    On untrained models two odd cases occur, and we place them as
    ``funasr-onnx`` does so that both give the same answer: a Chinese
    character that interrupts an unfinished ``xx@@`` word is emitted first
    (spanning the pieces seen so far), and a ``xx@@`` left dangling at the
    end is dropped.
    """
    kept = [t for t in tokens if t not in SPECIAL_TOKENS]
    words: List[str] = []
    spans: List[Span] = []
    pending = ""  # letters of an unfinished "xx@@" word
    held: Optional[Span] = None  # span accumulated while a word is unfinished
    for i, tok in enumerate(kept):
        span = cast(Span, tuple(times[i])) if times is not None else (0, 0)
        if "@@" in tok:
            pending += tok.replace("@@", "")
            held = (held[0] if held else span[0], span[1])
        elif _is_chinese_token(tok):
            words.append(tok)
            spans.append(held or span)
            held = None
        else:
            words.append(pending + tok)
            spans.append((held[0] if held else span[0], span[1]))
            pending, held = "", None
    words, spans = _merge_acronyms(words, spans)
    return words, (spans if times is not None else None)


def _merge_acronyms(words: List[str], spans: List[Span]) -> Tuple[List[str], List[Span]]:
    """Runs of two or more single ASCII letters become one upper-case word."""
    out_w: List[str] = []
    out_s: List[Span] = []
    i = 0
    while i < len(words):
        j = i
        while j < len(words) and _is_ascii_letter(words[j]):
            j += 1
        if j - i >= 2:
            out_w.append("".join(words[i:j]).upper())
            out_s.append((spans[i][0], spans[j - 1][1]))
            i = j
        else:
            out_w.append(words[i])
            out_s.append(spans[i])
            i += 1
    return out_w, out_s


def is_english_word(word: str) -> bool:
    return bool(word) and not _is_chinese_token(word)


def join_words(words: Sequence[str]) -> str:
    """Chinese characters back to back, a single space between two English words."""
    out: List[str] = []
    prev_english = False
    for w in words:
        english = is_english_word(w)
        if english and prev_english:
            out.append(" ")
        out.append(w)
        prev_english = english
    return "".join(out)
