"""N-gram LM decoding of the offline Paraformer's output through a TLG graph (``--lm-dir``).

FunASR's C++ runtime, given an LM directory, replaces the offline Paraformer's
greedy argmax with a WFST search over TLG (the project's LM contract, §2):
the decoder's log-softmax rows ``0 .. token_num-2``, scaled by ``am_scale``,
are searched frame by frame, and the best path's output labels are LM words.
Weighted hotwords bias that search (:mod:`models.bias_lm`).

One :class:`WfstDecoder` holds the graph and is shared by every connection
and thread; a :class:`WfstContext` is one connection's: its hotword automaton
and the search's hash size, which Kaldi keeps per decoder object and which
decides its iteration order (so it carries over from segment to segment, as
in the reference).  The search itself is :func:`models.wfst_search.search`.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from .bias_lm import BiasLm, SpellingProblem, build_bias_lm
from .fst_file import Fst
from .ngram_lm import NgramLm
from .wfst_config import WfstConfig
from .wfst_search import DONE, search

log = logging.getLogger(__name__)

#: Kaldi's token-hash size at decoder construction.
INITIAL_HASH_SIZE = 1000
_EMPTY_I32 = np.zeros(1, dtype=np.int32)
_EMPTY_F32 = np.zeros(1, dtype=np.float32)
_EMPTY_BOOL = np.zeros(1, dtype=np.bool_)


@dataclass
class WfstContext:
    """One connection's search state: its hotwords (None: no bias) and the carried hash size."""

    bias: Optional[BiasLm] = None
    hash_size: int = INITIAL_HASH_SIZE
    #: What the lexicon or vocabulary did to the connection's hotwords: (word, note).
    problems: List[SpellingProblem] = field(default_factory=list)


@dataclass(frozen=True)
class LmDecode:
    """One segment through the LM: the words and how long the search took."""

    word_ids: List[int]
    words: List[str]
    seconds: float


@dataclass(frozen=True, eq=False)
class SearchGraph:
    """TLG as the search reads it: per state, its emitting arcs then its input-epsilon arcs.

    The emitting loop skips self-loops (contract §2.3) and the epsilon
    closure looks only at input-epsilon arcs, so splitting each state's arcs
    into those two runs, in stored order, and dropping the self-loops (a
    third of TLG's arcs: blank and token-repeat loops) gives the same search
    with less memory and less scanning.
    """

    arc_begin: np.ndarray  # int64 [S + 1]
    eps_begin: np.ndarray  # int64 [S]: state s's emitting arcs are arc_begin[s]:eps_begin[s]
    ilabels: np.ndarray  # int32
    olabels: np.ndarray  # int32
    weights: np.ndarray  # float32
    nextstates: np.ndarray  # int32
    finals: np.ndarray  # float32 [S]
    start: int

    @property
    def num_states(self) -> int:
        return int(self.finals.size)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.arc_begin, self.eps_begin, self.ilabels, self.olabels, self.weights,
                                      self.nextstates, self.finals))

    @classmethod
    def from_fst(cls, fst: Fst) -> "SearchGraph":
        states = fst.num_states
        if states == 0 or fst.start < 0:
            raise ValueError("the graph has no start state")
        owner = np.repeat(np.arange(states, dtype=np.int32), np.diff(fst.arc_begin))
        eps = fst.ilabels == 0
        kept = np.flatnonzero(eps | (fst.nextstates != owner))
        kept_owner = owner[kept]
        kept_eps = eps[kept]
        del owner, eps
        # Stable: arcs stay in stored order within each (state, kind) run.
        order = kept[np.argsort(kept_owner.astype(np.int64) * 2 + kept_eps, kind="stable")]
        per_state = np.bincount(kept_owner, minlength=states)
        eps_per_state = np.bincount(kept_owner[kept_eps], minlength=states)
        del kept, kept_owner, kept_eps
        arc_begin = np.zeros(states + 1, dtype=np.int64)
        np.cumsum(per_state, out=arc_begin[1:])
        eps_begin = arc_begin[:-1] + (per_state - eps_per_state)
        return cls(
            arc_begin=arc_begin,
            eps_begin=np.ascontiguousarray(eps_begin, dtype=np.int64),
            ilabels=np.ascontiguousarray(fst.ilabels[order]),
            olabels=np.ascontiguousarray(fst.olabels[order]),
            weights=np.ascontiguousarray(fst.weights[order]),
            nextstates=np.ascontiguousarray(fst.nextstates[order]),
            finals=np.ascontiguousarray(fst.finals, dtype=np.float32),
            start=int(fst.start),
        )

    def arrays(self) -> tuple:
        return (self.arc_begin, self.eps_begin, self.ilabels, self.olabels, self.weights, self.nextstates,
                self.finals, self.start)


