"""FunASR's WebSocket protocol: client control messages in, result messages out.

Clients send JSON text frames (configuration and the end signal) and binary
audio frames.  The field rules follow the reference servers; where they
crash or silently ignore bad input, we answer with a clear error instead.

This module is the one definition of the protocol's vocabulary, shared by the
server and the client (``client`` imports it, and only it, from ``server``; it
imports nothing of ours): the modes, ``chunk_size`` parsing, SenseVoiceSmall's
languages and the ``word [weight]`` hotword text (:func:`parse_hotword_text`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

MODES = ("offline", "online", "2pass")
DEFAULT_MODE = "2pass"
DEFAULT_WAV_NAME = "wav-default-id"
DEFAULT_CHUNK_SIZE = (5, 10, 5)
#: SenseVoiceSmall's ``svs_lang`` values (``nospeech``: the model's no-speech prompt).
SVS_LANGUAGES = ("auto", "zh", "en", "yue", "ja", "ko", "nospeech")
MIN_AUDIO_FS = 1000
MAX_AUDIO_FS = 384000
#: ``chunk_size``: the middle value (the chunk, in 60 ms frames) and how far look-back and look-ahead
#: may reach.  An online encoder call sees look-back + chunk + look-ahead frames for every chunk, so
#: its cost per audio second is (sum / chunk) calls' worth: these bounds keep it within 3× of the
#: reference's ``[5, 10, 5]`` (and ``[1000, 1, 1000]``, 35× the CPU, out).
MIN_CHUNK, MAX_CHUNK = 2, 20
#: Names the client chooses and every reply echoes (``wav_name``), in characters.
MAX_NAME_CHARS = 1024
#: The client-side pacing and look-back fields: accepted and echoed nowhere, but kept in range.
INT_FIELD_RANGES = {"chunk_interval": (1, 1000), "encoder_chunk_look_back": (0, 1000), "decoder_chunk_look_back": (0, 1000)}
#: A client value quoted back in an error message is cut to this many characters.
SHOWN_CHARS = 60
#: What separates plain hotwords: whitespace, ASCII/full-width commas, the enumeration comma, semicolons.
HOTWORD_SEPARATORS = re.compile(r"[\s,，、;；]+")
#: An integer weight written as text (a plain piece, a file line's last field): what ``int`` reads.
HOTWORD_INTEGER = re.compile(r"-?\d+")
_SURROGATES = re.compile("[\ud800-\udfff]")


class ProtocolError(ValueError):
    """A client message that breaks the protocol; the text goes back to the client.

    ``end_of_input``: the message was nevertheless an end signal with ``"is_end": true``,
    whose sender waits for an acknowledgement (see :class:`ControlMessage`).
    """

    def __init__(self, message: str, end_of_input: bool = False):
        super().__init__(message)
        self.end_of_input = end_of_input


@dataclass
class ClientConfig:
    """What a client has told us so far on this connection (protocol §3)."""

    mode: str = DEFAULT_MODE
    wav_name: str = DEFAULT_WAV_NAME
    wav_format: str = "pcm"
    audio_fs: int = 16000
    chunk_size: Optional[Tuple[int, int, int]] = None
    chunk_interval: int = 10
    encoder_chunk_look_back: int = 4
    decoder_chunk_look_back: int = 0
    hotwords: Any = None  # as sent (normally a string); read by server.hotwords
    itn: bool = True
    svs_lang: str = "auto"
    svs_itn: bool = True

    @property
    def is_pcm(self) -> bool:
        return self.wav_format.lower() == "pcm"


@dataclass
class ControlMessage:
    """One parsed text frame: the fields it set and whether it ends the utterance.

    ``end_of_input``: an end signal that also carries ``"is_end": true``, as FunASR's
    Python client sends since 2026-07; it waits for a reply with ``"is_end": true``
    after the utterance's results (see :func:`end_ack_message`).
    """

    fields: Dict[str, Any] = field(default_factory=dict)
    end_of_utterance: bool = False
    end_of_input: bool = False


def clean_text(text: str) -> str:
    """``text`` with every lone surrogate (JSON allows ``"\\ud800"``) replaced by U+FFFD: such a string
    cannot be encoded as UTF-8, so a reply that echoed it could not be sent at all."""
    return _SURROGATES.sub("\ufffd", text)


def shown(value: Any) -> str:
    """A client value as quoted in an error: its JSON, cut short, so an error never echoes a
    megabyte back or a string that cannot be sent."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):
        text = type(value).__name__
    text = clean_text(text)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ProtocolError(f"'{name}' must be an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ProtocolError(f"'{name}' must be an integer, got {shown(value)}")


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ProtocolError(f"'{name}' must be true or false, got {shown(value)}")


def _str(name: str, value: Any, numbers_ok: bool = False) -> str:
    """A string field; ``numbers_ok`` lets free-form names like ``wav_name`` be numbers."""
    if isinstance(value, str):
        return clean_text(value)
    if numbers_ok and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ProtocolError(f"'{name}' must be a string, got {shown(value)}")


def parse_chunk_size(value: Any, bounded: bool = True) -> Tuple[int, int, int]:
    """``[5, 10, 5]`` or ``"5,10,5"`` → a tuple of three positive ints (look-back, chunk, look-ahead).

    ``bounded``: also hold the chunk to :data:`MIN_CHUNK`..:data:`MAX_CHUNK` and the look-back and
    look-ahead to the chunk, this server's cost limits; the client checks only the shape
    (``bounded=False``), since the servers it talks to need not share those limits.
    """
    items: Sequence[Any]
    if isinstance(value, str):
        items = [p for p in value.replace(" ", "").split(",") if p != ""]
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise ProtocolError("'chunk_size' must be an array of 3 integers like [5, 10, 5] or a string like \"5,10,5\"")
    if len(items) != 3:
        raise ProtocolError(f"'chunk_size' needs exactly 3 integers (look-back, chunk, look-ahead), got {len(items)}")
    parsed = tuple(_int("chunk_size", v) for v in items)
    look_back, chunk, look_ahead = parsed
    if look_back < 0 or look_ahead < 0 or chunk <= 0:
        raise ProtocolError("'chunk_size' values must be non-negative and the middle one positive")
    if not bounded:
        return parsed  # type: ignore[return-value]
    if not MIN_CHUNK <= chunk <= MAX_CHUNK:
        raise ProtocolError(
            f"'chunk_size': the chunk (middle value) must be {MIN_CHUNK} to {MAX_CHUNK} frames of 60 ms, got {shown(chunk)}"
        )
    if look_back > chunk or look_ahead > chunk:
        raise ProtocolError(
            f"'chunk_size': look-back and look-ahead may not be longer than the chunk ({chunk}), got {shown(list(parsed))}"
        )
    return parsed  # type: ignore[return-value]


@dataclass(frozen=True)
class HotwordItem:
    """One hotword of ``word [weight]`` text, as written (see :func:`parse_hotword_text`).

    ``word``: the hotword, its runs of whitespace made single spaces, or None for a weight that
    follows no word (plain form only); ``weight``: the trailing integer as written, or None when
    there is none; ``line``: its line number (file form; 0 in the plain form); ``text``: the line
    (stripped) or the piece as written.
    """

    word: Optional[str]
    weight: Optional[str]
    line: int = 0
    text: str = ""


def parse_hotword_text(text: str, one_per_line: bool) -> List[HotwordItem]:
    """The ``word [weight]`` hotword text → its items, in order; nothing is checked or dropped here.

    ``one_per_line`` (the file form: the server's and the client's ``--hotword`` file): each line
    is one hotword, which may contain spaces, with an optional integer weight as its last field;
    blank lines and lines starting with ``#`` are skipped.  Otherwise (the plain form of the
    ``hotwords`` field): whitespace and :data:`HOTWORD_SEPARATORS` separate the pieces, and an
    integer piece right after a word is that word's weight (``"阿里巴巴 30,达摩院"``); an integer
    after no word, or after a word that already has its weight, is an item with no word.
    """
    items: List[HotwordItem] = []
    if one_per_line:
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) >= 2 and HOTWORD_INTEGER.fullmatch(fields[-1]):
                items.append(HotwordItem(" ".join(fields[:-1]), fields[-1], number, line))
            else:
                items.append(HotwordItem(" ".join(fields), None, number, line))
        return items
    weighted = True  # the last item already has its weight (or there is none)
    for piece in HOTWORD_SEPARATORS.split(text):
        if not piece:
            continue
        if HOTWORD_INTEGER.fullmatch(piece):
            if weighted:
                items.append(HotwordItem(None, piece, text=piece))
            else:
                last = items[-1]
                items[-1] = HotwordItem(last.word, piece, text=f"{last.text} {piece}")
                weighted = True
        else:
            items.append(HotwordItem(piece, None, text=piece))
            weighted = False
    return items


