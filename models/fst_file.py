"""Reading an OpenFst binary file (StdArc) into flat numpy arrays, for a compiled WFST search.

FunASR's C++ runtime loads its decoding graph ``TLG.fst`` with
``fst::Fst<fst::StdArc>::Read``: OpenFst binary, type ``vector`` (what Kaldi
and kaldifst write) or ``const``.  A numba search wants the graph as plain
arrays, so we read the file ourselves into CSR form: the arcs of state ``s``
are ``arc_begin[s]:arc_begin[s+1]``, **in the order they are stored**, because
the decoder visits them in that order and its ties and hash order depend on it.

The layout below was checked byte by byte against files written by kaldifst
(OpenFst 1.8) and against OpenFst's sources (``fst.cc``, ``vector-fst.h``,
``const-fst.h``, ``symbol-table.cc``, ``util.cc``).  Everything is
little-endian; a string is an int32 length and that many bytes.

* Header: int32 magic ``2125659606``, string fst type, string arc type
  (``standard`` = StdArc), int32 version, int32 flags (1 = input symbols
  follow, 2 = output symbols follow, 4 = aligned), uint64 properties, int64
  start (-1 = none), int64 number of states, int64 number of arcs.  A
  ``vector`` header leaves the arc count 0, and a vector written to an
  unseekable stream has -1 states: then states run to the end of the file.
* Symbol table (skipped): int32 magic ``2125658996``, string name, int64
  available key, int64 size, then size × (string symbol, int64 key).
* ``vector`` (version 2), one variable-length record per state: float32 final
  weight, int64 arc count, then per arc int32 ilabel, int32 olabel, float32
  weight, int32 nextstate.
* ``const`` (version 2, or 1 = the aligned variant, as is flag 4): the states
  as 20-byte records (float32 final, uint32 first arc, uint32 arc count,
  uint32 input- and output-epsilon counts), then the arcs as 16-byte records
  laid out like the vector ones.  Aligned files pad with zero bytes to a
  multiple of 16 (from the start of the file) before the states and before
  the arcs.

The file is read once into one uint8 array and decoded by small numba
functions, so a 115 MB graph (2 M states, 5.6 M arcs) costs no Python loop per
state or arc and peaks at about the file size plus the result arrays.
Anything else (another fst or arc type, a bad magic number, a truncated file,
an arc to a state that does not exist) raises :class:`FstFormatError`.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple, Union

import numpy as np

from .jit import compiled

FST_MAGIC = 2125659606
SYMBOL_TABLE_MAGIC = 2125658996
HAS_ISYMBOLS = 1
HAS_OSYMBOLS = 2
IS_ALIGNED = 4
#: OpenFst's MappedFile::kArchAlignment: aligned const files pad to this.
CONST_ALIGNMENT = 16
STD_ARC_TYPE = "standard"
VECTOR_VERSION = 2
CONST_VERSIONS = (1, 2)  # 1 = aligned
CONST_ALIGNED_VERSION = 1

_VECTOR_STATE_BYTES = 12  # float32 final weight + int64 arc count
_ARC_BYTES = 16  # int32 ilabel, int32 olabel, float32 weight, int32 nextstate
_CONST_STATE_BYTES = 20  # float32 final weight + 4 × uint32
_MAX_NAME_BYTES = 1 << 16  # fst/arc type names are short; a longer "string" is garbage

# Status codes of the compiled helpers.
_OK = 0
_TRUNCATED = 1
_BAD_COUNT = 2
_BAD_MAGIC = 3

PathLike = Union[str, "os.PathLike[str]"]


class FstFormatError(ValueError):
    """A file is not an OpenFst binary FST that :func:`read_fst` can load."""


@dataclass(frozen=True, eq=False)
class Fst:
    """A StdArc FST as CSR arrays; treat the arrays as read-only (one graph is shared by all searches)."""

    start: int  # -1 = no start state (an empty FST)
    finals: np.ndarray  # float32 [S]; +inf = not final
    arc_begin: np.ndarray  # int64 [S+1]; arcs of state s are arc_begin[s]:arc_begin[s+1]
    ilabels: np.ndarray  # int32 [A]
    olabels: np.ndarray  # int32 [A]
    weights: np.ndarray  # float32 [A]
    nextstates: np.ndarray  # int32 [A]

    @property
    def num_states(self) -> int:
        return int(self.finals.shape[0])

    @property
    def num_arcs(self) -> int:
        return int(self.ilabels.shape[0])

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays."""
        return sum(
            a.nbytes
            for a in (self.finals, self.arc_begin, self.ilabels, self.olabels, self.weights, self.nextstates)
        )


