#!/usr/bin/env python3
"""Check that the runtime dependencies install from wheels on every platform we support.

For each target platform and CPython version, pip's resolver runs without installing anything
(``pip install --dry-run --ignore-installed --only-binary=:all: --platform ... --python-version ...
--implementation cp --report FILE``) over the ``[project] dependencies`` of pyproject.toml (the
runtime closure, not the test or bench extras), and over those plus the ``gpu`` extra where
onnxruntime-gpu publishes wheels (Linux x86-64 and aarch64, Windows). A dependency, direct or
transitive, with no wheel for a target makes the check fail, naming the target and the package.

Targets (TARGETS below): Linux x86-64 and aarch64 (manylinux, glibc 2.28 or newer; 2.34 for the
gpu extra), macOS arm64 (14 or newer) and x86-64 (13 or newer), Windows amd64; every CPython from
the oldest that ``requires-python`` allows up to NEWEST_PYTHON, except where a target says why not.

Environment markers (``; sys_platform == "win32"``, ``; python_version < "3.10"``) are evaluated
for the target: pip evaluates them for its own interpreter even with ``--platform`` and
``--python-version``, so pip runs with its marker environment replaced by the target's.

Only the index is asked (PyPI unless ``--index-url``): pip's configuration files and the PIP_*
variables that add sources (find-links, extra indexes) or constraints are not used, so that the
answer is the one a user on that platform gets from ``pip install .``.

Standard library and pip (23 or newer) only. Usage::

    python .ci/platform_closure.py                          # the check (.ci/run runs this)
    python .ci/platform_closure.py --table closure.md       # and the resolved wheels, as Markdown
    python .ci/platform_closure.py --requirements reqs.txt  # another dependency list (by hand)

Exit status: 0 when every target resolves, 1 when one does not, 2 on a usage or setup error.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INDEX = "https://pypi.org/simple"

Version = Tuple[int, int]

# Every CPython from the oldest that requires-python allows up to this one is checked (3.11 is the
# Docker image's, 3.12 the GPU image's, Ubuntu 24.04's), unless a target says otherwise.
NEWEST_PYTHON: Version = (3, 14)
# The patch release each minor version is checked as: a released one, not x.y.0, because some
# packages exclude early patch releases (cryptography 44+: Requires-Python !=3.9.0,!=3.9.1).
PATCH = {9: 25, 10: 19, 11: 14, 12: 12, 13: 9, 14: 0}
# Oldest glibc of the Linux targets (manylinux_2_28: RHEL 8, Debian 10, Ubuntu 20.04 and newer).
GLIBC = (2, 28)
# The gpu extra: onnxruntime-gpu's aarch64 wheels are manylinux_2_34 (the GPU image, Ubuntu 24.04,
# has glibc 2.39).
GLIBC_GPU = (2, 34)

# Distributions that publish no wheel at all, only a pure-Python sdist (no compiled code: it
# installs on any platform), and why that is acceptable. They are resolved here from their sdist,
# for this machine; their own dependencies go through the wheel check with everything else.
SDIST_ONLY = {
    "jieba": "pure Python, only an sdist on PyPI",
}

# PEP 508 marker values that differ between the targets.
_LINUX = {"os_name": "posix", "sys_platform": "linux", "platform_system": "Linux"}
_MACOS = {"os_name": "posix", "sys_platform": "darwin", "platform_system": "Darwin"}
_WINDOWS = {"os_name": "nt", "sys_platform": "win32", "platform_system": "Windows"}


def manylinux(arch: str, glibc: Tuple[int, int]) -> Tuple[str, ...]:
    """pip --platform values for a glibc Linux: every manylinux tag up to that glibc, newest first."""
    oldest = 5 if arch == "x86_64" else 17  # manylinux1 is 2_5; aarch64 starts at 2_17 (manylinux2014)
    tags = [f"manylinux_{glibc[0]}_{minor}_{arch}" for minor in range(glibc[1], oldest - 1, -1)]
    legacy = ["manylinux2014", "manylinux2010", "manylinux1"] if arch == "x86_64" else ["manylinux2014"]
    return tuple(tags + [f"{name}_{arch}" for name in legacy])


@dataclass(frozen=True)
class Target:
    name: str
    title: str
    platforms: Tuple[str, ...]            # pip --platform values (pip adds the older macOS versions)
    markers: Tuple[Tuple[str, str], ...]
    gpu_platforms: Tuple[str, ...] = ()    # where onnxruntime-gpu has wheels: the gpu extra is checked
    newest: Version = NEWEST_PYTHON
    newest_why: str = ""                   # why `newest` is older than NEWEST_PYTHON
    gpu_oldest: Version = (3, 0)
    gpu_oldest_why: str = ""


TARGETS = (
    Target("linux-x86_64", "Linux x86-64", manylinux("x86_64", GLIBC),
           tuple({**_LINUX, "platform_machine": "x86_64"}.items()), manylinux("x86_64", GLIBC_GPU)),
    Target("linux-aarch64", "Linux aarch64", manylinux("aarch64", GLIBC),
           tuple({**_LINUX, "platform_machine": "aarch64"}.items()), manylinux("aarch64", GLIBC_GPU),
           gpu_oldest=(3, 11), gpu_oldest_why="onnxruntime-gpu has aarch64 wheels from 1.29.0 on, for cp311+"),
    Target("macos-arm64", "macOS arm64", ("macosx_14_0_arm64",),
           tuple({**_MACOS, "platform_machine": "arm64"}.items())),
    Target("macos-x86_64", "macOS x86-64", ("macosx_13_0_x86_64",),
           tuple({**_MACOS, "platform_machine": "x86_64"}.items()), newest=(3, 13),
           newest_why="onnxruntime's last macOS x86-64 wheels (1.23.2) stop at cp313"),
    Target("windows-amd64", "Windows amd64", ("win_amd64",),
           tuple({**_WINDOWS, "platform_machine": "AMD64"}.items()), ("win_amd64",)),
)

# Run as `python -c WRAPPER MARKERS_JSON pip-arguments...`: pip, with PEP 508 markers evaluated for
# the target (pip's vendored packaging looks default_environment() up at every evaluation).
WRAPPER = r"""
import json, sys
target = json.loads(sys.argv[1])
try:
    from pip._vendor.packaging import markers
    host = markers.default_environment
    markers.default_environment = lambda: {**host(), **target}
