"""Imports go one way only: adapter → runtimes → sandbox."""

from __future__ import annotations

import ast

import pytest

from runtimes import load_runtimes

from .utils import REPO

FORBIDDEN = {"sandbox": {"runtimes", "adapter", "starlette", "uvicorn"},
             "runtimes": {"adapter", "starlette", "uvicorn"}}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package: str) -> None:
    offenders = []
    for path in (REPO / package).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names
                          if n.split(".")[0] in FORBIDDEN[package]]
    assert offenders == []


def test_only_the_adapter_reads_the_environment() -> None:
    # Session kernels are programs run inside the sandbox, not part of the service; so is the
    # launcher, which in a warm interpreter's fork gives the program its environment.
    kernels = {runtime.session.kernel for runtime in load_runtimes() if runtime.session}
    programs = {REPO / "sandbox" / "launcher.py"}
    for package in ("sandbox", "runtimes"):
        for path in (REPO / package).glob("*.py"):
            if path.read_text() not in kernels and path not in programs:
                assert "os.environ" not in path.read_text(), path