@dataclass(frozen=True)
class _Header:
    fst_type: str
    arc_type: str
    version: int
    flags: int
    start: int
    num_states: int
    num_arcs: int
    end: int  # byte offset after the header and any symbol tables


def read_fst(path: PathLike) -> Fst:
    """Read an OpenFst binary ``vector`` or ``const`` FST with StdArc; OSError if it cannot be read at all."""
    path = Path(path)
    buf = np.fromfile(path, dtype=np.uint8)
    header = _read_header(path, buf)
    if header.fst_type == "vector":
        fst = _read_vector(path, buf, header)
    else:
        fst = _read_const(path, buf, header)
    _check_targets(path, fst)
    return fst


# --- header ---------------------------------------------------------------------------------------


def _read_header(path: Path, buf: np.ndarray) -> _Header:
    pos = 0

    def take(fmt: str, what: str) -> Tuple[int, ...]:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > buf.shape[0]:
            raise FstFormatError(f"{path}: truncated FST header (ends inside the {what})")
        values = struct.unpack_from(fmt, buf, pos)  # type: ignore[arg-type]  # an ndarray is a buffer; numpy's stubs omit it
        pos += size
        return values

    def take_name(what: str) -> str:
        nonlocal pos
        (length,) = take("<i", what)
        if not 0 <= length <= _MAX_NAME_BYTES:
            raise FstFormatError(f"{path}: corrupt FST header (the {what} has length {length})")
        if pos + length > buf.shape[0]:
            raise FstFormatError(f"{path}: truncated FST header (ends inside the {what})")
        name = buf[pos : pos + length].tobytes().decode("latin-1")
        pos += length
        return name

    if buf.shape[0] < 4:
        raise FstFormatError(f"{path}: not an OpenFst binary FST (only {buf.shape[0]} bytes)")
    (magic,) = take("<i", "magic number")
    if magic != FST_MAGIC:
        raise FstFormatError(
            f"{path}: not an OpenFst binary FST (magic number {magic}, expected {FST_MAGIC}); "
            "text FSTs must be compiled with fstcompile first"
        )
    fst_type = take_name("fst type")
    arc_type = take_name("arc type")
    version, flags, _properties, start, num_states, num_arcs = take("<iiQqqq", "header fields")
    _check_types(path, fst_type, arc_type, version)
    if start < -1 or num_states < -1 or (fst_type == "const" and (num_states < 0 or num_arcs < 0)):
        raise FstFormatError(
            f"{path}: corrupt FST header (start {start}, {num_states} states, {num_arcs} arcs)"
        )
    for flag, which in ((HAS_ISYMBOLS, "input"), (HAS_OSYMBOLS, "output")):
        if flags & flag:
            pos = _skip_symbol_table(path, buf, pos, which)
    return _Header(fst_type, arc_type, version, flags, start, num_states, num_arcs, pos)


def _check_types(path: Path, fst_type: str, arc_type: str, version: int) -> None:
    if arc_type != STD_ARC_TYPE:
        raise FstFormatError(
            f"{path}: arc type {arc_type!r} is not supported (only {STD_ARC_TYPE!r}: StdArc, tropical float weights)"
        )
    if fst_type == "vector":
        if version != VECTOR_VERSION:
            raise FstFormatError(f"{path}: vector FST version {version} is not supported (only {VECTOR_VERSION})")
    elif fst_type == "const":
        if version not in CONST_VERSIONS:
            raise FstFormatError(f"{path}: const FST version {version} is not supported (only 1 and 2)")
    else:
        raise FstFormatError(f"{path}: FST type {fst_type!r} is not supported (only 'vector' and 'const')")


def _skip_symbol_table(path: Path, buf: np.ndarray, pos: int, which: str) -> int:
    status, end = _symbol_table_end(buf, pos)
    if status == _BAD_MAGIC:
        raise FstFormatError(f"{path}: corrupt {which} symbol table at byte {pos} (bad magic number)")
    if status != _OK:
        raise FstFormatError(f"{path}: truncated or corrupt {which} symbol table (starts at byte {pos})")
    return int(end)


