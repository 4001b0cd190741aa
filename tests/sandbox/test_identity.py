from __future__ import annotations

import sys
from pathlib import Path

from sandbox.identity import UidPool


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
