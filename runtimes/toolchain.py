"""What a runtime's toolchain says of itself when the runtime loads: its version, and the
libraries installed for its programs. Both are asked by running a command of the runtime
file's (`[version]`, `[libraries]`), with a fixed, small environment and a timeout."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence

ASK_TIMEOUT_S = 20
ASK_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


class ToolchainError(Exception):
    """The command could not run or said nothing usable; `key` is the runtime file's key
    to blame (`argv` or `pattern`)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _ask(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=ASK_TIMEOUT_S,
                              env=ASK_ENV, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ToolchainError("argv", f"could not run {list(argv)}: {exc}") from exc


def version(argv: Sequence[str], pattern: str) -> str:
    """The version the command prints (its first group of `pattern`, else the whole match)."""
    done = _ask(argv)
    match = re.search(pattern, done.stdout + done.stderr)
    if done.returncode != 0 or match is None:
        raise ToolchainError("pattern", f"no version found in the output of {list(argv)}: "
                             f"{(done.stdout + done.stderr).strip()[:200]!r}")
    return match.group(1) if match.groups() else match.group(0)


def libraries(argv: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """(name, version) of each `name version` line the command prints (a library that is not
    installed is simply not printed)."""
    done = _ask(argv)
    if done.returncode != 0:
        raise ToolchainError("argv", f"{list(argv)} failed: {done.stderr.strip()[-200:]!r}")
    found = []
    for line in done.stdout.splitlines():
        name, _, number = line.strip().partition(" ")
        if name and number:
            found.append((name, number.strip()))
    return tuple(found)
