"""CT-Transformer punctuation restoration: the offline model and the ``vad_realtime`` one.

The server punctuates recognised text with FunASR's CT-Transformer.  Two exports exist:

* the offline model (``punc_ct-transformer_zh-cn-common-vocab272727-onnx``, and the
  large cn-en one, ``punc_ct-transformer_cn-en-common-vocab471067-large-onnx``), which
  sees a whole utterance at once (:class:`Punctuator`);
* the streaming ``vad_realtime`` model, which is fed one VAD segment at a time and
  carries the words after the last sentence end over to the next segment, so a
  sentence that spans two segments is still punctuated as one (:class:`RealtimePunctuator`
  with a per-connection :class:`PunctuationCache`).

Every result must be identical to FunASR's own Python runtime (``funasr_onnx``
``CT_Transformer`` / ``CT_Transformer_VadRealtime``), including its quirks, because
clients compare our transcripts with the reference server's.  The quirks we keep on
purpose are spelled out where they happen; the places where we knowingly differ are:

* empty (or all-whitespace) text gives an empty result without running the model;
  the reference crashes there (``UnboundLocalError``/``IndexError``), and for the
  realtime model with a non-empty cache it would re-classify (and possibly cut) the
  cache; we leave the cache untouched;
* a string containing lone surrogates (not encodable as UTF-8) makes the reference
  raise ``UnicodeEncodeError``; we treat such code points as non-ASCII characters;
* the reference segments with the process-wide jieba instance (``jieba.load_userdict``
  on every model it loads, so a second model shifts the first one's word frequencies);
  each of our models has a private jieba tokenizer, loaded once (see below).

Word splitting comes in two flavours, both plain functions:

* per character (:func:`split_words`), for the models whose vocabulary is characters
  plus English words: every non-ASCII character is a word, every ASCII run another;
* jieba (:func:`split_words_jieba`), for the models with a word vocabulary (the large
  cn-en ones).  The offline model uses it when the directory asks for it: a
  ``jieba_usr_dict`` file is present (what funasr_onnx goes by) or ``config.yaml`` has
  ``seg_jieba: true`` (what FunASR's C++ runtime goes by); either one is enough.
  English pieces (letters and apostrophes) stay whole, the other pieces are glued
  together and cut by jieba (main dictionary plus the model's ``jieba_usr_dict``, HMM
  off), as funasr_onnx does.  The realtime model always splits per character, as
  funasr_onnx's ``CT_Transformer_VadRealtime`` does whatever the directory holds.

jieba's tokenizer is built when the model is loaded (about a second and ~70 MB per
model, with jieba's own log chatter silenced), never on a request; after that it is
only read (``Tokenizer.cut`` looks up its frequency table and writes nothing), so one
model may serve many threads.

``ascii_marks=True`` on ``punctuate`` writes ``，。、？`` of the output text as ``,.,?``,
as FunASR's C++ ``AddPunc`` does when the ASR model is English (``en-bpe``).

The text side (splitting into words, windows, assembling the output) is plain
functions so that it can be tested without a model; the model classes hold only
read-only state, so one instance may serve many threads and connections.
"""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np

