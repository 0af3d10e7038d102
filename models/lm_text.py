"""Text of an n-gram LM (WFST) decode: LM words → timestamp units and text, as FunASR's C++ runtime does it.

With ``--lm-dir`` the offline Paraformer's log-probs go through a WFST decoder, whose best path is a list of
**LM words** (entries of the LM directory's ``config.yaml`` ``token_list``; they may be multi-character
Chinese words such as ``竞阖`` or glued English pieces such as ``andthese``), not AM tokens.  FunASR's
``WfstDecoder::FinalizeDecode`` (``runtime/onnxruntime/src/wfst-decoder.cpp``) turns them into text in one of
two ways, and the two differ:

* **timestamp models** (BiCif, four ONNX outputs): ``Vocab::Vector2String`` maps ids to strings with no
  filtering, ``SplitChiEngCharacters`` (``util.cpp``) cuts each word into units (:func:`split_lm_words`),
  ``TimestampOnnx`` gives each unit a CIF interval (:func:`models.cif_timestamps.timestamp_onnx_spans`) and
  ``PostProcess`` builds the text and merges the stamps (:func:`post_process`, :func:`lm_stamp_text`).
  Multi-character Chinese words come out as single characters with no spaces between them;
* **models without timestamps**: ``Vocab::Vector2StringV2`` on the words (:func:`lm_plain_text`).  A word counts
  as Chinese only when it is exactly one character of U+4E00..U+9FFF, so two consecutive multi-character words
  get a space (``["而", "对", "楼市", "成交"]`` → ``"而对楼市 成交"``).

The server sends the timestamp path's text for the timestamp model; with a punctuation model the extra spaces of
the other path vanish as well (its tokenizer splits on spaces), so :func:`lm_stamp_text` is the text to use.

Rules that are easy to get wrong, all from the C++:

* the timestamp path does **not** drop ``<s>``/``</s>``/``<unk>`` before counting units: they are units, take a
  CIF interval each, and only ``PostProcess`` drops them (text and stamp).  Only a trailing ``</s>`` is removed
  first (``TimestampOnnx`` pops it from the shared list);
* ``@@`` pieces are glued in ``PostProcess`` / ``Vector2StringV2``, not before: a glued word's stamp runs from
  its first piece's start to its last piece's end.  A ``xx@@`` piece that is last or followed by a Chinese
  character keeps ``xx`` plus a trailing space;
* ``SplitChiEngCharacters`` treats U+4E00..U+9FFF **and** U+3400..U+4DFF as CJK (one unit each) and cuts other
  runs at ASCII spaces; ``PostProcess`` and ``Vector2StringV2`` use the narrower one-char-of-U+4E00..U+9FFF
  test, so an Extension-A character is "English" there (spaces around it);
* ``PostProcess`` always puts a space between two consecutive non-Chinese items; ``Vector2StringV2`` only when
  the previous or the current item is longer than one byte (``a`` ``b`` → ``ab``);
* characters outside the BMP are decoded by the C++ UTF-8→UTF-16 step as NULs and vanish from the units.

Pure functions on strings; no model or LM is needed.
"""
from __future__ import annotations

from typing import Iterator, List, Optional, Sequence, Tuple, TypeVar

#: Words the C++ text builders skip (``PostProcess`` and ``Vector2StringV2`` step 1).
SKIPPED_WORDS = frozenset({"<s>", "</s>", "<unk>"})

T = TypeVar("T")


def _is_split_cjk(cp: int) -> bool:
    """``EncodeConverter::IsChineseCharacter``: the test ``SplitChiEngCharacters`` uses."""
    return 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DFF


def is_chinese_word(word: str) -> bool:
    """``IsChinese`` of util.cpp / vocab.cpp: exactly one 3-byte UTF-8 character in U+4E00..U+9FFF.

    A multi-character Chinese word is *not* Chinese here; it is handled like an English word.
    """
    return len(word) == 1 and 0x4E00 <= ord(word) <= 0x9FFF


def _utf8_len(word: str) -> int:
    return len(word.encode("utf-8", "surrogatepass"))


def split_chi_eng(word: str) -> List[str]:
    """``SplitChiEngCharacters`` on one string: CJK characters singly, other runs cut at ASCII spaces."""
    units: List[str] = []
    run: List[str] = []
    for ch in word:
        cp = ord(ch)
        if cp == 0 or cp > 0xFFFF:
            # The C++ UTF-8 decoder turns each byte of a 4-byte sequence into U+0000, whose UTF-8 form is the
            # empty C string: the character adds nothing and does not end the run.
            continue
        if _is_split_cjk(cp):
            if run:
                units.append("".join(run))
                run = []
            units.append(ch)
        elif ch == " ":
            if run:
                units.append("".join(run))
                run = []
        else:
            run.append(ch)
    if run:
        units.append("".join(run))
    return units


