from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.identity import UidPool

from ..utils import sandbox_uids


def test_two_pools_never_share_a_uid(tmp_path: Path) -> None:
    first = UidPool(70000, 3, sys.executable, tmp_path)
    second = UidPool(70001, 3, sys.executable, tmp_path)  # overlaps 70001-70002
    taken = [first.acquire(), first.acquire(), first.acquire()]
    assert taken == [70000, 70001, 70002]
    assert second.acquire() == 70003  # 70001 and 70002 are held by the first pool
    first.release(70001, clean=True)
    assert second.acquire() == 70001


def test_released_uids_are_reused_last(tmp_path: Path) -> None:
    pool = UidPool(70000, 3, sys.executable, tmp_path)
    uid = pool.acquire()
    pool.release(uid, clean=True)
    assert [pool.acquire(), pool.acquire(), pool.acquire()] == [70001, 70002, 70000]


@pytest.mark.root
def test_reclaim_kills_what_a_crashed_service_left_and_spares_live_services(
        tmp_path: Path) -> None:
    uids = sandbox_uids()
    orphan_uid, held_uid = uids[-1], uids[-2]
    # Decoys: one as if left by a dead service, one of a live service that holds its uid.
    orphan = subprocess.Popen(["sleep", "60"], user=orphan_uid, group=orphan_uid,
                              extra_groups=[])
    held = subprocess.Popen(["sleep", "60"], user=held_uid, group=held_uid, extra_groups=[])
    try:
        live = UidPool(held_uid, 1, sys.executable, tmp_path)
        assert live.acquire() == held_uid
        pool = UidPool(uids[-2], 2, sys.executable, tmp_path)
        assert pool.reclaim() == [orphan_uid]
        assert orphan.wait(5) == -signal.SIGKILL
        assert held.poll() is None
    finally:
        for decoy in (orphan, held):
            decoy.kill()
            decoy.wait()
