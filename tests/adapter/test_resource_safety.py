"""What programs consume cannot take the service down: the service runs inside a 1.5 GiB memory
cgroup the test makes under its own (what a 2 GiB session-pool container leaves it), as root
and as the unprivileged user, and each request here would have had the kernel's OOM killer end
it, or wedged a run slot, before the run's memory bound and concurrent feeding."""

from __future__ import annotations

import concurrent.futures
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from ..conftest import SERVER_ENV, WARM_PASS, skip_or_fail
from ..utils import (
    ROOT_MODE,
    SERVICE_USER,
    Server,
    alive,
    assert_nothing_left,
    find_user,
    memory_cgroup,
    own_memory_cgroup,
    provide_user_python,
    serve,
    unprivileged_unavailable,
)
from .test_hostile_clients import TIMEOUT_S, open_files_for_the_tests  # noqa: F401 - its fixture
from .test_hostile_clients import (
    test_two_thousand_half_sent_heads_are_closed_and_health_answers as half_open_heads,
)
from .test_session_resources import (
    stream_upload,
)
from .test_session_resources import (
    test_a_kernel_flooding_between_cells_is_reset_and_kept_nothing as flooding_cell,
)
from .test_session_resources import (
    test_read_and_delete_calls_on_new_identifiers_start_no_session as read_only_calls,
)
from .test_sessions import sessions_of
from .test_socket_stdin import (
    test_stdin_to_a_program_that_never_reads_is_slowed_or_bounded as unread_socket_stdin,
)

GiB = 1 << 30
MiB = 1 << 20
SERVICE_LIMIT_BYTES = 3 * GiB // 2
# Sessions' files at 64 MiB: a session then holds 576 MiB of the 1.25 GiB budget, so two fit.
# HTTP timeouts short enough for the half-open connections to be closed within a test.
SESSION_FILES_BYTES = 64 * MiB
BOUNDED_ENV = {**SERVER_ENV, "SANDBOX_MAX_DISK_BYTES": str(SESSION_FILES_BYTES),
               "SANDBOX_HTTP_HEAD_TIMEOUT_S": str(TIMEOUT_S),
               "SANDBOX_HTTP_BODY_IDLE_TIMEOUT_S": str(TIMEOUT_S)}

# `main()` forks N children that each allocate and touch EACH MB, then sleep: every child is far
# inside RLIMIT_AS and the process limit, the run together far past its memory limit.
MANY_CHILDREN = """\
#include <cstdlib>
#include <sys/wait.h>
#include <unistd.h>
int main() {
    for (int i = 0; i < N; i++) {
        if (fork() == 0) {
            // Through a volatile pointer: the compiler may not drop the unread pages.
            volatile char* block = static_cast<char*>(std::malloc(EACH << 20));
            for (long at = 0; block && at < (EACH << 20); at += 4096) block[at] = 1;
            sleep(20);
            return 0;
        }
    }
    while (wait(nullptr) > 0) {}
}
"""
# (children, MB each) per mode: as root 58 x 30 MB (1.7 GB); as the unprivileged user, whose
# processes count against one RLIMIT_NPROC with the service's, 15 x 123 MB.
SHAPES = {ROOT_MODE: (58, 30), "unprivileged": (15, 123)}


@pytest.fixture(scope="module", params=[ROOT_MODE, "unprivileged"])
def bounded_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """The service in a memory cgroup of 1.5 GiB, in each mode."""
    if own_memory_cgroup() is None:
        pytest.skip("needs root and a writable v1 memory cgroup")
    user, python = None, None
    if request.param != ROOT_MODE:
        reason = unprivileged_unavailable()
        if reason is not None:
            skip_or_fail(reason)
        user = find_user(SERVICE_USER)
        python = provide_user_python()
    with memory_cgroup(SERVICE_LIMIT_BYTES, user) as cgroup:
        kwargs = {"python": python} if python else {}
        with serve(BOUNDED_ENV, user=user, cgroup=cgroup, **kwargs) as server:  # type: ignore[arg-type]
            yield server


