"""The README is a front page and docs/ holds the rest; both stay true to the code.

* README.md is at most 10 KB and states the two commands for a fresh machine (install and start; run the
  tests), the second being exactly what ``.ci/run`` runs.
* Every relative link in README.md and docs/*.md reaches an existing file, and every ``#anchor`` a heading
  of the page it names.
* docs/configuration.md's flag table is checked against ``server.cli.build_parser()`` for both commands,
  read at test time: every flag ``--help`` lists is in the table, every flag in the table is one ``--help``
  lists, and every default the table states is the parser's.
* docs/architecture.md names every module file of models/, server/, client/ and benchmarks/.
* Benchmark figures are never typed in: no table of a generated report is copied into the docs, and the
  figures docs/benchmarks.md quotes are the reference report's.
"""
from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from funasr_wss.server.cli import PROG, PROG_2PASS, build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README] + sorted(DOCS.glob("*.md"))
REFERENCE_REPORT = ROOT / "benchmarks" / "reference" / "report.md"

INSTALL_AND_START = "pip install . && funasr-wss-server"
TEST_COMMAND = "pip install -e '.[test]' && python -m pytest"

#: the pages the README links to, one per subject
EXPECTED_PAGES = {"protocol", "client", "models", "configuration", "operations", "docker", "benchmarks", "architecture"}


# ------------------------------------------------------------------ Markdown helpers


def _without_code_blocks(text: str) -> str:
    """The text with fenced code blocks blanked out (lines kept, so nothing in a block counts)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else line)
    return "\n".join(out)


def _code_blocks(text: str) -> List[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (``_`` and ``-`` kept), spaces → ``-``."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set:
    seen: Dict[str, int] = {}
    out = set()
    for line in _without_code_blocks(path.read_text("utf-8")).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def links(path: Path) -> List[str]:
    text = _without_code_blocks(path.read_text("utf-8"))
    return re.findall(r"\[(?:[^\]\[]|`[^`]*`)*\]\(([^)\s]+)\)", text)


def _cells(row: str) -> List[str]:
    """A table row's cells (``\\|`` inside a cell is not a separator)."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


# ------------------------------------------------------------------ README


def test_readme_is_a_front_page():
    size = README.stat().st_size
    assert size <= 10_000, f"README.md is {size} bytes; move sections into docs/ (at most 10 KB)"


def test_readme_states_the_two_commands_and_ci_runs_the_second():
    text = README.read_text("utf-8")
    blocks = [block.strip() for block in _code_blocks(text)]
    assert INSTALL_AND_START in blocks, "README: the install-and-start command, alone in a code block"
    assert TEST_COMMAND in blocks, "README: the test command, alone in a code block"
    ci = (ROOT / ".ci" / "run").read_text("utf-8").rstrip("\n").splitlines()
    assert ci[-1] == TEST_COMMAND, ".ci/run must end with the README's test command"


def test_readme_links_every_docs_page():
    linked = {Path(target.split("#")[0]).stem for target in links(README) if target.startswith("docs/")}
    pages = {p.stem for p in DOCS.glob("*.md")}
    assert EXPECTED_PAGES <= pages, f"docs/ lacks {sorted(EXPECTED_PAGES - pages)}"
    assert pages <= linked, f"README.md does not link {sorted(pages - linked)}"


# ------------------------------------------------------------------ links


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor:
            if dest.suffix != ".md":
                broken.append(f"{target}: an anchor into a file that is not Markdown")
            elif anchor not in anchors(dest):
                broken.append(f"{target}: no heading #{anchor} in {dest.name} (has {sorted(anchors(dest))})")
    assert not broken, f"{page.relative_to(ROOT)}:\n  " + "\n  ".join(broken)


def test_docs_name_no_path_of_a_build_machine():
    """Nothing of the machine the docs were written on: its home, temp or checkout's parent folder."""
    import tempfile

    prefixes = {str(Path.home()) + "/", tempfile.gettempdir() + "/", str(ROOT.parent) + "/"}
    for page in PAGES:
        text = page.read_text("utf-8")
        for prefix in prefixes:
            assert prefix not in text, f"{page.relative_to(ROOT)} names {prefix}..."


