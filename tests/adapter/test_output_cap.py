"""The output cap per request: a grader's few MB of right output need not be an output_limit.
Each route takes it as a field of its own kind, up to SANDBOX_MAX_OUTPUT_BYTES (16 MiB by
default); without it a run keeps its runtime's default (1 MiB) of each stream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..utils import Server, serve

MiB = 1 << 20
BIG = 2_200_000  # what a DMOJ generator prints
PRINT_BIG = f"import sys\nsys.stdout.write('x' * {BIG})"


@pytest.fixture(scope="module")
def default_server() -> Iterator[Server]:
    with serve() as server:
        yield server


def test_azure_takes_max_output_bytes(default_server: Server) -> None:
    capped = default_server.post("/python/execute", {"properties": {"code": PRINT_BIG}})
    props = capped.json()["properties"]
    assert (props["outcome"], len(props["stdout"]), props["stdoutTruncated"]) == (
        "output_limit", MiB, True)
    room = default_server.post("/python/execute", {"properties": {
        "code": PRINT_BIG, "maxOutputBytes": 4 * MiB}})
    props = room.json()["properties"]
    assert (props["outcome"], props["stdout"], props["stdoutTruncated"]) == (
        "ok", "x" * BIG, False)
    # Above the ceiling it is lowered to it, as timeouts are.
    lowered = default_server.post("/python/execute", {"properties": {
        "code": PRINT_BIG, "maxOutputBytes": 1 << 40}})
    assert lowered.json()["properties"]["outcome"] == "ok"
    for bad in ("4MiB", 0, -1, 1.5, True):
        refused = default_server.post("/python/execute", {"properties": {
            "code": "print(1)", "maxOutputBytes": bad}})
        assert (refused.status_code, refused.json()) == (
            400, {"message": "properties.maxOutputBytes must be a positive integer"})


def test_piston_takes_run_output_limit(default_server: Server) -> None:
    job = {"language": "python", "version": "*", "files": [{"content": PRINT_BIG}]}
    capped = default_server.post("/api/v2/execute", job).json()["run"]
    assert (capped["status"], len(capped["stdout"])) == ("OL", MiB)
    room = default_server.post("/api/v2/execute", {**job, "run_output_limit": 4 * MiB})
    assert room.status_code == 200, room.text
    run = room.json()["run"]
    assert (run["status"], run["stdout"]) == (None, "x" * BIG)
    refused = default_server.post("/api/v2/execute", {**job, "run_output_limit": 32 * MiB})
    assert (refused.status_code, refused.json()) == (
        400, {"message": f"run_output_limit cannot exceed the configured limit of {16 * MiB}"})


def test_batch_takes_limits_max_output_bytes(default_server: Server) -> None:
    batch = {"language": "python", "files": [{"content": PRINT_BIG}],
             "cases": [{"expected_output": "x" * BIG}]}
    capped = default_server.post("/batch", batch).json()["cases"][0]
    assert capped["verdict"] == "output_limit"
    room = default_server.post("/batch", {**batch, "limits": {"max_output_bytes": 4 * MiB}})
    assert room.status_code == 200, room.text
    assert room.json()["cases"][0]["verdict"] == "accepted"
    refused = default_server.post("/batch", {**batch, "limits": {
        "max_output_bytes": 32 * MiB}})
    assert (refused.status_code, refused.json()) == (
        400, {"message": f"limits.max_output_bytes cannot exceed the ceiling of {16 * MiB}"})