except Exception as exc:  # a pip without it: markers as for this machine, and said so
    print(f"platform_closure: cannot set the target's marker environment ({exc!r})", file=sys.stderr)
sys.argv = ["pip", *sys.argv[2:]]
from pip._internal.cli.main import main
sys.exit(main())
"""

# PIP_* variables that choose where packages come from or which are acceptable: not inherited.
_SOURCE_VARIABLES = {
    "PIP_CONFIG_FILE", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX",
    "PIP_CONSTRAINT", "PIP_CONSTRAINTS", "PIP_REQUIREMENT", "PIP_ONLY_BINARY", "PIP_NO_BINARY",
    "PIP_PREFER_BINARY", "PIP_PRE", "PIP_PLATFORM", "PIP_PYTHON_VERSION", "PIP_IMPLEMENTATION",
    "PIP_ABI", "PIP_TARGET", "PIP_USER", "PIP_REQUIRE_VIRTUALENV", "PIP_UPLOADED_PRIOR_TO",
}
_NETWORK_TROUBLE = ("Could not fetch URL", "NewConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                    "SSLError", "ProxyError", "Max retries exceeded", "Temporary failure in name resolution")


class SetupError(Exception):
    """Not a dependency's fault: a bad pyproject.toml, an old pip, an unreachable index."""


# ---- requirements -------------------------------------------------------------------------------

