""".ci/platform_closure.py, the CI check that the runtime dependencies install from wheels on
Linux x86-64 and aarch64, macOS arm64 and x86-64 and Windows amd64.

The check itself asks PyPI, from .ci/run. What is tested here, offline, is what would make it
pass wrongly or blame the wrong package: the platform tags and Python versions it asks for, that
it reads the runtime dependencies (not the extras), that markers are evaluated for the target and
not for this machine, and that a package without a wheel fails it with that package's name. The
last two run the real pip against a local index of hand-made wheels.
"""
from __future__ import annotations

import importlib.util
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "platform_closure.py"


def _load():
    spec = importlib.util.spec_from_file_location("platform_closure", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


pc = _load()
TARGETS = {t.name: t for t in pc.TARGETS}


def test_the_five_targets_and_their_tags():
    assert list(TARGETS) == ["linux-x86_64", "linux-aarch64", "macos-arm64", "macos-x86_64", "windows-amd64"]
    aarch64 = TARGETS["linux-aarch64"].platforms
    # newer wheels (manylinux_2_28) and the old ones (manylinux2014 = 2_17) both resolve, nothing older
    assert aarch64[0] == "manylinux_2_28_aarch64"
    assert {"manylinux_2_27_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"} <= set(aarch64)
    assert not any(t.endswith("_x86_64") for t in aarch64) and "manylinux_2_16_aarch64" not in aarch64
    x86 = TARGETS["linux-x86_64"].platforms
    assert {"manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"} <= set(x86)
    assert "manylinux_2_34_aarch64" in TARGETS["linux-aarch64"].gpu_platforms  # onnxruntime-gpu's aarch64 wheels
    assert TARGETS["macos-arm64"].platforms == ("macosx_14_0_arm64",)
    assert TARGETS["windows-amd64"].platforms == ("win_amd64",)
    assert dict(TARGETS["windows-amd64"].markers)["sys_platform"] == "win32"
    assert dict(TARGETS["macos-arm64"].markers)["platform_machine"] == "arm64"
    assert not TARGETS["macos-arm64"].gpu_platforms  # onnxruntime-gpu has no macOS wheels


def test_requirements_are_the_runtime_dependencies_and_every_supported_python():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    dependencies, extras, requires_python = pc.read_pyproject(ROOT / "pyproject.toml")
    assert dependencies == project["dependencies"]  # the runtime closure, not the test extra
    assert extras["gpu"] == project["optional-dependencies"]["gpu"]
    oldest = pc.oldest_python(requires_python)
    assert oldest == pc.oldest_python(project["requires-python"]) <= (3, 11) < pc.NEWEST_PYTHON
    for target in pc.TARGETS:  # the images' Pythons at least, everywhere
        assert target.newest >= (3, 12), target.name
        assert target.newest == pc.NEWEST_PYTHON or target.newest_why
        assert target.gpu_oldest <= oldest or target.gpu_oldest_why
    assert pc.oldest_python(">=3.10,<4") == (3, 10) and pc.oldest_python("~=3.9") == (3, 9)
    assert pc.python_ranges([(3, 9), (3, 10), (3, 11), (3, 13)]) == "3.9-3.11, 3.13"
    assert set(range(9, pc.NEWEST_PYTHON[1] + 1)) <= set(pc.PATCH)


def test_ci_runs_the_check_before_the_readme_test_command():
    lines = (ROOT / ".ci" / "run").read_text("utf-8").rstrip("\n").splitlines()
    assert lines[-1] == "pip install -e '.[test]' && python -m pytest"
    check = [n for n, line in enumerate(lines) if line.startswith("python .ci/platform_closure.py")]
    upgrade = [n for n, line in enumerate(lines) if "pip install -q --upgrade pip" in line]
    assert check and upgrade and upgrade[0] < check[0] < len(lines) - 1


PIP_CONFLICT = """\
The conflict is caused by:
    wetextprocessing 1.2.0 depends on pynini>=2.1.6
    wetextprocessing 1.0.4.1 depends on pynini==2.1.6

Additionally, some packages in these conflicts have no matching distributions available for your environment:
    pynini

To fix this you could try to:
ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/
"""
PIP_NONE = """\
ERROR: Could not find a version that satisfies the requirement onnxruntime>=1.16 (from versions: none)
ERROR: No matching distribution found for onnxruntime>=1.16
"""


def test_pips_messages_name_the_package_without_a_wheel():
    assert pc.blame(PIP_CONFLICT) == [("pynini", ["wetextprocessing"], "no wheel")]
    assert pc.why(PIP_CONFLICT) == "pynini (required by wetextprocessing): no wheel for this platform and Python"
    assert pc.blame(PIP_NONE) == [("onnxruntime", [], "no wheel")]
    assert "onnxruntime>=1.16" not in pc.why("Could not fetch URL https://pypi.org/simple/x/: connection error")
    assert "network" in pc.why("WARNING: Retrying ... NewConnectionError(...)")


# ---- the real pip on a local index --------------------------------------------------------------

def _wheel(index: Path, name: str, tag: str = "py3-none-any", requires=()) -> None:
    dist = name.replace("-", "_")
    folder = index / name
    folder.mkdir(parents=True, exist_ok=True)
    filename = f"{dist}-1.0-{tag}.whl"
    metadata = "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
                        *(f"Requires-Dist: {r}\n" for r in requires)])
    with zipfile.ZipFile(folder / filename, "w") as whl:
        whl.writestr(f"{dist}/__init__.py", "")
        whl.writestr(f"{dist}-1.0.dist-info/METADATA", metadata)
        whl.writestr(f"{dist}-1.0.dist-info/WHEEL",
                     f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n")
        whl.writestr(f"{dist}-1.0.dist-info/RECORD", "")
    links = "".join(f'<a href="{p.name}">{p.name}</a>\n' for p in sorted(folder.glob("*.whl")))
    (folder / "index.html").write_text(f"<html><body>\n{links}</body></html>\n", "utf-8")


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("index")
    _wheel(root, "probe-app", requires=['probe-win; sys_platform == "win32"',
                                        'probe-old; python_version < "3.10"',
                                        'probe-mac; platform_system == "Darwin" and platform_machine == "arm64"'])
    for name in ("probe-win", "probe-old", "probe-mac"):
        _wheel(root, name)
    _wheel(root, "probe-native", tag="cp312-cp312-win_amd64")           # a Windows-only binary wheel
    _wheel(root, "probe-wrapper", requires=["probe-native"])          # ... and a package needing it
    _wheel(root, "probe-linux", tag="cp312-cp312-manylinux_2_28_x86_64")
    return root.as_uri() + "/"


def _resolve(target: str, python, requirements, index: str, tmp_path: Path):
    job = pc.Job(TARGETS[target], python, list(requirements))
    return pc.run_job(job, index, tmp_path)


def test_markers_are_the_targets_not_this_machines(index, tmp_path):
    names = lambda job: {w.name for w in job.wheels}  # noqa: E731
    windows = _resolve("windows-amd64", (3, 12), ["probe-app"], index, tmp_path)
    assert windows.error is None, windows.pip_output
    assert names(windows) == {"probe-app", "probe-win"}
    mac = _resolve("macos-arm64", (3, 9), ["probe-app"], index, tmp_path)
    assert names(mac) == {"probe-app", "probe-old", "probe-mac"}, mac.pip_output
    linux = _resolve("linux-x86_64", (3, 12), ["probe-app", "probe-linux"], index, tmp_path)
    assert names(linux) == {"probe-app", "probe-linux"}, linux.pip_output
    assert [w.platform for w in linux.wheels if w.name == "probe-linux"] == ["manylinux_2_28_x86_64"]


def test_a_package_without_a_wheel_fails_the_target_by_name(index, tmp_path):
    job = _resolve("linux-aarch64", (3, 12), ["probe-wrapper"], index, tmp_path)
    expected = "probe-native (required by probe-wrapper): no wheel for this platform and Python"
    assert job.error == expected, job.pip_output
    assert _resolve("windows-amd64", (3, 12), ["probe-wrapper"], index, tmp_path).error is None
    # pip stops at the first dead end; the diagnosis finds each of them
    job = _resolve("linux-aarch64", (3, 12), ["probe-app", "probe-wrapper", "probe-linux"], index, tmp_path)
    assert job.error and "no wheel for this platform" in job.error
    pc.diagnose(job, index, tmp_path)
    assert sorted(name for _, _, found in job.diagnosis for name in found) == ["probe-linux", "probe-native"]
    assert sorted(req for req, _, _ in job.diagnosis) == ["probe-linux", "probe-wrapper"]
