"""Neural hotwords (contextual and SeACo Paraformers) agree with FunASR's runtimes.

The golden file (``tests/oracle/oracle_hotwords.py``) holds funasr_onnx's
hotword matrices, biases and decodes; the live tests at the end run
funasr_onnx itself, fp32 and quantized.  Where funasr_onnx cannot take an
input (out-of-vocabulary characters, words over ten characters, English
words) we follow FunASR's C++ runtime instead, and the tests pin that down.
"""
from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from funasr_wss.models.audio import load_audio_file
from funasr_wss.models.hotword_embedding import (
    MAX_HOTWORD_TOKENS,
    HotwordEmbedder,
    load_seg_dict,
    select_last_states,
    tokenize_hotwords,
)
from funasr_wss.models.model_dir import ModelDirError
from funasr_wss.models.paraformer import NO_OPTIONS, DecodeOptions, OfflineParaformer
from funasr_wss.models.tokens import is_cjk_char, load_token_list
from tests.paths import ASR_CONTEXTUAL_DIR, ASR_PLAIN_DIR, ASR_SEACO_DIR, AUDIO, GOLDEN

GOLD = json.loads((GOLDEN / "hotwords.json").read_text("utf-8"))
MODEL_DIRS = {"contextual": ASR_CONTEXTUAL_DIR, "seaco": ASR_SEACO_DIR}
LISTS = sorted(GOLD["models"]["contextual"]["hotword_lists"])
SEGMENT_IDS = [s["id"] for s in GOLD["segments"]]


@pytest.fixture(scope="module")
def pieces() -> Dict[str, np.ndarray]:
    audio = {}
    out = {}
    for seg in GOLD["segments"]:
        if seg["clip"] not in audio:
            audio[seg["clip"]] = load_audio_file(AUDIO / seg["clip"], 16000)
        start, end = seg["segment"]
        out[seg["id"]] = audio[seg["clip"]][start * 16 : end * 16]
    return out


@pytest.fixture(scope="module")
def models() -> Dict[str, OfflineParaformer]:
    return {name: OfflineParaformer(path) for name, path in MODEL_DIRS.items()}


def _vocab(model_dir: Path) -> Dict[str, int]:
    return {t: i for i, t in enumerate(load_token_list(model_dir))}


def _chars(model_dir: Path) -> List[str]:
    return [t for t in load_token_list(model_dir) if len(t) == 1 and is_cjk_char(t)]


def _decode(model: OfflineParaformer, pieces: Dict[str, np.ndarray], words, ids=SEGMENT_IDS):
    options = NO_OPTIONS if words is None else DecodeOptions(hotword_bias=model.hotwords.embed(words).bias)
    return dict(zip(ids, model.recognize([pieces[i] for i in ids], options)))


# --- the golden file itself ------------------------------------------------------------------


def test_golden_has_cases_where_hotwords_change_the_result():
    """Otherwise agreement with the golden could not tell hotwords from no hotwords."""
    for name in MODEL_DIRS:
        results = GOLD["models"][name]["results"]
        changed = [(lst, seg) for lst in results for seg in SEGMENT_IDS
                   if results[lst][seg]["token_ids"] != results["none"][seg]["token_ids"]]
        assert len(changed) >= 5, name
        assert {lst for lst, _ in changed} >= {"several", "single", "ten_chars", "many"}, name


# --- tokenizer -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODEL_DIRS))
@pytest.mark.parametrize("list_name", LISTS)
def test_matrix_and_lengths_match_oracle_proc_hotword(name, list_name):
    gold = GOLD["models"][name]["hotword_lists"][list_name]
    model_dir = MODEL_DIRS[name]
    tokens = tokenize_hotwords(gold["words"], _vocab(model_dir), load_seg_dict(model_dir))
    assert tokens.matrix.dtype == np.int32 and tokens.lengths.dtype == np.int32
    assert tokens.matrix.tolist() == gold["matrix"]
    # funasr_onnx keeps "length - 1" (the index it reads); we keep the length, as the C++ runtime.
    assert tokens.lengths.tolist() == [n + 1 for n in gold["oracle_lengths"]]
    assert tokens.words == gold["words"] and tokens.rejected == []


