"""Weighted hotwords for the WFST search: FunASR's BiasLm, as flat arrays a compiled search reads.

FunASR's C++ runtime biases its n-gram search with an Aho–Corasick automaton
over AM token ids (``bias-lm.cpp``; the rules are in the project's LM
contract, §3).  A token that extends a partial hotword match earns
``fst_inc_wts`` (B); completing a hotword earns its weight on top; falling off
a match pays the increments of the unmatched part back along the failure
links.  The state of the match rides on each search token; it is not part of
the search state, so it cannot be composed into the graph.

Spelling a hotword (§3.2): the word is split into CJK characters and
space-separated runs, each piece is looked up in the LM's ``lexicon.txt``,
and every lexicon token must be in the AM's ``tokens.json``.  The reference
drops a piece that is not in the lexicon without a word (``阿里Cloud`` becomes
``阿里``) and a word with a token outside the vocabulary entirely.  We keep
those results, so the text is the reference's, but report both to the
caller, who tells the client.  A set in which no word can be spelt gives no
automaton at all: the C++ server crashes on one.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

#: What happened to one hotword: (word, why it changed or was dropped).
SpellingProblem = Tuple[str, str]


def is_split_cjk(ch: str) -> bool:
    """The characters ``SplitChiEngCharacters`` cuts out one by one (CJK unified + extension A)."""
    cp = ord(ch)
    return 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF


def split_hotword(word: str) -> List[str]:
    """Each CJK character alone; other runs split at spaces (``阿里 cloud`` → ``阿``, ``里``, ``cloud``)."""
    pieces: List[str] = []
    run = ""
    for ch in word:
        if is_split_cjk(ch):
            if run:
                pieces.append(run)
                run = ""
            pieces.append(ch)
        elif ch == " ":
            if run:
                pieces.append(run)
                run = ""
        else:
            run += ch
    if run:
        pieces.append(run)
    return pieces


def spell_hotword(
    word: str, lexicon: Mapping[str, Sequence[str]], token_ids: Mapping[str, int]
) -> Tuple[List[int], Optional[str]]:
    """AM token ids for ``word`` and a note on what was lost (None when nothing was)."""
    ids: List[int] = []
    missing: List[str] = []
    for piece in split_hotword(word):
        entry = lexicon.get(piece)
        if not entry:
            missing.append(piece)
            continue
        for token in entry:
            if token not in token_ids:
                return [], f"the LM lexicon spells {piece!r} with {token!r}, which the model's vocabulary lacks"
            ids.append(token_ids[token])
    if not ids:
        return [], "none of its pieces is in the LM lexicon" if missing else "empty"
    if missing:
        pieces = ", ".join(repr(p) for p in missing)
        return ids, f"{pieces} not in the LM lexicon, matched without {'it' if len(missing) == 1 else 'them'}"
    return ids, None


@dataclass(frozen=True)
class BiasGraph:
    """The automaton as arrays (node 0 = root), read by :func:`models.wfst_search.bias_score`.

    Children of node n are ``child_label/child_node[child_begin[n]:child_begin[n+1]]``,
    sorted by label; ``root_child[k]`` is the root's child on token k or -1.
    """

    child_begin: np.ndarray  # int32 [nodes + 1]
    child_label: np.ndarray  # int32
    child_node: np.ndarray  # int32
    root_child: np.ndarray  # int32 [vocab]
    fail: np.ndarray  # int32 [nodes]: the Aho–Corasick failure link
    backoff: np.ndarray  # float32 [nodes]: bow(n), the score of taking the failure link
    final: np.ndarray  # float32 [nodes]: the weight earned on reaching a hotword's end
    is_final: np.ndarray  # bool [nodes]
    #: The sum of the backoff scores along node n's whole failure chain down to the root.
    chain_backoff: np.ndarray  # float32 [nodes]
    #: Token k is a child label of some non-root node: only then can a walk stop above the root.
    inner_label: np.ndarray  # bool [vocab + 1]
    increment: float  # B, earned by every matched token
    vocab_size: int  # tokens outside 1..vocab_size score nothing and reset the match

    @property
    def num_nodes(self) -> int:
        return int(self.fail.size)


def build_bias_graph(
    sequences: Sequence[Tuple[Sequence[int], float]], increment: float, vocab_size: int
) -> Optional[BiasGraph]:
    """The trie of the (token ids, weight) pairs with its failure links; None if every sequence is empty.

    ``final`` of a node is the smallest weight among the hotwords ending there
    (two spellings of one word share a node; tropical ⊕ is min).
    """
    children: List[Dict[int, int]] = [{}]
    depth = [0]
    final: Dict[int, float] = {}
    for ids, weight in sequences:
        if not ids:
            continue
        node = 0
        for k in ids:
            nxt = children[node].get(int(k))
            if nxt is None:
                nxt = len(children)
                children[node][int(k)] = nxt
                children.append({})
                depth.append(depth[node] + 1)
            node = nxt
        final[node] = min(float(weight), final.get(node, float("inf")))
    if len(children) == 1:
        return None
    n = len(children)
    fail = np.zeros(n, dtype=np.int32)
    queue: Deque[int] = deque()
    for child in children[0].values():
        queue.append(child)  # the root's children fail to the root
    while queue:
        node = queue.popleft()
        for label, child in sorted(children[node].items()):
            f = int(fail[node])
            while f and label not in children[f]:
                f = int(fail[f])
            target = children[f].get(label, 0) if node else 0
            fail[child] = target if target != child else 0
            queue.append(child)
    inc = np.float32(increment)
    depth_arr = np.asarray(depth, dtype=np.int64)
    is_final = np.zeros(n, dtype=np.bool_)
    final_arr = np.zeros(n, dtype=np.float32)
    for node, weight in final.items():
        is_final[node] = True
        final_arr[node] = np.float32(weight)
    score = (inc * depth_arr.astype(np.float32)).astype(np.float32)
    backoff = np.where(is_final, np.float32(0.0), score[fail] - score).astype(np.float32)
    backoff[0] = 0.0
    begin = np.zeros(n + 1, dtype=np.int32)
    labels: List[int] = []
    nodes: List[int] = []
    for node in range(n):
        for label, child in sorted(children[node].items()):
            labels.append(label)
            nodes.append(child)
        begin[node + 1] = len(labels)
    root_child = np.full(max(int(vocab_size), 1) + 1, -1, dtype=np.int32)
    for label, child in children[0].items():
        if 0 <= label < root_child.size:
            root_child[label] = child
    inner_label = np.zeros(root_child.size, dtype=np.bool_)
    for node in range(1, n):
        for label in children[node]:
            if 0 <= label < inner_label.size:
                inner_label[label] = True
    # Nodes in BFS order have their failure target earlier (it is shallower): one pass sums the chains.
    chain_backoff = np.zeros(n, dtype=np.float32)
    for node in sorted(range(1, n), key=lambda m: depth[m]):
        chain_backoff[node] = np.float32(backoff[node] + chain_backoff[fail[node]])
    return BiasGraph(
        child_begin=begin,
        child_label=np.asarray(labels, dtype=np.int32),
        child_node=np.asarray(nodes, dtype=np.int32),
        root_child=root_child,
        fail=fail,
        backoff=backoff,
        final=final_arr,
        is_final=is_final,
        chain_backoff=chain_backoff,
        inner_label=inner_label,
        increment=float(inc),
        vocab_size=int(vocab_size),
    )


@dataclass(frozen=True)
class BiasLm:
    """One connection's weighted hotwords, spelt and built once, read by every search of the connection."""

    graph: BiasGraph
    #: The hotwords that made it in, with their token ids.
    words: Tuple[Tuple[str, Tuple[int, ...], int], ...]


