"""Warm interpreters: pre-started Python interpreters whose forks run Python scripts.

A fresh ``python OPTIONS main.py`` costs every run ~10 ms of interpreter start, and each module
it imports costs again. A warm interpreter is started once with the same OPTIONS and
environment and with common modules imported; it is a launcher zygote (see launcher/warm.py)
whose launchers, instead of execve, turn their confined program process into what the fresh
interpreter would be at the script's first line, and run the script with the interpreter's
own runner (`-c CODE`: the code, as `python -c` runs it). Confinement is the same: the run
gets the uid, rlimits, no-new-privs, Landlock, seccomp, cgroup and namespaces a fresh one gets,
applied the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Variables the interpreter reads while it starts; a run whose values differ from the warm
# interpreter's cannot be one of its forks. (Others, e.g. HOME, are read later, from the
# environ mapping, which each run gets in full.)
STARTUP_PREFIXES = ("PYTHON", "LC_")
STARTUP_NAMES = ("LANG", "LANGUAGE", "TZ")


def startup_env(env: Mapping[str, str], fixed: Sequence[str] = ()
                ) -> tuple[tuple[str, str], ...]:
    """The part of `env` that shapes an interpreter's start; `fixed`: more names that do (what
    its preloaded modules read when imported, e.g. a BLAS library's thread count)."""
    return tuple(sorted((name, value) for name, value in env.items()
                        if name.startswith(STARTUP_PREFIXES) or name in STARTUP_NAMES
                        or name in fixed))


@dataclass(frozen=True)
class WarmInterpreter:
    """Which warm interpreter: `interpreter` is the argv before the script (the interpreter and
    its options), `env` the startup environment, `preload` the modules it imports first,
    `fixed` the names beyond the usual ones that `env` holds (see `startup_env`)."""

    interpreter: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    preload: tuple[str, ...]
    fixed: tuple[str, ...] = ()

    @classmethod
    def of(cls, interpreter: Sequence[str], env: Mapping[str, str],
           preload: Sequence[str] = (), fixed: Sequence[str] = ()) -> WarmInterpreter:
        if not interpreter:
            raise ValueError("a warm interpreter needs an interpreter to start")
        for name in preload:
            if not name.replace(".", "").replace("_", "").isalnum():
                raise ValueError(f"not a module name: {name!r}")
        fixed = tuple(sorted(set(fixed)))
        return cls(tuple(interpreter), startup_env(env, fixed), tuple(preload), fixed)

    def script_index(self, argv: Sequence[str], env: Mapping[str, str]) -> int | None:
        """Where the script is in `argv` (or `-c` before its code), if this interpreter can run
        it: the same interpreter and options before it, the same startup environment; None
        otherwise."""
        count = len(self.interpreter)
        if len(argv) <= count or tuple(argv[:count]) != self.interpreter:
            return None
        if startup_env(env, self.fixed) != self.env:
            return None
        if argv[count] == "-c":
            return count if len(argv) > count + 1 else None
        if argv[count].startswith("-"):
            return None  # another option (e.g. -m), not a script
        return count
