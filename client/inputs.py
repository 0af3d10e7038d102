"""Command-line inputs → an ordered list of audio files → 16 kHz int16 PCM.

An input may be an audio file, a directory (its audio files, recursively, in
name order), a Kaldi/FunASR ``.scp`` file (``name path`` per line, the format
FunASR's ``--audio_in`` takes), or a list file (``.txt``/``.lst``/``.list``,
one path per line).  Problems found while expanding (a missing file, an
unreadable list) become per-file problems, not aborts: a batch of a thousand
files should not stop for one typo.

Audio is decoded here, on the client, with PyAV (:func:`models.audio.load_audio_file`),
so every server gets plain PCM, which is the one input all FunASR servers take
in every mode.  Raw ``.pcm`` files are sent untouched at ``--audio_fs``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

from .errors import ClientError

TARGET_RATE = 16000
AUDIO_SUFFIXES = frozenset({
    ".wav", ".mp3", ".flac", ".m4a", ".ogg", ".opus", ".aac", ".wma", ".mp4", ".webm", ".amr",
    ".mka", ".aif", ".aiff", ".pcm",
})
SCP_SUFFIXES = frozenset({".scp"})
LIST_SUFFIXES = frozenset({".txt", ".lst", ".list"})


@dataclass(frozen=True)
class AudioInput:
    """One file to recognise; ``problem`` is set when it is known to be bad before reading."""

    index: int
    name: str
    path: str
    problem: Optional[str] = None


@dataclass(frozen=True)
class Pcm:
    """int16 little-endian mono samples and their rate: what goes over the wire."""

    data: bytes
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.data) / 2 / self.sample_rate


def _resolve(entry: str, list_file: Path) -> Path:
    """A path from a list file: as written (relative to the working directory, as FunASR
    reads it), or else relative to the list file, so a list can travel with its audio."""
    path = Path(entry).expanduser()
    if path.is_absolute() or path.exists():
        return path
    beside = list_file.parent / path
    return beside if beside.exists() else path


def _read_lines(path: Path) -> List[str]:
    text = path.read_text(encoding="utf-8-sig")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _scp_entries(path: Path) -> List[Tuple[str, Path]]:
    """``name path`` lines; a line with one field is a path named after its file."""
    entries = []
    for line in _read_lines(path):
        fields = line.split(maxsplit=1)
        if len(fields) == 2:
            entries.append((fields[0], _resolve(fields[1].strip(), path)))
        else:
            audio = _resolve(fields[0], path)
            entries.append((audio.stem, audio))
    return entries


def _list_entries(path: Path) -> List[Tuple[str, Path]]:
    """One path per line; a line that is no file but reads as ``name path`` is taken as such."""
    entries = []
    for line in _read_lines(path):
        audio = _resolve(line, path)
        if not audio.exists():
            fields = line.split(maxsplit=1)
            if len(fields) == 2 and _resolve(fields[1], path).exists():
                entries.append((fields[0], _resolve(fields[1], path)))
                continue
        entries.append((audio.stem, audio))
    return entries


def _expand_one(arg: str) -> List[Tuple[str, Path, Optional[str]]]:
    path = Path(arg).expanduser()
    suffix = path.suffix.lower()
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not found:
            return [(path.name or arg, path, "the directory holds no audio files")]
        return [(p.stem, p, None) for p in found]
    if not path.exists():
        kind = "list file" if suffix in SCP_SUFFIXES | LIST_SUFFIXES else "file"
        return [(path.stem or arg, path, f"no such {kind}")]
    if suffix in SCP_SUFFIXES or suffix in LIST_SUFFIXES:
        try:
            entries = _scp_entries(path) if suffix in SCP_SUFFIXES else _list_entries(path)
        except (OSError, UnicodeDecodeError) as exc:
            return [(path.stem, path, f"cannot read the list file: {exc}")]
        if not entries:
            return [(path.stem, path, "the list file names no audio files")]
        return [(name, audio, None if audio.is_file() else "no such file") for name, audio in entries]
    return [(path.stem, path, None)]


def expand_inputs(args: Iterable[str]) -> List[AudioInput]:
    """Every input, expanded, in the order given; ``index`` is the position in that order."""
    items: List[AudioInput] = []
    for arg in args:
        for name, path, problem in _expand_one(arg):
            items.append(AudioInput(len(items), name, str(path), problem))
    return items


def float_to_pcm16(waveform) -> bytes:
    """float32 in [-1, 1] → int16 LE bytes, clipped (a decoder may overshoot slightly)."""
    import numpy as np

    scaled = np.clip(np.round(np.asarray(waveform, dtype=np.float32) * 32768.0), -32768, 32767)
    return scaled.astype("<i2").tobytes()


def load_pcm(item: AudioInput, pcm_rate: int = TARGET_RATE) -> Pcm:
    """The audio of ``item`` as PCM; raises :class:`ClientError` saying why it cannot be read.

    Slow for long compressed files (a decode): callers run it in a thread.
    """
    if item.problem:
        raise ClientError(item.problem)
    path = Path(item.path)
    if path.suffix.lower() == ".pcm":
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ClientError(f"cannot read the file: {exc.strerror or exc}") from None
        return Pcm(data[: len(data) // 2 * 2], pcm_rate)
    # imported here: PyAV and NumPy are only needed once there is audio to decode
    from funasr_wss.models.audio import AudioDecodeError, load_audio_file

    try:
        waveform = load_audio_file(path, TARGET_RATE)
    except OSError as exc:
        raise ClientError(f"cannot read the file: {exc.strerror or exc}") from None
    except AudioDecodeError as exc:
        raise ClientError(str(exc)) from None
    return Pcm(float_to_pcm16(waveform), TARGET_RATE)