from .config import load_config
from .model_dir import ModelDirError, pick_onnx_file
from .onnx_session import RuntimeOptions, create_session
from .tokens import load_token_list

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Words per model call; FunASR's default ``split_size``.
DEFAULT_WINDOW = 20
#: A window longer than this (carried words included) that has no sentence end is
#: cut at its last comma, which becomes a full stop, so the carry cannot grow forever
#: while commas are being predicted.
LONG_WINDOW_LIMIT = 200
#: The mark of "no punctuation after this word".
NO_MARK = "_"
FULL_STOP = "。"
QUESTION_MARK = "？"
COMMA = "，"
ENUMERATION_COMMA = "、"
#: Marks after which a sentence is complete: the window/cache cut points.
SENTENCE_ENDS = (FULL_STOP, QUESTION_MARK)
#: Config files list ASCII ``,``/``?`` for some exports; the output always uses the
#: full-width forms.
_FULL_WIDTH = {",": COMMA, "?": QUESTION_MARK}
#: ``ascii_marks=True``: the output marks as FunASR's C++ runtime writes them for English.
ASCII_MARKS = {COMMA: ",", FULL_STOP: ".", ENUMERATION_COMMA: ",", QUESTION_MARK: "?"}
_ASCII_MARKS_TABLE = str.maketrans(ASCII_MARKS)
#: The model directory's jieba user dictionary (one word a line, optionally ``word freq tag``).
JIEBA_USER_DICT = "jieba_usr_dict"
#: A piece that the jieba path keeps whole as an English word (funasr_onnx's ``isEnglish``).
_ENGLISH_WORD = re.compile(r"[a-zA-Z']+")


# --------------------------------------------------------------------------- text side


def _is_ascii(ch: str) -> bool:
    """One UTF-8 byte; the reference asks ``len(ch.encode()) == 1``, which is the same test."""
    return ord(ch) < 0x80


def split_words(text: str) -> List[str]:
    """Split text into the model's words.

    Whitespace separates words; inside a whitespace-free run every non-ASCII character
    (a Chinese character, a full-width mark) is a word of its own and every maximal
    run of ASCII characters is one word.  So ``"我用Python3写, ok"`` gives
    ``["我", "用", "Python3", "写", ",", "ok"]``: ASCII punctuation and digits stick to
    the neighbouring ASCII letters, exactly as in FunASR's ``code_mix_split_words``.
    Case is kept (the vocabulary is lower case, so upper-case English is unknown).
    """
    words: List[str] = []
    for run in text.split():
        start = -1  # start of the current ASCII run, -1 when none
        for pos, ch in enumerate(run):
            if _is_ascii(ch):
                if start < 0:
                    start = pos
                continue
            if start >= 0:
                words.append(run[start:pos])
                start = -1
            words.append(ch)
        if start >= 0:
            words.append(run[start:])
    return words


def is_english_word(piece: str) -> bool:
    """Letters and apostrophes only (``"don't"``); such pieces bypass jieba.

    funasr_onnx tests ``re.search("^[a-zA-Z']+$", piece)``, whose ``$`` also matches
    before a final newline; the pieces are whitespace-split, so that never arises.
    """
    return _ENGLISH_WORD.fullmatch(piece) is not None


def language_runs(pieces: Sequence[str]) -> List[Tuple[bool, List[str]]]:
    """Group pieces into maximal runs of English (:func:`is_english_word`) / other pieces.

    Returns ``(is_english, pieces)`` per run, in order.
    """
    runs: List[Tuple[bool, List[str]]] = []
    for piece in pieces:
        english = is_english_word(piece)
        if runs and runs[-1][0] == english:
            runs[-1][1].append(piece)
        else:
            runs.append((english, [piece]))
    return runs


def split_words_jieba(text: str, cut: Callable[[str], Iterable[str]]) -> List[str]:
    """Split text into the words of a jieba-segmented (word vocabulary) model.

    ``text`` is split at whitespace; each run of English pieces (:func:`language_runs`)
    gives its pieces as words, unchanged.  Each run of other pieces is glued together
    *without* the spaces between them (funasr_onnx's ``join_chinese_and_english`` only
    puts spaces before English pieces, and a run has none) and handed to ``cut``,
    jieba's segmentation (:meth:`JiebaWordSplitter.cut`).  So ``"今天 hello world
    天气好"`` gives ``["今天", "hello", "world", "天气", "好"]``, while the spaces of
    ``"3 5个"`` vanish and jieba sees ``"35个"``.
    """
    words: List[str] = []
    for english, run in language_runs(text.split()):
        if english:
            words.extend(run)
        else:
            words.extend(cut("".join(run)))
    return words