class _Scratch:
    """One thread's working memory for the search, kept between searches and grown on demand."""

    def __init__(self, num_states: int, capacity: int):
        self.state_tok = np.full(num_states, -1, dtype=np.int32)
        self.stamp = np.zeros(1, dtype=np.int64)
        self.resize(capacity, 0)

    def resize(self, capacity: int, hash_size: int) -> None:
        c = int(capacity)
        self.capacity = c
        self.tokens = (
            np.empty(c, dtype=np.float32),  # tot
            np.empty(c, dtype=np.int32),  # state
            np.empty(c, dtype=np.int32),  # backpointer
            np.empty(c, dtype=np.int32),  # bias state
            np.empty(c, dtype=np.int32),  # link ilabel
            np.empty(c, dtype=np.int32),  # link olabel
            np.empty(c, dtype=np.float32),  # link cost
        )
        self.queue = np.empty(2 * c, dtype=np.int32)
        self.ensure_buckets(max(2 * c + 1, hash_size + 1))
        self.ranks = np.empty(c, dtype=np.int64)
        self.starts = np.empty(c + 1, dtype=np.int64)
        self.order = np.empty(c, dtype=np.int32)
        self.select = np.empty(c, dtype=np.float32)

    def ensure_buckets(self, size: int) -> None:
        stamp: Optional[np.ndarray] = getattr(self, "bucket_stamp", None)
        if stamp is None or stamp.size < size:
            self.bucket_stamp = np.full(size, -1, dtype=np.int64)
            self.bucket_rank = np.zeros(size, dtype=np.int64)

    def arrays(self) -> tuple:
        return (self.state_tok, *self.tokens, self.queue, self.bucket_stamp, self.bucket_rank, self.stamp,
                self.ranks, self.starts, self.order, self.select)


#: Tokens a thread's scratch starts with; a search that needs more runs again with twice as many.
INITIAL_CAPACITY = 1 << 16
#: The most tokens one search may hold (a segment is refused beyond it rather than eat the memory).
MAX_CAPACITY = 1 << 26