def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(text: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", text)
    if not match:
        raise SetupError(f"not a requirement: {text!r}")
    return canonical(match.group(1))


def read_pyproject(path: Path) -> Tuple[List[str], Dict[str, List[str]], str]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise SetupError("reading pyproject.toml needs Python 3.11+ (tomllib) or tomli") from None
    project = tomllib.loads(path.read_text("utf-8")).get("project", {})
    dependencies = list(project.get("dependencies", []))
    if not dependencies:
        raise SetupError(f"{path}: [project] has no dependencies")
    return dependencies, dict(project.get("optional-dependencies", {})), project.get("requires-python", "")


def read_requirements(path: str) -> List[str]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text("utf-8")
    requirements = [line.split(" #")[0].strip() for line in text.splitlines()]
    requirements = [r for r in requirements if r and not r.startswith("#")]
    if not requirements:
        raise SetupError(f"{path}: no requirements")
    return requirements


def oldest_python(requires_python: str) -> Version:
    """The lowest 3.x that requires-python allows (">=3.9", ">=3.9,<4", "~=3.10")."""
    for clause in requires_python.split(","):
        match = re.fullmatch(r"\s*(>=|~=|==)\s*3\.(\d+)(\.\*|\.\d+)?\s*", clause)
        if match:
            return 3, int(match.group(2))
    raise SetupError(f"cannot tell the oldest Python from requires-python = {requires_python!r}")


def python_ranges(versions: Sequence[Version]) -> str:
    """[(3, 9), (3, 10), (3, 11), (3, 13)] -> '3.9-3.11, 3.13'."""
    out: List[str] = []
    ordered = sorted(set(versions))
    start = prev = None
    for v in ordered + [None]:  # type: ignore[list-item]
        if start is not None and (v is None or v != (prev[0], prev[1] + 1)):
            out.append(f"{start[0]}.{start[1]}" + (f"-{prev[0]}.{prev[1]}" if prev != start else ""))
            start = None
        if v is not None and start is None:
            start = v
        prev = v
    return ", ".join(out)


# ---- pip ----------------------------------------------------------------------------------------

# Settings of pip's configuration files that say how to reach the index, not what to take from it:
# kept (as PIP_* variables) when the files themselves are not read.
_NETWORK_SETTINGS = ("cert", "client-cert", "proxy", "trusted-host", "timeout", "default-timeout", "retries")
_network_env: Optional[Dict[str, str]] = None


def _network_settings() -> Dict[str, str]:
    global _network_env
    if _network_env is None:
        _network_env = {}
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                             check=False)
        for line in out.stdout.splitlines():
            match = re.fullmatch(r"[\w:.-]+?\.([\w-]+)='(.*)'", line.strip())
            if match and match.group(1) in _NETWORK_SETTINGS:
                _network_env["PIP_" + match.group(1).upper().replace("-", "_")] = match.group(2)
    return _network_env


def pip_environment() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in _SOURCE_VARIABLES}
    for key, value in _network_settings().items():
        env.setdefault(key, value)
    env["PIP_CONFIG_FILE"] = os.devnull  # no configuration file at all (their indexes, find-links, ...)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def check_pip() -> str:
    out = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True, check=False)
    match = re.match(r"pip (\d+)\.(\d+)", out.stdout)
    if out.returncode != 0 or not match:
        raise SetupError(f"no pip for {sys.executable}: {out.stdout}{out.stderr}")
    if (int(match.group(1)), int(match.group(2))) < (23, 0):
        raise SetupError(f"pip {match.group(1)}.{match.group(2)} is too old for --dry-run --report: "
                         f"{sys.executable} -m pip install --upgrade pip")
    return f"pip {match.group(1)}.{match.group(2)}"


def check_index(index_url: str) -> None:
    """Fail at once, not 45 times, when pip cannot reach the index."""
    command = [sys.executable, "-m", "pip", "index", "versions", "pip", "--index-url", index_url]
    proc = subprocess.run(command, capture_output=True, text=True, env=pip_environment(), timeout=600, check=False)
    if proc.returncode != 0:
        raise SetupError(f"pip cannot reach the index {index_url}:\n{proc.stdout}{proc.stderr}")


@dataclass
class Wheel:
    name: str
    version: str
    filename: str

    @property
    def python_abi(self) -> str:
        if not self.filename.endswith(".whl"):
            return "sdist"
        py, abi, _ = self.filename[:-4].split("-")[-3:]
        return f"{py}-{abi}"

    @property
    def platform(self) -> str:
        if not self.filename.endswith(".whl"):
            return "(pure Python, from its sdist: SDIST_ONLY)"
        return self.filename[:-4].split("-")[-1]


