"""models/fst_file.py against kaldifst (OpenFst itself), and models/ngram_lm.py, the --lm-dir loader.

kaldifst writes the reference files (vector, const, with symbol tables) and reads back
every file we hand-craft (aligned const, unknown state count), so each layout fact is
checked against OpenFst, not against this reader's own idea of the format.
"""
import shutil
import struct

import kaldifst
import numpy as np
import pytest
import yaml

from funasr_wss.models.fst_file import FST_MAGIC, Fst, FstFormatError, read_fst
from funasr_wss.models.model_dir import ModelDirError
from funasr_wss.models.ngram_lm import LM_FILES, NgramLm, load_lexicon, load_lm_dir, load_words, parse_token_list_fast
from tests.paths import LM_DIR

TLG = LM_DIR / "TLG.fst"
FIXTURE_STATES, FIXTURE_ARCS, FIXTURE_WORDS = 12136, 32542, 505
ARRAYS = ("finals", "arc_begin", "ilabels", "olabels", "weights", "nextstates")


# --- helpers --------------------------------------------------------------------------------------


def kaldifst_view(path, const=False):
    """(start, [(final, [(ilabel, olabel, weight, nextstate), ...]) per state]) as OpenFst iterates it."""
    fst = (kaldifst.StdConstFst if const else kaldifst.StdVectorFst).read(str(path))
    assert fst is not None, f"kaldifst cannot read {path}"
    states = []
    for s in kaldifst.StateIterator(fst):
        arcs = [(a.ilabel, a.olabel, a.weight.value, a.nextstate) for a in kaldifst.ArcIterator(fst, s)]
        states.append((fst.final(s).value, arcs))
    return fst.start, states


def our_view(fst: Fst):
    states = []
    cols = [fst.ilabels.tolist(), fst.olabels.tolist(), fst.weights.tolist(), fst.nextstates.tolist()]
    begin = fst.arc_begin.tolist()
    for s, final in enumerate(fst.finals.tolist()):
        states.append((final, list(zip(*(c[begin[s] : begin[s + 1]] for c in cols)))))
    return fst.start, states


def assert_same_arrays(a: Fst, b: Fst):
    assert a.start == b.start
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name


def small_fst():
    """Three states, a final weight, an epsilon arc, negative weight, arcs not sorted by label."""
    f = kaldifst.StdVectorFst()
    for _ in range(3):
        f.add_state()
    f.start = 0
    f.add_arc(0, kaldifst.StdArc(3, 4, 0.5, 1))
    f.add_arc(0, kaldifst.StdArc(1, 2, 1.5, 2))
    f.add_arc(0, kaldifst.StdArc(2, 0, 0.0, 0))
    f.add_arc(1, kaldifst.StdArc(0, 0, -0.25, 2))
    f.set_final(2, 0.75)
    f.set_final(1, 0.0)
    return f


def with_symbols(f):
    isyms = kaldifst.SymbolTable()
    for word in ("<eps>", "a", "bb", "ccc"):
        isyms.add_symbol(word)
    isyms.add_symbol("far", 77)
    osyms = kaldifst.SymbolTable()
    osyms.add_symbol("x")
    f.input_symbols = isyms
    f.output_symbols = osyms
    return f


def split_header(data: bytes):
    """(fst_type, arc_type, version, flags, properties, start, states, arcs), offset after the header."""
    pos = 4
    names = []
    for _ in range(2):
        (n,) = struct.unpack_from("<i", data, pos)
        names.append(data[pos + 4 : pos + 4 + n].decode())
        pos += 4 + n
    fields = struct.unpack_from("<iiQqqq", data, pos)
    return (*names, *fields), pos + struct.calcsize("<iiQqqq")


def make_header(fst_type, arc_type, version, flags, properties, start, states, arcs) -> bytes:
    out = struct.pack("<i", FST_MAGIC)
    for name in (fst_type, arc_type):
        out += struct.pack("<i", len(name)) + name.encode()
    return out + struct.pack("<iiQqqq", version, flags, properties, start, states, arcs)


def aligned_const(data: bytes, version: int, flags: int) -> bytes:
    """An unaligned const file rewritten in the aligned layout (zero padding to 16 from the file start)."""
    (fst_type, arc_type, _, _, props, start, states, arcs), body_at = split_header(data)
    assert fst_type == "const"
    out = bytearray(make_header(fst_type, arc_type, version, flags, props, start, states, arcs))
    state_bytes = data[body_at : body_at + states * 20]
    arc_bytes = data[body_at + states * 20 :]
    assert len(arc_bytes) == arcs * 16
    for chunk in (state_bytes, arc_bytes):
        out += b"\0" * (-len(out) % 16)
        out += chunk
    return bytes(out)


