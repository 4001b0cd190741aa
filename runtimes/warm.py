"""The warm interpreters of session kernels, and what every warm interpreter starts with.

(A run stage's warm interpreter is `execution.warm_interpreter`: it expands like a run.)
"""

from __future__ import annotations

from collections.abc import Mapping

from sandbox import WarmInterpreter

from .runtime import BASE_ENV, Runtime


def session_warm_interpreter(runtime: Runtime) -> WarmInterpreter | None:
    """The warm interpreter that session kernels of the runtime are forked from, if its
    session has one: the session argv before `-c`, with the session environment."""
    session = runtime.session
    if session is None or session.warm is None:
        return None
    values = {**runtime.executables, "workdir": "/", "kernel": ""}
    argv = [arg.format(**values) for arg in session.argv[:session.argv.index("-c")]]
    env = {name: value.format(workdir="/") for name, value in {**BASE_ENV, **session.env}.items()}
    return WarmInterpreter.of(argv, env, session.warm.preload, fixed_env(session.env))


def fixed_env(env: Mapping[str, str]) -> tuple[str, ...]:
    """The names of a stage's own environment whose values are the same in every run (none
    names the working directory): a warm interpreter starts with them, as its preloaded
    modules read some on import (OpenBLAS its thread count: threads made in the warm
    interpreter are gone in its forks, and it makes them again, as many as it was told)."""
    return tuple(name for name, value in env.items() if "{" not in value)
