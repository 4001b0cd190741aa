"""The service fuzzed against its own `/openapi.json` by schemathesis: generated requests for
every operation, negative ones too, and stateful sequences through the document's links; every
response must conform to what the document says (status codes, schemas, content types,
headers), and none may be a server error.

`positive_data_acceptance` (schema-valid data must be accepted) is the one check left out: some
constraints are not a schema's to state. A zip's entries, whether a node-semver range matches
an installed version, whether a file name is safe, whether a session has a file: the service
answers those with a 4xx that names the field, as documented."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..utils import Server, only_runtimes, serve

EXAMPLES = 12


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[Server]:
    # Python and C only: fuzzing compiles little, and every runtime's self-test costs startup.
    # Sessions end soon after their last cell, so many generated identifiers do not fill the
    # memory budget (a 503 would be a failure of this run, not of the service).
    env = {**only_runtimes("python.toml", "python_kernel.py", "c.toml"),
           "SANDBOX_SESSION_COOLDOWN_S": "2", "SANDBOX_MAX_QUEUED_SUBMISSIONS": "100000",
           "SANDBOX_MAX_QUEUED_RUNS": "1000"}
    with serve(env) as srv:
        yield srv


def test_schemathesis_finds_nothing(fuzzed: Server, tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is a test dependency"
    done = subprocess.run(
        [st, "run", f"{fuzzed.url}/openapi.json", "--checks", "all",
         "--exclude-checks", "positive_data_acceptance", "--max-examples", str(EXAMPLES),
         "--workers", "2", "--seed", "20261203", "--request-timeout", "60",
         "--max-response-time", "60", "--no-color"],
        check=False, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    assert fuzzed.health().status_code == 200
