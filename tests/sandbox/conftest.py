"""Fixtures of the sandbox's own tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox import Sandbox, SandboxConfig

from ..utils import sandbox_uids
from .test_warm import WARM


@pytest.fixture
def warm_sandbox(work_root: Path) -> Iterator[Sandbox]:
    """A sandbox with the warm interpreter of test_warm.WARM started."""
    uids = sandbox_uids()
    sandbox = Sandbox(SandboxConfig(work_root=work_root, uid_first=uids.start,
                                    uid_count=len(uids)))
    assert sandbox.warm_zygote(WARM) is not None
    yield sandbox
    sandbox.close()