# --- vector ---------------------------------------------------------------------------------------


def _read_vector(path: Path, buf: np.ndarray, header: _Header) -> Fst:
    status, num_states, num_arcs, pos = _scan_vector(buf, header.end, header.num_states)
    if status == _TRUNCATED:
        raise FstFormatError(
            f"{path}: truncated vector FST: the file ends inside state {num_states} (byte {pos} of "
            f"{buf.shape[0]}; the header says {header.num_states} states)"
        )
    if status == _BAD_COUNT:
        raise FstFormatError(f"{path}: corrupt vector FST: state {num_states} has an impossible arc count (byte {pos})")
    if pos != buf.shape[0]:
        raise FstFormatError(
            f"{path}: corrupt vector FST: {buf.shape[0] - pos} unexpected bytes after the last of {num_states} states"
        )
    arrays = _empty_arrays(num_states, num_arcs)
    finals, arc_begin, ilabels, olabels, weights, nextstates = arrays
    _fill_vector(
        buf, header.end, num_states, finals.view(np.uint32), arc_begin, ilabels.view(np.uint32),
        olabels.view(np.uint32), weights.view(np.uint32), nextstates.view(np.uint32),
    )
    return Fst(header.start, *arrays)


def _empty_arrays(num_states: int, num_arcs: int) -> Tuple[np.ndarray, ...]:
    return (
        np.empty(num_states, dtype=np.float32),
        np.empty(num_states + 1, dtype=np.int64),
        np.empty(num_arcs, dtype=np.int32),
        np.empty(num_arcs, dtype=np.int32),
        np.empty(num_arcs, dtype=np.float32),
        np.empty(num_arcs, dtype=np.int32),
    )


# --- const ----------------------------------------------------------------------------------------


