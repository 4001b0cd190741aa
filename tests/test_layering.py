"""Imports go one way only: adapter → runtimes → sandbox; the clients import none of them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from runtimes import load_runtimes

from .utils import REPO

SERVER = {"adapter", "runtimes", "sandbox", "starlette", "uvicorn"}
# The modules of `adapter` that the command line loads whatever the command: none of the server.
COMMAND_LINE = {"adapter", "adapter.__main__", "adapter.version"}
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
             f"             and m not in {sorted(COMMAND_LINE)!r}))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("argv", [["--version"], [], ["serve", "--help"], ["--port", "1"]])
def test_version_help_and_usage_errors_start_without_the_server(argv: list[str]) -> None:
    # What answers without serving must not load the server either (nor start it).
    probe = ("import contextlib, io, sys\nfrom adapter.__main__ import main\n"
             "with contextlib.redirect_stdout(io.StringIO()), "
             "contextlib.redirect_stderr(io.StringIO()):\n"
             f"    try:\n        main({argv!r})\n    except SystemExit:\n        pass\n"
             f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(SERVER)!r}\n"
             f"             and m not in {sorted(COMMAND_LINE)!r}))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


MAX_MODULE_LINES = 400


def _module_imports(path: Path, name: str) -> set[str]:
    """What module `name` (at `path`) imports when it runs: absolute and relative imports, and
    `from M import N` as both M and M.N; not what only the type checker sees."""
    tree = ast.parse(path.read_text())
    checking_only = {id(sub) for node in ast.walk(tree)
                     if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test)
                     for sub in ast.walk(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in checking_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] \
                if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return found


@pytest.mark.parametrize("package", ["adapter", "runtimes", "sandbox", "client"])
def test_no_import_cycle_inside_a_package(package: str) -> None:
    # A module that imports its own importer works only by the order of first import (the
    # jail/layers knot this code once had): every package's modules form a tree of imports.
    paths = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (REPO / package).rglob("*.py")}
    graph = {name: {m for m in _module_imports(path, name)
                    if m in paths and m != name and m != package and not name.startswith(m + ".")}
             for name, path in paths.items()}
    cycles = []

    def visit(name: str, trail: list[str], done: set[str]) -> None:
        for target in sorted(graph[name]):
            if target in trail:
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in done:
                done.add(target)
                visit(target, trail + [target], done)
    for start in sorted(graph):
        visit(start, [start], {start})
    assert cycles == []


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
