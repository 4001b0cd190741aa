"""The service run as an unprivileged user, end to end: no per-run uids, runs share its uid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import pytest

from .utils import TEST_UIDS, UNPRIVILEGED_MODE, Server, assert_nothing_left, stray_files

SERVICE_DEFAULT_UIDS = range(60000, 61000)
CPP_HELLO = '#include <iostream>\nint main(){std::cout << "hello\\n";}\n'


def execute(server: Server, code: str, language: str = "python") -> dict[str, Any]:
    """Runs `code` through POST /{language}/execute and checks the run left nothing behind."""
    response = server.post(f"/{language}/execute", json={"properties": {"code": code}})
    assert response.status_code == 200, response.text
    props: dict[str, Any] = response.json()["properties"]
    assert_nothing_left(server)
    assert stray_files(server) == []
    return props


def supplementary_groups(pid: int) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Groups:"):
            return [int(g) for g in line.split()[1:]]
    raise AssertionError(f"no Groups line for {pid}")


def test_health_answers_from_the_user(unprivileged_server: Server) -> None:
    assert unprivileged_server.mode == UNPRIVILEGED_MODE
    assert unprivileged_server.health().text == "ok"
    service = psutil.Process(unprivileged_server.process.pid)
    assert set(service.uids()) == {unprivileged_server.uid}
    assert unprivileged_server.uid != 0
    assert 0 not in service.gids()
    assert supplementary_groups(service.pid) == []


def test_python_print(unprivileged_server: Server) -> None:
    props = execute(unprivileged_server, "print(1)")
    assert (props["status"], props["outcome"], props["stdout"], props["stderr"]) == (
        "Success", "ok", "1\n", "")


def test_runs_share_the_service_uid(unprivileged_server: Server) -> None:
    props = execute(unprivileged_server, "import os\nprint(os.getuid())")
    uid = int(props["stdout"])
    assert uid == unprivileged_server.uid
    assert uid != 0 and uid not in SERVICE_DEFAULT_UIDS and uid not in TEST_UIDS


def test_status_reports_per_run_uids_inactive(unprivileged_server: Server) -> None:
    with unprivileged_server.client() as client:
        status = client.get("/").json()
    assert status["status"] == "ready"
    layers = {layer["name"]: layer for layer in status["layers"]}
    assert layers["per_run_uid"]["active"] is False, layers["per_run_uid"]
    assert all(r["selfTest"]["passed"] for r in status["runtimes"])


@pytest.mark.gxx
def test_cpp_hello(unprivileged_server: Server) -> None:
    props = execute(unprivileged_server, CPP_HELLO, language="cpp")
    assert props["compile"]["outcome"] == "ok", props["compile"]
    assert (props["outcome"], props["stdout"]) == ("ok", "hello\n")
