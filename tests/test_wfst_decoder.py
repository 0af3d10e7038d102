"""The n-gram LM search (``--lm-dir``) and BiasLm hotwords against FunASR's own C++ decoder.

``golden/lm/golden.json`` holds the words FunASR's C++ ``WfstDecoder`` gives on
the fixture clips with the fixture LM, without and with four weighted hotword
sets; the fixture Paraformer here gives the decoder the same log-probabilities
(fp32 ``model.onnx``, the golden's VAD segments).  kaldi-decoder's
``FasterDecoder`` on the self-loop-free graph is a second, live reference for
the search without hotwords; the BiasLm arithmetic is checked on the
contract's worked example and against a plain reading of its rules.
"""
from __future__ import annotations

import json
import random
from functools import lru_cache
from typing import Dict, List, Tuple

import numpy as np
import pytest

from funasr_wss.models.audio import decode_container
from funasr_wss.models.bias_lm import (
    build_bias_graph,
    build_bias_lm,
    reference_bias_score,
    spell_hotword,
    split_hotword,
)
from funasr_wss.models.ngram_lm import load_lm_dir
from funasr_wss.models.paraformer import OfflineParaformer
from funasr_wss.models.wfst_decoder import WfstConfig, WfstContext, WfstDecoder
from funasr_wss.models.wfst_search import bias_score
from tests.paths import ASR_TIMESTAMP_DIR, AUDIO, LM_DIR, LM_GOLDEN

