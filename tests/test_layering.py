"""Imports go one way only: adapter → runtimes → sandbox."""

from __future__ import annotations

import ast

import pytest

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
    for package in ("sandbox", "runtimes"):
        for path in (REPO / package).glob("*.py"):
            assert "os.environ" not in path.read_text(), path