@dataclass
class Job:
    target: Target
    python: Version
    requirements: List[str]
    gpu: bool = False
    wheels: List[Wheel] = field(default_factory=list)
    error: Optional[str] = None                                   # why it failed, one line
    pip_output: str = ""
    diagnosis: List[Tuple[str, str, List[str]]] = field(default_factory=list)  # (direct req, why, culprits)
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.target.name} cp{self.python[0]}{self.python[1]}{' +gpu' if self.gpu else ''}"

    @property
    def python_text(self) -> str:
        return f"{self.python[0]}.{self.python[1]}"

    @property
    def platforms(self) -> Tuple[str, ...]:
        return self.target.gpu_platforms if self.gpu else self.target.platforms


def pip_dry_run(job: Job, requirements: Sequence[str], index_url: str, tmp: Path) -> Tuple[int, str, dict]:
    full = f"{job.python_text}.{PATCH.get(job.python[1], 0)}"
    markers = dict(job.target.markers)
    markers.update({
        "implementation_name": "cpython", "platform_python_implementation": "CPython",
        "python_version": job.python_text, "python_full_version": full, "implementation_version": full,
        "platform_release": "", "platform_version": "",
    })
    fd, report = tempfile.mkstemp(suffix=".json", dir=tmp)
    os.close(fd)
    command = [
        sys.executable, "-c", WRAPPER, json.dumps(markers),
        "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
        "--implementation", "cp", "--python-version", full,
        *[arg for platform in job.platforms for arg in ("--platform", platform)],
        # --target: older pips (23.2) take --platform only with it, even with --dry-run; nothing lands there
        "--target", str(tmp / "target"),
        "--index-url", index_url, "--report", report, "--no-input", "--progress-bar", "off",
        *requirements,
    ]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=pip_environment(), timeout=1800,
                              check=False)
        code, output = proc.returncode, (proc.stdout + proc.stderr).strip()
    except subprocess.TimeoutExpired as exc:
        code, output = 124, f"pip timed out after {exc.timeout:.0f} s"
    data: dict = {}
    if code == 0:
        data = json.loads(Path(report).read_text("utf-8") or "{}")
    os.unlink(report)
    return code, output, data


_NO_VERSION = re.compile(
    r"Could not find a version that satisfies the requirement (?P<req>.+?)"
    r"(?: \(from (?P<parent>[^)]*)\))? \(from versions: (?P<versions>[^)]*)\)")
_NO_DISTRIBUTION = re.compile(r"No matching distribution found for (?P<req>\S+)")
# after "Cannot install ... because these package versions have conflicting dependencies."
_UNAVAILABLE = re.compile(r"no matching distributions available for your environment:\n((?:[ \t]+\S+\n?)+)")
# pip's progress lines, left out of what is shown
_PROGRESS = ("Looking in indexes:", "Collecting ", "Processing ", "Downloading ", "Using cached ",
             "Obtaining dependency information", "Would install ",
             "INFO: pip is looking at multiple versions", "INFO: pip is still looking at multiple versions",
             "INFO: This is taking longer than usual")


def blame(output: str) -> List[Tuple[str, List[str], str]]:
    """(package, the packages requiring it, what pip says) for each package pip found no file for."""
    found = _NO_VERSION.search(output)
    if found:
        parents = [requirement_name(found.group("parent"))] if found.group("parent") else []
        versions = found.group("versions").strip()
        return [(requirement_name(found.group("req")), parents,
                 "no wheel" if versions == "none" else f"no wheel of a matching version (wheels: {versions})")]
    found = _UNAVAILABLE.search(output)
    if found:
        out = []
        for name in found.group(1).split():
            parents = re.findall(rf"^\s*(\S+) \S+ depends on {re.escape(name)}\b", output, re.MULTILINE | re.I)
            out.append((canonical(name), sorted({canonical(p) for p in parents}), "no wheel"))
        return out
    found = _NO_DISTRIBUTION.search(output)
    if found:
        return [(requirement_name(found.group("req")), [], "no wheel")]
    return []