def test_empty_list_is_the_blank_row_alone():
    tokens = tokenize_hotwords([], _vocab(ASR_SEACO_DIR), {})
    assert tokens.matrix.tolist() == [[1] + [0] * (MAX_HOTWORD_TOKENS - 1)]
    assert tokens.lengths.tolist() == [1]
    # Blank entries are no hotwords either (funasr_onnx would add an all-zero row for "").
    assert tokenize_hotwords(["", "  "], _vocab(ASR_SEACO_DIR), {}).matrix.tolist() == tokens.matrix.tolist()


def test_entries_with_spaces_are_separate_hotwords():
    chars = _chars(ASR_SEACO_DIR)
    vocab = _vocab(ASR_SEACO_DIR)
    tokens = tokenize_hotwords([f" {chars[0]}{chars[1]}  {chars[2]} "], vocab, {})
    assert tokens.words == [chars[0] + chars[1], chars[2]]
    assert tokens.matrix[:, :2].tolist() == [[vocab[chars[0]], vocab[chars[1]]], [vocab[chars[2]], 0], [1, 0]]
    assert tokens.lengths.tolist() == [2, 1, 1]
    # A bare string is the runtimes' space-separated form, not a list of characters.
    same = tokenize_hotwords(f"{chars[0]}{chars[1]} {chars[2]}", vocab, {})
    assert same.words == tokens.words and same.matrix.tolist() == tokens.matrix.tolist()


def test_words_over_ten_tokens_keep_the_first_ten(models):
    """funasr_onnx raises on them (see the golden's oracle_quirks); the C++ runtime cuts them."""
    chars = _chars(ASR_CONTEXTUAL_DIR)
    vocab = _vocab(ASR_CONTEXTUAL_DIR)
    long_word = "".join(chars[:13])
    tokens = tokenize_hotwords([long_word], vocab, {})
    assert tokens.words == [long_word]
    assert tokens.matrix[0].tolist() == [vocab[c] for c in chars[:10]]
    assert tokens.lengths.tolist() == [10, 1]
    # Characters past the tenth never reach the model, so they may even be unknown.
    assert tokenize_hotwords(["".join(chars[:10]) + "中国"], vocab, {}).words == ["".join(chars[:10]) + "中国"]
    embedder = models["contextual"].hotwords
    np.testing.assert_array_equal(embedder.embed([long_word]).bias, embedder.embed(["".join(chars[:10])]).bias)
    assert not np.allclose(embedder.embed([long_word]).bias[0], embedder.embed(["".join(chars[:9])]).bias[0])


def test_out_of_vocabulary_words_are_reported_and_skipped(models, pieces):
    """The C++ runtime skips them; funasr_onnx maps them to id 8403 and fails on a small vocabulary."""
    chars = _chars(ASR_SEACO_DIR)
    good = chars[3] + chars[7]
    vocab = _vocab(ASR_SEACO_DIR)
    tokens = tokenize_hotwords(["中国", good, chars[0] + "中", "xyzzy"], vocab, load_seg_dict(ASR_SEACO_DIR))
    assert tokens.words == [good]
    assert tokens.rejected == [("中国", "中 国"), (chars[0] + "中", "中"), ("xyzzy", "xyzzy")]
    assert tokens.matrix.shape == (2, MAX_HOTWORD_TOKENS)

    embedder = models["seaco"].hotwords
    result = embedder.embed(["中国", good, "xyzzy"])
    assert result.words == [good]
    assert [w for w, _ in result.rejected] == ["中国", "xyzzy"]
    assert "中 国" in result.rejected[0][1] and "seg_dict" in result.rejected[1][1]
    np.testing.assert_array_equal(result.bias, embedder.embed([good]).bias)
    only_bad = embedder.embed(["中国"])
    assert only_bad.words == [] and len(only_bad.rejected) == 1
    np.testing.assert_array_equal(only_bad.bias, embedder.blank_bias)
    # Decoding with what is left works.
    piece = pieces[SEGMENT_IDS[0]]
    assert models["seaco"].recognize([piece], DecodeOptions(hotword_bias=result.bias))[0].token_ids


