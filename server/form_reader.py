"""Reading a ``multipart/form-data`` body as it arrives, every size bounded before it is kept.

The parsing itself is python-multipart's streaming ``MultipartParser`` (the
parser Starlette and FastAPI use): bytes go in chunk by chunk and it calls back
with each part's headers and data, so nothing here splits boundaries or
headers by hand.  This module only decides what to keep:

* one ``file`` part, its bytes counted against the upload cap as they come
  (``hold``, which is the session's own :meth:`Session.hold_audio`: the
  per-utterance cap and the server-wide audio budget of the WebSocket side);
* text fields, each at most ``max_field_bytes`` and at most ``max_parts`` parts
  in all, with at most ``max_header_bytes`` of part headers each;
* anything else (a second file, a part without a name) is refused.

A broken body raises :class:`FormError` (400), one that is too large
:class:`FormTooLarge` (413), and a refusal of the audio budget
:class:`FormRefused` (503); the caller stops reading at the first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from .transcription import FormError, Upload

FILE_FIELD = "file"


class FormTooLarge(ValueError):
    """A part, or the body, is over its limit (413)."""


class FormRefused(ValueError):
    """The server cannot hold the upload now (the audio budget, 503)."""


@dataclass(frozen=True)
class FormLimits:
    max_field_bytes: int = 256 << 10
    max_parts: int = 64
    max_header_bytes: int = 8 << 10


#: ``hold(n, total)``: count ``n`` more file bytes (``total`` in all); the error to raise
#: (:class:`FormTooLarge`, :class:`FormRefused`), or None when they fit.
Hold = Callable[[int, int], Optional[Exception]]


def boundary_of(content_type: str) -> Optional[bytes]:
    """The boundary of a ``multipart/form-data`` Content-Type, or None when it is not one."""
    media, params = parse_options_header(content_type)
    if media.lower() != b"multipart/form-data":
        return None
    boundary = params.get(b"boundary")
    return boundary if boundary and len(boundary) <= 200 else None


class FormReader:
    """Feed the body with :meth:`feed`, then take the form from :meth:`finish`."""

    def __init__(self, boundary: bytes, hold: Hold, limits: FormLimits = FormLimits()):
        self.limits = limits
        self.hold = hold
        self.fields: Dict[str, List[str]] = {}
        self.upload: Optional[Upload] = None
        self._file = bytearray()
        self._parts = 0
        self._ended = False
        self._error: Optional[Exception] = None
        # the part being read
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: Dict[str, str] = {}
        self._header_bytes = 0
        self._name: Optional[str] = None
        self._is_file = False
        self._filename = ""
        self._content_type = ""
        self._value = bytearray()
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field_data,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        })

    @property
    def file_bytes(self) -> int:
        return len(self._file)

    def feed(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise FormError(f"the multipart body is malformed: {exc}") from None
        if self._error is not None:
            raise self._error

    def finish(self) -> Tuple[Dict[str, List[str]], Optional[Upload]]:
        """The text fields and the file; :class:`FormError` when the body ended before its last boundary."""
        if not self._ended:
            raise FormError("the multipart body ended before its closing boundary")
        if self.upload is not None:
            self.upload = Upload(bytes(self._file), self.upload.filename, self.upload.content_type)
            self._file = bytearray()
        return self.fields, self.upload

    # ------------------------------------------------------------ parser callbacks (errors are raised by feed)

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error

    def _part_begin(self) -> None:
        self._parts += 1
        if self._parts > self.limits.max_parts:
            self._fail(FormTooLarge(f"the form has more than {self.limits.max_parts} parts"))
        self._headers, self._header_bytes = {}, 0
        self._name, self._is_file, self._filename, self._content_type = None, False, "", ""
        self._value = bytearray()

    def _count_header(self, n: int) -> bool:
        self._header_bytes += n
        if self._header_bytes > self.limits.max_header_bytes:
            self._fail(FormTooLarge(f"a part's headers are longer than {self.limits.max_header_bytes} bytes"))
            return False
        return True

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        if self._count_header(end - start):
            self._header_field += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        if self._count_header(end - start):
            self._header_value += data[start:end]

    def _header_end(self) -> None:
        name = self._header_field.decode("latin-1").strip().lower()
        self._headers[name] = self._header_value.decode("utf-8", "replace").strip()
        self._header_field, self._header_value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        if self._error is not None:
            return
        disposition, params = parse_options_header(self._headers.get("content-disposition", ""))
        name = params.get(b"name")
        if disposition.lower() != b"form-data" or name is None:
            self._fail(FormError("a part of the form has no 'Content-Disposition: form-data; name=...' header"))
            return
        self._name = name.decode("utf-8", "replace")
        self._is_file = self._name == FILE_FIELD
        if self._is_file:
            if self.upload is not None:
                self._fail(FormError("the form has more than one 'file' part", FILE_FIELD))
                return
            filename = params.get(b"filename", b"").decode("utf-8", "replace")
            self._filename = filename.replace("\\", "/").rsplit("/", 1)[-1]
            self._content_type = self._headers.get("content-type", "")[:200]
            self.upload = Upload(b"", self._filename, self._content_type)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._error is not None or self._name is None:
            return
        n = end - start
        if self._is_file:
            refusal = self.hold(n, len(self._file) + n)
            if refusal is not None:
                self._fail(refusal)
                return
            self._file += data[start:end]
        else:
            if len(self._value) + n > self.limits.max_field_bytes:
                self._fail(FormTooLarge(
                    f"the form field {self._name[:60]!r} is longer than {self.limits.max_field_bytes} bytes (--max-text-kib)"
                ))
                return
            self._value += data[start:end]

    def _part_end(self) -> None:
        if self._error is not None or self._name is None or self._is_file:
            return
        try:
            text = self._value.decode("utf-8")
        except UnicodeDecodeError:
            self._fail(FormError(f"the form field {self._name[:60]!r} is not UTF-8 text", self._name[:60]))
            return
        self.fields.setdefault(self._name, []).append(text)

    def _end(self) -> None:
        self._ended = True