GOLDEN = json.loads(LM_GOLDEN.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def lm():
    return load_lm_dir(LM_DIR)


@lru_cache(maxsize=1)
def asr() -> OfflineParaformer:
    return OfflineParaformer(ASR_TIMESTAMP_DIR, quantized=False)


@lru_cache(maxsize=4)
def decoder(fst_inc_wts: int = 20) -> WfstDecoder:
    return WfstDecoder(lm(), asr().vocab.tokens, WfstConfig(fst_inc_wts=fst_inc_wts))


@lru_cache(maxsize=None)
def segment_logp(clip: str) -> List[Tuple[np.ndarray, int]]:
    """(log-softmax rows, token_num) of each golden segment of ``clip``, from the fixture model."""
    model = asr()
    waveform = decode_container((AUDIO / clip).read_bytes(), model.sample_rate)
    out = []
    for start_ms, end_ms in GOLDEN[clip]["segments"]:
        piece = waveform[int(start_ms * 16) : int(end_ms * 16)]
        feats = model.features(piece)
        logits, token_num = model.session.run(
            None, {"speech": feats[None], "speech_lengths": np.array([feats.shape[0]], dtype=np.int32)}
        )[:2]
        out.append((logits[0], int(token_num[0])))
    return out


def golden_cases():
    for clip, entry in GOLDEN.items():
        for name in entry["lm"]:
            yield pytest.param(clip, name, id=f"{clip.split('_')[0]}-{name}")


@pytest.mark.parametrize("clip,hotword_set", list(golden_cases()))
def test_words_equal_funasr_cpp_decoder(clip, hotword_set):
    """Every segment, every hotword set: the C++ decoder's words, in order, with one context per clip
    (the connection's decoder: its hash size carries over from segment to segment)."""
    entry = GOLDEN[clip]
    hotwords = entry["hotword_sets"].get(hotword_set, {})
    dec = decoder(int(entry["fst_inc_wts"].get(hotword_set, 20)))
    context = dec.new_context(hotwords)
    assert (context.bias is not None) == bool(hotwords)
    for n, ((logp, token_num), expected) in enumerate(zip(segment_logp(clip), entry["lm"][hotword_set])):
        result = dec.decode(logp, token_num, context)
        assert result.word_ids == expected["words"], f"segment {n}"
        assert result.words == expected["word_strs"], f"segment {n}"


def test_the_lm_changes_the_greedy_tokens_but_never_their_count():
    entry = GOLDEN["zh01_asr_example_zh.wav"]
    (logp, token_num), = segment_logp("zh01_asr_example_zh.wav")
    assert logp[: token_num].argmax(-1).tolist() == entry["greedy"][0]["tokens"]  # same inputs as the golden's
    words = decoder().decode(logp, token_num).words
    lexicon = lm().lexicon
    assert sum(len(lexicon[w]) for w in words) == token_num - 1
    greedy = [asr().vocab.tokens[i] for i in logp[: token_num - 1].argmax(-1)]
    assert [t for w in words for t in lexicon[w]] != greedy


def test_one_position_or_none_gives_no_words():
    logp = np.log(np.full((3, len(asr().vocab.tokens)), 1.0 / len(asr().vocab.tokens), dtype=np.float32))
    for token_num in (0, 1):
        assert decoder().decode(logp, token_num).words == []
    assert len(decoder().decode(logp, 2).words) == 1


def test_hash_size_carries_over_within_a_connection():
    """Kaldi's token hash only grows; a connection keeps it (the golden decodes depend on it)."""
    context = WfstContext()
    logp, token_num = segment_logp("en01_libri_1995-1837-0001.wav")[0]
    decoder().decode(logp, token_num, context)
    assert context.hash_size > 1000


def test_config_is_validated():
    for bad in (dict(beam=0), dict(beam=-1.0), dict(lattice_beam=0), dict(am_scale=0), dict(beam=float("nan")),
                dict(fst_inc_wts=-1), dict(fst_inc_wts=1.5)):
        with pytest.raises(ValueError):
            WfstConfig(**bad)


def test_a_graph_for_another_vocabulary_is_refused():
    with pytest.raises(ValueError, match="another vocabulary"):
        WfstDecoder(lm(), asr().vocab.tokens[:50])


# --------------------------------------------------------------------------------------------
# A live cross-check: kaldi-decoder's FasterDecoder on the self-loop-free graph.


@lru_cache(maxsize=1)
def self_loop_free_graph():
    kaldifst = pytest.importorskip("kaldifst")
    original = kaldifst.StdVectorFst.read(str(LM_DIR / "TLG.fst"))
    graph = kaldifst.StdVectorFst()
    for _ in range(original.num_states):
        graph.add_state()
    graph.start = original.start
    for s in range(original.num_states):
        graph.set_final(s, original.final(s))
        arcs = kaldifst.ArcIterator(original, s)
        while not arcs.done:
            if arcs.value.nextstate != s:
                graph.add_arc(s, arcs.value)
            arcs.next()
    return graph


def faster_decoder_words(loglikes: np.ndarray) -> List[int]:
    kaldifst = pytest.importorskip("kaldifst")
    kaldi_decoder = pytest.importorskip("kaldi_decoder")
    dec = kaldi_decoder.FasterDecoder(self_loop_free_graph(), kaldi_decoder.FasterDecoderOptions(beam=3.0, min_active=200))
    dec.decode(kaldi_decoder.DecodableCtc(loglikes, 0))
    ok, lattice = dec.get_best_path()
    assert ok
    ok, _, words, _ = kaldifst.get_linear_symbol_sequence(lattice)
    assert ok
    return list(words)


@pytest.mark.parametrize("seed", range(40))
def test_best_path_equals_kaldi_faster_decoder_on_random_inputs(seed):
    rng = np.random.default_rng(seed)
    vocab = len(asr().vocab.tokens)
    frames = int(rng.integers(2, 60))
    sharpness = float(rng.choice([0.5, 1.0, 3.0]))
    x = (rng.normal(size=(frames + 1, vocab)) * sharpness).astype(np.float32)
    logp = (x - np.log(np.exp(x).sum(axis=1, keepdims=True))).astype(np.float32)
    ours = decoder().decode(logp, frames + 1).word_ids
    theirs = faster_decoder_words(logp[:frames] * np.float32(10.0))
    assert ours == theirs


# --------------------------------------------------------------------------------------------
# BiasLm: the contract's worked example and a plain reading of the rules.

IDS = {"阿": 1, "里": 2, "巴": 3}


def test_bias_worked_example():
    """``{"阿里": 10, "阿里巴巴": 20}``, B = 20, over 阿 里 巴 巴 阿 里 巴 阿 (contract §3.4)."""
    graph = build_bias_graph([((1, 2), 10), ((1, 2, 3, 3), 20)], 20.0, 10)
    state, scores = 0, []
    for k in (1, 2, 3, 3, 1, 2, 3, 1):
        score, state = reference_bias_score(graph, state, k)
        scores.append(score)
    assert scores == [20, 30, 20, 40, 20, 30, 20, -40]


def _compiled_score(graph, state, k):
    score, new = bias_score(graph.child_begin, graph.child_label, graph.child_node, graph.root_child, graph.fail,
                            graph.backoff, graph.final, graph.is_final, graph.chain_backoff, graph.inner_label,
                            np.float32(graph.increment), graph.vocab_size, state, k)
    return float(score), int(new)


class PlainBias:
    """The rules of §3.3–3.4 read literally, states named by the token prefix they stand for."""

    def __init__(self, words: Dict[Tuple[int, ...], float], increment: float):
        self.b = increment
        self.prefixes = {w[:i] for w in words for i in range(len(w) + 1)}
        self.final: Dict[Tuple[int, ...], float] = {}
        for w, weight in words.items():
            self.final[w] = min(weight, self.final.get(w, float("inf")))

    def fail(self, p: Tuple[int, ...]) -> Tuple[int, ...]:
        """The longest proper suffix of ``p`` that is a prefix of some hotword."""
        for i in range(1, len(p) + 1):
            if p[i:] in self.prefixes:
                return p[i:]
        return ()

    def backoff(self, p: Tuple[int, ...]) -> float:
        return 0.0 if p in self.final else self.b * (len(self.fail(p)) - len(p))

    def step(self, p: Tuple[int, ...], k: int) -> Tuple[float, Tuple[int, ...]]:
        score = 0.0
        while True:
            if p + (k,) in self.prefixes:
                q = p + (k,)
                return score + self.b + self.final.get(q, 0.0), q
            if not p:
                return score, ()
            score += self.backoff(p)
            p = self.fail(p)


@pytest.mark.parametrize("seed", range(60))
def test_bias_automaton_against_a_plain_reading(seed):
    rng = random.Random(seed)
    alphabet = rng.randint(2, 5)
    words: Dict[Tuple[int, ...], float] = {}
    for _ in range(rng.randint(1, 6)):
        words[tuple(rng.randint(1, alphabet) for _ in range(rng.randint(1, 5)))] = float(rng.randint(0, 30))
    increment = float(rng.choice([2, 20]))
    vocab = alphabet + 3  # tokens in no hotword too: they take the precomputed walk to the root
    graph = build_bias_graph(list(words.items()), increment, vocab)
    plain = PlainBias(words, increment)
    state, plain_state = 0, ()
    for k in (rng.randint(1, vocab + 1) for _ in range(80)):
        expected, plain_state = plain.step(plain_state, k) if k <= vocab else (0.0, ())
        score, new_state = reference_bias_score(graph, state, k)
        assert _compiled_score(graph, state, k) == (score, new_state)
        assert score == pytest.approx(expected)
        state = new_state


def test_hotword_spelling():
    assert split_hotword("阿里cloud 计算") == ["阿", "里", "cloud", "计", "算"]
    lexicon = {"阿": ["阿"], "里": ["里"], "andthese": ["and@@", "these"]}
    tokens = {"阿": 5, "里": 6, "and@@": 7, "these": 8}
    assert spell_hotword("阿里", lexicon, tokens) == ([5, 6], None)
    assert spell_hotword("andthese", lexicon, tokens) == ([7, 8], None)
    ids, note = spell_hotword("阿猫", lexicon, tokens)
    assert ids == [5] and "'猫'" in note  # the reference drops the piece silently; we say so
    ids, note = spell_hotword("猫", lexicon, tokens)
    assert ids == [] and note
    ids, note = spell_hotword("阿里", {"阿": ["阿"], "里": ["X"]}, tokens)
    assert ids == [] and "'X'" in note


def test_an_unspellable_set_is_no_hotwords_not_a_crash():
    """``{"Cloud": 20}`` crashes FunASR's C++ server at the first token; here it is no bias at all."""
    context = decoder().new_context({"Cloud": 20, "猫": 20})
    assert context.bias is None
    assert {w for w, _ in context.problems} == {"Cloud", "猫"}
    logp, token_num = segment_logp("zh01_asr_example_zh.wav")[0]
    assert decoder().decode(logp, token_num, context).word_ids == GOLDEN["zh01_asr_example_zh.wav"]["lm"]["none"][0]["words"]


def test_hotwords_with_one_usable_word_act_as_that_word_alone():
    logp, token_num = segment_logp("zh03_triton_mid.wav")[0]
    alone = decoder().decode(logp, token_num, decoder().new_context({"肝斜": 20})).word_ids
    mixed = decoder().decode(logp, token_num, decoder().new_context({"肝斜": 20, "Cloud": 30})).word_ids
    assert alone == mixed == GOLDEN["zh03_triton_mid.wav"]["lm"]["hw_one"][0]["words"]


def test_bias_lm_words_and_tokens():
    tokens = {t: i for i, t in enumerate(asr().vocab.tokens)}
    bias, problems = build_bias_lm({"肝斜": 20, "蘅猫": 15}, lm().lexicon, tokens, 20.0, len(tokens))
    assert [w for w, _, _ in bias.words] == ["肝斜", "蘅猫"]
    assert bias.words[1][1] == (tokens["蘅"],) and problems and problems[0][0] == "蘅猫"


def test_a_search_that_outgrows_its_scratch_runs_again_with_more(monkeypatch):
    """Each thread's scratch starts small and doubles; a search that runs out starts over, same words."""
    import funasr_wss.models.wfst_decoder as wfst_decoder

    monkeypatch.setattr(wfst_decoder, "INITIAL_CAPACITY", 16)
    small = WfstDecoder(lm(), asr().vocab.tokens)
    clip = "zh04_triton_long.wav"
    context = small.new_context(GOLDEN[clip]["hotword_sets"]["hw_mixed"])
    (logp, token_num), = segment_logp(clip)
    assert small.decode(logp, token_num, context).word_ids == GOLDEN[clip]["lm"]["hw_mixed"][0]["words"]
    assert small._thread_scratch().capacity > 16


@pytest.mark.parametrize("seed", range(12))
def test_the_search_shortcut_for_tokens_outside_the_hotwords_equals_the_walk(seed):
    """Hotwords that overlap themselves (long failure chains: ``ABAB``, ``BAB``, ``ABB``) over a few
    tokens; the search takes the precomputed chain sum for tokens no inner node has, and must give the
    words it gives when every token walks (``inner_label`` all true)."""
    import dataclasses

    from funasr_wss.models.bias_lm import BiasLm

    rng = random.Random(seed)
    dec = decoder(int(rng.choice([2, 20])))
    tokens = [t for t in asr().vocab.tokens if len(t) == 1 and t in lm().lexicon][:6]
    words = {}
    for _ in range(rng.randint(2, 5)):
        words["".join(rng.choice(tokens[:3]) for _ in range(rng.randint(2, 5)))] = rng.randint(0, 30)
    words[tokens[3] + tokens[4]] = 10
    shortcut = dec.new_context(words)
    graph = shortcut.bias.graph
    assert graph.chain_backoff.min() < -float(graph.increment), "a chain longer than one link"
    walked = WfstContext(bias=BiasLm(dataclasses.replace(graph, inner_label=np.ones_like(graph.inner_label)),
                                     shortcut.bias.words))
    nrng = np.random.default_rng(seed)
    for _ in range(3):
        frames = int(nrng.integers(5, 40))
        x = (nrng.normal(size=(frames, len(asr().vocab.tokens))) * 2).astype(np.float32)
        logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
        assert dec.decode(logp, frames, shortcut).word_ids == dec.decode(logp, frames, walked).word_ids