def test_english_words_go_through_seg_dict(tmp_path):
    vocab = _vocab(ASR_CONTEXTUAL_DIR)
    seg = load_seg_dict(ASR_CONTEXTUAL_DIR)
    assert seg["price"] == ["price"]
    tokens = tokenize_hotwords(["price", "Price", "these"], vocab, seg)
    assert tokens.matrix[:, 0].tolist() == [vocab["price"], vocab["price"], vocab["these"], 1]
    assert tokens.lengths.tolist() == [1, 1, 1, 1]
    # A word split into several pieces; a piece the vocabulary lacks; a word that is a token itself.
    custom = {"doing": ["do@@", "ing"], "hello": ["he@@", "llo"]}
    tokens = tokenize_hotwords(["doing", "hello", "and@@", "nowhere"], vocab, custom)
    assert tokens.words == ["doing", "and@@"]
    assert tokens.matrix[0, :3].tolist() == [vocab["do@@"], vocab["ing"], 0]
    assert tokens.lengths.tolist() == [2, 1, 1]
    assert tokens.rejected == [("hello", "he@@ llo"), ("nowhere", "nowhere")]

    # The file format (word<TAB>pieces), through the embedder.
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for name in ("model_eb.onnx", "tokens.json"):
        shutil.copy(ASR_CONTEXTUAL_DIR / name, model_dir / name)
    (model_dir / "seg_dict").write_text("doing\tdo@@ ing\nbroken-line\n", encoding="utf-8")
    embedder = HotwordEmbedder(model_dir)
    assert embedder.seg_dict == {"doing": ["do@@", "ing"]}
    result = embedder.embed(["doing"])
    assert result.words == ["doing"] and result.bias.shape == (2, 64)


def test_select_last_states_reads_each_rows_last_token():
    hw = np.arange(10 * 3 * 2, dtype=np.float32).reshape(10, 3, 2)
    out = select_last_states(hw, np.array([4, 10, 1]))
    assert out.tolist() == [hw[3, 0].tolist(), hw[9, 1].tolist(), hw[0, 2].tolist()]
    with pytest.raises(ValueError):
        select_last_states(hw, np.array([1, 1]))


# --- embeddings ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODEL_DIRS))
@pytest.mark.parametrize("list_name", LISTS)
def test_bias_matches_oracle_eb_infer(models, name, list_name):
    gold = GOLD["models"][name]["hotword_lists"][list_name]
    embedder = models[name].hotwords
    result = embedder.embed(gold["words"])
    bias = result.bias
    assert bias.dtype == np.float32
    assert list(bias.shape) == gold["bias_checksum"]["shape"]
    assert bias.shape == (len(gold["words"]) + 1, embedder.dim)
    if "bias" in gold:
        np.testing.assert_allclose(bias, np.array(gold["bias"]), rtol=0, atol=2e-7)
    b = bias.astype(np.float64)
    weights = np.arange(1, b.size + 1, dtype=np.float64).reshape(b.shape) / b.size
    check = gold["bias_checksum"]
    assert b.sum() == pytest.approx(check["sum"], rel=1e-6, abs=1e-6)
    assert np.abs(b).sum() == pytest.approx(check["abs_sum"], rel=1e-6)
    assert (b * weights).sum() == pytest.approx(check["weighted_sum"], rel=1e-6, abs=1e-6)
    # The blank row is last and does not depend on the words.
    np.testing.assert_allclose(bias[-1], embedder.blank_bias[0], rtol=0, atol=1e-6)


def test_blank_bias_is_cached_and_read_only(models):
    embedder = models["contextual"].hotwords
    assert embedder.blank_bias.shape == (1, 64) and models["seaco"].hotwords.blank_bias.shape == (1, 32)
    assert embedder.embed([]).bias is embedder.blank_bias
    with pytest.raises(ValueError):
        embedder.blank_bias[0, 0] = 1.0


def test_hotword_order_permutes_rows_only(models, pieces):
    """Rows follow the input order; decoding does not depend on it (the golden agrees)."""
    for name in MODEL_DIRS:
        words = GOLD["models"][name]["hotword_lists"]["several"]["words"]
        embedder = models[name].hotwords
        forward, backward = embedder.embed(words), embedder.embed(list(reversed(words)))
        assert backward.words == list(reversed(words))
        np.testing.assert_allclose(backward.bias[:-1], forward.bias[-2::-1], rtol=0, atol=1e-6)
        a = _decode(models[name], pieces, words)
        b = _decode(models[name], pieces, list(reversed(words)))
        assert [r.token_ids for r in a.values()] == [r.token_ids for r in b.values()]
        results = GOLD["models"][name]["results"]
        assert results["several"] == results["several_reversed"]