def _align(pos: int) -> int:
    return -(-pos // CONST_ALIGNMENT) * CONST_ALIGNMENT


def _read_const(path: Path, buf: np.ndarray, header: _Header) -> Fst:
    aligned = header.version == CONST_ALIGNED_VERSION or bool(header.flags & IS_ALIGNED)
    states_at = _align(header.end) if aligned else header.end
    arcs_at = states_at + header.num_states * _CONST_STATE_BYTES
    if aligned:
        arcs_at = _align(arcs_at)
    end = arcs_at + header.num_arcs * _ARC_BYTES
    if end > buf.shape[0]:
        raise FstFormatError(
            f"{path}: truncated const FST: {header.num_states} states and {header.num_arcs} arcs need "
            f"{end} bytes, the file has {buf.shape[0]}"
        )
    if end < buf.shape[0]:
        raise FstFormatError(f"{path}: corrupt const FST: {buf.shape[0] - end} unexpected bytes after the arcs")
    status, total, bad_state = _scan_const(buf, states_at, header.num_states, header.num_arcs)
    if status != _OK:
        raise FstFormatError(
            f"{path}: corrupt const FST: the arcs of state {bad_state} lie outside the {header.num_arcs} stored arcs"
        )
    arrays = _empty_arrays(header.num_states, int(total))
    finals, arc_begin, ilabels, olabels, weights, nextstates = arrays
    _fill_const(
        buf, states_at, arcs_at, header.num_states, finals.view(np.uint32), arc_begin, ilabels.view(np.uint32),
        olabels.view(np.uint32), weights.view(np.uint32), nextstates.view(np.uint32),
    )
    return Fst(header.start, *arrays)


# --- checks ---------------------------------------------------------------------------------------


def _check_targets(path: Path, fst: Fst) -> None:
    """A search indexes its arrays with these without bounds checks, so refuse any out of range."""
    num_states = fst.num_states
    if not (fst.start == -1 or 0 <= fst.start < num_states):
        raise FstFormatError(f"{path}: start state {fst.start} does not exist ({num_states} states)")
    if fst.num_arcs == 0:
        return
    bad = (fst.nextstates < 0) | (fst.nextstates >= num_states)
    if bad.any():
        arc = int(np.argmax(bad))
        state = int(np.searchsorted(fst.arc_begin, arc, side="right")) - 1
        raise FstFormatError(
            f"{path}: arc {arc - int(fst.arc_begin[state])} of state {state} goes to state "
            f"{int(fst.nextstates[arc])}, which does not exist ({num_states} states)"
        )


# --- compiled helpers (all offsets in bytes; values read little-endian) ----------------------------


@compiled
def _u32(buf, p):
    return (
        np.uint32(buf[p])
        | (np.uint32(buf[p + 1]) << np.uint32(8))
        | (np.uint32(buf[p + 2]) << np.uint32(16))
        | (np.uint32(buf[p + 3]) << np.uint32(24))
    )


@compiled
def _symbol_table_end(buf, pos):
    """(status, offset after the table)."""
    n = buf.shape[0]
    if pos + 4 > n:
        return _TRUNCATED, pos
    if _u32(buf, pos) != np.uint32(SYMBOL_TABLE_MAGIC):
        return _BAD_MAGIC, pos
    pos += 4
    if pos + 4 > n:
        return _TRUNCATED, pos
    pos += 4 + np.int64(_u32(buf, pos))  # name
    pos += 8  # available key
    if pos + 8 > n:
        return _TRUNCATED, pos
    if _u32(buf, pos + 4) != 0:  # size >= 2**32 or negative
        return _BAD_COUNT, pos
    size = np.int64(_u32(buf, pos))
    pos += 8
    for _ in range(size):
        if pos + 4 > n:
            return _TRUNCATED, pos
        pos += 4 + np.int64(_u32(buf, pos)) + 8  # symbol, key
    if pos > n:
        return _TRUNCATED, pos
    return _OK, pos


@compiled
def _scan_vector(buf, pos, num_states):
    """(status, states, arcs, offset reached); num_states -1 = read states to the end of the file."""
    n = buf.shape[0]
    states = np.int64(0)
    arcs = np.int64(0)
    while num_states < 0 or states < num_states:
        if num_states < 0 and pos == n:
            break
        if pos + _VECTOR_STATE_BYTES > n:
            return _TRUNCATED, states, arcs, pos
        if _u32(buf, pos + 8) != 0:  # high word of the int64 arc count
            return _BAD_COUNT, states, arcs, pos
        narcs = np.int64(_u32(buf, pos + 4))
        end = pos + _VECTOR_STATE_BYTES + narcs * _ARC_BYTES
        if end > n:
            return _TRUNCATED, states, arcs, pos
        pos = end
        arcs += narcs
        states += 1
    return _OK, states, arcs, pos


@compiled
def _fill_vector(buf, pos, num_states, finals, arc_begin, ilabels, olabels, weights, nextstates):
    a = 0
    for s in range(num_states):
        finals[s] = _u32(buf, pos)
        narcs = np.int64(_u32(buf, pos + 4))
        pos += _VECTOR_STATE_BYTES
        arc_begin[s] = a
        for _ in range(narcs):
            ilabels[a] = _u32(buf, pos)
            olabels[a] = _u32(buf, pos + 4)
            weights[a] = _u32(buf, pos + 8)
            nextstates[a] = _u32(buf, pos + 12)
            pos += _ARC_BYTES
            a += 1
    arc_begin[num_states] = a


@compiled
def _scan_const(buf, states_at, num_states, num_arcs):
    """(status, total arcs, first bad state): every state's arcs must lie inside the arc array."""
    total = np.int64(0)
    for s in range(num_states):
        p = states_at + s * _CONST_STATE_BYTES
        first = np.int64(_u32(buf, p + 4))
        narcs = np.int64(_u32(buf, p + 8))
        if first + narcs > num_arcs:
            return _BAD_COUNT, total, s
        total += narcs
    return _OK, total, -1


@compiled
def _fill_const(buf, states_at, arcs_at, num_states, finals, arc_begin, ilabels, olabels, weights, nextstates):
    """Copies each state's arcs from its own offset, so the order is the stored one even if not contiguous."""
    a = 0
    for s in range(num_states):
        p = states_at + s * _CONST_STATE_BYTES
        finals[s] = _u32(buf, p)
        first = np.int64(_u32(buf, p + 4))
        narcs = np.int64(_u32(buf, p + 8))
        arc_begin[s] = a
        q = arcs_at + first * _ARC_BYTES
        for _ in range(narcs):
            ilabels[a] = _u32(buf, q)
            olabels[a] = _u32(buf, q + 4)
            weights[a] = _u32(buf, q + 8)
            nextstates[a] = _u32(buf, q + 12)
            q += _ARC_BYTES
            a += 1
    arc_begin[num_states] = a
