"""The Python runtime's warm interpreter, as its TOML describes it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runtimes import (
    Registry,
    RunRequest,
    RuntimeConfigError,
    SourceFile,
    execute,
    load_runtime,
    load_runtimes,
    session_warm_interpreter,
    warm_interpreter,
)
from sandbox import Outcome, Sandbox, SandboxConfig

from ..utils import sandbox_uids
from .test_loader import GOOD, write

REGISTRY = Registry(load_runtimes())
PYTHON = REGISTRY.find("python")
# In a warm interpreter's fork the module frame has a caller, and preloaded modules are there.
PROBE = "import inspect, sys\nprint(len(inspect.stack()) > 1, 'statistics' in sys.modules)"


def run_probe(work_root: Path, warm: bool) -> bytes:
    uids = sandbox_uids()
    sandbox = Sandbox(SandboxConfig(work_root=work_root, uid_first=uids.start,
                                    uid_count=len(uids), warm_interpreters=warm))
    try:
        execution = asyncio.run(execute(sandbox, RunRequest(
            PYTHON, (SourceFile("main.py", PROBE.encode()),), PYTHON.run.limits)))
    finally:
        sandbox.close()
    assert execution.run is not None and execution.run.outcome == Outcome.OK
    return execution.run.stdout


def test_python_runs_in_its_warm_interpreter_with_the_preloaded_modules(work_root: Path) -> None:
    assert run_probe(work_root, warm=True) == b"True True\n"


def test_with_warm_interpreters_off_python_starts_fresh(work_root: Path) -> None:
    assert run_probe(work_root, warm=False) == b"False False\n"


def test_the_warm_interpreter_is_the_run_argv_before_the_script() -> None:
    warm = warm_interpreter(PYTHON)
    assert warm is not None
    assert warm.interpreter == (PYTHON.executables["python"], "-B", "-u", "-s")
    # The run's own fixed environment too: what preloaded modules may read on import.
    assert dict(warm.env) == {"LANG": "C.UTF-8", "PYTHONHASHSEED": "random",
                              "PYTHONIOENCODING": "utf-8", "OPENBLAS_NUM_THREADS": "1",
                              "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                              "NUMEXPR_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    assert "statistics" in warm.preload and "json" in warm.preload
    assert warm_interpreter(REGISTRY.find("c++")) is None


def test_session_kernels_have_a_warm_interpreter_of_their_own() -> None:
    warm = session_warm_interpreter(PYTHON)
    assert warm is not None and warm != warm_interpreter(PYTHON)
    assert warm.interpreter == (PYTHON.executables["python"], "-B", "-u", "-s")
    assert {"IPython.core.interactiveshell", "numpy", "pandas", "matplotlib.pyplot"} <= set(
        warm.preload)
    assert ("OPENBLAS_NUM_THREADS", "1") in warm.env and ("MPLBACKEND", "Agg") in warm.env
    assert session_warm_interpreter(REGISTRY.find("c++")) is None


@pytest.mark.parametrize(("table", "message"), [
    ('[run.warm]\npreload = ["os; import x"]\n', "run.warm.preload: 'os; import x' is not a module"),
    ("[run.warm]\nimports = []\n", "run.warm.imports: unknown key"),
    ('[run.warm]\npreload = "json"\n', "run.warm.preload: must be a list of non-empty strings"),
])
def test_mistakes_in_the_warm_table_name_file_and_key(tmp_path: Path, table: str,
                                                      message: str) -> None:
    path = write(tmp_path, GOOD.replace("[run.limits]", table + "[run.limits]", 1))
    with pytest.raises(RuntimeConfigError, match=message.replace("(", r"\(")):
        load_runtime(path)


def test_warm_needs_the_script_after_the_interpreter(tmp_path: Path) -> None:
    text = GOOD.replace('"{source}", "{args...}"', '"{args...}", "{source}"', 1)
    path = write(tmp_path, text.replace("[run.limits]", "[run.warm]\n[run.limits]", 1))
    with pytest.raises(RuntimeConfigError, match='run.warm: needs an argv with "{source}"'):
        load_runtime(path)


def test_a_runtime_with_a_warm_table_runs_its_selftest_warm(tmp_path: Path,
                                                             sandbox: Sandbox) -> None:
    path = write(tmp_path, GOOD.replace("[run.limits]", '[run.warm]\npreload = ["json"]\n'
                                        "[run.limits]", 1))
    runtime = load_runtime(path)
    warm = warm_interpreter(runtime)
    assert warm is not None and warm.preload == ("json",)
    probe = "import inspect\nprint(len(inspect.stack()) > 1)"
    execution = asyncio.run(execute(sandbox, RunRequest(
        runtime, (SourceFile("prog.py", probe.encode()),), runtime.run.limits)))
    assert execution.run is not None
    expected = b"True\n" if sandbox.config.warm_interpreters else b"False\n"
    assert execution.run.stdout == expected
