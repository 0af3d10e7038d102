"""Sentence pieces (``stamp_sents``) and timestamps that follow the final text.

The protocol's ``timestamp`` lists one ``[start, end]`` per *unit* of the
final text and ``stamp_sents`` cuts the text at punctuation marks.  A unit is
what FunASR's servers count: one Chinese character, one digit, one
punctuation character, or one run of other characters (an English word).
Punctuation marks that close a piece (``，。？、,?``) carry no time.

Every sentence piece holds at least one timed unit, so its ``start``/``end``
are real times.  A closing mark with no unit before it in its piece starts no
piece of its own: in 2pass the realtime punctuation reports the previous
segment's last mark at the start of the next segment's text (``。后面``),
and a doubled mark (``好，，``) closes nothing the first one did not.  Those
marks stay in the text; FunASR's ``TimestampSentence`` gives them a piece with
``start: -1`` (or 0) and no tokens, which subtitle writers turn into empty cues.

ITN rewrites units (``二 零 二 四`` → ``2 0 2 4``, ``百 分 之 五 十`` →
``5 0 %``), so times are re-aligned after it: units that ITN kept keep their
times, and each rewritten stretch shares the time of the units it replaced,
split evenly.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, cast

from .tokens import is_cjk_char

Span = Tuple[int, int]

CLOSING_MARKS = frozenset("，。？、,?")
_KEPT_IN_WORDS = frozenset("&'-")


def _is_punctuation(ch: str) -> bool:
    if ch in _KEPT_IN_WORDS:
        return False
    cp = ord(ch)
    return (
        0x21 <= cp <= 0x2F
        or 0x3A <= cp <= 0x40
        or 0x5B <= cp <= 0x60
        or 0x7B <= cp <= 0x7E
        or 0x2000 <= cp <= 0x206F
        or 0x3000 <= cp <= 0x303F
        or 0xFF00 <= cp <= 0xFF0F
        or 0xFF1A <= cp <= 0xFF20
        or unicodedata.category(ch).startswith("P")
    )


def split_units(text: str) -> List[str]:
    """Cut text into timestamp units (see the module docstring)."""
    units: List[str] = []
    word = ""
    for ch in text:
        if is_cjk_char(ch) or ch.isdigit() or _is_punctuation(ch):
            if word:
                units.append(word)
                word = ""
            units.append(ch)
        elif ch.isspace():
            if word:
                units.append(word)
                word = ""
        else:
            word += ch
    if word:
        units.append(word)
    return units


def timed_units(text: str) -> List[str]:
    """The units of ``text`` that carry a timestamp."""
    return [u for u in split_units(text) if u not in CLOSING_MARKS]


def realign_spans(before: str, after: str, spans: Sequence[Span]) -> Optional[List[Span]]:
    """Move ``spans`` (one per timed unit of ``before``) onto the timed units of ``after``.

    Returns None when ``spans`` do not match ``before`` (nothing sensible to move).
    """
    old = timed_units(before)
    new = timed_units(after)
    if len(old) != len(spans):
        return None
    if old == new:
        return [cast(Span, tuple(s)) for s in spans]
    if not new:
        return []
    if not old:
        return None
    out: List[Span] = []
    replaced: List[int] = []  # old units of the current rewritten stretch
    inserted = 0  # new units of the current rewritten stretch

    def close_stretch(next_old: Optional[int]) -> None:
        """Give the stretch's new units the time of the old units they replace."""
        nonlocal inserted
        if not inserted:
            return
        if replaced:
            rng = (spans[replaced[0]][0], spans[replaced[-1]][1])
        elif out:  # a pure insertion shares the previous unit's time
            rng = out.pop()
            inserted += 1
        elif next_old is not None:
            rng = cast(Span, tuple(spans[next_old]))
        else:
            rng = (0, 0)
        out.extend(split_span_evenly(rng, inserted))

    for i, j in _align(old, new):
        if i is not None and j is not None and old[i] == new[j]:
            close_stretch(i)
            replaced, inserted = [], 0
            out.append(cast(Span, tuple(spans[i])))
            continue
        if i is not None:
            replaced.append(i)
        if j is not None:
            inserted += 1
    close_stretch(None)
    return out if len(out) == len(new) else None


def split_span_evenly(rng: Span, n: int) -> List[Span]:
    """``n`` consecutive spans covering ``rng``; the last one takes the remainder."""
    start, end = int(rng[0]), int(rng[1])
    step = (end - start) // n
    return [(start + k * step, end if k == n - 1 else start + (k + 1) * step) for k in range(n)]


def _align(a: Sequence[str], b: Sequence[str]) -> List[Tuple[Optional[int], Optional[int]]]:
    """Levenshtein alignment of two unit lists as (index in a | None, index in b | None) pairs."""
    n, m = len(a), len(b)
    dist = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        dist[i][0] = i
    for j in range(m + 1):
        dist[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            if a[i - 1] == b[j - 1]:
                dist[i][j] = dist[i - 1][j - 1]
            else:
                dist[i][j] = 1 + min(dist[i - 1][j], dist[i][j - 1], dist[i - 1][j - 1])
    pairs: List[Tuple[Optional[int], Optional[int]]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and a[i - 1] == b[j - 1] and dist[i][j] == dist[i - 1][j - 1]:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and j > 0 and dist[i][j] == dist[i - 1][j - 1] + 1:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and dist[i][j] == dist[i - 1][j] + 1:
            pairs.append((i - 1, None))
            i -= 1
        else:
            pairs.append((None, j - 1))
            j -= 1
    pairs.reverse()
    return pairs


@dataclass
class SentencePiece:
    """One ``stamp_sents`` entry."""

    text_seg: str
    punc: str
    start: int
    end: int
    ts_list: List[List[int]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"text_seg": self.text_seg, "punc": self.punc, "start": self.start, "end": self.end, "ts_list": self.ts_list}


def sentence_pieces(text: str, spans: Sequence[Span]) -> List[SentencePiece]:
    """Cut ``text`` at closing marks; each piece lists its units and their times.

    Units beyond the available spans are left out, as the reference does; a mark
    that closes no timed unit makes no piece (see the module docstring).
    """
    pieces: List[SentencePiece] = []
    units: List[str] = []
    times: List[List[int]] = []
    k = 0
    for unit in split_units(text):
        if unit in CLOSING_MARKS:
            if units:
                pieces.append(_piece(units, times, unit))
            units, times = [], []
        elif k < len(spans):
            units.append(unit)
            times.append([int(spans[k][0]), int(spans[k][1])])
            k += 1
    if units:
        pieces.append(_piece(units, times, ""))
    return pieces


def _piece(units: List[str], times: List[List[int]], punc: str) -> SentencePiece:
    return SentencePiece(" ".join(units), punc, times[0][0], times[-1][1], times)
