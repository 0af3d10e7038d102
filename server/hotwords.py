"""Hotword lists: the server's ``--hotword`` file merged with a client's ``hotwords`` field.

Protocol §3: the client sends a JSON *string* holding either an object
(``{"阿里巴巴": 20}``, word → integer weight) or plain space-separated words;
the file has ``word weight`` lines.  The client's weight wins on duplicates.
Bad input is an error with a message, never silently dropped (the reference
loses hotwords whose weight is a string).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

DEFAULT_WEIGHT = 20
MIN_WEIGHT, MAX_WEIGHT = 1, 100
MAX_WORD_CHARS = 10
MAX_WORDS = 1000


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


def _check(word: str, weight: object, where: str) -> int:
    if not word:
        raise HotwordError(f"{where}: empty hotword")
    if word_length(word) > MAX_WORD_CHARS:
        raise HotwordError(f"{where}: hotword {word!r} is longer than {MAX_WORD_CHARS} characters")
    if isinstance(weight, bool) or not isinstance(weight, int):
        if isinstance(weight, str) and weight.strip().lstrip("-").isdigit():
            weight = int(weight.strip())
        elif isinstance(weight, float) and weight.is_integer():
            weight = int(weight)
        else:
            raise HotwordError(f"{where}: the weight of {word!r} must be an integer, got {weight!r}")
    if not MIN_WEIGHT <= int(weight) <= MAX_WEIGHT:
        raise HotwordError(f"{where}: the weight of {word!r} must be between {MIN_WEIGHT} and {MAX_WEIGHT}, got {weight}")
    return int(weight)


def parse_hotword_file(path: Path) -> Dict[str, int]:
    """``word weight`` per line; a line with only a word gets the default weight."""
    words: Dict[str, int] = {}
    for n, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            word, weight = parts[0].strip(), parts[1]
        else:
            word, weight = line, DEFAULT_WEIGHT
        words[word] = _check(word, weight, f"{path}:{n}")
    _check_count(words, str(path))
    return words


def parse_client_hotwords(value: Optional[str]) -> Dict[str, int]:
    """The client's ``hotwords`` string → word → weight."""
    if value is None:
        return {}
    text = value.strip()
    if not text:
        return {}
    words: Dict[str, int] = {}
    parsed = None
    if text.startswith(("{", "[")):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HotwordError(f"'hotwords' looks like a JSON object but does not parse: {exc}") from None
        if not isinstance(parsed, dict):
            raise HotwordError("'hotwords' must be a JSON object of word: weight")
        for word, weight in parsed.items():
            words[str(word).strip()] = _check(str(word).strip(), weight, "hotwords")
    else:
        for word in text.split():
            words[word] = _check(word, DEFAULT_WEIGHT, "hotwords")
    _check_count(words, "hotwords")
    return words


def merge_hotwords(server: Dict[str, int], client: Dict[str, int]) -> Dict[str, int]:
    merged = dict(server)
    merged.update(client)
    _check_count(merged, "hotwords")
    return merged


def _check_count(words: Dict[str, int], where: str) -> None:
    if len(words) > MAX_WORDS:
        raise HotwordError(f"{where}: {len(words)} hotwords, at most {MAX_WORDS} are allowed")
