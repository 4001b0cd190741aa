"""The service's configuration: one frozen `Settings`, read once from the environment.

Every variable has the prefix SANDBOX_ except HOST and PORT, which hosting platforms set.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from runtimes import WARM_SESSIONS
from sandbox import Limits, Mode, SandboxConfig, layer_modes, parse_mode

MiB = 1024 * 1024
T = TypeVar("T")
ROOT_COMPILE_CACHE_DIR = Path("/var/cache/sandbox-service/compiled")


class SettingsError(ValueError):
    """A setting is malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8080
    log_level: str = "info"
    work_root: Path = Path("/tmp/sandbox-service")
    # Confinement layers: auto (when the machine allows) | on (required) | off; every field
    # whose default is a Mode is one, passed to SandboxConfig's field of the same name.
    per_run_uid: Mode = Mode.AUTO
    seccomp: Mode = Mode.AUTO
    landlock: Mode = Mode.AUTO
    tmpfs: Mode = Mode.AUTO
    netns: Mode = Mode.AUTO
    mntns: Mode = Mode.AUTO
    cgroups: Mode = Mode.AUTO
    # Launchers forked from a pre-started one (~20 ms less per run); false starts each afresh.
    fork_launchers: bool = True
    # Python runs forked from a warm interpreter with common modules imported (~10 ms and more
    # less per run); false starts each run's interpreter afresh.
    warm_python: bool = True
    # Session kernels forked from a warm interpreter with IPython, numpy, pandas and matplotlib
    # imported (a first cell ~1 s sooner): started at startup, lazy (with the first session)
    # or off. Its memory (~110 MiB resident) is the service's, not the sessions': the budget
    # counts it as `warm_sessions_bytes` unless it is off (or warm_python is).
    warm_sessions: str = "startup"
    warm_sessions_bytes: int = 128 * MiB
    uid_first: int = 60000
    uid_count: int = 1000
    runtimes_dirs: tuple[Path, ...] = ()  # empty: the built-in runtimes
    max_concurrent_runs: int = max(1, os.cpu_count() or 1)
    max_queued_runs: int = 64
    # What runs' memory limits, sessions and uploads may hold together; None: the limit of the
    # cgroup the service is in (a container's), else the memory available at startup, less
    # `memory_reserve_bytes` for the service itself.
    memory_budget_bytes: int | None = None
    memory_reserve_bytes: int = 256 * MiB
    max_body_bytes: int = 10 * MiB
    # Code-interpreter sessions (POST /code/execute with an identifier, /executions, /files).
    session_cooldown_s: float = 300.0  # idle this long, a session ends with its files
    session_max_lifetime_s: float = 3600.0  # wall and CPU bound of one session's kernel
    max_sessions: int = 64
    max_upload_bytes: int = 128 * MiB
    # Uploads streaming into sessions at once (each holds its session and a disk's bandwidth).
    max_uploads_in_flight: int = 8
    # HTTP clients: a request head must arrive within this of the connection being ready for
    # one, and a body may pause this long at most; past either the connection is closed.
    http_head_timeout_s: float = 10.0
    http_body_idle_timeout_s: float = 30.0
    # Open connections at once (lowered to what RLIMIT_NOFILE leaves); one past it gets a 503.
    max_connections: int = 4096
    # Stdin one Piston WebSocket may send in all; past it the socket ends with an error.
    max_socket_stdin_bytes: int = 32 * MiB
    # On SIGTERM: how long in-flight requests may take to finish before their runs are killed.
    shutdown_grace_s: float = 30.0
    # Ceilings: a request may lower any limit, and raise one up to here, never beyond.
    max_wall_timeout_s: float = 60.0
    max_cpu_time_s: float = 60.0
    max_memory_bytes: int = 2048 * MiB
    max_stack_bytes: int = 256 * MiB
    max_processes: int = 256
    max_open_files: int = 1024
    max_file_bytes: int = 256 * MiB
    # Kept of stdout, and separately of stderr, at most: a run keeps its runtime's default
    # (1 MiB) unless its request asks for more, which a grader's few MB of right output need.
    max_output_bytes: int = 16 * MiB
    # What one request's working directory may hold (source, compiler output, program files).
    max_disk_bytes: int = 256 * MiB
    max_disk_files: int = 10000
    # Compiled programs kept on disk (None: the default folder for this uid); 0 bytes: none.
    compile_cache_dir: Path | None = None
    compile_cache_bytes: int = 256 * MiB
    # Precompiled system headers (<bits/stdc++.h>), built at startup where runs cannot alter
    # them (per-run uids or Landlock): a folder runs may read. Empty: not built.
    precompiled_dir: Path | None = None
    precompile: bool = True
    # Test cases of one POST /batch request.
    max_batch_cases: int = 1000
    # Judge0's submissions: where they are kept (empty: a SQLite file in
    # `<work_root>/submissions/`; postgresql://user:password@host/db for replicas sharing one queue),
    # how many may wait, how many finished ones are kept and for how long, at most.
    database_url: str = ""
    max_queued_submissions: int = 100
    max_submission_batch: int = 20
    submissions_kept: int = 10000
    submissions_max_age_s: float = 86400.0
    # Replicas sharing a database: how often each says it is alive (and recovers what dead
    # ones left, and applies retention), and how long one may go unseen before the
    # submissions it was running are taken as lost and queued again.
    judge0_housekeeping_interval_s: float = 5.0
    judge0_replica_timeout_s: float = 30.0
    # POST /submissions?wait=true (Judge0's ENABLE_WAIT_RESULT).
    judge0_wait: bool = True
    # Judge0's callback_url: off unless turned on; never to loopback or link-local addresses.
    callbacks: bool = False
    callback_timeout_s: float = 5.0
    callback_max_tries: int = 3

    def ceilings(self) -> Limits:
        return Limits(
            wall_timeout_s=self.max_wall_timeout_s, cpu_time_s=self.max_cpu_time_s,
            memory_bytes=self.max_memory_bytes, stack_bytes=self.max_stack_bytes,
            max_processes=self.max_processes, max_open_files=self.max_open_files,
            max_file_bytes=self.max_file_bytes, max_output_bytes=self.max_output_bytes,
        )

    def compile_cache_folder(self) -> Path:
        """Where compiled programs are kept: the configured folder, else a folder of the
        service's own outside the work root (/var/cache as root, the home folder otherwise)."""
        if self.compile_cache_dir is not None:
            return self.compile_cache_dir
        if os.geteuid() == 0:
            return ROOT_COMPILE_CACHE_DIR
        return Path.home() / ".cache" / "sandbox-service" / "compiled"

    def precompiled_folder(self) -> Path:
        if self.precompiled_dir is not None:
            return self.precompiled_dir
        if os.geteuid() == 0:
            return Path("/var/cache/sandbox-service/precompiled")
        return Path.home() / ".cache" / "sandbox-service" / "precompiled"

    def warm_sessions_mode(self) -> str:
        """When session kernels' warm interpreter starts: off with every warm interpreter."""
        return self.warm_sessions if self.warm_python else "off"

    def sandbox_config(self) -> SandboxConfig:
        modes = {name: getattr(self, name) for name in layer_modes(Settings)}
        return SandboxConfig(work_root=self.work_root, **modes,
                             uid_first=self.uid_first, uid_count=self.uid_count,
                             fork_launchers=self.fork_launchers,
                             warm_interpreters=self.warm_python,
                             disk_bytes=self.max_disk_bytes, disk_files=self.max_disk_files)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Reads every setting from `environ` (default: os.environ); `overrides` win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = field.name.upper() if field.name in ("host", "port") else (
                "SANDBOX_" + field.name.upper())
            if name in env:
                values[field.name] = _parse(name, env[name], _PARSERS[field.name])
        values.update(overrides)
        for name in layer_modes(cls):
            if name in values:
                values[name] = _mode(name, values[name])
        settings = cls(**values)
        settings._validate()
        return settings

    def _validate(self) -> None:
        if not 0 < self.port < 65536:
            raise SettingsError("PORT must be between 1 and 65535")
        for name in ("uid_count", "max_concurrent_runs", "max_body_bytes",
                     "session_cooldown_s", "session_max_lifetime_s", "submissions_kept",
                     "submissions_max_age_s", "callback_max_tries"):
            if getattr(self, name) < 1:
                raise SettingsError(f"SANDBOX_{name.upper()} must be at least 1")
        for name in ("http_head_timeout_s", "http_body_idle_timeout_s", "callback_timeout_s",
                     "judge0_housekeeping_interval_s"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"SANDBOX_{name.upper()} must be positive")
        # A live replica must be seen again well within the timeout, or its runs would be
        # taken from it while they run.
        if not self.judge0_replica_timeout_s > 2 * self.judge0_housekeeping_interval_s:
            raise SettingsError("SANDBOX_JUDGE0_REPLICA_TIMEOUT_S must be more than twice "
                                "SANDBOX_JUDGE0_HOUSEKEEPING_INTERVAL_S")
        if self.shutdown_grace_s < 0:
            raise SettingsError("SANDBOX_SHUTDOWN_GRACE_S must not be negative")
        if self.memory_budget_bytes is not None and self.memory_budget_bytes < 1:
            raise SettingsError("SANDBOX_MEMORY_BUDGET_BYTES must be at least 1")
        if self.warm_sessions not in WARM_SESSIONS:
            raise SettingsError(f"SANDBOX_WARM_SESSIONS must be one of "
                                f"{', '.join(WARM_SESSIONS)}")
        if self.warm_sessions_bytes < 0:
            raise SettingsError("SANDBOX_WARM_SESSIONS_BYTES must not be negative")
        if self.memory_reserve_bytes < 0:
            raise SettingsError("SANDBOX_MEMORY_RESERVE_BYTES must not be negative")
        if self.max_queued_runs < 0:
            raise SettingsError("SANDBOX_MAX_QUEUED_RUNS must not be negative")
        if self.compile_cache_bytes < 0:
            raise SettingsError("SANDBOX_COMPILE_CACHE_BYTES must not be negative (0 disables "
                                "the cache)")
        if self.compile_cache_dir is not None and not self.compile_cache_dir.is_absolute():
            raise SettingsError("SANDBOX_COMPILE_CACHE_DIR must be an absolute path")
        if self.database_url and not self.database_url.startswith(
                ("sqlite:///", "postgresql://", "postgres://")):
            raise SettingsError("SANDBOX_DATABASE_URL must be empty (a SQLite file in the "
                                "work root), sqlite:///path or postgresql://…")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name.startswith("max_") and field.name != "max_queued_runs" and value <= 0:
                raise SettingsError(f"SANDBOX_{field.name.upper()} must be positive")