def execute(server: Server, language: str, code: str, **properties: object) -> httpx.Response:
    with server.client(timeout=90) as client:
        return client.post(f"/{language}/execute",
                           json={"properties": {"code": code, **properties}})


def honest_run(server: Server) -> None:
    reply = execute(server, "python", "print(6 * 7)")
    assert reply.status_code == 200, reply.text
    assert reply.json()["properties"]["stdout"] == "42\n"


def assert_survived(server: Server) -> None:
    assert server.process.poll() is None, "the service died"
    assert server.health().status_code == 200
    honest_run(server)
    assert_nothing_left(server)


def test_many_mid_sized_children_are_a_memory_limit(bounded_server: Server) -> None:
    n, each = SHAPES[bounded_server.mode]
    code = MANY_CHILDREN.replace("N;", f"{n};").replace("EACH", str(each))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        bomb = pool.submit(execute, bounded_server, "cpp", code, timeoutInSeconds=30)
        # The service answers all along, and an honest run alongside succeeds.
        while not bomb.done():
            assert bounded_server.health().status_code == 200
            honest_run(bounded_server)
        reply = bomb.result()
    assert reply.status_code == 200, reply.text
    properties = reply.json()["properties"]
    assert properties["compile"]["outcome"] == "ok"
    assert properties["outcome"] == "memory_limit"
    assert_survived(bounded_server)


def test_a_program_that_prints_before_it_reads_cannot_hang_its_run(
        bounded_server: Server) -> None:
    # 2.2 MB out before it reads 4 MB in, as a DMOJ generator does: the reply comes (at the
    # output cap), within the wall clock, and the slot is free again.
    code = ("#include <cstdio>\n#include <iostream>\n#include <string>\nint main(){"
            "for(int i=0;i<2200;i++) std::fputs(std::string(999,'x').append(\"\\n\").c_str(),"
            "stdout);std::fflush(stdout);std::string s,all;while(std::cin>>s) all+=s;"
            "std::printf(\"%zu\\n\", all.size());}")
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(execute, bounded_server, "cpp", code, stdin="y" * (4 << 20),
                            timeoutInSeconds=5) for _ in range(2)]
        replies = [run.result() for run in runs]
    assert time.monotonic() - started < 30
    for reply in replies:
        assert reply.status_code == 200, reply.text
        assert reply.json()["properties"]["outcome"] == "output_limit"
    assert_survived(bounded_server)


def test_the_service_is_never_the_oom_killers_choice(bounded_server: Server) -> None:
    service = bounded_server.process.pid
    if bounded_server.mode != ROOT_MODE:
        # The shell that moved it into the cgroup exec'd the service: same pid.
        assert alive(service)
    score = int(Path(f"/proc/{service}/oom_score_adj").read_text())
    assert score <= 0
    with bounded_server.client() as client:
        layers = {layer["name"]: layer for layer in client.get("/").json()["layers"]}
    assert layers["oom_score"]["active"] is True
    expected = "cgroups" if bounded_server.mode == ROOT_MODE else "memory_watchdog"
    assert layers[expected]["active"] is True, layers[expected]


def test_the_memory_budget_is_the_containers_limit_less_the_reserve(
        bounded_server: Server) -> None:
    with bounded_server.client() as client:
        runs = client.get("/").json()["runs"]
    # Less the session kernels' warm interpreter, when there is one (the warm pass).
    warm = re.search(r"SANDBOX_WARM_SESSIONS_BYTES \((\d+)\)", runs["memoryBudgetFrom"])
    held = int(warm.group(1)) if warm else 0
    assert (warm is not None) == WARM_PASS
    assert runs["memoryBudgetBytes"] == SERVICE_LIMIT_BYTES - 256 * (1 << 20) - held
    assert runs["memoryBudgetFrom"].startswith("the service's cgroup limit")


