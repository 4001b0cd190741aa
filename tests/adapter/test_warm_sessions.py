"""Session kernels forked from their warm interpreter: a first cell finds the stack imported,
the kernel is confined exactly as a fresh one, its memory is the budget's, and matplotlib
leaves nothing among the session's files."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from ..conftest import SERVER_ENV, WARM_PASS
from ..utils import Server, serve
from .test_sessions import Session, sessions_of

# What a kernel can see of its own confinement: identity, rlimits, no-new-privs and seccomp
# (prctl), Landlock (a file outside its paths), the network, its working directory.
CONFINEMENT = """
import ctypes, json, os, resource, socket
libc = ctypes.CDLL(None, use_errno=True)
def can_open(path):
    try:
        open(path).close()
        return True
    except OSError:
        return False
def can_connect():
    try:
        socket.create_connection(("1.1.1.1", 53), timeout=1).close()
        return True
    except OSError:
        return False
limits = {name: resource.getrlimit(getattr(resource, name)) for name in (
    "RLIMIT_AS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_FSIZE", "RLIMIT_CPU", "RLIMIT_STACK",
    "RLIMIT_CORE")}
print(json.dumps({"service_uid": os.getuid() == {service_uid}, "limits": limits,
                  "no_new_privs": libc.prctl(39, 0, 0, 0, 0), "seccomp": libc.prctl(21, 0, 0, 0, 0),
                  "passwd": can_open("/etc/passwd"), "network": can_connect(),
                  "cwd_is_files": os.path.samefile(os.getcwd(), ".")}))
"""


@pytest.fixture(scope="module")
def cold_server() -> Iterator[Server]:
    """The same service with every session kernel started afresh."""
    with serve({**SERVER_ENV, "SANDBOX_WARM_SESSIONS": "off"}) as srv:
        yield srv


@pytest.fixture
def new_session(server: Server) -> Iterator[Callable[..., Session]]:
    with sessions_of(server) as make:
        yield make


def service_uid(server: Server) -> int:
    with server.client() as client:
        status = client.get("/").json()
    layers = {layer["name"]: layer for layer in status["layers"]}
    # With per-run uids a kernel's uid is never the service's; without, it always is.
    return -1 if layers["per_run_uid"]["active"] else __import__("os").getuid()


def confinement(server: Server) -> dict[str, object]:
    with sessions_of(server) as make:
        props = make().execute(CONFINEMENT.replace("{service_uid}", str(service_uid(server))))
    assert props["status"] == "Success", props
    found: dict[str, object] = json.loads(props["stdout"])
    return found


def test_a_first_cell_finds_the_stack_already_imported(
        new_session: Callable[..., Session]) -> None:
    props = new_session().execute(
        "import sys\n[name in sys.modules for name in ('numpy', 'pandas', "
        "'matplotlib.pyplot')]")
    assert props["status"] == "Success", props
    assert props["result"] == [WARM_PASS] * 3


def test_a_warm_kernel_is_confined_as_a_fresh_one(server: Server, cold_server: Server) -> None:
    warm, cold = confinement(server), confinement(cold_server)
    assert warm == cold
    assert warm["service_uid"] is False or not warm["passwd"]
    assert warm["no_new_privs"] == 1 and warm["network"] is False


def test_numpy_in_a_forked_kernel_computes_and_keeps_one_blas_thread(
        new_session: Callable[..., Session]) -> None:
    """OpenBLAS was loaded in the warm interpreter; its fork must multiply right, not hang,
    and make no more threads than the runtime says."""
    props = new_session().execute(
        "import numpy as np\nfrom threadpoolctl import threadpool_info\n"
        "a = np.arange(90000, dtype=float).reshape(300, 300) % 7 + np.eye(300)\n"
        "ok = bool(np.allclose(a @ np.linalg.inv(a), np.eye(300)))\n"
        "[ok, float((a @ a).trace()), sorted({pool['num_threads'] for pool in threadpool_info()})]",
        timeout_s=30)
    assert props["status"] == "Success", props
    ok, trace, threads = props["result"]
    expected = sum(sum(((i * 300 + k) % 7 + (i == k)) * ((k * 300 + i) % 7 + (k == i))
                       for k in range(300)) for i in range(300))
    assert (ok, trace) == (True, float(expected))
    assert threads == [1]  # OPENBLAS_NUM_THREADS, not a thread per core


def test_the_warm_interpreter_is_shown_and_counted_in_the_budget(server: Server) -> None:
    with server.client() as client:
        status = client.get("/").json()
    python = next(entry for entry in status["runtimes"] if entry["language"] == "python")
    warm = python["sessionWarmInterpreter"]
    if not WARM_PASS:
        assert warm == {"active": False, "detail": "turned off by configuration"}
        return
    assert warm["active"] is True and "pandas" in warm["preload"]
    assert 32 << 20 < warm["residentBytes"] < 256 << 20
    assert "SANDBOX_WARM_SESSIONS_BYTES" in status["runs"]["memoryBudgetFrom"]


@pytest.mark.parametrize("kernels", ["server", "cold_server"])
def test_plots_leave_no_folders_among_the_session_files(
        request: pytest.FixtureRequest, kernels: str) -> None:
    """matplotlib's config and font caches, and fontconfig's, are never among the files: a
    forked kernel's matplotlib was set up in the warm interpreter, a fresh kernel's keeps them
    in a folder of its own that goes after each cell."""
    with sessions_of(request.getfixturevalue(kernels)) as make:
        session = make()
        props = session.execute("import matplotlib.pyplot as plt\nplt.plot([1, 2])\n"
                                "plt.savefig('plot.png')\nplt.close('all')")
        assert props["status"] == "Success", props
        props = session.execute("import os\nsorted(os.listdir('.'))")
        assert props["result"] == ["plot.png"], props
        assert session.names() == ["plot.png"]


@pytest.mark.skipif(not WARM_PASS, reason="this pass starts every kernel afresh")
def test_lazy_the_warm_interpreter_starts_with_the_first_session() -> None:
    def shown(srv: Server) -> dict[str, object]:
        with srv.client() as client:
            status = client.get("/").json()
        python = next(entry for entry in status["runtimes"] if entry["language"] == "python")
        warm: dict[str, object] = python["sessionWarmInterpreter"]
        return warm

    with serve({**SERVER_ENV, "SANDBOX_WARM_SESSIONS": "lazy"}) as lazy:
        before = shown(lazy)
        assert before["active"] is False and before["starts"] == 0
        assert before["detail"] == "not started yet: it starts with the first use"
        with sessions_of(lazy) as make:
            props = make().execute("import sys\n'pandas' in sys.modules")
        assert props["result"] is True, props
        after = shown(lazy)
        assert (after["active"], after["starts"]) == (True, 1)
