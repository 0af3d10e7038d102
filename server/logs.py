"""Logging with a connection id on every line, as text for people or JSON lines for collectors.

Each connection gets an id (``c1``, ``c2``, ...) when it is accepted; its
session logs through :class:`ConnectionLog`, which attaches the id (and any
``extra`` fields of the call, such as an utterance's audio seconds) to the
record.  The text format prints ``[c7]`` before the message; ``--log-format
json`` writes one JSON object per line with every field, so a log collector
can follow one connection or aggregate utterances without parsing prose.
"""
from __future__ import annotations

import json
import logging
import sys
from typing import Any, Dict, MutableMapping, Optional, Tuple

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class ConnectionLog(logging.LoggerAdapter):
    """A logger for one connection: ``conn`` on every record, merged with the call's own ``extra``."""

    def __init__(self, logger: logging.Logger, conn_id: str):
        super().__init__(logger, {"conn": conn_id})

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> Tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def utterance_fields(mode: str, wav_name: str, audio_seconds: float, seconds: float, error: Optional[str]) -> Dict[str, Any]:
    """The fields of an utterance's closing log line, for JSON logs."""
    fields: Dict[str, Any] = {
        "event": "utterance",
        "mode": mode,
        "wav_name": wav_name,
        "audio_seconds": round(audio_seconds, 3),
        "seconds": round(seconds, 3),
    }
    if error:
        fields["error"] = error
    return fields


def _escape_table() -> Dict[int, str]:
    table = {c: f"\\x{c:02x}" for c in list(range(0x20)) + [0x7F, 0x85]}
    table.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"})
    return table


_ESCAPES = _escape_table()


def escape_line(text: str) -> str:
    """``text`` with line breaks and other control characters written as escapes: a message that
    quotes client text (a ``wav_name``, a hotword) stays one log line and cannot forge others."""
    return text.translate(_ESCAPES)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: [conn] message``, one line per record (tracebacks follow on their own lines)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_line(record.message)
        line = super().formatMessage(record)
        conn = getattr(record, "conn", None)
        if conn is None:
            return line
        head, sep, message = line.partition(": ")
        return f"{head}{sep}[{conn}] {message}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, then the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str, fmt: str = "text") -> None:
    """Send every log record to stderr in ``fmt`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
