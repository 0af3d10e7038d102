"""OpenAI's transcription API over our recognition: the form's fields in, the response bodies out.

Pure functions, no I/O: :mod:`server.http_api` reads the multipart body and
runs the recognition; this module decides what the form means and how a
finished :class:`~funasr_wss.models.offline_pipeline.Transcript` is written in
each ``response_format``.

The form is translated into the very configuration message a WebSocket client
would send in offline mode (:func:`websocket_config`), so the same parser
(:func:`server.protocol.parse_control_message`) checks ``itn``, ``svs_lang``,
``audio_fs`` and the hotwords, and the result equals the WebSocket one.

Segments come from the sentence pieces (``stamp_sents``) when the model has
timestamps, each one's text cut from the final text so that the segments
joined give the text back; without timestamps (SenseVoiceSmall, a plain
Paraformer) there is one segment spanning the VAD's speech.  Words are the
timed units of the text (one Chinese character, one English word).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .protocol import SVS_LANGUAGES
from .subtitles import Cue, render_srt, render_vtt

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("segment", "word")
#: Fields that may be given more than once (OpenAI's SDK writes a list as repeated ``name[]`` fields).
LIST_FIELDS = {"timestamp_granularities[]": "timestamp_granularities", "timestamp_granularities": "timestamp_granularities",
               "include[]": "include", "include": "include"}
#: Content types (before any parameters) that mean raw 16-bit little-endian PCM.
PCM_TYPES = ("audio/pcm", "audio/l16", "audio/x-pcm", "audio/raw", "audio/x-raw")
PCM_SUFFIXES = (".pcm", ".raw")
DEFAULT_RATE = 16000
#: The file name as our logs carry it (the WebSocket side's ``wav_name``), cut to this length.
NAME_CHARS = 200
_RATE_PARAM = re.compile(r";\s*rate\s*=\s*\"?(\d{1,7})\"?", re.IGNORECASE)


class FormError(ValueError):
    """A field of the form is missing, repeated or of the wrong type: a 400 naming ``param``."""

    def __init__(self, message: str, param: Optional[str] = None):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Upload:
    """The ``file`` part as received."""

    data: bytes
    filename: str = ""
    content_type: str = ""


@dataclass
class TranscriptionForm:
    """What one request asks for, checked."""

    response_format: str = "json"
    stream: bool = False
    granularities: Tuple[str, ...] = ()
    model: str = ""
    language: Optional[str] = None  # as asked (used by SenseVoiceSmall only)
    #: The WebSocket configuration message these fields amount to (see :func:`websocket_config`).
    config: Dict[str, Any] = field(default_factory=dict)


def _one(fields: Mapping[str, List[str]], name: str) -> Optional[str]:
    values = fields.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise FormError(f"'{name}' was given {len(values)} times; it takes one value", name)
    return values[0]


def _form_bool(name: str, value: Optional[str]) -> Optional[bool]:
    if value is None:
        return None
    v = value.strip().lower()
    if v in ("true", "1"):
        return True
    if v in ("false", "0", ""):
        return False
    raise FormError(f"'{name}' must be true or false, got {value[:40]!r}", name)


def is_pcm(upload: Upload, wav_format: Optional[str]) -> bool:
    """Raw PCM: said by ``wav_format=pcm``, the part's content type (``audio/L16``), or a ``.pcm`` name."""
    if wav_format is not None:
        return wav_format.strip().lower() == "pcm"
    media = upload.content_type.split(";", 1)[0].strip().lower()
    return media in PCM_TYPES or upload.filename.lower().endswith(PCM_SUFFIXES)


