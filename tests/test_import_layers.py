"""The packages' layers, read from the source with ``ast`` (nothing is imported): ``models`` is the
inference library and knows nothing of the server or the client; the server reaches ``models`` through
its loader and the recogniser boundary; the wire protocol module depends on nothing of ours, and it is the
one module of the server that the client may import. Our packages install as ``funasr_wss.models``,
``funasr_wss.server`` and ``funasr_wss.client``, and every import of them uses those names: a bare
``import models`` would find whatever other project's ``models`` is installed."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("models", "server", "client", "benchmarks")
NAMESPACE = "funasr_wss"
INSTALLED = ("models", "server", "client")  # the packages installed under NAMESPACE

#: server modules that may import models besides the loader and the recogniser, each with its reason.
SERVER_MODELS_ALLOWED: Dict[str, str] = {
    "server/model_loader.py": "the loader builds the models",
    "server/recognizer.py": "the recogniser boundary: what the sessions call",
    "server/model_dirs.py": "the loader's first half, resolving directories and ids: ModelDirError is its error, "
                            "FST_FILES names the ITN files it checks",
    "server/settings.py": "models.wfst_config.WfstConfig holds the --lm-dir search defaults the flags show",
}
#: client modules that may import models, with the reason.
CLIENT_MODELS_ALLOWED: Dict[str, str] = {
    "client/inputs.py": "decodes audio files with the server's PyAV decoder (models.audio), imported lazily",
}

#: modules of the server that any client module may import, with the reason.
CLIENT_SERVER_MODULES_ALLOWED: Dict[str, str] = {
    "server.protocol": "the one definition of the protocol (modes, chunk_size, SenseVoice languages, hotword "
                       "text) that server and client share; it imports nothing of ours, and the client is installed "
                       "with the server (one distribution)",
}


def raw_imports(path: Path) -> List[Tuple[int, str, int]]:
    """(line, module as written, relative level) for every import in ``path``, lazy ones included;
    ``from x import y`` gives ``x.y``, which is a module or a name in ``x``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            found += [(node.lineno, f"{base}.{alias.name}" if base else alias.name, node.level) for alias in node.names]
    return found


def imported_modules(path: Path) -> List[Tuple[int, str]]:
    """(line, module of ours, without the namespace) for every import in ``path``, lazy ones included;
    a relative import counts as its own package, ``from funasr_wss.server import protocol`` as
    ``server.protocol``."""
    package = path.relative_to(ROOT).parts[0]
    found = []
    for line, name, level in raw_imports(path):
        if level:
            name = package
        elif name.startswith(NAMESPACE + "."):
            name = name[len(NAMESPACE) + 1:]
        elif name.split(".")[0] in INSTALLED:
            continue  # a bare import of an installed package: test_no_bare_imports_of_our_packages
        if name.split(".")[0] in OURS:
            found.append((line, name))
    return found


def imported_packages(path: Path) -> List[Tuple[int, str]]:
    """(line, top-level package of ours) for every import in ``path``, lazy ones included; a relative
    import counts as its own package."""
    return [(line, name.split(".")[0]) for line, name in imported_modules(path)]


def violations(
    package: str, forbidden: Set[str], allowed: Dict[str, Dict[str, str]], modules_allowed: Dict[str, str]
) -> List[str]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for line, module in imported_modules(path):
            name = module.split(".")[0]
            listed = any(module == m or module.startswith(m + ".") for m in modules_allowed)
            if name in forbidden and rel not in allowed.get(name, {}) and not listed:
                out.append(f"{rel}:{line} imports {module}")
    return out


@pytest.mark.parametrize("package, forbidden, allowed, modules_allowed", [
    ("models", {"server", "client", "benchmarks"}, {}, {}),
    ("client", {"models", "benchmarks", "server"}, {"models": CLIENT_MODELS_ALLOWED}, CLIENT_SERVER_MODULES_ALLOWED),
    ("server", {"models", "client", "benchmarks"}, {"models": SERVER_MODELS_ALLOWED}, {}),
], ids=["models", "client", "server"])
def test_a_package_imports_only_the_layers_below_it(package, forbidden, allowed, modules_allowed):
    assert violations(package, forbidden, allowed, modules_allowed) == []


def test_no_bare_imports_of_our_packages():
    """Installed, ``models`` / ``server`` / ``client`` are not ours: only ``funasr_wss.<package>`` is."""
    bare = []
    for folder in (*OURS, "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(("tests/golden/", "tests/fixtures/")):
                continue
            bare += [f"{rel}:{line} imports {name}" for line, name, level in raw_imports(path)
                     if not level and name.split(".")[0] in INSTALLED]
    assert bare == []


def test_the_protocol_module_imports_nothing_of_ours():
    assert imported_packages(ROOT / "server" / "protocol.py") == []


def test_the_allowed_lists_name_modules_that_exist():
    for rel in [*SERVER_MODELS_ALLOWED, *CLIENT_MODELS_ALLOWED]:
        assert (ROOT / rel).is_file(), rel
    for module in CLIENT_SERVER_MODULES_ALLOWED:
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module