def parse_control_message(text: str) -> ControlMessage:
    """Validate one JSON text frame.  Unknown fields are ignored, as by the reference."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(f"malformed JSON: {exc}") from None
    except ValueError as exc:  # an integer beyond Python's digit limit
        raise ProtocolError(f"unreadable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("a text message must be a JSON object")
    # Only the JSON boolean false ends an utterance (0 and "false" do not), as in the reference.
    end = data.get("is_speaking", True) is False or data.get("is_finished", False) is True
    end_of_input = end and data.get("is_end", False) is True
    try:
        fields = _parse_fields(data)
    except ProtocolError as exc:
        raise ProtocolError(str(exc), end_of_input=end_of_input) from None
    return ControlMessage(fields=fields, end_of_utterance=end, end_of_input=end_of_input)


def _parse_fields(data: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    if "mode" in data:
        mode = _str("mode", data["mode"])
        out["mode"] = mode if mode in MODES else DEFAULT_MODE
    if "wav_name" in data:
        name = _str("wav_name", data["wav_name"], numbers_ok=True)
        if len(name) > MAX_NAME_CHARS:
            raise ProtocolError(f"'wav_name' is longer than {MAX_NAME_CHARS} characters ({len(name)})")
        out["wav_name"] = name
    if "wav_format" in data:
        fmt = _str("wav_format", data["wav_format"]).strip()
        out["wav_format"] = fmt or "pcm"
    if "audio_fs" in data:
        fs = _int("audio_fs", data["audio_fs"])
        if not MIN_AUDIO_FS <= fs <= MAX_AUDIO_FS:
            raise ProtocolError(f"'audio_fs' must be between {MIN_AUDIO_FS} and {MAX_AUDIO_FS} Hz, got {shown(fs)}")
        out["audio_fs"] = fs
    if "chunk_size" in data:
        out["chunk_size"] = parse_chunk_size(data["chunk_size"])
    for name, (low, high) in INT_FIELD_RANGES.items():
        if name in data:
            value = _int(name, data[name])
            if not low <= value <= high:
                raise ProtocolError(f"'{name}' must be between {low} and {high}, got {shown(value)}")
            out[name] = value
    if "hotwords" in data and data["hotwords"] is not None:
        # Never an error here: a bad value costs the client its hotwords, not the configuration
        # (server.hotwords reads it and warns).  An object sent as such is taken as its JSON text.
        hotwords = data["hotwords"]
        hotwords = json.dumps(hotwords, ensure_ascii=False) if isinstance(hotwords, dict) else hotwords
        out["hotwords"] = clean_text(hotwords) if isinstance(hotwords, str) else hotwords
    if "itn" in data:
        out["itn"] = _bool("itn", data["itn"])
    if data.get("svs_lang") is not None:
        lang = _str("svs_lang", data["svs_lang"]).strip().lower() or "auto"
        if lang not in SVS_LANGUAGES:
            raise ProtocolError(f"'svs_lang' must be one of {', '.join(SVS_LANGUAGES)}, got {shown(data['svs_lang'])}")
        out["svs_lang"] = lang
    if "svs_itn" in data:
        out["svs_itn"] = _bool("svs_itn", data["svs_itn"])
    return out


def apply_fields(config: ClientConfig, fields: Dict[str, Any], first_message: bool) -> None:
    """Update ``config`` in place.  Hotwords count only in the first message (protocol §3)."""
    for name, value in fields.items():
        if name == "hotwords" and not first_message:
            continue
        setattr(config, name, value)


def format_timestamp(spans: Sequence[Sequence[int]]) -> str:
    """``[[430,670],[670,810]]``: a JSON array as a string with no spaces (protocol §4)."""
    return "[" + ",".join(f"[{int(s)},{int(e)}]" for s, e in spans) + "]"


def result_message(
    mode: str,
    wav_name: str,
    text: str,
    is_final: bool,
    timestamps: Optional[Sequence[Sequence[int]]] = None,
    sentences: Optional[List[dict]] = None,
    **extra: Any,
) -> str:
    msg: Dict[str, Any] = {"mode": mode, "wav_name": wav_name, "text": text, "is_final": is_final}
    if timestamps is not None:
        msg["timestamp"] = format_timestamp(timestamps)
        msg["stamp_sents"] = sentences if sentences is not None else []
    msg.update(extra)
    return json.dumps(msg, ensure_ascii=False)


def warning_message(mode: str, wav_name: str, warning: str) -> str:
    """Something the client should know that failed nothing (e.g. dropped hotwords): no text, not final,
    so clients that append ``text`` until ``is_final`` is true carry on unaffected."""
    return result_message(mode, wav_name, "", is_final=False, warning=warning)


def end_ack_message(mode: str, wav_name: str, error: Optional[str] = None) -> str:
    """The reply to an end signal with ``"is_end": true``, sent after the utterance's last result.

    FunASR's Python client (since 2026-07) waits for a message with ``is_end`` true, then
    closes; ``is_final`` true means the input was finished, false (with ``error``) that the
    utterance failed, as FunASR's Python server answers.  The connection stays usable.
    """
    extra: Dict[str, Any] = {"is_end": True}
    if error:
        extra["error"] = error
    return result_message(mode, wav_name, "", is_final=not error, **extra)


def error_message(error: str, wav_name: Optional[str] = None, mode: Optional[str] = None) -> str:
    msg: Dict[str, Any] = {"is_final": True, "text": "", "error": error}
    if wav_name is not None:
        msg["wav_name"] = wav_name
    if mode is not None:
        msg["mode"] = mode
    return json.dumps(msg, ensure_ascii=False)
