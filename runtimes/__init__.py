"""Language runtimes as data: turns a runtime description plus source files into sandbox runs.

A wire format talks to one `Runtimes` object (runtimes.installed): it finds a runtime by name,
builds a `RunRequest` against its description and hands it over once, to `execute` or
`compile`.
"""

from .compile_cache import (
    CacheStats,
    CompileCache,
    CompileCacheError,
    Compiled,
    ProducedFile,
    cache_exposure,
)
from .errors import ReservedSourceName, RuntimeConfigError, RuntimesError, UnknownRuntime
from .execution import (
    Execution,
    StageEvents,
    check_source_names,
    compile_program,
    effective_limits,
    execute,
    source_files,
    stage_limits,
    warm_interpreter,
)
from .installed import (
    WARM_SESSIONS,
    CacheStatus,
    Runtimes,
    RuntimeStatus,
    SelfTestResult,
    Status,
    WarmStatus,
    run_selftest,
)
from .loader import BUILTIN_DIR, load_runtime, load_runtimes
from .precompiled import build_precompiled
from .registry import Registry
from .request import RunRequest, SourceFile
from .runtime import Runtime, SelfTest, SessionStage, Stage
from .session import CellResult, InterpreterSession
from .warm import session_warm_interpreter

__all__ = [
    "BUILTIN_DIR",
    "WARM_SESSIONS",
    "CacheStats",
    "CacheStatus",
    "CellResult",
    "CompileCache",
    "CompileCacheError",
    "Compiled",
    "Execution",
    "InterpreterSession",
    "ProducedFile",
    "Registry",
    "ReservedSourceName",
    "RunRequest",
    "Runtime",
    "RuntimeConfigError",
    "RuntimeStatus",
    "Runtimes",
    "RuntimesError",
    "SelfTest",
    "SelfTestResult",
    "SessionStage",
    "SourceFile",
    "Stage",
    "StageEvents",
    "Status",
    "UnknownRuntime",
    "WarmStatus",
    "build_precompiled",
    "cache_exposure",
    "check_source_names",
    "compile_program",
    "effective_limits",
    "execute",
    "load_runtime",
    "load_runtimes",
    "run_selftest",
    "session_warm_interpreter",
    "source_files",
    "stage_limits",
    "warm_interpreter",
]