def to_ascii_marks(text: str) -> str:
    """``，。、？`` written as ``,.,?`` everywhere in ``text`` (:data:`ASCII_MARKS`).

    FunASR's C++ runtime does this to the punctuated text when the ASR model is
    English; marks that were in the input are converted too, as there.
    """
    return text.translate(_ASCII_MARKS_TABLE)


def words_to_ids(words: Sequence[str], token_to_id: Mapping[str, int], unk_id: int) -> List[int]:
    """Vocabulary ids of ``words``; a word not in the vocabulary maps to ``unk_id``."""
    lookup = token_to_id.get
    return [lookup(w, unk_id) for w in words]


def split_windows(items: Sequence[T], size: int = DEFAULT_WINDOW) -> List[List[T]]:
    """Cut ``items`` into consecutive windows of ``size`` (the last one may be shorter).

    Short inputs, empty ones included, stay a single window, as in FunASR's
    ``split_to_mini_sentence``.  The model is run once per window (plus the words
    carried over from the previous window), which bounds the cost of one call.
    """
    if size < 2:
        raise ValueError(f"window size must be at least 2, got {size}")
    if len(items) <= size:
        return [list(items)]
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def needs_space(previous: str, word: str, by_first_char: bool = False) -> bool:
    """English words are separated by a space, Chinese ones are not.

    A space goes between two words when this one starts with an ASCII character and
    the previous one ends with one (the realtime reference), or, with
    ``by_first_char``, *starts* with one (the offline reference and FunASR's C++
    runtime).  Words from :func:`split_words` are all-ASCII or a single character, so
    the two agree there; jieba words can mix (``"T恤衫"``, ``"B超"``), where they do not.
    """
    if not previous or not word:
        return False
    return _is_ascii(previous[0] if by_first_char else previous[-1]) and _is_ascii(word[0])


def spaced_words(words: Sequence[str], by_first_char: bool = False) -> List[str]:
    """``words`` with a leading space on each word that :func:`needs_space` after its predecessor."""
    out: List[str] = []
    for i, word in enumerate(words):
        out.append(" " + word if i > 0 and needs_space(words[i - 1], word, by_first_char) else word)
    return out


def render(words: Sequence[str], marks: Sequence[str]) -> str:
    """Interleave words and their marks into text, the offline way (``"_"`` means no mark).

    Spacing looks at the previous word's first character (``by_first_char``), as
    the offline reference does.  Any other mark is written out verbatim, including
    the model's ``<unk>`` class, because the reference does so.
    """
    if len(words) != len(marks):
        raise ValueError(f"{len(words)} words but {len(marks)} marks")
    pieces: List[str] = []
    for word, mark in zip(spaced_words(words, by_first_char=True), marks):
        pieces.append(word)
        if mark != NO_MARK:
            pieces.append(mark)
    return "".join(pieces)


def find_sentence_end(marks: Sequence[str]) -> int:
    """Index of the last word followed by ``。``/``？``, or -1.

    Like the reference, the last word and the first two words are never taken as a
    sentence end: the last word's mark is the least certain (the next word is unseen),
    and a cut right at the start would carry almost everything anyway.
    """
    for i in range(len(marks) - 2, 1, -1):
        if marks[i] in SENTENCE_ENDS:
            return i
    return -1


def _find_last_comma(marks: Sequence[str]) -> int:
    for i in range(len(marks) - 2, 1, -1):
        if marks[i] == COMMA:
            return i
    return -1


def finish_offline_text(text: str, classes: List[int], full_stop_id: int) -> Tuple[str, List[int]]:
    """The offline model's end-of-text rule: the result always ends a sentence.

    A trailing ``，``/``、`` becomes ``。``; any other last character except ``。``/``？``
    gets ``。`` appended.  In both cases the last word's class becomes the full stop.
    This looks at the *text*, so a comma that was part of the input (a word of its own
    with no mark) is also replaced, and an ASCII ``?`` gets a ``。`` after it.
    """
    if not text:
        return text, list(classes)
    fixed = list(classes)
    if text[-1] in (COMMA, ENUMERATION_COMMA):
        text = text[:-1] + FULL_STOP
    elif text[-1] in SENTENCE_ENDS:
        return text, fixed
    else:
        text = text + FULL_STOP
    if fixed:
        fixed[-1] = full_stop_id
    return text, fixed