def why(output: str) -> str:
    """One line from pip's error output."""
    if any(trouble in output for trouble in _NETWORK_TROUBLE):
        return "the index could not be reached (a network error, not a missing wheel; see pip's output)"
    blamed = blame(output)
    if blamed:
        return "; ".join(f"{name} ({'required by ' + ', '.join(parents) if parents else 'a direct dependency'}): "
                         f"{what} for this platform and Python" for name, parents, what in blamed)
    if "conflicting dependencies" in output or "ResolutionImpossible" in output:
        return "the requirements conflict (see pip's output)"
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "pip failed without a message"


def shown(output: str) -> str:
    return "\n".join(line for line in output.splitlines() if not line.lstrip().startswith(_PROGRESS))


def run_job(job: Job, index_url: str, tmp: Path) -> Job:
    start = time.monotonic()
    code, output, report = pip_dry_run(job, job.requirements, index_url, tmp)
    job.pip_output = output
    if code != 0:
        job.error = why(output)
    else:
        for item in report.get("install", []):
            filename = urllib.parse.unquote(item["download_info"]["url"].rsplit("/", 1)[-1])
            job.wheels.append(Wheel(canonical(item["metadata"]["name"]), item["metadata"]["version"], filename))
        job.wheels.sort(key=lambda w: w.name)
        sdists = [w.filename for w in job.wheels if not w.filename.endswith(".whl")]
        if sdists:  # cannot happen with --only-binary=:all:, but the table must never claim a wheel
            job.error = f"resolved to sdists: {', '.join(sdists)}"
    job.seconds = time.monotonic() - start
    return job


def diagnose(job: Job, index_url: str, tmp: Path) -> Job:
    """pip stops at its first dead end. Name every direct requirement whose closure has no wheel
    for this job: drop the one pip blamed and resolve again, until the rest resolves; where pip's
    message names no direct requirement, resolve each one alone."""
    remaining, output = list(job.requirements), job.pip_output
    if any(trouble in output for trouble in _NETWORK_TROUBLE):
        return job
    while remaining:
        blamed = blame(output)
        names = {name for name, parents, _ in blamed} | {p for _, parents, _ in blamed for p in parents}
        direct = [r for r in remaining if requirement_name(r) in names]
        if not direct:
            for requirement in remaining:
                code, alone, _ = pip_dry_run(job, [requirement], index_url, tmp)
                if code != 0:
                    job.diagnosis.append((requirement, why(alone), [name for name, _, _ in blame(alone)]))
            return job
        for requirement in direct:
            job.diagnosis.append((requirement, why(output), [name for name, _, _ in blamed]))
            remaining.remove(requirement)
        if not remaining:
            return job
        code, output, _ = pip_dry_run(job, remaining, index_url, tmp)
        if code == 0:
            return job
    return job


def published_wheels(index_url: str, name: str) -> str:
    """Best effort, for the error message: which platforms the newest release of `name` has wheels
    for (PEP 691 JSON of the simple index)."""
    request = urllib.request.Request(f"{index_url.rstrip('/')}/{name}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            files = json.load(response).get("files", [])
    except Exception:
        return ""
    releases: Dict[str, List[str]] = {}
    for entry in files:
        filename = entry.get("filename", "")
        if filename.endswith(".whl"):
            parts = filename[:-4].split("-")
            releases.setdefault(parts[1], []).extend(parts[-1].split("."))
        else:
            sdist = re.match(rf"(?i){re.escape(name).replace('-', '[-_.]')}-(.+?)\.(tar\.gz|zip)$", filename)
            if sdist:
                releases.setdefault(sdist.group(1), [])

    def order(version: str) -> Tuple:
        return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.+-]", version))

    if not releases:
        return ""
    newest = max(releases, key=order)
    platforms = sorted(set(releases[newest]))
    if not platforms:
        return (f"{name} {newest} publishes no wheel, only an sdist (if it is pure Python, it can go into "
                f"SDIST_ONLY in .ci/platform_closure.py)")
    return f"{name} {newest} publishes wheels for: {', '.join(platforms)}"