def test_embedder_is_thread_safe(models):
    embedder = models["seaco"].hotwords
    chars = _chars(ASR_SEACO_DIR)
    lists = [[chars[i] + chars[i + 1], chars[i + 2] * 3] for i in range(0, 40, 4)] + [[]]
    expected = [embedder.embed(words).bias for words in lists]
    errors: List[str] = []

    def work(offset: int) -> None:
        for round_ in range(5):
            for k in range(len(lists)):
                j = (k + offset + round_) % len(lists)
                if not np.array_equal(embedder.embed(lists[j]).bias, expected[j]):
                    errors.append(f"thread {offset} list {j}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# --- decoding --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODEL_DIRS))
@pytest.mark.parametrize("list_name", LISTS)
def test_decoding_with_hotwords_matches_golden(models, pieces, name, list_name):
    words = GOLD["models"][name]["hotword_lists"][list_name]["words"]
    # "none" goes through the default options: the model's own blank-only bias.
    results = _decode(models[name], pieces, None if list_name == "none" else words)
    for seg_id, gold in GOLD["models"][name]["results"][list_name].items():
        result = results[seg_id]
        assert result.token_ids == gold["token_ids"], seg_id
        assert result.text == gold["text"], seg_id
        assert result.words == gold["words"], seg_id
        if name == "seaco":
            assert [list(s) for s in result.word_spans] == gold["timestamp"], seg_id
        else:
            assert result.word_spans is None


def test_hotwords_change_the_result(models, pieces):
    """On these random weights a few words already flip tokens (see the golden for which)."""
    for name in MODEL_DIRS:
        words = GOLD["models"][name]["hotword_lists"]["several"]["words"]
        without = _decode(models[name], pieces, None)
        with_hw = _decode(models[name], pieces, words)
        changed = [i for i in SEGMENT_IDS if without[i].token_ids != with_hw[i].token_ids]
        assert changed, name
        blank = _decode(models[name], pieces, [])
        assert [r.token_ids for r in blank.values()] == [r.token_ids for r in without.values()]


def test_every_row_of_a_batch_gets_the_bias(models, pieces):
    """Equal-length segments (no padding) decode the same batched as alone."""
    for name, path in MODEL_DIRS.items():
        words = GOLD["models"][name]["hotword_lists"]["several"]["words"]
        options = DecodeOptions(hotword_bias=models[name].hotwords.embed(words).bias)
        clips = [pieces[i][:24000] for i in SEGMENT_IDS if len(pieces[i]) >= 24000]
        assert len(clips) >= 3
        alone = models[name].recognize(clips, options)
        batched = OfflineParaformer(path, batch_size=8).recognize(clips, options)
        assert [r.token_ids for r in batched] == [r.token_ids for r in alone]
        without = OfflineParaformer(path, batch_size=8).recognize(clips)
        assert [r.token_ids for r in without] == [r.token_ids for r in models[name].recognize(clips)]


def test_bias_shape_is_checked(models, pieces):
    piece = pieces[SEGMENT_IDS[0]]
    with pytest.raises(ValueError, match="hotword_bias"):
        models["contextual"].recognize([piece], DecodeOptions(hotword_bias=np.zeros((2, 32), np.float32)))
    with pytest.raises(ValueError, match="hotword_bias"):
        models["seaco"].recognize([piece], DecodeOptions(hotword_bias=np.zeros((0, 32), np.float32)))


def test_supports_hotwords(models):
    for name, model in models.items():
        assert model.supports_hotwords and model.hotwords is not None
        assert model.hotwords.model_path.name == "model_eb.onnx"


def test_plain_paraformer_ignores_hotword_bias(pieces):
    plain = OfflineParaformer(ASR_PLAIN_DIR)
    assert not plain.supports_hotwords and plain.hotwords is None
    segs = [pieces[i] for i in SEGMENT_IDS[:3]]
    bias = np.random.default_rng(0).standard_normal((3, 512)).astype(np.float32)
    assert [r.token_ids for r in plain.recognize(segs, DecodeOptions(hotword_bias=bias))] == [
        r.token_ids for r in plain.recognize(segs)
    ]


def _copy_model(src: Path, dst: Path, skip=()) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        if f.name not in skip and not f.name.endswith("_quant.onnx"):
            shutil.copy(f, dst / f.name)
    return dst


def test_contextual_model_without_model_eb_is_a_clear_error(tmp_path):
    model_dir = _copy_model(ASR_CONTEXTUAL_DIR, tmp_path / "m", skip={"model_eb.onnx"})
    with pytest.raises(ModelDirError, match="model_eb.onnx"):
        OfflineParaformer(model_dir)


def test_embedder_from_another_export_is_refused(tmp_path):
    model_dir = _copy_model(ASR_CONTEXTUAL_DIR, tmp_path / "m", skip={"model_eb.onnx"})
    shutil.copy(ASR_SEACO_DIR / "model_eb.onnx", model_dir / "model_eb.onnx")
    with pytest.raises(ModelDirError, match="different exports"):
        OfflineParaformer(model_dir)


# --- live comparison with funasr_onnx --------------------------------------------------------


def _oracle(name: str, quantized: bool):
    funasr_onnx = pytest.importorskip("funasr_onnx")
    cls = funasr_onnx.ContextualParaformer if name == "contextual" else funasr_onnx.SeacoParaformer
    return cls(str(MODEL_DIRS[name]), batch_size=1, quantize=quantized, intra_op_num_threads=1)


def _oracle_bias(oracle, matrix: np.ndarray, index: np.ndarray) -> np.ndarray:
    [hw_embed] = oracle.eb_infer(matrix, index)
    return hw_embed.transpose(1, 0, 2)[np.arange(len(matrix)), index]


@pytest.mark.parametrize("quantized", [False, True], ids=["fp32", "quant"])
@pytest.mark.parametrize("name", sorted(MODEL_DIRS))
def test_live_against_funasr_onnx(pieces, name, quantized):
    oracle = _oracle(name, quantized)
    # funasr_onnx pairs model_quant.onnx with model_eb_quant.onnx; ask for the same pairing.
    ours = OfflineParaformer(MODEL_DIRS[name], quantized=quantized, hotword_quantized=quantized)
    assert ours.hotwords.model_path.name == ("model_eb_quant.onnx" if quantized else "model_eb.onnx")
    chars = _chars(MODEL_DIRS[name])
    gold_lists = GOLD["models"][name]["hotword_lists"]
    cases = [gold_lists["several"]["words"], gold_lists["ten_chars"]["words"], [chars[5] * 3],
             [chars[i] + chars[i + 7] for i in range(0, 60, 3)]]
    changed = 0
    plain = {i: r.token_ids for i, r in zip(SEGMENT_IDS, ours.recognize([pieces[i] for i in SEGMENT_IDS]))}
    for words in cases:
        matrix, index = oracle.proc_hotword(" ".join(words))
        tokens = ours.hotwords.tokenize(words)
        assert tokens.matrix.tolist() == matrix.tolist()
        embedded = ours.hotwords.embed(words)
        np.testing.assert_allclose(embedded.bias, _oracle_bias(oracle, matrix, index), rtol=0, atol=1e-6)
        options = DecodeOptions(hotword_bias=embedded.bias)
        for seg_id in SEGMENT_IDS[:5]:
            expected = oracle(pieces[seg_id], hotwords=" ".join(words))[0]
            result = ours.recognize([pieces[seg_id]], options)[0]
            if "raw_tokens" in expected:
                assert result.tokens == expected["raw_tokens"], (words, seg_id)
                assert [list(s) for s in result.word_spans] == expected["timestamp"], (words, seg_id)
            else:
                assert result.text == expected["preds"][0], (words, seg_id)
            changed += result.token_ids != plain[seg_id]
    assert changed > 0


@pytest.mark.parametrize("name", sorted(MODEL_DIRS))
def test_live_english_hotword_through_oracle_session(pieces, name):
    """funasr_onnx spells English letter by letter (and fails); its graphs still take seg_dict ids."""
    oracle = _oracle(name, False)
    ours = OfflineParaformer(MODEL_DIRS[name])
    words = ["price", "these", _chars(MODEL_DIRS[name])[9] * 2]
    tokens = ours.hotwords.tokenize(words)
    bias = _oracle_bias(oracle, tokens.matrix, tokens.lengths.astype(np.int64) - 1)
    embedded = ours.hotwords.embed(words)
    np.testing.assert_allclose(embedded.bias, bias, rtol=0, atol=1e-6)
    seg_id = SEGMENT_IDS[0]
    feats, feats_len = oracle.extract_feat([pieces[seg_id]])
    outputs = oracle.bb_infer(feats, feats_len, bias[None])
    expected = [oracle.vocab[t] for t in oracle.decode(outputs[0], outputs[1])[0]]
    assert ours.recognize([pieces[seg_id]], DecodeOptions(hotword_bias=embedded.bias))[0].token_ids == expected