def vad_mask(size: int, vad_pos: int) -> np.ndarray:
    """``[size, size]`` float32 attention mask of the realtime model.

    The first ``vad_pos - 1`` (carried-over) words may not attend to the words from
    ``vad_pos`` on, so the new segment cannot change how the old one is read; everything
    else sees everything.  Positions outside ``(0, size)`` give an all-ones mask.
    """
    mask = np.ones((size, size), dtype=np.float32)
    if 0 < vad_pos < size:
        mask[: vad_pos - 1, vad_pos:] = 0.0
    return mask


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class PunctuationResult:
    """What the offline model made of one text.

    ``classes[i]`` is the model's class for ``words[i]`` (an index into the model's
    ``punc_list``) and ``marks[i]`` its mark (``"_"`` = none), both after the
    end-of-text rule of :func:`finish_offline_text`.
    """

    text: str
    words: List[str] = field(default_factory=list)
    classes: List[int] = field(default_factory=list)
    marks: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class RealtimePunctuationResult(PunctuationResult):
    """What the realtime model made of one segment.

    ``words``/``classes``/``marks`` cover this segment's new words only.  The last new
    word's mark is always dropped from ``text`` (class ``_``): whether the sentence goes
    on is only known once the next segment arrives.  That mark is decided in the next
    call, which therefore starts its ``text`` with ``leading_mark`` (unless it is ``_``),
    the mark for the previous segment's last word.  ``leading_mark``/``leading_class``
    are None when there was no carried-over text.  ``cache`` is the carry for the next
    call (also stored into the :class:`PunctuationCache` passed in).
    """

    leading_mark: Optional[str] = None
    leading_class: Optional[int] = None
    cache: List[str] = field(default_factory=list)

    @property
    def funasr_marks(self) -> List[str]:
        """The marks as ``CT_Transformer_VadRealtime`` returns them (leading mark first)."""
        lead = [] if self.leading_mark is None else [self.leading_mark]
        return lead + list(self.marks)


@dataclass
class PunctuationCache:
    """Per-stream state of the realtime model: the words after the last sentence end.

    One per connection; the model object itself stays stateless.  ``words`` are plain
    words (no spacing), in order, as :func:`split_words` made them.  FunASR keeps them
    with the spaces it rendered and re-splits ``"".join(cache)`` on the next call; for
    words it produced itself that round trip is the identity, so we skip it.
    """

    words: List[str] = field(default_factory=list)

    def clear(self) -> None:
        self.words = []


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class PunctuationVocab:
    """The model directory's token table and punctuation classes."""

    token_to_id: Dict[str, int]
    unk_id: int
    marks: Tuple[str, ...]  # class id -> mark, with ASCII ``,``/``?`` made full width
    full_stop_id: int
    no_mark_id: int

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> "PunctuationVocab":
        tokens = load_token_list(model_dir)
        config = load_config(model_dir)
        punc_list = (config.get("model_conf") or {}).get("punc_list")
        if not punc_list:
            raise ModelDirError(f"{model_dir}/config.yaml has no model_conf.punc_list")
        return cls.build(tokens, punc_list)

    @classmethod
    def build(cls, tokens: Sequence[str], punc_list: Sequence[str]) -> "PunctuationVocab":
        # Built once: the real vocabulary has 272727 entries.  A duplicated token keeps
        # its last id and the unknown word is the last token, as in the reference.
        token_to_id = {tok: i for i, tok in enumerate(tokens)}
        unk_id = token_to_id[tokens[-1]]
        marks = tuple(_FULL_WIDTH.get(str(m), str(m)) for m in punc_list)
        # Without a "。" class the reference falls back to class 0 for forced full stops.
        full_stop_id = marks.index(FULL_STOP) if FULL_STOP in marks else 0
        no_mark_id = marks.index(NO_MARK) if NO_MARK in marks else 1
        return cls(token_to_id, unk_id, marks, full_stop_id, no_mark_id)


