"""Jail.create_file: a file written in pieces, as safely as write_file writes it whole."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from sandbox import Sandbox


def test_a_file_created_for_pieces_is_the_jails_and_never_follows_a_link(
        sandbox: Sandbox, tmp_path: Path) -> None:
    target = tmp_path / "outside"
    target.mkdir()

    async def go() -> None:
        async with sandbox.jail() as jail:
            with jail.create_file("sub/piece.bin") as f:
                for piece in (b"one ", b"two ", b"three"):
                    f.write(piece)
            path = jail.path / "sub" / "piece.bin"
            assert path.read_bytes() == b"one two three"
            info = os.stat(path)
            assert stat.S_IMODE(info.st_mode) == 0o600
            assert info.st_uid == (jail.uid if jail.uid is not None else os.geteuid())
            (jail.path / "link").symlink_to(target / "f")
            (jail.path / "folder").symlink_to(target)
            with pytest.raises(FileExistsError):
                jail.create_file("link")
            with pytest.raises(FileExistsError):
                jail.create_file("sub/piece.bin")  # never overwritten
            with pytest.raises(NotADirectoryError):
                jail.create_file("folder/x")
            with pytest.raises(ValueError, match="bits other than the owner's"):
                jail.create_file("x", 0o644)
    asyncio.run(go())
    assert list(target.iterdir()) == []