def split_lm_words(words: Sequence[str]) -> List[str]:
    """LM words → the units FunASR's timestamp path counts and stamps, one CIF interval each.

    ``Vector2String`` keeps every word (``<s>``, ``</s>``, ``<unk>`` and ``xx@@`` pieces included), each is cut
    by :func:`split_chi_eng`, and a trailing ``</s>`` is dropped (``TimestampOnnx`` pops it from the same list
    that ``PostProcess`` later reads).  Skipping the other special words and gluing ``@@`` pieces happens
    afterwards, in :func:`post_process`, because the unit count must be the C++ one: it decides whether the
    CIF peaks can be used directly or are rebuilt from the alphas.
    """
    units: List[str] = []
    for word in words:
        units.extend(split_chi_eng(word))
    if units and units[-1] == "</s>":
        units.pop()
    return units


def _glued(units: Sequence[str]) -> Iterator[Tuple[int, int, str]]:
    """``(first, last, word)`` for each item the C++ text functions write, in order.

    ``<s>``/``</s>``/``<unk>`` are skipped; ``xx@@`` pieces are glued to what
    follows (``first`` is the first piece's index), and a ``lo@@`` before a
    Chinese character or at the end keeps ``lo`` and a space.  Both
    ``PostProcess`` and ``Vector2StringV2`` do exactly this before their own
    spacing rules.
    """
    combine = ""
    first: Optional[int] = None
    last = len(units) - 1
    for i, word in enumerate(units):
        if word in SKIPPED_WORDS:
            continue
        if "@@" in word:
            if i != last and not is_chinese_word(units[i + 1]):
                combine += word[:-2]
                first = i if first is None else first
                continue
            word = word[:-2] + " "
        yield (i if first is None else first), i, combine + word
        combine, first = "", None


def lm_words(units: Sequence[str], spans: Optional[Sequence[Tuple[T, T]]] = None) -> Tuple[List[str], List[Tuple[T, T]]]:
    """The words :func:`post_process` writes (special words skipped, ``@@`` pieces glued) with their spans.

    These are what the offline pipeline joins, punctuates and times; joining them
    the way :func:`post_process` does gives its text.
    """
    if spans is not None and len(spans) < len(units):
        raise ValueError(f"{len(spans)} spans for {len(units)} units")
    words: List[str] = []
    merged: List[Tuple[T, T]] = []
    for first, last, word in _glued(units):
        words.append(word.strip())
        if spans is not None:
            merged.append((spans[first][0], spans[last][1]))
    return words, merged


def post_process(units: Sequence[str], spans: Optional[Sequence[Tuple[T, T]]] = None) -> Tuple[str, List[Tuple[T, T]]]:
    """``PostProcess`` of util.cpp: the timestamp path's text and the stamps of its items.

    ``spans`` are the units' intervals (any unit: ms or seconds), one per unit, as
    :func:`models.cif_timestamps.timestamp_onnx_spans` gives them; without ``spans`` only the text is built and
    the returned list is empty.  Rules: the items of :func:`_glued` (a glued word spans from its first piece's
    start to its last piece's end); a Chinese character (:func:`is_chinese_word`) is written as is; any other
    item is preceded by a space when the item before it was not Chinese.
    """
    out: List[str] = []
    is_pre_english = False
    for _, _, word in _glued(units):
        english = not is_chinese_word(word)
        if english and is_pre_english:
            out.append(" ")
        out.append(word)
        is_pre_english = english
    return "".join(out), lm_words(units, spans)[1] if spans is not None else []


def lm_stamp_text(units: Sequence[str]) -> str:
    """The timestamp path's segment text (``PostProcess``'s text, before its `` | ``) from :func:`split_lm_words` units.

    Chinese characters are joined with no space, consecutive non-Chinese items (English LM words such as
    ``these``) get one space.  This is the text the server sends for an LM decode of the timestamp model.
    """
    return post_process(units)[0]


def lm_plain_text(words: Sequence[str]) -> str:
    """``Vocab::Vector2StringV2(words, "")``: the C++ text of an LM decode for models without timestamps.

    Kept for comparison and documentation: it differs from :func:`lm_stamp_text` because multi-character
    Chinese LM words stay whole and count as "English", so two in a row get a space (``楼市 成交``), and a space
    goes between two non-Chinese items only when one of them is longer than one byte.  ``<s>``, ``</s>`` and
    ``<unk>`` are skipped and ``@@`` pieces glued as in :func:`post_process`.
    """
    out: List[str] = []
    is_pre_english = False
    pre_english_len = 0
    for _, _, word in _glued(words):
        if is_chinese_word(word):
            out.append(word)
            is_pre_english = False
        else:
            size = _utf8_len(word)
            if is_pre_english and (pre_english_len > 1 or size > 1):
                out.append(" ")
            out.append(word)
            pre_english_len = size
            is_pre_english = True
    return "".join(out)