def resolve_sdist_only(requirements: List[str], index_url: str, tmp: Path) -> Tuple[List[Wheel], List[str]]:
    """SDIST_ONLY requirements, resolved for this machine from their sdists (built here): the
    release, and its own dependencies, which then go through the wheel check with the rest."""
    if not requirements:
        return [], []
    fd, report = tempfile.mkstemp(suffix=".json", dir=tmp)
    os.close(fd)
    names = ",".join(requirement_name(r) for r in requirements)
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
               f"--no-binary={names}", "--index-url", index_url, "--report", report, "--quiet", *requirements]
    proc = subprocess.run(command, capture_output=True, text=True, env=pip_environment(), timeout=1800,
                          check=False)
    if proc.returncode != 0:
        raise SetupError(f"cannot resolve {', '.join(requirements)} from their sdists:\n{proc.stdout}{proc.stderr}")
    data = json.loads(Path(report).read_text("utf-8"))
    os.unlink(report)
    found, dependencies = [], []
    for item in data.get("install", []):
        meta = item["metadata"]
        found.append(Wheel(canonical(meta["name"]), meta["version"],
                           urllib.parse.unquote(item["download_info"]["url"].rsplit("/", 1)[-1])))
        dependencies.extend(r for r in meta.get("requires_dist", []) if "extra ==" not in r)
    return found, dependencies


# ---- output -------------------------------------------------------------------------------------

