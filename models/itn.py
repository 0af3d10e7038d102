"""Inverse text normalisation (``二零二四年`` → ``2024年``) on kaldifst, the way WeTextProcessing runs it.

WeTextProcessing (``pip install WeTextProcessing``) needs pynini, which has
wheels for Linux x86-64 only.  Its runtime is simple, though: a *tagger* FST
turns the text into tokens (``char { value: "今" } cardinal { value: "123" }``),
the tokens' fields are put in a canonical order, and a *verbalizer* FST writes
them out.  This module does the same on `kaldifst <https://github.com/k2-fsa/kaldifst>`_
(OpenFst with wheels for every platform), so the results are WeTextProcessing's:

* the FSTs are read and then optimised exactly like pynini's ``Fst.optimize()``
  (which WeTextProcessing applies after reading them): epsilon removal, label
  and weight encoding, determinisation, minimisation, decoding, arc sums.  Most
  inputs do not care, but equal-weight paths (``拨打一二三四五六七八``: ``1234 5678``,
  ``123 45678`` and ``12345 678`` weigh the same) are broken by state order, and
  only the same optimisation gives the same state order;
* composition with the input bytes and the single shortest path are OpenFst's
  own (``kaldifst.TextNormalizer``), as in pynini;
* the tokens are reordered like WeTextProcessing's ``TokenParser`` (its ITN
  field orders; fields outside them are dropped); nothing is stripped, escaped
  or converted around the FSTs.  Text the tagger has no path for (WeTextProcessing
  raises) is returned unchanged.

Grammars:

* Chinese, default: the prebuilt grammar that ships in the ``wetext`` package
  (WeTextProcessing's runtime package, same authors, no pynini), with its
  interjection filter (``呃``/``啊``) after the verbalizer as WeTextProcessing's
  default ``remove_interjections=True`` does.
* Chinese, ``--itn-dir DIR``: ``DIR/zh_itn_tagger.fst`` and
  ``DIR/zh_itn_verbalizer.fst`` (FunASR's ``thuduj12/fst_itn_zh``, or the pair
  inside a WeTextProcessing install: the interjection filter is compiled in).
* English: wetext's English ITN grammar (``twenty three apples`` → ``23 apples``),
  asked for with ``itn(text, english=True)``; there is no reference for it
  (WeTextProcessing 1.2 ships no English ITN FSTs, FunASR's server has none),
  so it runs the same way, keeping the fields its newer grammar adds
  (``telephone { … kind: "serial" }``).  Without the grammar English text is
  left as it is.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import string
import struct
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, cast

import numpy as np

log = logging.getLogger(__name__)

#: the two files of an ``--itn-dir`` (FunASR's ``fst_itn_zh``, WeTextProcessing's ``itn/`` folder)
FST_FILES = ("zh_itn_tagger.fst", "zh_itn_verbalizer.fst")

#: WeTextProcessing's (and wetext's) canonical field order per ITN token type
ITN_ORDERS: Dict[str, Tuple[str, ...]] = {
    "date": ("year", "month", "day", "preserve_order"),
    "fraction": ("sign", "numerator", "denominator"),
    "measure": ("numerator", "denominator", "value", "units"),
    "money": ("currency", "value", "decimal", "quantity"),
    "time": ("hour", "minute", "second", "noon", "zone"),
    "telephone": ("country_code", "number_part"),
    "electronic": ("username", "domain", "protocol"),
}

# wetext's files, relative to its package folder
_WETEXT_ZH = ("fsts/zh/itn/tagger.fst", "fsts/zh/itn/verbalizer.fst")
_WETEXT_EN = ("fsts/en/itn/tagger.fst", "fsts/en/itn/verbalizer.fst")
_WETEXT_INTERJECTIONS = "fsts/remove_interjections.fst"


class ItnError(RuntimeError):
    pass


# ------------------------------------------------------------------ pynini's Fst.optimize() on kaldifst

# OpenFst property bits (fst/properties.h)
_EXPANDED_MUTABLE = 0x3
_ACCEPTOR = 0x10000
_I_DETERMINISTIC = 0x40000
_NO_EPSILONS = 0x800000
_UNWEIGHTED = 0x200000000
_UNWEIGHTED_CYCLES = 0x800000000
_ACYCLIC = 0x2000000000
_DO_NOT_ENCODE_WEIGHTS = _ACYCLIC | _UNWEIGHTED | _UNWEIGHTED_CYCLES

# OpenFst's binary VectorFst (fst.cc, vector-fst.h): header, then per state a float32 final weight and an
# int64 arc count, then per arc int32 ilabel, int32 olabel, float32 weight, int32 nextstate; little-endian.
_FST_MAGIC = 2125659606
_SYMBOL_TABLE_MAGIC = 2125658996
_ARC = np.dtype([("il", "<i4"), ("ol", "<i4"), ("w", "<f4"), ("ns", "<i4")])


@dataclass
class _Arrays:
    """A StdArc FST as flat arrays: the arcs of state s are ``arcs[begin[s]:begin[s + 1]]``, in stored order."""

    start: int
    finals: np.ndarray  # float32 [S], +inf = not final
    begin: np.ndarray  # int64 [S + 1]
    arcs: np.ndarray  # _ARC [A]

    @property
    def num_states(self) -> int:
        return len(self.finals)

    def arc_states(self) -> np.ndarray:
        return np.repeat(np.arange(self.num_states, dtype=np.int64), np.diff(self.begin))


def _read_string(buf: bytes, pos: int) -> Tuple[str, int]:
    (n,) = struct.unpack_from("<i", buf, pos)
    return buf[pos + 4:pos + 4 + n].decode("latin-1"), pos + 4 + n


def _skip_symbol_table(buf: bytes, pos: int) -> int:
    (magic,) = struct.unpack_from("<i", buf, pos)
    if magic != _SYMBOL_TABLE_MAGIC:
        raise ItnError("bad symbol table in an FST written by kaldifst")
    _, pos = _read_string(buf, pos + 4)
    _, size = struct.unpack_from("<qq", buf, pos)
    pos += 16
    for _ in range(size):
        _, pos = _read_string(buf, pos)
        pos += 8
    return pos


def _read_arrays(path: str) -> _Arrays:
    """A ``vector`` FST file as kaldifst writes it."""
    buf = Path(path).read_bytes()
    (magic,) = struct.unpack_from("<i", buf, 0)
    fst_type, pos = _read_string(buf, 4)
    arc_type, pos = _read_string(buf, pos)
    if magic != _FST_MAGIC or fst_type != "vector" or arc_type != "standard":
        raise ItnError(f"unexpected FST file from kaldifst ({fst_type}/{arc_type})")
    _, flags, _, start, num_states, _ = struct.unpack_from("<iiQqqq", buf, pos)
    pos += 40
    for bit in (1, 2):  # input, then output symbol table
        if flags & bit:
            pos = _skip_symbol_table(buf, pos)
    finals = np.empty(num_states, dtype=np.float32)
    counts = np.empty(num_states, dtype=np.int64)
    firsts = np.empty(num_states, dtype=np.int64)
    unpack = struct.Struct("<fq").unpack_from
    for s in range(num_states):
        finals[s], n = unpack(buf, pos)
        counts[s] = n
        firsts[s] = pos + 12
        pos += 12 + 16 * n
    begin = np.zeros(num_states + 1, dtype=np.int64)
    np.cumsum(counts, out=begin[1:])
    total = int(begin[-1])
    local = np.arange(total, dtype=np.int64) - np.repeat(begin[:-1], counts)
    offsets = np.repeat(firsts, counts) + 16 * local
    raw = np.frombuffer(buf, dtype=np.uint8)
    arcs = raw[offsets[:, None] + np.arange(16)].copy().view(_ARC).reshape(-1) if total else np.zeros(0, _ARC)
    return _Arrays(int(start), finals, begin, arcs)


def _write_arrays(fst: _Arrays, path: str) -> None:
    """``fst`` as an OpenFst ``vector`` file (properties unknown, as pynini leaves them after optimising)."""
    n = fst.num_states
    counts = np.diff(fst.begin)
    head = b"".join((
        struct.pack("<i", _FST_MAGIC),
        struct.pack("<i", 6), b"vector", struct.pack("<i", 8), b"standard",
        struct.pack("<iiQqqq", 2, 0, _EXPANDED_MUTABLE, fst.start, n, 0),
    ))
    state_at = len(head) + 12 * np.arange(n, dtype=np.int64) + 16 * fst.begin[:-1]
    out = np.zeros(len(head) + 12 * n + 16 * int(fst.begin[-1]), dtype=np.uint8)
    out[:len(head)] = np.frombuffer(head, dtype=np.uint8)
    records = np.zeros(n, dtype=np.dtype([("final", "<f4"), ("count", "<i8")]))
    records["final"] = fst.finals
    records["count"] = counts
    out[state_at[:, None] + np.arange(12)] = records.view(np.uint8).reshape(n, 12)
    if len(fst.arcs):
        local = np.arange(len(fst.arcs), dtype=np.int64) - np.repeat(fst.begin[:-1], counts)
        arc_at = np.repeat(state_at + 12, counts) + 16 * local
        out[arc_at[:, None] + np.arange(16)] = np.ascontiguousarray(fst.arcs).view(np.uint8).reshape(-1, 16)
    out.tofile(path)


def _dump(fst, folder: str, name: str) -> _Arrays:
    path = os.path.join(folder, name)
    fst.write(path)
    return _read_arrays(path)


def _load(arrays: _Arrays, folder: str, name: str):
    import kaldifst

    path = os.path.join(folder, name)
    _write_arrays(arrays, path)
    return kaldifst.StdVectorFst.read(path)


def pynini_optimize(source: Path, target: str) -> None:
    """Write to ``target`` the FST at ``source`` optimised as pynini's ``Fst.optimize()`` does a transducer.

    pynini (``optimize.h``): remove epsilons unless known to have none; if not
    known to be input-deterministic, encode labels (and weights, unless known
    acyclic or unweighted), determinise, minimise, decode (``RmFinalEpsilon``,
    ``Connect``) and sum identical arcs; else minimise.  Epsilon removal,
    determinisation, minimisation and trimming are OpenFst's own through
    kaldifst; the encoding and decoding (which kaldifst does not expose)
    follow OpenFst's ``EncodeMapper``: codes in the order arcs are met, each
    state's final weight met after its arcs and turned into an arc to a new
    super-final state.  The result has the same states and arcs in the same
    order as pynini's, which decides between equal-weight paths.
    """
    import kaldifst

    fst = kaldifst.StdVectorFst.read(str(source))
    if fst is None:
        raise ItnError(f"{source} is not a readable OpenFst (vector, StdArc) FST")
    if fst.start < 0:
        raise ItnError(f"{source} is an empty FST")
    if fst.properties(_ACCEPTOR, False) == _ACCEPTOR:
        raise ItnError(f"{source}: an ITN grammar is a transducer, this FST is marked as an acceptor")
    if fst.properties(_NO_EPSILONS, False) != _NO_EPSILONS:
        kaldifst.rmepsilon(fst)
    if fst.properties(_I_DETERMINISTIC, False) == _I_DETERMINISTIC:
        kaldifst.minimize(fst)
        fst.write(target)
        return
    with_weights = not fst.properties(_DO_NOT_ENCODE_WEIGHTS, False)
    with tempfile.TemporaryDirectory(prefix="itn-") as tmp:
        a = _dump(fst, tmp, "input.fst")
        n, m = a.num_states, len(a.arcs)

        # Encode, in the order OpenFst's in-place ArcMap meets the arcs: state by state, its arcs, then its
        # final weight (as label 0:0) when weights are encoded.
        is_final = (a.finals != np.inf) if with_weights else np.zeros(n, dtype=bool)
        finals_before = np.cumsum(is_final) - is_final
        arc_pos = np.arange(m, dtype=np.int64) + finals_before[a.arc_states()]
        final_states = np.flatnonzero(is_final)
        final_pos = a.begin[1:][final_states] + finals_before[final_states]
        total = m + len(final_states)
        il = np.zeros(total, dtype=np.int32)
        ol = np.zeros(total, dtype=np.int32)
        w = np.zeros(total, dtype=np.float32)
        ns = np.full(total, n, dtype=np.int32)  # the super-final state
        il[arc_pos], ol[arc_pos], w[arc_pos], ns[arc_pos] = a.arcs["il"], a.arcs["ol"], a.arcs["w"], a.arcs["ns"]
        w[final_pos] = a.finals[final_states]
        columns = [il, ol]
        if with_weights:  # TropicalWeight equality is float equality: -0.0 == 0.0
            columns.append((w + np.float32(0.0)).view(np.uint32))
        keys = np.stack([c.astype(np.int64) for c in columns], axis=1)
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        rank = np.empty(len(first), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(1, len(first) + 1)
        labels = rank[inverse.reshape(-1)].astype(np.int32)
        table = np.argsort(rank, kind="stable")  # label - 1 -> unique key
        code_il, code_ol, code_w = il[first[table]], ol[first[table]], w[first[table]]

        enc_arcs = np.zeros(total, dtype=_ARC)
        enc_arcs["il"] = enc_arcs["ol"] = labels
        enc_arcs["w"] = 0.0 if with_weights else w
        enc_arcs["ns"] = ns
        if with_weights:
            enc_begin = np.concatenate([a.begin + np.append(finals_before, len(final_states)), [total]])
            enc_finals = np.concatenate([np.full(n, np.inf, dtype=np.float32), [0.0]]).astype(np.float32)
        else:
            enc_begin, enc_finals = a.begin, a.finals
        encoded = _load(_Arrays(a.start, enc_finals, enc_begin, enc_arcs), tmp, "encoded.fst")

        det = kaldifst.determinize(encoded)
        kaldifst.minimize(det)
        d = _dump(det, tmp, "minimal.fst")

        # Decode.
        arcs = d.arcs.copy()
        coded = arcs["il"] > 0
        code = arcs["il"][coded] - 1
        arcs["il"][coded], arcs["ol"][coded] = code_il[code], code_ol[code]
        if with_weights:
            arcs["w"][coded] = code_w[code]

        # RmFinalEpsilon: epsilon arcs into final states without a co-accessible future become final weights.
        states = d.arc_states()
        finals = d.finals.copy()
        coaccessible = finals != np.inf
        order = np.argsort(arcs["ns"], kind="stable")
        into_begin = np.searchsorted(arcs["ns"][order], np.arange(d.num_states + 1))
        stack = list(np.flatnonzero(coaccessible))
        while stack:
            s = stack.pop()
            for p in states[order[into_begin[s]:into_begin[s + 1]]]:
                if not coaccessible[p]:
                    coaccessible[p] = True
                    stack.append(p)
        future = np.zeros(d.num_states, dtype=bool)
        np.logical_or.at(future, states, coaccessible[arcs["ns"]])
        removable = (d.finals != np.inf) & ~future
        dropped = (arcs["il"] == 0) & (arcs["ol"] == 0) & removable[arcs["ns"]]
        if dropped.any():
            moved = d.finals[arcs["ns"][dropped]].astype(np.float64) + arcs["w"][dropped]
            best = np.full(d.num_states, np.inf)
            np.minimum.at(best, states[dropped], moved)
            touched = np.unique(states[dropped])
            finals[touched] = np.minimum(d.finals[touched].astype(np.float64), best[touched]).astype(np.float32)
            keep = ~dropped
            arcs, states = arcs[keep], states[keep]
        begin = np.zeros(d.num_states + 1, dtype=np.int64)
        np.cumsum(np.bincount(states, minlength=d.num_states), out=begin[1:])
        decoded = _load(_Arrays(d.start, finals, begin, arcs), tmp, "decoded.fst")
        kaldifst.connect(decoded)
        if not with_weights:
            decoded.write(target)
            return
        c = _dump(decoded, tmp, "connected.fst")

        # ArcSumMapper: each state's arcs sorted by (ilabel, olabel, nextstate), identical ones summed (min).
        order = np.lexsort((c.arcs["ns"], c.arcs["ol"], c.arcs["il"], c.arc_states()))
        arcs, states = c.arcs[order], c.arc_states()[order]
        same = np.zeros(len(arcs), dtype=bool)
        if len(arcs):
            same[1:] = ((states[1:] == states[:-1]) & (arcs["il"][1:] == arcs["il"][:-1])
                        & (arcs["ol"][1:] == arcs["ol"][:-1]) & (arcs["ns"][1:] == arcs["ns"][:-1]))
        starts = np.flatnonzero(~same)
        summed = arcs[starts].copy()
        if len(arcs):
            summed["w"] = np.minimum.reduceat(arcs["w"], starts)
        begin = np.zeros(c.num_states + 1, dtype=np.int64)
        np.cumsum(np.bincount(states[starts], minlength=c.num_states), out=begin[1:])
        _write_arrays(_Arrays(c.start, c.finals, begin, summed), target)


# ------------------------------------------------------------------ loading, with a per-process cache

_cache: Dict[tuple, object] = {}
_cache_lock = threading.Lock()


def _rule(path: Path):
    """A ``kaldifst.TextNormalizer`` on the pynini-optimised FST at ``path`` (cached per file version)."""
    import kaldifst

    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _cache_lock:
        rule = _cache.get(key)
        if rule is None:
            with tempfile.TemporaryDirectory(prefix="itn-") as tmp:
                optimised = os.path.join(tmp, "optimised.fst")
                pynini_optimize(path, optimised)
                rule = kaldifst.TextNormalizer(optimised)  # it reads its FST from a file only
            _cache[key] = rule
    return rule


def _wetext_file(relative: str) -> Optional[Path]:
    """A file of the installed ``wetext`` package, found without importing it (its import loads every FST)."""
    spec = importlib.util.find_spec("wetext")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / relative
        if path.is_file():
            return path
    return None


# ------------------------------------------------------------------ WeTextProcessing's token reordering

_KEY_CHARS = frozenset(string.ascii_letters + "_")


def reorder_tokens(tagged: str, orders: Dict[str, Tuple[str, ...]] = ITN_ORDERS,
                   keep_other_fields: bool = False) -> str:
    """The tagger's tokens with their fields in ``orders`` (WeTextProcessing's ``TokenParser.reorder``).

    ``name { key: "value" ... }`` per token; values keep their backslash
    escapes; a token type in ``orders`` has those fields first, in that order,
    unless it says ``preserve_order: "true"``.  Its other fields are dropped
    (WeTextProcessing 1.2), or kept after them in their order with
    ``keep_other_fields`` (wetext: its newer English grammar writes
    ``telephone { number_part: "…" kind: "serial" }``).
    """
    n = len(tagged)
    i = 0
    out: List[str] = []
    while True:
        while i < n and tagged[i] == " ":
            i += 1
        if i >= n:
            break
        start = i
        while i < n and tagged[i] in _KEY_CHARS:
            i += 1
        name = tagged[start:i]
        for c in " { ":
            if i < n and tagged[i] == c:
                i += 1
        fields: List[str] = []
        values: Dict[str, str] = {}
        while True:
            while i < n and tagged[i] == " ":
                i += 1
            if i >= n:
                break
            if tagged[i] == "}":
                i += 1
                break
            start = i
            while i < n and tagged[i] in _KEY_CHARS:
                i += 1
            key = tagged[start:i]
            for c in ': "':
                if i < n and tagged[i] == c:
                    i += 1
            start = i
            while i < n and tagged[i] != '"':
                i += 2 if tagged[i] == "\\" else 1
            value = tagged[start:min(i, n)]
            if i < n:
                i += 1  # the closing quote
            fields.append(key)
            values[key] = value
        order: Sequence[str] = fields
        if name in orders and values.get("preserve_order") != "true":
            order = orders[name]
            if keep_other_fields:
                order = (*order, *(k for k in fields if k not in order))
        out.append(name + " {" + "".join(f' {k}: "{values[k]}"' for k in order if k in values) + " }")
    return " ".join(out).strip()


# ------------------------------------------------------------------ the normalisers


class FstItn:
    """One tagger/verbalizer pair (plus optional FSTs after it), run the way WeTextProcessing's ``Processor`` is.

    Callable ``text → text``; thread-safe.
    """

    def __init__(self, tagger: Path, verbalizer: Path, after: Sequence[Path] = (), name: str = "ITN",
                 keep_other_fields: bool = False):
        for path in (tagger, verbalizer, *after):
            if not Path(path).is_file():
                raise ItnError(f"{name}: {path} is missing")
        try:
            import kaldifst  # noqa: F401
        except Exception as exc:
            raise ItnError(f"kaldifst is not importable: {exc}") from exc
        self.name = name
        self.keep_other_fields = keep_other_fields
        self.files = (Path(tagger), Path(verbalizer), *map(Path, after))
        self._tagger = _rule(Path(tagger))
        self._verbalizer = _rule(Path(verbalizer))
        self._after = [_rule(Path(p)) for p in after]
        self._lock = threading.Lock()

    def __call__(self, text: str) -> str:
        if not text:
            return text
        with self._lock:
            tagged = self._tagger.normalize(text)
            if not tagged:  # no path through the tagger (WeTextProcessing would raise): leave the text alone
                log.debug("%s: the grammar does not cover %r", self.name, text)
                return text
            out = self._verbalizer.normalize(reorder_tokens(tagged, keep_other_fields=self.keep_other_fields))
            for rule in self._after:
                out = rule.normalize(out) if out else out
            return out


class ChineseItn:
    """Chinese ITN (callable ``text → text``, thread-safe), with English ITN beside it when wetext has the grammar.

    ``fst_dir``: a directory with ``zh_itn_tagger.fst`` and ``zh_itn_verbalizer.fst``
    (``--itn-dir``); None: wetext's prebuilt Chinese grammar.  ``itn(text)``
    is Chinese ITN; ``itn(text, english=True)`` English ITN (loaded on first
    use; text unchanged without the grammar, see :attr:`has_english`).
    """

    def __init__(self, fst_dir: Optional[Path] = None):
        if fst_dir is not None:
            fst_dir = Path(fst_dir)
            if not fst_dir.is_dir():
                raise ItnError(f"ITN directory {fst_dir} does not exist")
            missing = [n for n in FST_FILES if not (fst_dir / n).is_file()]
            if missing:
                raise ItnError(f"ITN directory {fst_dir} is missing {', '.join(missing)}")
            tagger, verbalizer = (fst_dir / n for n in FST_FILES)
            after: Tuple[Path, ...] = ()  # WeTextProcessing/FunASR verbalizers remove interjections themselves
            self.source = str(fst_dir)
        else:
            found = [_wetext_file(r) for r in (*_WETEXT_ZH, _WETEXT_INTERJECTIONS)]
            if None in found:
                raise ItnError("the Chinese ITN grammar needs the 'wetext' package (pip install wetext), "
                               "or --itn-dir with zh_itn_tagger.fst and zh_itn_verbalizer.fst")
            tagger, verbalizer, interjections = cast(List[Path], found)  # none is None (checked above)
            after = (interjections,)
            self.source = f"wetext {_version('wetext')} grammar"
        try:
            self._zh = FstItn(tagger, verbalizer, after, name="Chinese ITN")
        except ItnError:
            raise
        except Exception as exc:
            raise ItnError(f"Chinese ITN grammar {tagger.parent} cannot be loaded: "
                           f"{type(exc).__name__}: {exc}") from exc
        self._en: Optional[FstItn] = None
        self._en_missing = False
        self._en_lock = threading.Lock()

    @property
    def has_english(self) -> bool:
        """Whether an English ITN grammar is installed (wetext's)."""
        return all(_wetext_file(r) is not None for r in _WETEXT_EN)

    def english(self, text: str) -> str:
        """English ITN (``twenty three apples`` → ``23 apples``); ``text`` unchanged without the grammar."""
        if not text:
            return text
        with self._en_lock:
            if self._en is None and not self._en_missing:
                if self.has_english:
                    en_tagger, en_verbalizer = (cast(Path, _wetext_file(r)) for r in _WETEXT_EN)  # has_english
                    self._en = FstItn(en_tagger, en_verbalizer, name="English ITN", keep_other_fields=True)
                else:
                    self._en_missing = True
                    log.info("no English ITN grammar (the 'wetext' package has it): English text is left as it is")
        return self._en(text) if self._en is not None else text

    def __call__(self, text: str, english: bool = False) -> str:
        return self.english(text) if english else self._zh(text)


def _version(package: str) -> str:
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:
        return "?"
