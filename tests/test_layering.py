"""Imports go one way only: adapter → runtimes → sandbox; the clients import none of them."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from runtimes import load_runtimes

from .utils import REPO

SERVER = {"adapter", "runtimes", "sandbox", "starlette", "uvicorn"}
FORBIDDEN = {"sandbox": {"runtimes", "adapter", "starlette", "uvicorn"},
             "runtimes": {"adapter", "starlette", "uvicorn"},
             "client": SERVER}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package: str) -> None:
    offenders = []
    for path in (REPO / package).rglob("*.py"):  # sub-packages too (sandbox/launcher/)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names
                          if n.split(".")[0] in FORBIDDEN[package]]
    assert offenders == []


def test_only_the_adapter_reads_the_environment() -> None:
    # Session kernels are programs run inside the sandbox, not part of the service; so is the
    # launcher, which in a warm interpreter's fork gives the program its environment.
    kernels = {runtime.session.kernel for runtime in load_runtimes() if runtime.session}
    launcher = REPO / "sandbox" / "launcher"
    for package in ("sandbox", "runtimes"):
        for path in (REPO / package).rglob("*.py"):
            if path.read_text() not in kernels and launcher not in path.parents:
                assert "os.environ" not in path.read_text(), path


def test_the_clients_load_nothing_of_the_server() -> None:
    # The walk above sees each file's own imports; this sees what they pull in, through any
    # module in between, by importing every client module in a fresh interpreter.
    modules = sorted(f"client.{p.stem}" for p in (REPO / "client").glob("*.py")
                     if p.stem != "__init__")
    probe = (f"import sys\nfor name in {modules!r}: __import__(name)\n"
             f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(SERVER)!r})))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("argv", [["check", "--endpoint", "http://localhost:8080"],
                                  ["grade", "main.py", "--tests", "cases"]])
def test_the_client_commands_start_without_the_server(argv: list[str]) -> None:
    # `sandbox-service check` is what a deployment runs first: it must not pay for (or depend
    # on) loading Starlette and the sandbox; only serving imports them.
    probe = ("import sys\nfrom adapter.__main__ import build_parser\n"
             f"build_parser().parse_args({argv!r})\n"
             f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(SERVER)!r}\n"
             "             and m not in ('adapter', 'adapter.__main__')))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


MAX_MODULE_LINES = 400


def test_a_long_module_says_why_at_its_top() -> None:
    # Past ~400 lines a module usually holds more than one thing: split it, or say in its
    # docstring why not ("Longer than …").
    unexplained = []
    for package in ("adapter", "runtimes", "sandbox", "client"):
        for path in (REPO / package).rglob("*.py"):
            text = path.read_text()
            if text.count("\n") > MAX_MODULE_LINES:
                docstring = ast.get_docstring(ast.parse(text)) or ""
                if "Longer than" not in docstring:
                    unexplained.append(str(path.relative_to(REPO)))
    assert unexplained == []