class WfstDecoder:
    """TLG search over a Paraformer's log-posteriors; shared by all connections and threads.

    Holds the graph once (:class:`SearchGraph`, about the TLG file's size)
    plus the LM's words and lexicon; each decoder thread keeps its own scratch.
    """

    def __init__(self, lm: NgramLm, am_tokens: Sequence[str], config: WfstConfig = WfstConfig()):
        self.config = config
        self.directory = lm.directory
        self.words = lm.words
        self.lexicon = lm.lexicon
        self.file_bytes = lm.file_bytes
        self.am_tokens = list(am_tokens)
        self.token_ids: Dict[str, int] = {t: i for i, t in enumerate(self.am_tokens)}
        self._check_vocabulary(lm.graph)
        self.graph = SearchGraph.from_fst(lm.graph)
        self._arrays = self.graph.arrays()
        self._scratch = threading.local()
        self._warm_up()

    @property
    def memory_bytes(self) -> int:
        """The graph as searched (the raw file's arrays are not kept)."""
        return self.graph.nbytes

    def _check_vocabulary(self, graph: Fst) -> None:
        """A TLG is tied to one token list: its input labels are AM ids + 1 (contract §1.2)."""
        if graph.num_arcs == 0:
            raise ValueError(f"{self.directory}/TLG.fst has no arcs")
        top = int(graph.ilabels.max())
        if top > len(self.am_tokens):
            raise ValueError(
                f"{self.directory}/TLG.fst has input label {top}, but the model has {len(self.am_tokens)} tokens: "
                "this LM was built for another vocabulary (a TLG's input labels are the model's token ids + 1)"
            )
        if int(graph.ilabels.min()) < 0:
            raise ValueError(f"{self.directory}/TLG.fst has negative input labels")

    def _warm_up(self) -> None:
        """Compile (or load the cached compilation of) the search now, not on the first request."""
        started = time.perf_counter()
        self.search_logp(np.full((2, len(self.am_tokens)), -1.0, dtype=np.float32), 2, WfstContext())
        log.debug("WFST search ready in %.2f s", time.perf_counter() - started)

    def _thread_scratch(self) -> _Scratch:
        scratch = getattr(self._scratch, "value", None)
        if scratch is None:
            scratch = _Scratch(self.graph.num_states, INITIAL_CAPACITY)
            self._scratch.value = scratch
        return scratch

    def new_context(self, hotwords: Optional[Mapping[str, int]] = None) -> WfstContext:
        """A connection's context; ``hotwords`` (word → weight) are spelt through the LM's lexicon."""
        if not hotwords:
            return WfstContext()
        bias, problems = build_bias_lm(
            hotwords, self.lexicon, self.token_ids, float(self.config.fst_inc_wts), len(self.am_tokens)
        )
        return WfstContext(bias=bias, problems=problems)

    def search_logp(self, logp: np.ndarray, token_num: int, context: WfstContext) -> List[int]:
        """Word ids for one segment: ``logp`` is ``[N, V]`` log-softmax, of which rows ``0..token_num-2`` count.

        The last CIF position (the sentence end) is dropped whatever it holds,
        and a segment of one position or less gives no words, as in the reference.
        """
        rows = int(token_num) - 1
        if rows <= 0:
            return []
        logp = np.asarray(logp)
        if logp.ndim != 2 or logp.shape[0] < rows or logp.shape[1] < len(self.am_tokens):
            raise ValueError(f"expected [>= {rows}, {len(self.am_tokens)}] log-probabilities, got {list(logp.shape)}")
        loglikes = np.ascontiguousarray(logp[:rows], dtype=np.float32) * np.float32(self.config.am_scale)
        bias = context.bias.graph if context.bias is not None else None
        cfg = self.config
        if bias is None:
            bias_arrays = (False, _EMPTY_I32, _EMPTY_I32, _EMPTY_I32, _EMPTY_I32, _EMPTY_I32, _EMPTY_F32,
                           _EMPTY_F32, _EMPTY_BOOL, _EMPTY_F32, _EMPTY_BOOL, np.float32(0.0), 0)
        else:
            bias_arrays = (True, bias.child_begin, bias.child_label, bias.child_node, bias.root_child, bias.fail,
                           bias.backoff, bias.final, bias.is_final, bias.chain_backoff, bias.inner_label,
                           np.float32(bias.increment), int(bias.vocab_size))
        scratch = self._thread_scratch()
        while True:
            scratch.ensure_buckets(max(2 * scratch.capacity, int(context.hash_size)) + 1)
            status, words, hash_size = search(
                *self._arrays, loglikes, np.float32(cfg.beam), int(cfg.min_active), np.float32(cfg.beam_delta),
                np.float32(cfg.hash_ratio), int(context.hash_size), *scratch.arrays(), *bias_arrays,
            )
            if status == DONE:
                break
            if scratch.capacity >= MAX_CAPACITY:
                raise MemoryError(f"the LM search of a {rows}-token segment needs more than {MAX_CAPACITY} tokens")
            scratch.resize(scratch.capacity * 2, int(context.hash_size))
        context.hash_size = int(hash_size)
        return [int(w) for w in words]

    def decode(self, logp: np.ndarray, token_num: int, context: Optional[WfstContext] = None) -> LmDecode:
        """:meth:`search_logp` with the words as strings and the search's wall time."""
        started = time.perf_counter()
        ids = self.search_logp(logp, token_num, context if context is not None else WfstContext())
        words = self.words
        return LmDecode(ids, [words[i] for i in ids], time.perf_counter() - started)