@pytest.fixture(scope="module")
def fixture_graph():
    return read_fst(TLG)


@pytest.fixture(scope="module")
def fixture_view():
    return kaldifst_view(TLG)


# --- read_fst: layouts ----------------------------------------------------------------------------


def test_fixture_tlg_equals_kaldifst_arc_by_arc(fixture_graph, fixture_view):
    g = fixture_graph
    assert (g.num_states, g.num_arcs) == (FIXTURE_STATES, FIXTURE_ARCS)
    assert our_view(g) == fixture_view
    assert g.finals.dtype == np.float32 and g.weights.dtype == np.float32
    assert g.arc_begin.dtype == np.int64 and g.arc_begin.shape == (FIXTURE_STATES + 1,)
    assert all(getattr(g, n).dtype == np.int32 for n in ("ilabels", "olabels", "nextstates"))
    assert g.arc_begin[0] == 0 and g.arc_begin[-1] == FIXTURE_ARCS
    assert np.isinf(g.finals).any() and np.isfinite(g.finals).any()
    assert g.nbytes == sum(getattr(g, n).nbytes for n in ARRAYS)


def test_const_copy_by_kaldifst_reads_the_same(tmp_path, fixture_graph, fixture_view):
    path = tmp_path / "TLG_const.fst"
    assert kaldifst.StdConstFst(kaldifst.StdVectorFst.read(str(TLG))).write(str(path))
    assert split_header(path.read_bytes())[0][:3] == ("const", "standard", 2)
    assert_same_arrays(read_fst(path), fixture_graph)
    assert kaldifst_view(path, const=True) == fixture_view


@pytest.mark.parametrize("const", [False, True], ids=["vector", "const"])
@pytest.mark.parametrize("symbols", [False, True], ids=["plain", "symbol-tables"])
def test_small_fst_equals_kaldifst(tmp_path, const, symbols):
    f = with_symbols(small_fst()) if symbols else small_fst()
    path = tmp_path / "small.fst"
    assert (kaldifst.StdConstFst(f) if const else f).write(str(path))
    flags = split_header(path.read_bytes())[0][3]
    assert flags == (3 if symbols else 0)
    ours = read_fst(path)
    assert our_view(ours) == kaldifst_view(path, const)
    assert ours.arc_begin.tolist() == [0, 3, 4, 4]
    assert ours.ilabels.tolist() == [3, 1, 2, 0]  # stored order, not sorted
    assert ours.finals.tolist() == [np.inf, 0.0, 0.75]


@pytest.mark.parametrize("version,flags", [(1, 0), (2, 4)], ids=["version-1", "flag-4"])
@pytest.mark.parametrize("source", ["small", "fixture"])
def test_aligned_const(tmp_path, version, flags, source):
    plain = tmp_path / "plain.fst"
    vector = small_fst() if source == "small" else kaldifst.StdVectorFst.read(str(TLG))
    kaldifst.StdConstFst(vector).write(str(plain))
    data = aligned_const(plain.read_bytes(), version, flags)
    assert len(data) > plain.stat().st_size  # padding was needed
    path = tmp_path / "aligned.fst"
    path.write_bytes(data)
    assert kaldifst_view(path, const=True) == kaldifst_view(plain, const=True)  # OpenFst agrees on the layout
    assert_same_arrays(read_fst(path), read_fst(plain))


def test_vector_with_unknown_state_count(tmp_path, fixture_graph):
    """A vector written to an unseekable stream has -1 states in its header: states run to the end of the file."""
    data = TLG.read_bytes()
    fields, body_at = split_header(data)
    path = tmp_path / "streamed.fst"
    path.write_bytes(make_header(*fields[:6], -1, fields[7]) + data[body_at:])
    assert kaldifst_view(path) == kaldifst_view(TLG)
    assert_same_arrays(read_fst(path), fixture_graph)


def test_empty_fst(tmp_path):
    path = tmp_path / "empty.fst"
    kaldifst.StdVectorFst().write(str(path))
    fst = read_fst(path)
    assert (fst.start, fst.num_states, fst.num_arcs, fst.arc_begin.tolist()) == (-1, 0, 0, [0])


# --- read_fst: refusals ---------------------------------------------------------------------------