#: ``seg_jieba`` values that mean yes when written as text (YAML 1.1 booleans, and ``1``).
_YES = frozenset({"true", "yes", "on", "y", "1"})


def seg_jieba_flag(value: Any) -> bool:
    """What a ``config.yaml`` ``seg_jieba`` value says: ``true``/``1``/``"true"``/``"yes"`` yes;
    ``false``/``0``/``"false"``/absent (None) and anything else no."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in _YES
    return False


def wants_jieba(model_dir: Union[str, Path], config: Optional[Mapping[str, Any]] = None) -> bool:
    """Whether the offline model in ``model_dir`` splits its input with jieba (the one place that decides).

    Yes when the directory has a ``jieba_usr_dict`` (funasr_onnx decides by that file)
    or when ``config.yaml`` says ``seg_jieba: true`` (FunASR's C++ runtime decides by
    that key; :func:`seg_jieba_flag`).  ``config``: the parsed ``config.yaml``, read from
    the directory if None.
    """
    model_dir = Path(model_dir)
    if (model_dir / JIEBA_USER_DICT).is_file():
        return True
    if config is None:
        config = load_config(model_dir)
    return seg_jieba_flag(config.get("seg_jieba"))


#: Serialises jieba set-up: jieba's initialisation is not thread-safe (its module-level
#: cache-file bookkeeping, and our temporary change of its logger level).
_JIEBA_SETUP_LOCK = threading.Lock()


def _new_jieba_tokenizer(user_dict: Optional[Path]):
    """An initialised private ``jieba.Tokenizer`` with the main dictionary plus ``user_dict``."""
    with _JIEBA_SETUP_LOCK:
        import jieba
        from jieba import finalseg

        jieba_log = logging.getLogger("jieba")  # jieba logs its progress at DEBUG to stderr
        old_level = jieba_log.level
        # A user word with frequency 0 also lands in finalseg's module-level set of words
        # that the HMM must split, which would leak into every other tokenizer.  We never
        # use the HMM, so we take such additions back.
        forced_before = set(finalseg.Force_Split_Words)
        jieba_log.setLevel(logging.WARNING)
        try:
            tokenizer = jieba.Tokenizer()
            tokenizer.initialize()  # the ~1 s part: the main dictionary's prefix table
            if user_dict is not None:
                with open(user_dict, "rb") as f:
                    try:
                        tokenizer.load_userdict(f)
                    except ValueError as exc:  # not UTF-8
                        raise ModelDirError(f"{user_dict}: {exc}") from exc
        finally:
            jieba_log.setLevel(old_level)
            finalseg.Force_Split_Words.difference_update(set(finalseg.Force_Split_Words) - forced_before)
    return tokenizer


class JiebaWordSplitter:
    """jieba word segmentation for one model, with its own dictionary.

    Holds a private ``jieba.Tokenizer`` (never jieba's global one), initialised here,
    with jieba's main dictionary and the words of ``user_dict`` (a model's
    ``jieba_usr_dict``), so two models in one process cannot see each other's words and
    the application's own use of jieba is left alone.  Once built it is only read:
    ``Tokenizer.cut`` looks up its frequency table and writes nothing (its lazy
    initialisation, the one write, has happened here), so one splitter may be used
    from many threads at once.  Nothing else may add words to it afterwards.
    """

    def __init__(self, user_dict: Optional[Union[str, Path]] = None) -> None:
        self.user_dict = Path(user_dict) if user_dict is not None else None
        self._tokenizer = _new_jieba_tokenizer(self.user_dict)

    def cut(self, text: str) -> List[str]:
        """jieba's precise mode without the HMM (no new words guessed) on ``text``."""
        return list(self._tokenizer.cut(text, HMM=False))

    def __call__(self, text: str) -> List[str]:
        """The model's words for ``text`` (:func:`split_words_jieba`)."""
        return split_words_jieba(text, self.cut)


