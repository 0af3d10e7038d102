"""The ``--lm-dir`` directory: FunASR's n-gram LM as a decoding graph, its words and its lexicon.

FunASR's C++ runtime decodes the offline Paraformer through a WFST when it is
given an LM directory (the project's LM contract, §1.1):

* ``TLG.fst``: the OpenFst graph; input labels are AM token id + 1, output
  labels are word ids (read by :mod:`models.fst_file`);
* ``config.yaml``: ``token_list``, the words; index = TLG output label;
* ``lexicon.txt``: ``word<TAB>tokens``, used only to spell hotwords in AM
  tokens (BiasLm).

Where the C++ server exits, logs or silently mis-decodes on a broken
directory, :func:`load_lm_dir` raises :class:`~models.model_dir.ModelDirError`
naming the directory and the file, so the server can refuse to start with a
reason.  It also checks what the C++ does not: every output label of the graph
must name a word, otherwise the words belong to some other graph.

The files can be large (a 130k-word LM has a 115 MB graph, a 1.6 MB
``config.yaml`` and a 2.5 MB ``lexicon.txt``), so ``config.yaml`` in the
shape FunASR's ``collect_resource_file.sh`` writes it (``token_list:`` and
one ``- "<word>"`` line per word) is read by a line parser that is exact for
that shape, and anything else goes to the YAML parser.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import yaml

from .fst_file import Fst, FstFormatError, read_fst
from .model_dir import ModelDirError

TLG_FILE = "TLG.fst"
CONFIG_FILE = "config.yaml"
LEXICON_FILE = "lexicon.txt"
LM_FILES = (TLG_FILE, CONFIG_FILE, LEXICON_FILE)

# libyaml's loader when PyYAML has it (about 10x faster).  The *base* loader keeps every scalar a
# string, like yaml-cpp's ``as<std::string>()`` in the C++ (``- 123`` is the word "123", not a number).
_YamlLoader = getattr(yaml, "CBaseLoader", yaml.BaseLoader)

# The fast path takes only what cannot mean anything else in YAML: a double-quoted scalar on one line
# without escapes (backslash), quotes, or characters YAML treats as line breaks or refuses
# (C0/C1 controls other than TAB, DEL, NEL, U+2028/2029, BOM, surrogates, U+FFFE/U+FFFF).
_FAST_CONFIG = re.compile(r'token_list:(?:\n- "[^"\n]*")+\n?')
_FAST_ITEM = re.compile(r'^- "([^"\n]*)"$', re.MULTILINE)
_NOT_FAST = re.compile("[\\\\\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True, eq=False)
class NgramLm:
    """A loaded ``--lm-dir``; shared read-only by every connection."""

    directory: Path
    graph: Fst
    words: List[str]  # config.yaml token_list; index = TLG output label
    lexicon: Dict[str, List[str]]  # lexicon.txt: word -> AM token strings
    file_bytes: int  # size of TLG.fst

    @property
    def memory_bytes(self) -> int:
        """What the graph's arrays hold in memory."""
        return self.graph.nbytes


def load_lm_dir(directory: Union[str, "os.PathLike[str]"]) -> NgramLm:
    """Load and check an LM directory; :class:`ModelDirError` names the file that is missing or broken."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelDirError(f"LM directory {directory} does not exist or is not a directory")
    _check_present(directory)
    words = load_words(directory / CONFIG_FILE)
    lexicon = load_lexicon(directory / LEXICON_FILE)
    graph = _load_graph(directory / TLG_FILE)
    _check_output_labels(directory, graph, words)
    return NgramLm(directory, graph, words, lexicon, (directory / TLG_FILE).stat().st_size)


def _check_present(directory: Path) -> None:
    """All three files, before anything large is read."""
    if not (directory / TLG_FILE).is_file():
        raise ModelDirError(f"{directory} has no {TLG_FILE}: not an --lm-dir (n-gram LM) directory")
    for name in (CONFIG_FILE, LEXICON_FILE):
        if not (directory / name).is_file():
            raise ModelDirError(f"LM directory {directory} has no {name} (an --lm-dir needs {', '.join(LM_FILES)})")


def _load_graph(path: Path) -> Fst:
    try:
        return read_fst(path)
    except FstFormatError as exc:
        raise ModelDirError(f"{path.parent}: {TLG_FILE} cannot be used: {exc}") from exc
    except OSError as exc:
        raise ModelDirError(f"{path.parent}: cannot read {TLG_FILE}: {exc}") from exc


def _check_output_labels(directory: Path, graph: Fst, words: List[str]) -> None:
    """Every output label must index ``words``; one beyond means config.yaml is some other LM's."""
    if graph.num_arcs == 0:
        return
    low, high = int(graph.olabels.min()), int(graph.olabels.max())
    if low >= 0 and high < len(words):
        return
    bad_arc = int(np.argmax((graph.olabels < 0) | (graph.olabels >= len(words))))
    label = int(graph.olabels[bad_arc])
    raise ModelDirError(
        f"{directory}: {TLG_FILE} has output label {label}, but {CONFIG_FILE} lists {len(words)} words "
        f"(token_list ids 0..{len(words) - 1}): the {CONFIG_FILE} does not belong to this {TLG_FILE}"
    )


# --- config.yaml ----------------------------------------------------------------------------------


def load_words(path: Path) -> List[str]:
    """``token_list`` of an LM ``config.yaml``."""
    text = _read_text(path)
    words = parse_token_list_fast(text)
    if words is not None:
        return words
    try:
        data = yaml.load(text, Loader=_YamlLoader)
    except yaml.YAMLError as exc:
        raise ModelDirError(f"{path} is not valid YAML: {exc}") from exc
    words = data.get("token_list") if isinstance(data, dict) else None
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise ModelDirError(f"{path} has no token_list (a YAML list of the LM's words, one per TLG output label)")
    return words


def parse_token_list_fast(text: str) -> Optional[List[str]]:
    """The words of a ``token_list:`` + ``- "<word>"`` file, or None when YAML must decide."""
    if _NOT_FAST.search(text) or not _FAST_CONFIG.fullmatch(text):
        return None
    return _FAST_ITEM.findall(text)


# --- lexicon.txt ----------------------------------------------------------------------------------


def load_lexicon(path: Path) -> Dict[str, List[str]]:
    """``word<TAB>tokens`` lines (FunASR's ``Vocab::LoadLex`` + BiasLm's split of the value).

    The key is the text before the first TAB, the value the rest of the line.  Lines without a TAB, or
    with an empty key or value, are skipped; a later line for the same word replaces an earlier one.
    The value is split at spaces with empty pieces dropped (Kaldi's ``SplitStringToVector(..., " ",
    true, ...)`` in bias-lm), so an all-space value spells nothing.  Unlike C++'s ``getline``, a
    Windows line end (CR LF) does not leave a CR on the last token.
    """
    lexicon: Dict[str, List[str]] = {}
    for line in _read_text(path).split("\n"):
        key, tab, value = line.partition("\t")
        if value.endswith("\r"):
            value = value[:-1]
        if tab and key and value:
            lexicon[key] = [token for token in value.split(" ") if token]
    return lexicon


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelDirError(f"cannot read {path}: {exc}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelDirError(f"{path} is not UTF-8 text (byte {exc.start})") from exc
