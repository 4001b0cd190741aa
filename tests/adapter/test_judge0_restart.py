"""A service on its own SQLite file, killed with a submission in flight and started again on
the same work root, runs that submission again: nothing the queue took is lost with it."""

from __future__ import annotations

import shutil
import time

from adapter.judge0.api import STATE_FOLDER

from ..judge0 import (
    ACCEPTED,
    PROCESSING,
    PYTHON_ONLY,
    claims,
    kill,
    submit,
    wait_finished,
    wait_for_status,
)
from ..utils import make_work_root, run_processes, run_server

# What a replica sharing PostgreSQL would wait before taking a dead one's runs (the default).
REPLICA_TIMEOUT_S = 30


def test_a_submission_in_flight_when_the_service_died_runs_after_a_restart() -> None:
    root = make_work_root()
    # The service's file, in its state folder in the work root (adapter.judge0.api).
    database = f"sqlite:///{root / STATE_FOLDER / 'submissions.sqlite3'}"
    try:
        with run_server(root, PYTHON_ONLY) as crashed:
            running = submit(crashed, "import time; time.sleep(3); print('once more')")["token"]
            wait_for_status(crashed, running, [PROCESSING], timeout_s=30)
            kill(crashed)
            # Its run died with it (the launchers' parent-death signal): the one to come after
            # the restart never runs beside it.
            deadline = time.monotonic() + 5
            while run_processes(crashed.run_uids):
                assert time.monotonic() < deadline, "the killed service's run outlived it"
                time.sleep(0.05)
        assert claims(database, [running]) == {running: (PROCESSING, 1)}
        with run_server(root, PYTHON_ONLY) as restarted:
            started = time.monotonic()
            finished = wait_finished(restarted, running, timeout_s=REPLICA_TIMEOUT_S)
            # No heartbeat had to age: the file is this service's alone, so what it holds
            # Processing at startup was lost, and is queued again at once.
            assert time.monotonic() - started < REPLICA_TIMEOUT_S / 2
        assert finished["status"]["id"] == ACCEPTED, finished
        assert finished["stdout"] == "once more\n"
        assert claims(database, [running]) == {running: (ACCEPTED, 2)}
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)
