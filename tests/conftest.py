import pytest

from tests.harness import ServerThread, fixture_settings, fixture_settings_2pass
from tests.helpers import Hub
from tests.paths import AUDIO, MODELS, REQUIRED_MODEL_FILES


def pytest_sessionstart(session):
    """A missing fixture is a failure, never a skip: the suite would prove nothing without it."""
    missing = [str(MODELS / d / f) for d, files in REQUIRED_MODEL_FILES.items() for f in files if not (MODELS / d / f).is_file()]
    if not (AUDIO / "manifest.tsv").is_file():
        missing.append(str(AUDIO / "manifest.tsv"))
    else:
        for line in (AUDIO / "manifest.tsv").read_text("utf-8").splitlines()[1:]:
            name = line.split("\t", 1)[0]
            if name and not (AUDIO / name).is_file():
                missing.append(str(AUDIO / name))
    if missing:
        pytest.exit("test fixtures are missing (see tests/fixtures/README.md):\n  " + "\n  ".join(missing), returncode=3)


@pytest.fixture(scope="session")
def offline_server():
    with ServerThread(fixture_settings()) as server:
        yield server


@pytest.fixture(scope="session")
def two_pass_server():
    with ServerThread(fixture_settings_2pass()) as server:
        yield server


@pytest.fixture
def hub(monkeypatch) -> Hub:
    """ModelScope unreachable for the model-directory resolver, its probes counted."""
    return Hub(monkeypatch)