def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    """A Markdown table, padded so that it reads as well in a terminal."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(f"{c:<{w}}" for c, w in zip(cells, widths)) + " |"

    return [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]


def closure(job: Job, sdists: List[Wheel]) -> List[Wheel]:
    names = {w.name for w in job.wheels}
    return sorted(job.wheels + [w for w in sdists if w.name not in names], key=lambda w: w.name)


def markdown(jobs: List[Job], sdists: List[Wheel], header: List[str]) -> str:
    out = ["# Runtime dependencies per platform", "", *header, ""]
    groups: Dict[Tuple[bool, Version], List[Job]] = {}
    for job in jobs:
        groups.setdefault((job.gpu, job.python), []).append(job)
    out += ["## Versions per platform", ""]
    for (gpu, python), group in sorted(groups.items()):
        out += [f"CPython {python[0]}.{python[1]}" + (", with the gpu extra (onnxruntime-gpu)" if gpu else "") + ":",
                ""]
        found = {job.label: {w.name: w.version for w in closure(job, sdists)} for job in group}
        names = sorted({name for versions in found.values() for name in versions})
        headers = ["package"] + [job.target.title + (" (FAILED)" if job.error else "") for job in group]
        rows = [[name] + [found[job.label].get(name, "-") for job in group] for name in names]
        out += _table(headers, rows) + [""]
    out += ["## Wheels per platform", ""]
    for job in jobs:
        what = "runtime dependencies and the gpu extra" if job.gpu else "runtime dependencies"
        older = f" and the {len(job.platforms) - 1} older manylinux tags" if len(job.platforms) > 1 else ""
        out += [f"### {job.target.title}, CPython {job.python_text}: {what}", "",
                f"`--platform {job.platforms[0]}`{older}", ""]
        if job.error:
            out += [f"**Does not resolve**: {job.error}", ""]
            continue
        rows = [[w.name, w.version, w.python_abi, w.platform] for w in closure(job, sdists)]
        out += _table(["package", "version", "python-abi", "platform tag"], rows) + [""]
    return "\n".join(out)


def scope_lines(targets: Sequence[Target], jobs: Sequence[Job]) -> List[str]:
    lines = []
    for target in targets:
        cpu = [j.python for j in jobs if j.target == target and not j.gpu]
        gpu = [j.python for j in jobs if j.target == target and j.gpu]
        text = f"{target.title}: CPython {python_ranges(cpu)} (`{target.platforms[0]}`)"
        if gpu:
            text += f"; gpu extra: CPython {python_ranges(gpu)} (`{target.gpu_platforms[0]}`)"
        if cpu and max(cpu) == target.newest < NEWEST_PYTHON and target.newest_why:
            text += f"; no CPython {target.newest[0]}.{target.newest[1] + 1}+: {target.newest_why}"
        if gpu and min(gpu) == target.gpu_oldest and target.gpu_oldest_why:
            text += (f"; no gpu extra before CPython {target.gpu_oldest[0]}.{target.gpu_oldest[1]}: "
                     f"{target.gpu_oldest_why}")
        lines.append(f"- {text}")
    return lines


def summary(targets: Sequence[Target], jobs: Sequence[Job], sdists: List[Wheel]) -> List[str]:
    """One line per target, for a green run."""
    lines = []
    for target in targets:
        mine = [j for j in jobs if j.target == target]
        cpu = [j for j in mine if not j.gpu]
        gpu = [j for j in mine if j.gpu]
        sizes = sorted({len(closure(j, sdists)) for j in mine})
        size = f"{sizes[0]}" + (f"-{sizes[-1]}" if len(sizes) > 1 else "")
        text = f"  ok  {target.title:<14} CPython {python_ranges([j.python for j in cpu])}"
        if gpu:
            text += f", gpu extra {python_ranges([j.python for j in gpu])}"
        lines.append(f"{text}: {size} packages each")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    parser.add_argument("--requirements", metavar="FILE",
                        help="check these requirements (one a line; '-': stdin) instead of pyproject.toml's "
                             "dependencies (the gpu extra still comes from pyproject.toml)")
    parser.add_argument("--python", action="append", metavar="3.X",
                        help="check this CPython only (repeatable), on every target; default: each from the "
                             "oldest requires-python allows to the newest the target has")
    parser.add_argument("--target", action="append", choices=[t.name for t in TARGETS],
                        help="this target only (repeatable); default: all five")
    parser.add_argument("--no-gpu", action="store_true", help="leave the gpu extra out")
    parser.add_argument("--index-url", default=DEFAULT_INDEX, help=f"the package index (default {DEFAULT_INDEX})")
    parser.add_argument("--jobs", type=int, default=4, help="resolvers run at a time (default 4)")
    parser.add_argument("--table", type=Path, metavar="FILE", help="write the resolved wheels to FILE (Markdown)")
    parser.add_argument("--print-table", action="store_true", help="print the resolved wheels as well")
    args = parser.parse_args(argv)

    try:
        pip_version = check_pip()
        dependencies, extras, requires_python = read_pyproject(args.pyproject)
        try:
            source = str(args.pyproject.resolve().relative_to(ROOT))
        except ValueError:
            source = str(args.pyproject)
        if args.requirements:
            dependencies, source = read_requirements(args.requirements), args.requirements
        if args.python:
            if not all(re.fullmatch(r"3\.\d+", text) for text in args.python):
                raise SetupError(f"--python {args.python}: expected 3.X")
            pythons = sorted({(3, int(text.split(".")[1])) for text in args.python})
            cpu_ok: Callable[[Target, Version], bool] = lambda t, py: True  # noqa: E731
            gpu_ok: Callable[[Target, Version], bool] = lambda t, py: True  # noqa: E731
        else:
            pythons = [(3, minor) for minor in range(oldest_python(requires_python)[1], NEWEST_PYTHON[1] + 1)]
            cpu_ok = lambda t, py: py <= t.newest  # noqa: E731
            gpu_ok = lambda t, py: t.gpu_oldest <= py <= t.newest  # noqa: E731
        gpu_extra = [] if args.no_gpu else extras.get("gpu", [])
        targets = [t for t in TARGETS if not args.target or t.name in args.target]
        check_index(args.index_url)

        with tempfile.TemporaryDirectory(prefix="platform-closure-") as tmp_name:
            tmp = Path(tmp_name)
            sdist_requirements = [r for r in dependencies if requirement_name(r) in SDIST_ONLY]
            sdists, sdist_dependencies = resolve_sdist_only(sdist_requirements, args.index_url, tmp)
            wheels_only = [r for r in dependencies if requirement_name(r) not in SDIST_ONLY] + sdist_dependencies
            jobs = [Job(t, py, wheels_only) for t in targets for py in pythons if cpu_ok(t, py)]
            jobs += [Job(t, py, wheels_only + gpu_extra, gpu=True) for t in targets if t.gpu_platforms and gpu_extra
                     for py in pythons if gpu_ok(t, py)]
            print(f"platform closure: {len(dependencies)} requirements from {source}"
                  f"{' + the gpu extra' if gpu_extra else ''}, {len(jobs)} resolutions "
                  f"({pip_version}, {args.index_url})", flush=True)
            with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
                jobs = list(pool.map(lambda job: run_job(job, args.index_url, tmp), jobs))
                failed = [job for job in jobs if job.error]
                list(pool.map(lambda job: diagnose(job, args.index_url, tmp), failed))
    except SetupError as exc:
        print(f"platform closure: {exc}", file=sys.stderr)
        return 2

    header = [f"`pip install --dry-run --ignore-installed --only-binary=:all: --implementation cp "
              f"--python-version 3.X --platform ...` ({pip_version}, {args.index_url}, "
              f"{time.strftime('%Y-%m-%d')}) over the requirements of {source}"
              + (f" and the gpu extra ({', '.join(gpu_extra)})" if gpu_extra else "") + ".", ""]
    header += scope_lines(targets, jobs)
    if sdists:
        header += ["", "Allowed without a wheel (SDIST_ONLY): " + ", ".join(
            f"{w.name} {w.version} ({SDIST_ONLY[w.name]})" for w in sdists) + "."]
    table = markdown(jobs, sdists, header)
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(table, "utf-8")
    if args.print_table:
        print(table)

    if any("cannot set the target's marker environment" in job.pip_output for job in jobs):
        print("platform closure: WARNING: this pip's marker environment could not be replaced: markers were "
              "evaluated for this machine, so the closures may lack (or hold) platform-specific packages")
    if not failed:
        print("\n".join(summary(targets, jobs, sdists)))
        if sdists:
            print("  (without a wheel, allowed: " + ", ".join(f"{w.name} {w.version}" for w in sdists) + ")")
        print("platform closure: ok" + (f"; resolved wheels in {args.table}" if args.table else ""))
        return 0

    for job in jobs:
        print(f"  {'FAIL' if job.error else 'ok  '} {job.label:<26} "
              f"{job.error or str(len(closure(job, sdists))) + ' packages'}  ({job.seconds:.0f} s)")
    err = sys.stderr
    print("\nplatform closure: FAILED", file=err)
    culprits: Dict[str, List[Job]] = {}
    via: Dict[str, set] = {}
    for job in failed:
        names = {name for name, _, _ in blame(job.pip_output)}
        for requirement, reason, found in job.diagnosis:
            if reason != job.error:  # a second dead end, behind the first
                print(f"  {job.label}: also {reason}", file=err)
            names.update(found)
            for name in found:
                via.setdefault(name, set()).add(requirement)
        for name in names:
            culprits.setdefault(name, []).append(job)
    for name, without in sorted(culprits.items()):
        where = []
        for target in targets:
            cpu = [j.python for j in without if j.target == target and not j.gpu]
            gpu = [j.python for j in without if j.target == target and j.gpu]
            if cpu or gpu:
                parts = ([f"CPython {python_ranges(cpu)}"] if cpu else []) + (
                    [f"gpu extra {python_ranges(gpu)}"] if gpu else [])
                where.append(f"{target.title} ({'; '.join(parts)})")
        failing = {j.target.name for j in without}
        fine = [t.title for t in targets if t.name not in failing]
        direct = sorted(via.get(name, set()) - {r for r in via.get(name, set()) if requirement_name(r) == name})
        print(f"  => {name}{' (through ' + ', '.join(direct) + ')' if direct else ''} has no wheel for: "
              f"{', '.join(where)}" + (f". It resolves on {', '.join(fine)}." if fine else "."), file=err)
        published = published_wheels(args.index_url, name)
        if published:
            print(f"     {published}", file=err)
    if not culprits:
        print("  => no missing wheel named by pip: see its output below", file=err)
    print("A dependency without wheels for a platform makes `pip install .` fail there, or build it from "
          "source. Replace it or make it optional, then rerun: python .ci/platform_closure.py", file=err)
    outputs: Dict[str, List[str]] = {}
    for job in failed:
        outputs.setdefault(shown(job.pip_output), []).append(job.label)
    for output, labels in outputs.items():
        print(f"\n---- pip's output: {', '.join(labels)} ----\n{output}", file=err)
    if args.table:
        print(f"\n(the resolutions that worked: {args.table})", file=err)
    return 1


if __name__ == "__main__":
    sys.exit(main())
