"""The cgroup layer's file protocol: where the service's subtree goes and what each run's cgroup
is given, for v2 (Docker, session pools) against a folder laid out as cgroupfs would be, and
for v1 as this machine has it (see test_memory.py for runs under it)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from sandbox.cgroup import SUBTREE_PREFIX, RunCgroup, find_tree

V2_MOUNTINFO = "30 23 0:26 / {root} rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw\n"
V1_MOUNTINFO = (
    "31 23 0:27 / {root}/memory rw,relatime shared:5 - cgroup cgroup rw,memory\n"
    "32 23 0:28 / {root}/pids rw,relatime shared:6 - cgroup cgroup rw,pids\n")


def fake_v2(root: Path, own: str, controllers: str = "cpu memory pids") -> Path:
    folder = root / own.lstrip("/")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cgroup.controllers").write_text(controllers + "\n")
    (folder / "cgroup.procs").write_text("")
    return folder


def test_v2_subtree_goes_under_the_services_own_cgroup(tmp_path: Path) -> None:
    own = fake_v2(tmp_path, "/docker/abc")
    tree = find_tree("0::/docker/abc\n", V2_MOUNTINFO.format(root=tmp_path))
    (subtree,) = tree.subtrees
    assert tree.version == 2
    assert subtree.parent == own and subtree.name.startswith(f"{SUBTREE_PREFIX}{os.getpid()}-")
    # Controllers handed down to the subtree, and by it to each run's cgroup.
    assert (own / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert (subtree / "cgroup.subtree_control").read_text() == "+memory +pids"

    cgroup = tree.create(256 << 20, 64)
    (folder,) = cgroup.folders
    assert folder.parent == subtree and folder.name.startswith("run-")
    assert {name: (folder / name).read_text() for name in
            ("memory.max", "memory.swap.max", "memory.oom.group", "pids.max")} == {
        "memory.max": str(256 << 20), "memory.swap.max": "0", "memory.oom.group": "1",
        "pids.max": "64"}
    assert cgroup.spec() == {"join": [str(folder / "cgroup.procs")],
                             "peak": str(folder / "memory.peak"),
                             "events": str(folder / "memory.events")}
    # cgroupfs removes a cgroup's files with it; a plain folder needs them gone first.
    for file in folder.iterdir():
        file.unlink()
    assert cgroup.remove()
    assert not folder.exists()


def test_v2_without_memory_and_pids_falls_to_v1_or_says_why(tmp_path: Path) -> None:
    fake_v2(tmp_path, "/", controllers="")
    with pytest.raises(OSError) as raised:
        find_tree("0::/\n", V2_MOUNTINFO.format(root=tmp_path))
    assert "has no memory and pids controllers" in str(raised.value)
    assert "no v1 memory and pids hierarchies" in str(raised.value)


def test_v1_subtrees_go_under_each_hierarchys_own_cgroup(tmp_path: Path) -> None:
    (tmp_path / "memory" / "a" / "b").mkdir(parents=True)
    (tmp_path / "pids").mkdir()
    tree = find_tree("4:memory:/a/b\n8:pids:/\n0::/\n", V1_MOUNTINFO.format(root=tmp_path))
    name = tree.subtrees[0].name
    assert name.startswith(f"{SUBTREE_PREFIX}{os.getpid()}-")
    assert (tree.version, tree.subtrees) == (
        1, (tmp_path / "memory" / "a" / "b" / name, tmp_path / "pids" / name))
    cgroup = tree.create(100 << 20, 8)
    memory, pids = cgroup.folders
    assert (memory / "memory.limit_in_bytes").read_text() == str(100 << 20)
    assert (memory / "memory.memsw.limit_in_bytes").read_text() == str(100 << 20)
    assert (pids / "pids.max").read_text() == "8"
    assert cgroup.spec()["peak"] == str(memory / "memory.max_usage_in_bytes")
    assert cgroup.spec()["events"] == str(memory / "memory.oom_control")


def test_a_dead_services_subtree_is_reclaimed(tmp_path: Path) -> None:
    own = fake_v2(tmp_path, "/x")
    # A pid that cannot be alive (above pid_max).
    stale = own / f"{SUBTREE_PREFIX}{1 << 30}-0123abcd"
    (stale / "run-1").mkdir(parents=True)
    find_tree("0::/x\n", V2_MOUNTINFO.format(root=tmp_path))
    assert not stale.exists()


def test_removing_a_busy_cgroup_kills_what_is_left_then_gives_up_cleanly(
        tmp_path: Path) -> None:
    # A folder rmdir refuses (not empty) stands for a cgroup that stays busy.
    folder = tmp_path / "run-x"
    folder.mkdir()
    (folder / "cgroup.procs").write_text("")
    assert RunCgroup(1, (folder,)).remove() is False
    assert folder.exists()


def test_mountinfo_without_cgroups_says_so() -> None:
    with pytest.raises(OSError) as raised:
        find_tree("0::/\n", "")
    assert raised.value.errno == errno.ENOENT
