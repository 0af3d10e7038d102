"""Hotword lists: the server's ``--hotword`` file merged with a client's ``hotwords`` field.

Protocol §3: the client sends a *string* holding either a JSON object
(``{"阿里巴巴": 20}``, word → integer weight; a key may contain spaces) or plain
words, one hotword per item, separated by whitespace or commas (``,``, ``，``,
``、``, ``;``, ``；``): FunASR's Python client joins its ``--hotword`` file with
commas since 2026-02 (``"阿里巴巴,达摩院,通义千问"``), older clients and the
HTML5 page send the JSON object.  The file has ``word weight`` lines.  The
client's weight wins on duplicates.

Weights in plain words follow the file's rule, a trailing integer after a word
is its weight: an item that is an integer (digits, optionally after ``-``)
right after a word is that word's weight, and a word with no integer after it
gets the default weight (20).  So ``"春 20"`` is ``{"春": 20}``,
``"阿里巴巴 20 达摩院"`` is ``{"阿里巴巴": 20, "达摩院": 20}`` (the default),
``"阿里巴巴 30,达摩院 40"`` (file lines joined with commas) is
``{"阿里巴巴": 30, "达摩院": 40}``.  Weights are checked as in JSON (0 to 100:
``"春 200"`` drops ``春``), and an integer with no word before it (``"20 春"``,
``"春 20 30"``) is dropped with a warning, never taken as a hotword: a
recogniser writes numbers as characters, so a digit hotword matches nothing.

Why bad client hotwords are dropped with a warning, not refused: the reference
servers carry on whatever the hotwords, but without a word to the client (a
hotword whose weight is a string vanishes, a word longer than 10 characters is
cut short).  Refusing the whole configuration instead, as we once did, cost the
client its ``chunk_size`` and with it every result.  So a bad hotword (too
long, empty, a weight that is not an integer from 0 to 100, one over the count
limit) or a ``hotwords`` value that cannot be read at all is dropped, the rest
of the configuration and every valid hotword are used, and the client is
*told*: one ``warning`` message naming each dropped hotword and why (see
:func:`warning_text`).  The server's own ``--hotword`` file is different: the
operator must fix it, so an error there stops the server at start-up.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .protocol import HOTWORD_INTEGER as INTEGER
from .protocol import parse_hotword_text, shown

DEFAULT_WEIGHT = 20
#: Weight 0 is a hotword all the same for the n-gram LM: each matched token still earns ``--fst-inc-wts``.
MIN_WEIGHT, MAX_WEIGHT = 0, 100
MAX_WORD_CHARS = 10
MAX_WORDS = 1000
#: A warning names at most this many dropped hotwords, then counts the rest.
WARNING_NAMES = 20

#: One dropped hotword: (the word as sent, why it was dropped).
Dropped = Tuple[str, str]


class HotwordError(ValueError):
    pass


def word_length(word: str) -> int:
    """Length as the recogniser sees it: each CJK character counts one, each English word one."""
    count, in_word = 0, False
    for ch in word:
        if ch.isspace():
            in_word = False
        elif ord(ch) > 0x2E7F:
            count += 1
            in_word = False
        elif not in_word:
            count += 1
            in_word = True
    return count


def _problem(word: str, weight: object) -> Tuple[int, Optional[str]]:
    """(the weight as an int, None) for a usable hotword, else (0, why it is not)."""
    if not word:
        return 0, "empty hotword"
    if word_length(word) > MAX_WORD_CHARS:
        return 0, f"longer than {MAX_WORD_CHARS} characters"
    if isinstance(weight, bool) or not isinstance(weight, int):
        if isinstance(weight, str) and INTEGER.fullmatch(weight.strip()):
            weight = int(weight.strip())
        elif isinstance(weight, float) and weight.is_integer():
            weight = int(weight)
        else:
            return 0, f"weight {shown(weight)} is not an integer"
    if not MIN_WEIGHT <= int(weight) <= MAX_WEIGHT:
        return 0, f"weight {shown(weight)} is not between {MIN_WEIGHT} and {MAX_WEIGHT}"
    return int(weight), None


def _check(word: str, weight: object, where: str) -> int:
    value, problem = _problem(word, weight)
    if problem is not None:
        raise HotwordError(f"{where}: hotword {word!r}: {problem}")
    return value


def parse_hotword_file(path: Path) -> Dict[str, int]:
    """``word weight`` per line; a line with only a word gets the default weight.  Any bad line is an error."""
    words: Dict[str, int] = {}
    for item in parse_hotword_text(Path(path).read_text(encoding="utf-8"), one_per_line=True):
        word = item.word or ""
        weight: object = DEFAULT_WEIGHT if item.weight is None else item.weight
        words[word] = _check(word, weight, f"{path}:{item.line}")
    if len(words) > MAX_WORDS:
        raise HotwordError(f"{path}: {len(words)} hotwords, at most {MAX_WORDS} are allowed")
    return words


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


class ClientHotwordsUnreadable(ValueError):
    """The ``hotwords`` value as a whole cannot be read; no hotword of the client's is used."""


