from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from starlette.testclient import TestClient

from adapter import Settings, create_app
from sandbox import Sandbox, SandboxConfig

from .utils import IS_ROOT, Server, make_work_root, run_server

settings.register_profile(
    "default", max_examples=40, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

SECRET = "s3cr3t-token-that-must-not-leak"
SERVER_OUTPUT_CAP = 4096


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("root") and not IS_ROOT:
            item.add_marker(pytest.mark.skip(reason="needs root for per-run uids"))
        if item.get_closest_marker("gxx") and not shutil.which("g++"):
            item.add_marker(pytest.mark.skip(reason="needs g++"))


@pytest.fixture
def work_root() -> Iterator[Path]:
    root = make_work_root()
    yield root
    shutil.rmtree(root.parent, ignore_errors=True)


@pytest.fixture
def sandbox(work_root: Path) -> Sandbox:
    return Sandbox(SandboxConfig(work_root=work_root))


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """One real service under uvicorn, with a small output cap and a secret in its environment."""
    root = make_work_root()
    with run_server(root, {"SANDBOX_MAX_OUTPUT_BYTES": str(SERVER_OUTPUT_CAP),
                           "SANDBOX_TEST_SECRET": SECRET}) as srv:
        yield srv
    shutil.rmtree(root.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def app_client() -> Iterator[TestClient]:
    """The app in-process (Starlette's TestClient), for request validation tables."""
    root = make_work_root()
    app = create_app(Settings.from_environ({}, work_root=root, max_body_bytes=1 << 20))
    with TestClient(app, raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 60
        while client.get("/health").status_code != 200:
            assert time.monotonic() < deadline, client.get("/health").text
            time.sleep(0.05)
        yield client
    shutil.rmtree(root.parent, ignore_errors=True)
