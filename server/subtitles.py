"""Subtitle files (SubRip ``.srt`` and WebVTT ``.vtt``) from timed cues.

The HTTP API's ``response_format=srt|vtt`` writes these.  Pure functions of
their input, with nothing about the server, so that anything else (the
client's ``--output srt`` has its own writer today) could share them.

A cue's times are milliseconds; a cue that would end before it starts (a
segment whose times the model could not place) is written as a zero-length
cue rather than an invalid one, and cue text never holds a blank line (which
would end the cue early in both formats).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

_BLANK_LINES = re.compile(r"\n\s*\n+")


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    text: str


def _clock(ms: int, decimal: str) -> str:
    ms = max(0, int(ms))
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{decimal}{millis:03d}"


def srt_time(ms: int) -> str:
    """``01:02:03,456``: SubRip writes a comma before the milliseconds."""
    return _clock(ms, ",")


def vtt_time(ms: int) -> str:
    """``01:02:03.456``: WebVTT writes a full stop."""
    return _clock(ms, ".")


def _cue_text(text: str) -> str:
    return _BLANK_LINES.sub("\n", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


def _span(cue: Cue) -> tuple:
    start = max(0, int(cue.start_ms))
    return start, max(start, int(cue.end_ms))


def render_srt(cues: Sequence[Cue]) -> str:
    """Numbered cues separated by blank lines; an empty file for no cues."""
    out = []
    for number, cue in enumerate(cues, 1):
        start, end = _span(cue)
        out.append(f"{number}\n{srt_time(start)} --> {srt_time(end)}\n{_cue_text(cue.text)}\n\n")
    return "".join(out)


def render_vtt(cues: Sequence[Cue]) -> str:
    """The ``WEBVTT`` header, then one cue per entry (``-->`` is escaped where text would contain it)."""
    out = ["WEBVTT\n\n"]
    for cue in cues:
        start, end = _span(cue)
        text = _cue_text(cue.text).replace("-->", "--&gt;")
        out.append(f"{vtt_time(start)} --> {vtt_time(end)}\n{text}\n\n")
    return "".join(out)