def _error(tmp_path, data: bytes, *needles: str) -> str:
    path = tmp_path / "bad.fst"
    path.write_bytes(data)
    with pytest.raises(FstFormatError) as info:
        read_fst(path)
    message = str(info.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message
    return message


def test_format_error_is_a_value_error():
    assert issubclass(FstFormatError, ValueError)


@pytest.mark.parametrize("cut", [0, 3, 20, 60, 66, 70, 66 + 12 + 5, 200_000, -1])
def test_truncated_vector(tmp_path, cut):
    data = TLG.read_bytes()
    _error(tmp_path, data[:cut] if cut >= 0 else data[:-1])


def test_truncated_vector_says_where(tmp_path):
    message = _error(tmp_path, TLG.read_bytes()[:-7], "truncated vector FST")
    assert f"the header says {FIXTURE_STATES} states" in message


@pytest.mark.parametrize("cut", [10, 65, 65 + 20 * 3 + 1, -16, -1])
def test_truncated_const(tmp_path, cut):
    path = tmp_path / "c.fst"
    kaldifst.StdConstFst(small_fst()).write(str(path))
    _error(tmp_path, path.read_bytes()[:cut], "truncated")


@pytest.mark.parametrize("where", ["input-table", "last-key"])
def test_truncated_symbol_table(tmp_path, where):
    path = tmp_path / "s.fst"
    with_symbols(small_fst()).write(str(path))
    data = path.read_bytes()
    body = 3 * 12 + 4 * 16  # the small FST's state records
    cut = split_header(data)[1] + 30 if where == "input-table" else len(data) - body - 2
    _error(tmp_path, data[:cut], "symbol table")


def test_bad_symbol_table_magic(tmp_path):
    path = tmp_path / "s.fst"
    with_symbols(small_fst()).write(str(path))
    data = bytearray(path.read_bytes())
    data[split_header(bytes(data))[1]] ^= 0xFF
    _error(tmp_path, bytes(data), "input symbol table", "magic")


def test_wrong_magic(tmp_path):
    data = bytearray(TLG.read_bytes())
    data[0] ^= 1
    _error(tmp_path, bytes(data), "not an OpenFst binary FST", "magic number")
    _error(tmp_path, b"0 1 3 4 0.5\n1\n", "not an OpenFst binary FST")  # a text FST


@pytest.mark.parametrize("arc_type", ["log", "tropical64", "lattice4", "standardx"])
def test_not_std_arc(tmp_path, arc_type):
    data = TLG.read_bytes()
    fields, body_at = split_header(data)
    bad = make_header(fields[0], arc_type, *fields[2:]) + data[body_at:]
    _error(tmp_path, bad, repr(arc_type), "not supported", "StdArc")


@pytest.mark.parametrize("fst_type", ["const16", "compact_acceptor", "ngram", "Vector"])
def test_other_fst_types(tmp_path, fst_type):
    data = TLG.read_bytes()
    fields, body_at = split_header(data)
    _error(tmp_path, make_header(fst_type, *fields[1:]) + data[body_at:], repr(fst_type), "not supported")


@pytest.mark.parametrize("version", [1, 3])
def test_other_vector_versions(tmp_path, version):
    data = TLG.read_bytes()
    fields, body_at = split_header(data)
    bad = make_header(fields[0], fields[1], version, *fields[3:]) + data[body_at:]
    _error(tmp_path, bad, f"version {version}")


def test_truncated_at_a_state_boundary(tmp_path, fixture_graph):
    """The file ends exactly after a state record, one state short of the header's count."""
    last = int(fixture_graph.arc_begin[-1] - fixture_graph.arc_begin[-2])
    _error(tmp_path, TLG.read_bytes()[: -(12 + 16 * last)], "truncated vector FST")


def test_trailing_bytes(tmp_path):
    _error(tmp_path, TLG.read_bytes() + b"\0\0\0\0", "4 unexpected bytes")
    path = tmp_path / "c.fst"
    kaldifst.StdConstFst(small_fst()).write(str(path))
    _error(tmp_path, path.read_bytes() + b"\0", "1 unexpected bytes")


def test_impossible_arc_count(tmp_path):
    data = bytearray(TLG.read_bytes())
    body_at = split_header(bytes(data))[1]
    data[body_at + 4 + 7] = 0x80  # the first state's int64 arc count becomes negative
    _error(tmp_path, bytes(data), "state 0", "arc count")


def test_arc_to_missing_state(tmp_path):
    path = tmp_path / "small.fst"
    f = small_fst()
    f.write(str(path))
    data = bytearray(path.read_bytes())
    body_at = split_header(bytes(data))[1]
    struct.pack_into("<i", data, body_at + 12 + 16 + 12, 3)  # state 0, arc 1: nextstate 2 -> 3 (of 3)
    _error(tmp_path, bytes(data), "arc 1 of state 0 goes to state 3")


def test_bad_start_state(tmp_path):
    data = TLG.read_bytes()
    fields, body_at = split_header(data)
    bad = make_header(*fields[:5], FIXTURE_STATES, *fields[6:]) + data[body_at:]
    _error(tmp_path, bad, f"start state {FIXTURE_STATES} does not exist")


def test_const_arcs_outside_the_arc_array(tmp_path):
    path = tmp_path / "c.fst"
    kaldifst.StdConstFst(small_fst()).write(str(path))
    data = bytearray(path.read_bytes())
    body_at = split_header(bytes(data))[1]
    struct.pack_into("<I", data, body_at + 20 * 1 + 8, 9)  # state 1 claims 9 arcs
    _error(tmp_path, bytes(data), "arcs of state 1")


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        read_fst(tmp_path / "nothing.fst")


# --- load_lm_dir ----------------------------------------------------------------------------------


def test_load_fixture_lm_dir(fixture_graph):
    lm = load_lm_dir(LM_DIR)
    assert isinstance(lm, NgramLm) and lm.directory == LM_DIR
    assert_same_arrays(lm.graph, fixture_graph)
    assert len(lm.words) == FIXTURE_WORDS
    assert lm.words[:3] == ["<eps>", "<unk>", "andanding"]
    assert lm.words[-3:] == ["#0", "<s>", "</s>"]
    assert len(lm.lexicon) == 501
    assert lm.lexicon["andanding"] == ["and@@", "and@@", "ing"]
    assert lm.lexicon["<unk>"] == ["<unk>"]
    assert lm.file_bytes == TLG.stat().st_size
    assert lm.memory_bytes == lm.graph.nbytes > 0
    assert int(lm.graph.olabels.max()) < len(lm.words)
    assert LM_FILES == ("TLG.fst", "config.yaml", "lexicon.txt")


@pytest.fixture
def lm_copy(tmp_path):
    d = tmp_path / "lm"
    shutil.copytree(LM_DIR, d)
    return d


def _lm_error(directory, *needles: str) -> str:
    with pytest.raises(ModelDirError) as info:
        load_lm_dir(directory)
    message = str(info.value)
    assert str(directory) in message
    for needle in needles:
        assert needle in message
    return message


@pytest.mark.parametrize("name", LM_FILES)
def test_missing_file(lm_copy, name):
    (lm_copy / name).unlink()
    message = _lm_error(lm_copy, f"has no {name}")
    if name == "TLG.fst":
        assert "not an --lm-dir" in message


def test_not_a_directory(tmp_path):
    _lm_error(tmp_path / "nope", "not a directory")


@pytest.mark.parametrize(
    "damage", [b"", b"garbage", "truncate"], ids=["empty", "garbage", "truncated"]
)
def test_broken_tlg(lm_copy, damage):
    path = lm_copy / "TLG.fst"
    path.write_bytes(path.read_bytes()[:-100] if damage == "truncate" else damage)
    _lm_error(lm_copy, "TLG.fst")


def test_unreadable_tlg(lm_copy):
    (lm_copy / "TLG.fst").unlink()
    (lm_copy / "TLG.fst").mkdir()  # is_file() is false: reported as missing
    _lm_error(lm_copy, "has no TLG.fst")


@pytest.mark.parametrize(
    "text,why",
    [("token_list: [unclosed\n", "not valid YAML"), ("token_list:\n- \"a\n  - b: [\n", "not valid YAML"),
     ("- a\n- b\n", "has no token_list"), ("token_lists:\n- \"a\"\n", "has no token_list"),
     ("token_list:\n", "has no token_list"), ("token_list:\n- [a, b]\n", "has no token_list"),
     ("token_list: 3\n", "has no token_list")],
    ids=["bad-yaml", "bad-yaml-2", "a-list", "other-key", "empty", "nested", "scalar"],
)
def test_broken_config(lm_copy, text, why):
    (lm_copy / "config.yaml").write_text(text, encoding="utf-8")
    _lm_error(lm_copy, "config.yaml", why)


def test_config_not_utf8(lm_copy):
    (lm_copy / "config.yaml").write_bytes(b'token_list:\n- "\xff"\n')
    _lm_error(lm_copy, "config.yaml", "UTF-8")


def test_config_of_another_lm(lm_copy):
    """Fewer words than the TLG's output labels: the config.yaml is not this TLG's."""
    text = (lm_copy / "config.yaml").read_text(encoding="utf-8")
    (lm_copy / "config.yaml").write_text("\n".join(text.split("\n")[:400]) + "\n", encoding="utf-8")
    message = _lm_error(lm_copy, "config.yaml does not belong to this TLG.fst", "lists 399 words")
    assert "output label" in message


def test_negative_output_label(lm_copy):
    path = lm_copy / "TLG.fst"
    data = bytearray(path.read_bytes())
    body_at = split_header(bytes(data))[1]
    struct.pack_into("<i", data, body_at + 12 + 4, -5)  # state 0, arc 0: olabel
    path.write_bytes(bytes(data))
    _lm_error(lm_copy, "output label -5")


# --- config.yaml and lexicon.txt parsing ----------------------------------------------------------


def _yaml_words(text):
    return yaml.load(text, Loader=yaml.BaseLoader)["token_list"]


def test_fast_token_list_equals_yaml_on_fixture():
    text = (LM_DIR / "config.yaml").read_text(encoding="utf-8")
    assert parse_token_list_fast(text) == _yaml_words(text) == yaml.safe_load(text)["token_list"]


def test_fast_token_list_equals_yaml_on_awkward_words():
    words = ["<eps>", "", " lead", "trail ", "a\tb", "#0", "a: b", "- x", "'q'", "&a", "*b", "!t", "%", "{x}",
             "[y]", "汉字", "é", "😀", "null", "~", "123", "true", "0x1F", "<s>", "</s>"]
    for ending in ("\n", ""):
        text = "token_list:\n" + "\n".join(f'- "{w}"' for w in words) + ending
        assert parse_token_list_fast(text) == _yaml_words(text) == words


@pytest.mark.parametrize(
    "text",
    ['token_list:\n- "a\\tb"\n', 'token_list:\n- "a\\"b"\n', 'token_list:\n- "a\u2028b"\n',
     'token_list:\n- "a\x85b"\n', 'token_list:\r\n- "a"\r\n', '\ufefftoken_list:\n- "a"\n',
     'token_list:\n- a\n- 12\n- "b"\n', 'token_list:\n  - "a"\n', '# c\ntoken_list:\n- "a"\n',
     'token_list:\n- "a"\n\n', 'token_list:\n- "a" # c\n', 'token_list:\n- "a"\nother: 1\n'],
)
def test_token_list_falls_back_to_yaml(tmp_path, text):
    """Anything the line parser cannot be sure of goes to YAML, and the result is YAML's."""
    assert parse_token_list_fast(text) is None
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8", newline="")
    assert load_words(path) == _yaml_words(text)


def test_unquoted_words_stay_strings(tmp_path):
    """Like yaml-cpp's as<string>() in the C++: ``- 12`` is the word "12"."""
    path = tmp_path / "config.yaml"
    path.write_text("token_list:\n- <eps>\n- 12\n- true\n- 1.5\n", encoding="utf-8")
    assert load_words(path) == ["<eps>", "12", "true", "1.5"]


def test_lexicon_rules(tmp_path):
    path = tmp_path / "lexicon.txt"
    lines = [
        "a\tx y",
        "no tab here",
        "\tempty key",
        "empty value\t",
        "b\tp  q ",  # empty pieces dropped
        "a\tz",  # a later duplicate replaces
        "c\tt1\tt2 t3",  # only the first tab separates
        "d\tw\r",  # CR LF
        "e\t   ",  # spells nothing, but replaces like any value
        "e2\tk",
        "词\t词",
    ]
    path.write_bytes(("\n".join(lines)).encode("utf-8"))
    assert load_lexicon(path) == {
        "a": ["z"], "b": ["p", "q"], "c": ["t1\tt2", "t3"], "d": ["w"], "e": [], "e2": ["k"], "词": ["词"],
    }


def test_lexicon_fixture_lines():
    lexicon = load_lexicon(LM_DIR / "lexicon.txt")
    for line in (LM_DIR / "lexicon.txt").read_text(encoding="utf-8").splitlines()[:50]:
        key, value = line.split("\t", 1)
        assert lexicon[key] == value.split(" ")
