"""The packages' layers, read from the source with ``ast`` (nothing is imported): ``models`` is the
inference library and knows nothing of the server or the client; the server reaches ``models`` through
its loader and the recogniser boundary; the wire protocol module depends on nothing of ours, and it is the
one module of the server that the client may import."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("models", "server", "client", "benchmarks")

#: server modules that may import models besides the loader and the recogniser, each with its reason.
SERVER_MODELS_ALLOWED: Dict[str, str] = {
    "server/model_loader.py": "the loader builds the models",
    "server/recognizer.py": "the recogniser boundary: what the sessions call",
    "server/settings.py": "models.wfst_config.WfstConfig holds the --lm-dir search defaults the flags show",
    "server/model_dirs.py": "ModelDirError is the resolver's error; FST_FILES names the ITN files it checks",
    "server/cli.py": "ModelDirError and DeviceUnavailableError are turned into the CLI's exit messages",
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


def imported_modules(path: Path) -> List[Tuple[int, str]]:
    """(line, module of ours) for every import in ``path``, lazy ones included; a relative import
    counts as its own package, ``from server import protocol`` as ``server.protocol``."""
    package = path.relative_to(ROOT).parts[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names = [package]
            elif node.module in OURS:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                names = [node.module or ""]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0] in OURS]
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
            if name in forbidden and rel not in allowed.get(name, {}) and module not in modules_allowed:
                out.append(f"{rel}:{line} imports {module}")
    return out


@pytest.mark.parametrize("package, forbidden, allowed, modules_allowed", [
    ("models", {"server", "client", "benchmarks"}, {}, {}),
    ("client", {"models", "benchmarks", "server"}, {"models": CLIENT_MODELS_ALLOWED}, CLIENT_SERVER_MODULES_ALLOWED),
    ("server", {"models", "client", "benchmarks"}, {"models": SERVER_MODELS_ALLOWED}, {}),
], ids=["models", "client", "server"])
def test_a_package_imports_only_the_layers_below_it(package, forbidden, allowed, modules_allowed):
    assert violations(package, forbidden, allowed, modules_allowed) == []


def test_the_protocol_module_imports_nothing_of_ours():
    assert imported_packages(ROOT / "server" / "protocol.py") == []


def test_the_allowed_lists_name_modules_that_exist():
    for rel in [*SERVER_MODELS_ALLOWED, *CLIENT_MODELS_ALLOWED]:
        assert (ROOT / rel).is_file(), rel
    for module in CLIENT_SERVER_MODULES_ALLOWED:
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), module