def build_bias_lm(
    hotwords: Mapping[str, int],
    lexicon: Mapping[str, Sequence[str]],
    token_ids: Mapping[str, int],
    increment: float,
    vocab_size: int,
) -> Tuple[Optional[BiasLm], List[SpellingProblem]]:
    """Spell ``hotwords`` (word → weight) and build their automaton.

    Returns (None, problems) when no word can be spelt: no hotwords at all,
    rather than the reference's crash.  ``problems`` names every word the
    lexicon or vocabulary changed or dropped.
    """
    problems: List[SpellingProblem] = []
    spelt: List[Tuple[str, Tuple[int, ...], int]] = []
    for word, weight in hotwords.items():
        ids, note = spell_hotword(word, lexicon, token_ids)
        if note is not None:
            problems.append((word, note))
        if ids:
            spelt.append((word, tuple(ids), int(weight)))
    graph = build_bias_graph([(ids, w) for _, ids, w in spelt], increment, vocab_size)
    if graph is None:
        return None, problems
    return BiasLm(graph, tuple(spelt)), problems


def reference_bias_score(graph: BiasGraph, state: int, k: int) -> Tuple[float, int]:
    """``BiasLmScore`` in plain Python (the compiled search has its own copy): (score, new state).

    Kept for the tests and for reading: it is the rule of the contract's §3.4, line by line.
    """
    if k < 1 or k > graph.vocab_size:
        return 0.0, 0
    score = np.float32(0.0)
    cur = state
    while True:
        prev = cur
        lo, hi = int(graph.child_begin[cur]), int(graph.child_begin[cur + 1])
        labels = graph.child_label[lo:hi]
        pos = int(np.searchsorted(labels, k))
        if pos < labels.size and int(labels[pos]) == k:
            child = int(graph.child_node[lo + pos])
            score = np.float32(score + np.float32(graph.increment))
            if graph.is_final[child]:
                score = np.float32(score + graph.final[child])
            cur = child
            break
        if cur != 0:
            score = np.float32(score + graph.backoff[cur])
            cur = int(graph.fail[cur])
        if prev == 0 and cur == 0:
            break
    return float(score), cur