class _CtTransformer:
    """What both exports share: vocabulary, one session, and the windowed decoding loop."""

    def __init__(
        self,
        model_dir: Union[str, Path],
        quantized: bool = False,
        options: RuntimeOptions = RuntimeOptions(),
        session=None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.vocab = PunctuationVocab.from_model_dir(self.model_dir)
        self.model_path = pick_onnx_file(self.model_dir, quantized)
        # ``session``: one already opened on ``model_path`` (see :func:`open_punctuator`)
        self.session = session if session is not None else create_session(self.model_path, options)
        # Inputs are fed by position, as the reference does, so exports that name them
        # differently still work.
        self._input_names = [i.name for i in self.session.get_inputs()]
        self._output_name = self.session.get_outputs()[0].name

    def _feeds(self, ids: np.ndarray, vad_pos: int) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def _classify(self, ids: Sequence[int], vad_pos: int) -> List[int]:
        """Argmax class per word for one window."""
        arr = np.asarray(ids, dtype=np.int32)
        feeds = self._feeds(arr, vad_pos)
        (logits,) = self.session.run([self._output_name], feeds)
        classes = np.argmax(logits, axis=-1)[0]
        if classes.shape[0] != len(ids):
            raise RuntimeError(f"punctuation model returned {classes.shape[0]} classes for {len(ids)} words")
        return [int(c) for c in classes]

    def _decode(self, words: List[str], split_size: int, vad_pos: int = 0) -> List[Tuple[List[str], List[int]]]:
        """Run the model window by window; return the settled ``(words, classes)`` chunks.

        Each window but the last is cut after its last sentence end; the words after the
        cut are carried into the next window and re-classified there with more right
        context.  Without a sentence end the whole window is carried (an empty chunk is
        returned), unless it is longer than :data:`LONG_WINDOW_LIMIT`, when its last comma
        is turned into a full stop and used as the cut.
        """
        ids = words_to_ids(words, self.vocab.token_to_id, self.vocab.unk_id)
        word_windows = split_windows(words, split_size)
        id_windows = split_windows(ids, split_size)
        marks = self.vocab.marks
        carry_words: List[str] = []
        carry_ids: List[int] = []
        chunks: List[Tuple[List[str], List[int]]] = []
        last = len(word_windows) - 1
        for n, (win_words, win_ids) in enumerate(zip(word_windows, id_windows)):
            win_words = carry_words + win_words
            win_ids = carry_ids + win_ids
            classes = self._classify(win_ids, vad_pos)
            if n < last:
                win_marks = [marks[c] for c in classes]
                end = find_sentence_end(win_marks)
                if end < 0 and len(classes) > LONG_WINDOW_LIMIT:
                    end = _find_last_comma(win_marks)
                    if end >= 0:
                        classes[end] = self.vocab.full_stop_id
                carry_words, carry_ids = win_words[end + 1 :], win_ids[end + 1 :]
                win_words, classes = win_words[: end + 1], classes[: end + 1]
            chunks.append((win_words, classes))
        return chunks


class Punctuator(_CtTransformer):
    """The offline CT-Transformer: punctuates a whole text; stateless and thread-safe.

    ``seg_jieba``: split the text with jieba (True) or per character (False); None
    (the default) asks the directory (:func:`wants_jieba`).  The jieba tokenizer, with
    the directory's ``jieba_usr_dict`` when there is one, is built here, so the first
    request does not wait for it.
    """

    def __init__(
        self,
        model_dir: Union[str, Path],
        quantized: bool = False,
        options: RuntimeOptions = RuntimeOptions(),
        session=None,
        seg_jieba: Optional[bool] = None,
    ) -> None:
        super().__init__(model_dir, quantized, options, session)
        if seg_jieba is None:
            seg_jieba = wants_jieba(self.model_dir)
        self.jieba: Optional[JiebaWordSplitter] = None
        if seg_jieba:
            user_dict = self.model_dir / JIEBA_USER_DICT
            self.jieba = JiebaWordSplitter(user_dict if user_dict.is_file() else None)

    @property
    def uses_jieba(self) -> bool:
        return self.jieba is not None

    def split(self, text: str) -> List[str]:
        """The model's words for ``text``: :func:`split_words_jieba` or :func:`split_words`."""
        return self.jieba(text) if self.jieba is not None else split_words(text)

    def _feeds(self, ids: np.ndarray, vad_pos: int) -> Dict[str, np.ndarray]:
        values = [ids[None, :], np.array([ids.shape[0]], dtype=np.int32)]
        return dict(zip(self._input_names, values))

    def punctuate(self, text: str, split_size: int = DEFAULT_WINDOW, *, ascii_marks: bool = False) -> PunctuationResult:
        """Punctuate ``text``; the result always ends with ``。`` or ``？``.

        Each settled chunk is rendered on its own, so no space is put between two chunks
        even when both sides are English (the previous chunk ends with a mark anyway).
        ``ascii_marks``: write ``，。、？`` in the result's ``text`` as ``,.,?``
        (:func:`to_ascii_marks`; for an English ASR model); ``classes``/``marks`` stay
        the model's.
        """
        words = self.split(text)
        if not words:
            return PunctuationResult(text="")
        pieces: List[str] = []
        classes: List[int] = []
        for chunk_words, chunk_classes in self._decode(words, split_size):
            pieces.append(render(chunk_words, [self.vocab.marks[c] for c in chunk_classes]))
            classes.extend(chunk_classes)
        out_text, classes = finish_offline_text("".join(pieces), classes, self.vocab.full_stop_id)
        if ascii_marks:
            out_text = to_ascii_marks(out_text)
        return PunctuationResult(
            text=out_text,
            words=words,
            classes=classes,
            marks=[self.vocab.marks[c] for c in classes],
        )


class RealtimePunctuator(_CtTransformer):
    """The ``vad_realtime`` CT-Transformer; the per-stream state lives in :class:`PunctuationCache`.

    The carried words are the still-open sentence.  FunASR lets that carry grow
    for as long as the model predicts no sentence end, so every segment costs
    more than the last; we keep at most ``max_carried_words`` (the most recent
    ones), which only matters after hundreds of words without a ``。``/``？``.

    Words are always split per character (:func:`split_words`), also in a directory
    with a ``jieba_usr_dict``, as funasr_onnx's ``CT_Transformer_VadRealtime`` does.
    """

    def __init__(
        self,
        model_dir: Union[str, Path],
        quantized: bool = False,
        options: RuntimeOptions = RuntimeOptions(),
        session=None,
        max_carried_words: int = LONG_WINDOW_LIMIT,
    ) -> None:
        super().__init__(model_dir, quantized, options, session)
        if max_carried_words < 1:
            raise ValueError("max_carried_words must be at least 1")
        self.max_carried_words = max_carried_words
        if wants_jieba(self.model_dir):
            log.info("%s: the realtime export splits per character; its jieba settings are not used", self.model_dir)

    def _feeds(self, ids: np.ndarray, vad_pos: int) -> Dict[str, np.ndarray]:
        mask = vad_mask(ids.shape[0], vad_pos)[None, None, :, :]
        # The reference passes the same mask as both the VAD mask and the sub mask.
        values = [ids[None, :], np.array([ids.shape[0]], dtype=np.int32), mask, mask]
        return dict(zip(self._input_names, values))

    def punctuate(
        self,
        text: str,
        cache: Optional[PunctuationCache] = None,
        split_size: int = DEFAULT_WINDOW,
        *,
        ascii_marks: bool = False,
    ) -> RealtimePunctuationResult:
        """Punctuate one segment after the carried words of ``cache``, and update ``cache``.

        The carried words are re-classified together with the new ones (they are the
        still-open sentence) but not repeated in ``text``.  As in the reference, the mask
        position is the number of carried words for every window, also the later ones.
        Empty text returns an empty result and leaves ``cache`` as it was.
        ``ascii_marks``: write ``，。、？`` in the result's ``text`` as ``,.,?``
        (:func:`to_ascii_marks`); ``classes``/``marks``/``leading_mark`` stay the model's.
        """
        if cache is None:
            cache = PunctuationCache()
        new_words = split_words(text)
        if not new_words:
            return RealtimePunctuationResult(text="", cache=list(cache.words))
        carried = list(cache.words)
        k = len(carried)
        words = carried + new_words
        all_classes: List[int] = []
        for _, chunk_classes in self._decode(words, split_size, vad_pos=k):
            all_classes.extend(chunk_classes)
        marks_of = self.vocab.marks
        all_marks = [marks_of[c] for c in all_classes]

        # Spacing is decided over the whole word sequence, so the first new word gets a
        # leading space when it follows a carried English word.
        spaced = spaced_words(words)
        pieces: List[str] = []
        lead = max(k - 1, 0)  # the last carried word's mark is reported with this segment
        for i in range(lead, len(words)):
            if i >= k:
                pieces.append(spaced[i])
            if all_marks[i] != NO_MARK:
                pieces.append(all_marks[i])
        out_text = "".join(pieces)
        classes = all_classes[k:]
        # The last mark is withheld until the next segment.  The reference decides this
        # on the text: a last *character* that equals a mark (also one typed in the input,
        # or "_" ending an ASCII word) is dropped as well.
        if out_text and out_text[-1] in marks_of:
            out_text = out_text[:-1]
            classes[-1] = self.vocab.no_mark_id

        end = find_sentence_end(all_marks)
        new_cache = words[end + 1 :][-self.max_carried_words :]
        cache.words = list(new_cache)
        if ascii_marks:
            out_text = to_ascii_marks(out_text)
        return RealtimePunctuationResult(
            text=out_text,
            words=new_words,
            classes=classes,
            marks=[marks_of[c] for c in classes],
            leading_mark=all_marks[k - 1] if k else None,
            leading_class=all_classes[k - 1] if k else None,
            cache=list(new_cache),
        )


def open_punctuator(
    model_dir: Union[str, Path], quantized: bool = False, options: RuntimeOptions = RuntimeOptions()
) -> Union[Punctuator, RealtimePunctuator]:
    """Open a CT-Transformer directory as whichever export it holds.

    Decided by the graph, not the directory name: the ``vad_realtime`` export
    takes the VAD and sub-sentence masks as extra inputs (four in all, against two).
    The offline one splits with jieba when the directory asks for it (:func:`wants_jieba`).
    """
    model_dir = Path(model_dir)
    session = create_session(pick_onnx_file(model_dir, quantized), options)
    if len(session.get_inputs()) >= 4:
        return RealtimePunctuator(model_dir, quantized, options, session=session)
    return Punctuator(model_dir, quantized, options, session=session)


__all__ = [
    "ASCII_MARKS",
    "DEFAULT_WINDOW",
    "JIEBA_USER_DICT",
    "JiebaWordSplitter",
    "LONG_WINDOW_LIMIT",
    "PunctuationCache",
    "PunctuationResult",
    "PunctuationVocab",
    "Punctuator",
    "RealtimePunctuationResult",
    "RealtimePunctuator",
    "find_sentence_end",
    "finish_offline_text",
    "is_english_word",
    "language_runs",
    "open_punctuator",
    "needs_space",
    "render",
    "spaced_words",
    "split_windows",
    "split_words",
    "seg_jieba_flag",
    "split_words_jieba",
    "to_ascii_marks",
    "vad_mask",
    "wants_jieba",
    "words_to_ids",
]
