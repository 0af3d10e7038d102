"""Results → plain text, JSON lines or SRT subtitles, on stdout and in ``--output_dir``.

SRT cues come from the server's ``stamp_sents`` (one cue per sentence piece,
with its own start and end), which is the finest timing a FunASR server gives
with punctuation attached.  Servers or modes without them (``online`` mode, a
model without timestamps) still get subtitles: one cue per result, timed by the
segment's ``start_time``/``end_time`` or its token timestamps, or spanning the
whole file.

No cue is empty or without duration.  A piece with no time of its own (no
tokens, ``start: -1`` as FunASR's servers write for a mark with nothing before
it, such as a 2pass segment's text that begins with the previous segment's
``。``, or ``end <= start``) is no cue: its text joins the cue before it, or
the next one when none came before (a bare mark then is dropped).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Dict, List, Optional, Sequence

from .batch import FileResult
from .errors import ClientError
from .inputs import AudioInput

FORMATS = ("text", "jsonl", "srt")
SUFFIXES = {"text": ".txt", "jsonl": ".json", "srt": ".srt"}

_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\u3000-\u303f]")


def join_tokens(text_seg: str) -> str:
    """``"正 是 因 为 the cat"`` → ``"正是因为the cat"``: ``text_seg`` separates every token
    with a space; a reader wants spaces only between two words of a spaced script."""
    out = ""
    for token in text_seg.split():
        if out and not _CJK.search(out[-1]) and not _CJK.search(token[0]):
            out += " "
        out += token
    return out


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    text: str


def srt_time(ms: int) -> str:
    """Milliseconds → ``HH:MM:SS,mmm``."""
    ms = max(0, int(ms))
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d},{millis:03d}"


def cues(result: FileResult) -> List[Cue]:
    """The subtitle cues of a result, in order, with times that never go backwards."""
    transcript = result.transcript
    if transcript is None:
        return []
    duration_ms = int(round(result.audio_seconds * 1000))
    raw: List[Cue] = []
    if transcript.stamp_sents:
        for piece in transcript.stamp_sents:
            words = join_tokens(str(piece.get("text_seg", "")))
            text = words + str(piece.get("punc", "") or "")
            if not words:  # a mark alone: no time of its own, whatever its start and end say
                raw.append(Cue(-1, -1, text))
            else:
                raw.append(Cue(int(piece["start"]), int(piece["end"]), text))
    else:
        previous_end = 0
        for segment in transcript.segments:
            if not segment.text:
                continue
            start = segment.start_ms if segment.start_ms is not None else previous_end
            end = segment.end_ms if segment.end_ms is not None else max(duration_ms, start)
            raw.append(Cue(start, end, segment.text))
            previous_end = end
        if not raw and transcript.text:
            raw.append(Cue(0, duration_ms, transcript.text))
    return _timed(raw, duration_ms)


def _timed(raw: Sequence[Cue], duration_ms: int) -> List[Cue]:
    """Cues in order (a start never before the previous start); one without time of its
    own (``end <= start``, negative times) gives its text to the cue before it, or to
    the next one; text that is only punctuation and whitespace is not carried forward.
    Text with no timed cue at all spans the whole file."""
    fixed: List[Cue] = []
    carried = ""  # timeless text before the first timed cue
    for cue in raw:
        if not cue.text.strip():
            continue
        start = max(cue.start_ms, fixed[-1].start_ms if fixed else 0)
        if cue.start_ms < 0 or cue.end_ms <= start:
            if fixed:
                last = fixed[-1]
                fixed[-1] = Cue(last.start_ms, max(last.end_ms, cue.end_ms), last.text + cue.text)
            elif _has_words(cue.text):
                carried += cue.text
            continue
        fixed.append(Cue(start, cue.end_ms, carried + cue.text))
        carried = ""
    if carried and duration_ms > 0:
        fixed.append(Cue(0, duration_ms, carried))
    return fixed


def _has_words(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def render_srt(items: Sequence[Cue]) -> str:
    """Numbered SRT cues separated by blank lines (an empty string for no cues)."""
    return "".join(
        f"{n}\n{srt_time(c.start_ms)} --> {srt_time(c.end_ms)}\n{c.text}\n\n" for n, c in enumerate(items, 1)
    )


def json_record(result: FileResult) -> Dict[str, Any]:
    """The JSON object of a result: enough to rebuild text, timing and subtitles later."""
    record: Dict[str, Any] = {"name": result.item.name, "path": result.item.path}
    if not result.ok:
        record["error"] = result.error
        return record
    transcript = result.transcript
    assert transcript is not None
    record.update(
        text=transcript.text,
        mode=transcript.mode,
        timestamp=transcript.timestamps,
        stamp_sents=transcript.stamp_sents,
        segments=[
            {"text": s.text, "start": s.start_ms, "end": s.end_ms, **s.tags} for s in transcript.segments
        ],
        audio_seconds=round(result.audio_seconds, 3),
        elapsed_seconds=round(result.elapsed_seconds, 3),
    )
    return record


def render(result: FileResult, fmt: str, named: bool) -> str:
    """What stdout shows for one successful result; ``named`` when there are several inputs."""
    if fmt == "jsonl":
        return json.dumps(json_record(result), ensure_ascii=False) + "\n"
    if fmt == "srt":
        body = render_srt(cues(result))
        return f"==> {result.item.name} <==\n{body}" if named else body
    text = result.transcript.text if result.transcript else ""
    return f"{result.item.name}\t{text}\n" if named else f"{text}\n"


class StdoutPrinter:
    """Prints results as they come: JSON lines at once (each names its file), text and SRT
    in input order (each waits for the files before it) so the output reads like the input."""

    def __init__(self, fmt: str, total: int, stream: IO[str]):
        self.fmt = fmt
        self.named = total > 1
        self.stream = stream
        self.pending: Dict[int, FileResult] = {}
        self.next_index = 0

    def add(self, result: FileResult) -> None:
        if self.fmt == "jsonl":
            self._write(result)
            return
        self.pending[result.item.index] = result
        while self.next_index in self.pending:
            self._write(self.pending.pop(self.next_index))
            self.next_index += 1

    def _write(self, result: FileResult) -> None:
        if result.ok or self.fmt == "jsonl":
            self.stream.write(render(result, self.fmt, self.named))
            self.stream.flush()


def _safe_name(name: str) -> str:
    name = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", name).strip()
    return "" if name in ("", ".", "..") else name


class OutputDir:
    """``--output_dir``: one ``<name>.txt|.json|.srt`` per input, and a combined ``text`` file
    (``name<TAB>text`` per line, in input order: the Kaldi/FunASR layout scoring tools read).

    File names are fixed up front, in input order, so two inputs named alike
    (``a/x.wav`` and ``b/x.wav``) get ``x`` and ``x_2`` whichever finishes first.
    """

    def __init__(self, path: str, fmt: str, items: Sequence[AudioInput]):
        self.path = Path(path)
        self.fmt = fmt
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ClientError(f"cannot create the output directory {path}: {exc.strerror or exc}") from None
        self.stems: Dict[int, str] = {}
        taken = {"text"}
        for item in items:
            base = _safe_name(item.name) or f"utt{item.index + 1}"
            stem, n = base, 1
            while stem.lower() in taken:
                n += 1
                stem = f"{base}_{n}"
            taken.add(stem.lower())
            self.stems[item.index] = stem

    def file_for(self, item: AudioInput) -> Path:
        return self.path / (self.stems[item.index] + SUFFIXES[self.fmt])

    def write(self, result: FileResult) -> Optional[Path]:
        """Write one result's file (nothing for a failed file); the path written."""
        if not result.ok:
            return None
        target = self.file_for(result.item)
        if self.fmt == "jsonl":
            body = json.dumps(json_record(result), ensure_ascii=False, indent=2) + "\n"
        else:
            body = render(result, self.fmt, named=False)
        self._write_text(target, body)
        return target

    def write_combined(self, results: Sequence[FileResult]) -> Path:
        target = self.path / "text"
        lines = [f"{r.item.name}\t{r.transcript.text}\n" for r in sorted(results, key=lambda r: r.item.index)
                 if r.ok and r.transcript is not None]
        self._write_text(target, "".join(lines))
        return target

    @staticmethod
    def _write_text(target: Path, body: str) -> None:
        try:
            target.write_text(body, encoding="utf-8")
        except OSError as exc:
            raise ClientError(f"cannot write {target}: {exc.strerror or exc}") from None