def test_slugs_follow_github():
    assert slug("N-gram LM (`--lm-dir`)") == "n-gram-lm---lm-dir"
    assert slug("Hotwords and the `is_end` handshake") == "hotwords-and-the-is_end-handshake"
    assert slug("Models: ModelScope ids or mounted directories") == "models-modelscope-ids-or-mounted-directories"


# ------------------------------------------------------------------ the flag table


def flag_table() -> List[Tuple[List[str], str]]:
    """(flags, default cell) per row of docs/configuration.md's table under "Command line"."""
    text = (DOCS / "configuration.md").read_text("utf-8")
    section = text.split("## Command line", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `-"):
            continue
        cells = _cells(line)
        flags = re.findall(r"`(--?[\w-]+)`", cells[0])
        assert flags and len(cells) == 3, line
        rows.append((flags, cells[1]))
    return rows


#: words a default cell may use instead of a value, and the parser defaults each stands for
WORDS = {"none": (None,), "latest": (None,), "no limit": (None,), "off": (False, None)}
UNCHECKED = object()


def _split_items(part: str) -> List[str]:
    """``a`, `b`, off`` → its items, splitting on commas outside code spans."""
    items, current, in_code = [], "", False
    for ch in part:
        if ch == "`":
            in_code = not in_code
        if ch == "," and not in_code:
            items.append(current.strip())
            current = ""
        else:
            current += ch
    items.append(current.strip())
    return items


def stated_defaults(cell: str, prog: str, n_flags: int) -> Optional[List[object]]:
    """The defaults a cell states for ``prog``, one per flag; None when the cell is prose (not checked).

    A cell is ``X`` for both commands, or ``X; Y for `funasr-wss-server-2pass``` where they differ; X and Y
    are comma-separated items, each a code span (the value as ``--help`` shows it) or a word of WORDS, one
    per flag of the row or one for all of them.
    """
    marker = f" for `{PROG_2PASS}`"
    if cell.endswith(marker):
        base, other = cell[: -len(marker)].split(";", 1)
        part = other.strip() if prog == PROG_2PASS else base.strip()
    else:
        part = cell
    items = _split_items(part)
    values: List[object] = []
    for item in items:
        code = re.fullmatch(r"`([^`]*)`", item)
        if code:
            values.append(code.group(1))
        elif item in WORDS:
            values.append(WORDS[item])
        else:
            return None
    if len(values) == 1:
        values *= n_flags
    assert len(values) == n_flags, f"{cell!r}: {len(values)} defaults for {n_flags} flags"
    return values


def _agrees(stated: object, actual: object) -> bool:
    if isinstance(stated, tuple):  # a word
        return actual in stated if actual is not None or None in stated else False
    shown = str(actual).lower() if isinstance(actual, bool) else str(actual)
    if shown == stated:
        return True
    try:
        return float(stated) == float(actual)  # 120 for 120.0
    except (TypeError, ValueError):
        return False


@pytest.fixture
def clean_env(monkeypatch):
    """No FUNASR_WSS_* variable of this shell changes the parser's defaults."""
    for name in list(os.environ):
        if name.startswith("FUNASR_WSS_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("prog", [PROG, PROG_2PASS])
def test_flag_table_matches_the_parser(clean_env, prog):
    parser = build_parser(prog)
    shown = {
        a.option_strings[0]: a
        for a in parser._actions
        if a.option_strings and a.help is not argparse.SUPPRESS and a.option_strings[0] not in ("-h", "--help")
    }
    rows = flag_table()
    in_table = [flag for flags, _ in rows for flag in flags]
    assert len(in_table) == len(set(in_table)), "a flag is in the table twice"
    missing = sorted(set(shown) - set(in_table))
    unknown = sorted(set(in_table) - set(shown))
    assert not missing, f"{prog} --help lists flags the table lacks: {missing}"
    assert not unknown, f"the table lists flags {prog} --help does not: {unknown}"

    checked, wrong = 0, []
    for flags, cell in rows:
        stated = stated_defaults(cell, prog, len(flags))
        if stated is None:
            continue
        for flag, value in zip(flags, stated):
            checked += 1
            actual = shown[flag].default
            if not _agrees(value, actual):
                wrong.append(f"{flag}: the table says {value!r}, {prog} has {actual!r}")
    assert not wrong, "\n".join(wrong)
    assert checked >= 0.75 * len(shown), f"only {checked} of {len(shown)} defaults are stated in a checkable form"


def test_default_cells_are_read_as_written():
    assert stated_defaults("`0.0.0.0`, `10096`", PROG, 2) == ["0.0.0.0", "10096"]
    assert stated_defaults("`cpu`, off", PROG, 2) == ["cpu", WORDS["off"]]
    assert stated_defaults("`true`", PROG, 3) == ["true"] * 3
    cell = f"none; `x/online` for `{PROG_2PASS}`"
    assert stated_defaults(cell, PROG, 1) == [WORDS["none"]]
    assert stated_defaults(cell, PROG_2PASS, 1) == ["x/online"]
    assert stated_defaults("a self-signed certificate", PROG, 2) is None
    assert _agrees("120", 120.0) and _agrees("true", True) and not _agrees("true", False)
    assert _agrees(WORDS["none"], None) and not _agrees(WORDS["none"], 0) and _agrees(WORDS["off"], False)


def test_configuration_names_the_environment_variables():
    text = (DOCS / "configuration.md").read_text("utf-8")
    assert "## Environment" in text and "FUNASR_WSS_<FLAG>" in text and "FUNASR_WSS_API_KEY" in text


# ------------------------------------------------------------------ the module map


def test_architecture_names_every_module():
    text = (DOCS / "architecture.md").read_text("utf-8")
    missing = []
    for package in ("models", "server", "client", "benchmarks"):
        for module in sorted((ROOT / package).glob("*.py")):
            name = f"{package}/{module.name}"
            if f"`{name}`" not in text:
                missing.append(name)
    assert not missing, f"docs/architecture.md has no line for {missing}"
    named = set(re.findall(r"`((?:models|server|client|benchmarks)/\w+\.py)`", text))
    gone = sorted(n for n in named if not (ROOT / n).exists())
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"


# ------------------------------------------------------------------ benchmark figures


def _tables(text: str) -> List[List[List[str]]]:
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(_cells(line))
        elif current:
            tables.append(current)
            current = []
    return tables


def test_no_generated_benchmark_table_is_copied_by_hand():
    generated = {tuple(t[0]) for t in _tables(REFERENCE_REPORT.read_text("utf-8"))}
    assert generated, "the reference report has tables"
    for page in PAGES:
        for table in _tables(page.read_text("utf-8")):
            assert tuple(table[0]) not in generated, (
                f"{page.relative_to(ROOT)} copies the table {table[0]} of {REFERENCE_REPORT.name}: link it instead"
            )


def test_quoted_benchmark_figures_are_the_reference_reports():
    report = REFERENCE_REPORT.read_text("utf-8")
    docs = (DOCS / "benchmarks.md").read_text("utf-8")
    by_header = {t[0][0]: t for t in _tables(report)}
    offline, streaming = by_header["clients"], by_header["streams"]
    head = offline[0]
    ratios = [float(row[head.index("ours ÷ funasr-onnx")]) for row in offline[2:]]
    assert f"{min(ratios):.2f}-{max(ratios):.2f}× funasr-onnx" in docs
    one = dict(zip(streaming[0], streaming[2]))
    first_delta = one["first delta p50"]
    _, _, p99 = one["chunk lag p50 / p95 / p99"].removesuffix(" s").split(" / ")
    assert f"The first delta comes {first_delta} after" in docs
    results = json.loads(REFERENCE_REPORT.with_name("results.json").read_text("utf-8"))["streaming"]
    server_share = results["rows"][0]["first_delta_after_enough_speech_p50"]
    assert f"share is {server_share:.2f} s" in docs
    assert f"last segment ({results['last_segment']['segment_seconds']:.1f} s of speech)" in docs
    assert f"p99 chunk lag ({p99} s)" in docs
    largest = re.search(r"Largest real-time stream count[^:]*: \*\*(\d+)\*\*", report).group(1)
    assert f"Largest real-time stream count in the reference run: **{largest}**" in docs
    ratio = re.search(r"Final after end .*: \*\*([\d.]+)\*\*", report).group(1)
    assert f"**{ratio}×** the offline pass" in docs