def parse_form(fields: Mapping[str, List[str]], upload: Optional[Upload], takes_language: bool) -> TranscriptionForm:
    """The text fields (each a list of the values sent) and the file → a checked request.

    ``takes_language``: the model reads ``language`` (SenseVoiceSmall's ``svs_lang``); other
    models ignore it, as the issue and OpenAI's own ``whisper`` models treat an unknown hint."""
    if upload is None:
        raise FormError("the form has no 'file' part: send the audio as the multipart field 'file'", "file")
    if not upload.data:
        raise FormError("the uploaded file is empty", "file")
    form = TranscriptionForm()
    fmt = (_one(fields, "response_format") or "json").strip().lower()
    if fmt not in RESPONSE_FORMATS:
        raise FormError(f"'response_format' must be one of {', '.join(RESPONSE_FORMATS)}, got {fmt[:40]!r}",
                        "response_format")
    form.response_format = fmt
    form.stream = bool(_form_bool("stream", _one(fields, "stream")))
    granularities: List[str] = []
    for name in ("timestamp_granularities[]", "timestamp_granularities"):
        for value in fields.get(name, []):
            for g in (v.strip().lower() for v in value.split(",")):
                if g not in GRANULARITIES:
                    raise FormError(f"'timestamp_granularities' takes segment and/or word, got {g[:40]!r}",
                                    "timestamp_granularities")
                if g not in granularities:
                    granularities.append(g)
    form.granularities = tuple(granularities)
    form.model = (_one(fields, "model") or "").strip()
    temperature = _one(fields, "temperature")
    if temperature is not None:
        try:
            float(temperature)
        except ValueError:
            raise FormError(f"'temperature' must be a number, got {temperature[:40]!r}", "temperature") from None
    config: Dict[str, Any] = {"mode": "offline", "wav_name": (upload.filename or "upload")[:NAME_CHARS]}
    wav_format = _one(fields, "wav_format")
    if is_pcm(upload, wav_format):
        config["wav_format"] = "pcm"
        rate = _one(fields, "audio_fs") or _one(fields, "sample_rate")
        if rate is None:
            found = _RATE_PARAM.search(upload.content_type)
            rate = found.group(1) if found else str(DEFAULT_RATE)
        config["audio_fs"] = rate  # checked by the protocol's parser (an integer, 1000 to 384000 Hz)
    else:
        config["wav_format"] = (wav_format or "").strip() or _suffix(upload.filename) or "file"
    itn = _form_bool("itn", _one(fields, "itn"))
    if itn is not None:
        config["itn"] = itn
    hotwords = _one(fields, "hotwords")
    if hotwords is None:
        hotwords = _one(fields, "prompt")  # OpenAI's prompt: "words the model should expect"
    if hotwords is not None and hotwords.strip():
        config["hotwords"] = hotwords
    language = _one(fields, "language")
    svs_lang = _one(fields, "svs_lang")
    if svs_lang is None and language is not None and language.strip() and takes_language:
        svs_lang = language
    if svs_lang is not None and takes_language:
        lang = svs_lang.strip().lower() or "auto"
        if lang not in SVS_LANGUAGES:
            param = "svs_lang" if _one(fields, "svs_lang") is not None else "language"
            raise FormError(f"'{param}' must be one of {', '.join(SVS_LANGUAGES)} for this model, got {svs_lang[:40]!r}",
                            param)
        config["svs_lang"] = lang
    svs_itn = _form_bool("svs_itn", _one(fields, "svs_itn"))
    if svs_itn is not None:
        config["svs_itn"] = svs_itn
    form.language = (language or "").strip().lower() or None
    form.config = config
    return form


def _suffix(filename: str) -> str:
    dot = filename.rfind(".")
    suffix = filename[dot + 1:].strip().lower() if dot >= 0 else ""
    return suffix if suffix.isalnum() and len(suffix) <= 8 else ""


def websocket_config(form: TranscriptionForm) -> str:
    """The configuration message of a WebSocket client asking for the same (offline mode)."""
    return json.dumps(form.config, ensure_ascii=False)


# ------------------------------------------------------------------ results


@dataclass(frozen=True)
class Word:
    word: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class Segment:
    """One piece of the text with its times; ``raw`` is its slice of the text as it stands (the
    stream's delta: the raw pieces joined give the text back), ``text`` the same trimmed."""

    start_ms: int
    end_ms: int
    raw: str
    words: Tuple[Word, ...] = ()

    @property
    def text(self) -> str:
        return self.raw.strip()


@dataclass(frozen=True)
class Result:
    """A finished recognition as the API writes it."""

    text: str
    duration: float  # seconds of audio decoded
    segments: Tuple[Segment, ...]
    has_words: bool  # the model times its units
    tags: Mapping[str, str] = field(default_factory=dict)  # SenseVoiceSmall: language, emotion, event
    warning: Optional[str] = None

    @property
    def words(self) -> List[Word]:
        return [w for s in self.segments for w in s.words]


def build_result(text: str, duration: float, sentences: Optional[Sequence[Any]], vad_segments: Sequence[Sequence[int]],
                 tags: Mapping[str, str], warning: Optional[str] = None) -> Result:
    """``sentences``: the transcript's sentence pieces (None: the model has no timestamps)."""
    pieces = list(sentences or [])
    if pieces and text:
        segments = _sentence_segments(text, pieces)
    elif text:
        if vad_segments:
            start, end = int(vad_segments[0][0]), int(vad_segments[-1][1])
        else:
            start, end = 0, int(round(duration * 1000))
        segments = (Segment(start, end, text),)
    else:
        segments = ()
    return Result(text, duration, segments, sentences is not None, dict(tags), warning)