def parse_client_hotwords(value: Any) -> Tuple[Dict[str, int], List[Dropped]]:
    """The client's ``hotwords`` value → (word → weight for the usable ones, the dropped ones with why).

    Raises :class:`ClientHotwordsUnreadable` when the value is not a string
    (or a JSON object) at all, or looks like JSON and is not an object.
    """
    if value is None:
        return {}, []
    if isinstance(value, dict):
        items = [(str(k).strip(), v) for k, v in value.items()]
    elif not isinstance(value, str):
        raise ClientHotwordsUnreadable(f"'hotwords' must be a string, got {_json_type(value)}")
    else:
        text = value.strip()
        if text.startswith(("{", "[")):
            try:
                parsed = json.loads(text)
            except (ValueError, RecursionError) as exc:  # JSONDecodeError, or an integer past the digit limit
                raise ClientHotwordsUnreadable(f"'hotwords' looks like JSON but does not parse: {exc}") from None
            if not isinstance(parsed, dict):
                raise ClientHotwordsUnreadable(
                    f"'hotwords' must be a JSON object of word: weight or plain words, got {_json_type(parsed)}"
                )
            items = [(str(k).strip(), v) for k, v in parsed.items()]
        else:
            items = _plain_items(text)
    words: Dict[str, int] = {}
    dropped: List[Dropped] = []
    for word, weight in items:
        if word is _NO_WORD:
            dropped.append((str(weight), "a weight with no hotword before it (plain hotwords are 'word weight')"))
            continue
        checked, problem = _problem(word, weight)
        if problem is not None:
            dropped.append((word, problem))
        elif word in words or len(words) < MAX_WORDS:
            words[word] = checked
        else:
            dropped.append((word, f"over the limit of {MAX_WORDS} hotwords"))
    return words, dropped


#: Stands for the missing word of a weight that follows no word, in :func:`_plain_items`.
_NO_WORD = object()


def _plain_items(text: str) -> List[Tuple[Any, Any]]:
    """Plain hotwords → (word, weight) items, read by :func:`server.protocol.parse_hotword_text`; a word
    with no weight gets the default.  A weight with no word before it comes out as ``(_NO_WORD, the
    weight as sent)``."""
    items: List[Tuple[Any, Any]] = []
    for item in parse_hotword_text(text, one_per_line=False):
        if item.word is None:
            items.append((_NO_WORD, item.weight))
        else:
            items.append((item.word, DEFAULT_WEIGHT if item.weight is None else int(item.weight)))
    return items


def merge_hotwords(server: Dict[str, int], client: Dict[str, int]) -> Tuple[Dict[str, int], List[Dropped]]:
    """The server's list updated with the client's; client words beyond :data:`MAX_WORDS` in all are dropped."""
    merged = dict(server)
    dropped: List[Dropped] = []
    for word, weight in client.items():
        if word in merged or len(merged) < MAX_WORDS:
            merged[word] = weight
        else:
            dropped.append((word, f"over the limit of {MAX_WORDS} hotwords (the server's list included)"))
    return merged, dropped


def unspellable(client: Dict[str, int], rejected: List[Dropped]) -> Tuple[Dict[str, int], List[Dropped]]:
    """The client's words the model could not embed, and the client's words left.

    ``rejected`` names pieces: the model takes each space-separated piece of a
    hotword as a hotword of its own, so a client word is lost when any of its
    pieces is.  Rejected pieces of the server's own list are not the client's
    business (they were logged at start-up).
    """
    why = dict(rejected)
    mine = {piece for word in client for piece in word.split()}
    lost = [(piece, reason) for piece, reason in why.items() if piece in mine]
    kept = {w: v for w, v in client.items() if not set(w.split()) & set(why)}
    return kept, lost


def _shown(word: str, limit: int = 30) -> str:
    return repr(word if len(word) <= limit else word[:limit] + "…")


def warning_text(dropped: List[Dropped], kept: int) -> str:
    """One sentence for the client: each dropped hotword and why, and that everything else is used."""
    n = len(dropped)
    named = ", ".join(f"{_shown(word)} ({why})" for word, why in dropped[:WARNING_NAMES])
    if n > WARNING_NAMES:
        named += f" and {n - WARNING_NAMES} more"
    if kept:
        rest = f"{kept} other hotword{'s' if kept != 1 else ''} and the rest of the configuration are used"
    else:
        rest = "the rest of the configuration is used"
    return f"dropped {n} hotword{'s' if n != 1 else ''}: {named}; {rest}"


def lm_spelling_text(problems: List[Dropped], reaches_lm: bool) -> Optional[str]:
    """What the n-gram LM did to the client's hotwords (a piece missing from its lexicon, a token
    missing from the model), or None when it took every one as sent."""
    if not problems:
        return None
    named = ", ".join(f"{_shown(word)} ({why})" for word, why in problems[:WARNING_NAMES])
    if len(problems) > WARNING_NAMES:
        named += f" and {len(problems) - WARNING_NAMES} more"
    tail = "" if reaches_lm else "; no hotword reaches the n-gram LM"
    return f"the n-gram LM cannot spell {len(problems)} hotword{'s' if len(problems) != 1 else ''} as sent: {named}{tail}"


def unreadable_text(reason: str) -> str:
    """The warning for a ``hotwords`` value that cannot be read at all."""
    return f"ignored 'hotwords': {reason}; the rest of the configuration is used"
