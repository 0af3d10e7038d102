"""``--hotword``: a file of ``word weight`` lines → the string the configuration carries.

The protocol's ``hotwords`` field is a JSON *string* holding a JSON object
(``"{\"阿里巴巴\": 20}"``), which is what FunASR's client builds from the same
file; servers parse it a second time.  A value that is not an existing file is
sent as it is, as FunASR's client does, so ``--hotword "阿里巴巴 达摩院"`` (plain
space-separated words) still works.  The file is read by the protocol's one
parser of ``word [weight]`` text (:func:`server.protocol.parse_hotword_text`),
the server's own ``--hotword`` file's too.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

from funasr_wss.server.protocol import parse_hotword_text

from .errors import ClientError


def parse_hotword_lines(lines: List[str]) -> Tuple[Dict[str, int], List[str]]:
    """``word weight`` lines → ({word: weight}, problems).  A word may contain spaces.

    Bad lines are reported, not fatal: one typo should not stop a batch, but
    a silently dropped hotword is the defect protocol.md §6 warns about.
    """
    words: Dict[str, int] = {}
    problems: List[str] = []
    for item in parse_hotword_text("\n".join(lines), one_per_line=True):
        if item.weight is None:
            fields = item.text.split()
            if len(fields) < 2:
                problems.append(f"line {item.line}: {item.text!r} has no weight (expected 'word weight')")
            else:
                problems.append(f"line {item.line}: weight {fields[-1]!r} is not an integer")
            continue
        words[item.word or ""] = int(item.weight)
    return words, problems


def hotword_message(value: str) -> Tuple[str, List[str]]:
    """The ``hotwords`` field for ``--hotword value`` and the problems found in the file."""
    if not value or not value.strip():
        return "", []
    path = Path(value)
    if not path.is_file():
        return value, []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientError(f"cannot read hotword file {value}: {exc}") from None
    words, problems = parse_hotword_lines(text.splitlines())
    problems = [f"hotword file {value}, {p}" for p in problems]
    return (json.dumps(words, ensure_ascii=False) if words else ""), problems
