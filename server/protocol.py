"""FunASR's WebSocket protocol: client control messages in, result messages out.

Clients send JSON text frames (configuration and the end signal) and binary
audio frames.  The field rules follow the reference servers; where they
crash or silently ignore bad input, we answer with a clear error instead.
"""
from __future__ import annotations

import json
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
    raise ProtocolError(f"'{name}' must be an integer, got {json.dumps(value, ensure_ascii=False)}")


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ProtocolError(f"'{name}' must be true or false, got {json.dumps(value, ensure_ascii=False)}")


def _str(name: str, value: Any, numbers_ok: bool = False) -> str:
    """A string field; ``numbers_ok`` lets free-form names like ``wav_name`` be numbers."""
    if isinstance(value, str):
        return value
    if numbers_ok and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ProtocolError(f"'{name}' must be a string, got {json.dumps(value, ensure_ascii=False)}")


def parse_chunk_size(value: Any) -> Tuple[int, int, int]:
    """``[5, 10, 5]`` or ``"5,10,5"`` → a tuple of three positive ints (look-back, chunk, look-ahead)."""
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
    if parsed[1] <= 0 or parsed[0] < 0 or parsed[2] < 0:
        raise ProtocolError("'chunk_size' values must be non-negative and the middle one positive")
    if max(parsed) > 1000:
        raise ProtocolError("'chunk_size' values must be at most 1000 (60 s)")
    return parsed  # type: ignore[return-value]


def parse_control_message(text: str) -> ControlMessage:
    """Validate one JSON text frame.  Unknown fields are ignored, as by the reference."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(f"malformed JSON: {exc}") from None
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
        out["wav_name"] = _str("wav_name", data["wav_name"], numbers_ok=True)
    if "wav_format" in data:
        fmt = _str("wav_format", data["wav_format"]).strip()
        out["wav_format"] = fmt or "pcm"
    if "audio_fs" in data:
        fs = _int("audio_fs", data["audio_fs"])
        if not MIN_AUDIO_FS <= fs <= MAX_AUDIO_FS:
            raise ProtocolError(f"'audio_fs' must be between {MIN_AUDIO_FS} and {MAX_AUDIO_FS} Hz, got {fs}")
        out["audio_fs"] = fs
    if "chunk_size" in data:
        out["chunk_size"] = parse_chunk_size(data["chunk_size"])
    for name in ("chunk_interval", "encoder_chunk_look_back", "decoder_chunk_look_back"):
        if name in data:
            out[name] = _int(name, data[name])
    if "hotwords" in data and data["hotwords"] is not None:
        # Never an error here: a bad value costs the client its hotwords, not the configuration
        # (server.hotwords reads it and warns).  An object sent as such is taken as its JSON text.
        value = data["hotwords"]
        out["hotwords"] = json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value
    if "itn" in data:
        out["itn"] = _bool("itn", data["itn"])
    if data.get("svs_lang") is not None:
        lang = _str("svs_lang", data["svs_lang"]).strip().lower() or "auto"
        if lang not in SVS_LANGUAGES:
            raise ProtocolError(f"'svs_lang' must be one of {', '.join(SVS_LANGUAGES)}, got {json.dumps(data['svs_lang'], ensure_ascii=False)}")
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