# The cases below are the suite's own tests of each resource, run again against the service in
# its memory cgroup, in both modes.

def test_half_open_connections_in_the_bounded_service(bounded_server: Server) -> None:
    half_open_heads(bounded_server)
    assert_survived(bounded_server)


def test_read_only_calls_in_the_bounded_service(bounded_server: Server) -> None:
    read_only_calls(bounded_server)
    assert_survived(bounded_server)


def test_a_cell_thread_flooding_in_the_bounded_service(bounded_server: Server) -> None:
    flooding_cell(bounded_server)
    assert_survived(bounded_server)


def test_websocket_stdin_in_the_bounded_service(bounded_server: Server) -> None:
    unread_socket_stdin(bounded_server)
    assert_survived(bounded_server)


def test_sessions_filling_their_files_cannot_take_the_service_down(
        bounded_server: Server) -> None:
    # Six sessions whose cell writes 15 files of 16 MB: each is held to its files' bound, and
    # the budget admits only the sessions whose kernels and files fit at once.
    fill = ("written = 0\ntry:\n    for i in range(15):\n        with open(f'f{i}', 'wb') as f:"
            "\n            f.write(b'x' * (16 << 20))\n        written += 1\nexcept OSError:\n"
            "    pass\nwritten")
    with sessions_of(bounded_server) as make:
        sessions = [make() for _ in range(6)]
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            replies = list(pool.map(lambda s: s.request("POST", "/code/execute", json={
                "properties": {"code": fill}}), sessions))
        admitted = [r for r in replies if r.status_code == 200]
        refused = [r for r in replies if r.status_code == 503]
        assert len(admitted) + len(refused) == 6, [r.text for r in replies]
        assert len(admitted) == 2
        assert all(r.headers["retry-after"] == "5" for r in refused)
        for reply in admitted:
            # The session's files stop at its bound: a 64 MiB tmpfs takes four of the 16 MiB
            # files; without one, the disk watchdog ends the kernel past the bound.
            props = reply.json()["properties"]
            assert props["result"] == 4 or "disk_limit" in (
                props["sessionResetReason"] or ""), reply.text
        assert bounded_server.health().status_code == 200
    assert_survived(bounded_server)


def test_parallel_uploads_in_the_bounded_service(bounded_server: Server) -> None:
    service = psutil.Process(bounded_server.process.pid)
    with sessions_of(bounded_server) as make:
        sessions = [make(), make()]
        for session in sessions:
            session.execute("1")  # started: both fit the budget
        before = peak = service.memory_info().rss
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            uploads = [pool.submit(stream_upload, session, f"part{i}.bin", 30 * MiB)
                       for session in sessions for i in range(2)]
            while not all(upload.done() for upload in uploads):
                peak = max(peak, service.memory_info().rss)
                time.sleep(0.05)
        assert [upload.result().status_code for upload in uploads] == [200] * 4
        assert peak - before < 60 * MiB, f"the service grew by {(peak - before) / MiB:.0f} MiB"
    assert_survived(bounded_server)


def test_an_interpreter_that_cannot_start_under_its_limit_is_a_memory_limit(
        bounded_server: Server) -> None:
    # Under 8 MiB the loader cannot map the interpreter's libraries: the run did not fit its
    # memory limit. (Under 12 MiB CPython itself may spin at start-up, ASLR deciding: see
    # docs/confinement.md, Limitations.)
    reply = bounded_server.post("/batch", {
        "language": "python", "files": [{"content": "print(1)"}],
        "limits": {"memory_bytes": 8 << 20}, "cases": [{}]})
    assert reply.status_code == 200, reply.text
    case = reply.json()["cases"][0]
    assert (case["verdict"], case["outcome"]) == ("memory_limit", "memory_limit"), case
    assert_survived(bounded_server)