def _sentence_segments(text: str, pieces: Sequence[Any]) -> Tuple[Segment, ...]:
    """One segment per sentence piece, its text cut from ``text`` (units found in order, the
    closing mark included), so that punctuation and spacing stay as the text has them."""
    cuts: List[int] = []
    pos = 0
    for piece in pieces:
        for unit in (u for u in piece.text_seg.split(" ") if u):
            found = text.find(unit, pos)
            if found >= 0:
                pos = found + len(unit)
        if piece.punc:
            found = text.find(piece.punc, pos)
            if found >= 0:
                pos = found + len(piece.punc)
        cuts.append(pos)
    if cuts:
        cuts[-1] = len(text)
    segments = []
    begin = 0
    for piece, end in zip(pieces, cuts):
        units = [u for u in piece.text_seg.split(" ") if u]
        words = tuple(Word(u, int(t[0]), int(t[1])) for u, t in zip(units, piece.ts_list))
        segments.append(Segment(int(piece.start), int(piece.end), text[begin:end], words))
        begin = end
    return tuple(segments)


def _seconds(ms: int) -> float:
    return round(ms / 1000.0, 3)


def cues(result: Result) -> List[Cue]:
    return [Cue(s.start_ms, s.end_ms, s.text) for s in result.segments if s.text]


def _extras(result: Result) -> Dict[str, Any]:
    extra: Dict[str, Any] = dict(result.tags)
    if result.warning:
        extra["warning"] = result.warning
    return extra


def verbose_json(result: Result, form: TranscriptionForm) -> Dict[str, Any]:
    """OpenAI's ``verbose_json``: segments unless only words were asked for, words when asked for;
    plus SenseVoiceSmall's ``emotion``/``event`` and any warning."""
    granularities = form.granularities or ("segment",)
    body: Dict[str, Any] = {
        "task": "transcribe",
        "language": result.tags.get("language") or form.language or "unknown",
        "duration": round(result.duration, 3),
        "text": result.text,
    }
    if "segment" in granularities:
        body["segments"] = [
            {"id": i, "seek": 0, "start": _seconds(s.start_ms), "end": _seconds(s.end_ms), "text": s.text, "tokens": [],
             "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 0.0, "no_speech_prob": 0.0}
            for i, s in enumerate(result.segments)
        ]
    if "word" in granularities:
        body["words"] = [{"word": w.word, "start": _seconds(w.start_ms), "end": _seconds(w.end_ms)} for w in result.words]
    body["usage"] = {"type": "duration", "seconds": round(result.duration, 3)}
    body.update({k: v for k, v in _extras(result).items() if k != "language"})
    return body


def render(result: Result, form: TranscriptionForm) -> Tuple[str, bytes]:
    """(Content-Type, body) of the non-streaming answer in the form's ``response_format``."""
    fmt = form.response_format
    if fmt == "text":
        return "text/plain; charset=utf-8", (result.text + "\n").encode("utf-8")
    if fmt == "srt":
        return "application/x-subrip; charset=utf-8", render_srt(cues(result)).encode("utf-8")
    if fmt == "vtt":
        return "text/vtt; charset=utf-8", render_vtt(cues(result)).encode("utf-8")
    if fmt == "verbose_json":
        body = verbose_json(result, form)
    else:
        body = {"text": result.text, "usage": {"type": "duration", "seconds": round(result.duration, 3)}, **_extras(result)}
    return "application/json", json.dumps(body, ensure_ascii=False).encode("utf-8")


def sse(data: Mapping[str, Any]) -> bytes:
    """One server-sent event carrying ``data`` as JSON."""
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode("utf-8")


def stream_events(result: Result) -> List[bytes]:
    """``stream=true``: a ``transcript.text.delta`` per finished segment (its slice of the text, with
    its times as our extra fields), then ``transcript.text.done`` with the whole text."""
    events = [
        sse({"type": "transcript.text.delta", "delta": s.raw, "start": _seconds(s.start_ms), "end": _seconds(s.end_ms)})
        for s in result.segments
    ]
    done: Dict[str, Any] = {"type": "transcript.text.done", "text": result.text, "duration": round(result.duration, 3)}
    done.update(_extras(result))
    events.append(sse(done))
    return events


def error_body(message: str, kind: str, param: Optional[str] = None, code: Optional[str] = None) -> bytes:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return json.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}},
                      ensure_ascii=False).encode("utf-8")