def _parse(name: str, raw: str, parser: Callable[[str], T]) -> T:
    try:
        return parser(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is invalid: {exc}") from None


def _mode(name: str, value: object) -> Mode:
    try:
        return parse_mode(value, f"SANDBOX_{name.upper()}")
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _boolean(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _paths(raw: str) -> tuple[Path, ...]:
    return tuple(Path(p) for p in raw.split(":") if p)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "host": str, "port": int, "log_level": str.lower, "work_root": Path,
    # Layer modes are read lower-cased, then checked by _mode with the overrides.
    **dict.fromkeys(layer_modes(Settings), str.lower), "fork_launchers": _boolean,
    "warm_python": _boolean, "warm_sessions": str.lower, "warm_sessions_bytes": int,
    "precompile": _boolean,
    "precompiled_dir": Path, "max_disk_bytes": int,
    "max_disk_files": int, "shutdown_grace_s": float, "session_cooldown_s": float,
    "session_max_lifetime_s": float, "max_sessions": int, "max_upload_bytes": int,
    "max_uploads_in_flight": int,
    "uid_first": int, "uid_count": int, "runtimes_dirs": _paths, "max_concurrent_runs": int,
    "memory_budget_bytes": int, "memory_reserve_bytes": int,
    "max_queued_runs": int, "max_body_bytes": int, "max_wall_timeout_s": float,
    "max_cpu_time_s": float, "max_memory_bytes": int, "max_stack_bytes": int,
    "max_processes": int, "max_open_files": int, "max_file_bytes": int, "max_output_bytes": int,
    "compile_cache_dir": Path, "compile_cache_bytes": int, "max_batch_cases": int,
    "http_head_timeout_s": float, "http_body_idle_timeout_s": float, "max_connections": int,
    "max_socket_stdin_bytes": int, "database_url": str, "max_queued_submissions": int,
    "max_submission_batch": int, "submissions_kept": int, "submissions_max_age_s": float,
    "judge0_housekeeping_interval_s": float, "judge0_replica_timeout_s": float,
    "judge0_wait": _boolean, "callbacks": _boolean, "callback_timeout_s": float,
    "callback_max_tries": int,
}
