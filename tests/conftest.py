import pytest

from tests.harness import ServerThread, fixture_settings


@pytest.fixture(scope="session")
def offline_server():
    with ServerThread(fixture_settings()) as server:
        yield server
