from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from hypothesis import HealthCheck, settings
from starlette.testclient import TestClient

from adapter import Settings, create_app
from sandbox import Sandbox, SandboxConfig

from .postgres import REQUIRE_POSTGRES, PostgresServer, postgres_server, postgres_unavailable
from .utils import (
    IS_ROOT,
    REQUIRE_UNPRIVILEGED,
    SERVICE_USER,
    Server,
    find_user,
    make_work_root,
    provide_user_python,
    sandbox_uids,
    serve,
    suite_settings_environ,
    unprivileged_unavailable,
    use_warm_python,
)

settings.register_profile(
    "default", max_examples=40, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

SECRET = "s3cr3t-token-that-must-not-leak"
SANDBOX_TESTS = Path(__file__).resolve().parent / "sandbox"
# scripts/test runs the suite with warm Python interpreters, then without (see README).
WARM_PASS = os.environ.get("SANDBOX_WARM_PYTHON", "").lower() != "false"
SERVER_OUTPUT_CAP = 4096
# What both real servers get on top of their defaults.
SERVER_ENV = {"SANDBOX_MAX_OUTPUT_BYTES": str(SERVER_OUTPUT_CAP), "SANDBOX_TEST_SECRET": SECRET}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not WARM_PASS and SANDBOX_TESTS in item.path.parents:
            item.add_marker(pytest.mark.skip(
                reason="the sandbox's own tests choose warm or fresh Python themselves"))
        if item.get_closest_marker("root") and not IS_ROOT:
            item.add_marker(pytest.mark.skip(reason="needs root for per-run uids"))
        if item.get_closest_marker("gxx") and not shutil.which("g++"):
            item.add_marker(pytest.mark.skip(reason="needs g++"))


@pytest.fixture
def work_root() -> Iterator[Path]:
    root = make_work_root()
    yield root
    shutil.rmtree(root.parent, ignore_errors=True)


@pytest.fixture(params=["forked-launcher", "started-launcher", "warm-python"])
def sandbox(work_root: Path, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """A sandbox whose runs take uids of this session's own range (see `run_processes`); every
    test of it runs with launchers forked from the zygote, with launchers started afresh, and
    with Python programs forked from a warm interpreter (`warm_python` says which to ask for)."""
    if request.param == "warm-python" and not WARM_PASS:
        pytest.skip("this pass starts every Python run afresh")
    uids = sandbox_uids()
    sandbox = Sandbox(SandboxConfig(work_root=work_root, uid_first=uids.start,
                                    uid_count=len(uids),
                                    fork_launchers=request.param != "started-launcher",
                                    warm_interpreters=WARM_PASS))
    if request.param == "warm-python":
        use_warm_python(sandbox)
    yield sandbox
    sandbox.close()


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """One real service under uvicorn, with a small output cap and a secret in its environment."""
    with serve(SERVER_ENV) as srv:
        yield srv


def skip_or_fail(reason: str, required_by: str = REQUIRE_UNPRIVILEGED,
                 what: str = "the unprivileged mode") -> NoReturn:
    """Skips, unless the environment variable `required_by` demands `what`: a skip would hide
    it."""
    if os.environ.get(required_by) == "1":
        pytest.fail(f"{reason} ({required_by}=1 requires {what})", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def unprivileged_server() -> Iterator[Server]:
    """The same service as `server`, run as the unprivileged user: no per-run uids, every run
    shares the service's uid. Started from an interpreter that user may execute."""
    reason = unprivileged_unavailable()
    if reason is not None:
        skip_or_fail(reason)
    user = find_user(SERVICE_USER)
    assert user is not None
    python = provide_user_python()
    with serve(SERVER_ENV, user=user, python=python) as srv:
        yield srv


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for the session (tests.postgres); each test that uses it
    takes a database of its own with `create_database`."""
    reason = postgres_unavailable()
    if reason is not None:
        skip_or_fail(reason, REQUIRE_POSTGRES, "a PostgreSQL server")
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def app_client() -> Iterator[TestClient]:
    """The app in-process (Starlette's TestClient), for request validation tables."""
    root = make_work_root()
    app = create_app(Settings.from_environ(suite_settings_environ(), work_root=root,
                                           max_body_bytes=1 << 20))
    with TestClient(app, raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 60
        while client.get("/health").status_code != 200:
            assert time.monotonic() < deadline, client.get("/health").text
            time.sleep(0.05)
        yield client
    shutil.rmtree(root.parent, ignore_errors=True)
