"""Language runtimes as data: turns a runtime description plus source files into sandbox runs."""

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
    SourceFile,
    StageEvents,
    check_source_names,
    compile_program,
    effective_limits,
    execute,
    source_files,
    stage_limits,
    warm_interpreter,
)
from .loader import BUILTIN_DIR, load_runtime, load_runtimes
from .precompiled import build_precompiled
from .registry import Registry, SelfTestResult, run_selftest
from .runtime import Runtime, SelfTest, SessionStage, Stage
from .session import CellResult, InterpreterSession

__all__ = [
    "BUILTIN_DIR",
    "CacheStats",
    "CellResult",
    "CompileCache",
    "CompileCacheError",
    "Compiled",
    "Execution",
    "InterpreterSession",
    "ProducedFile",
    "Registry",
    "ReservedSourceName",
    "Runtime",
    "RuntimeConfigError",
    "RuntimesError",
    "SelfTest",
    "SelfTestResult",
    "SessionStage",
    "SourceFile",
    "Stage",
    "StageEvents",
    "UnknownRuntime",
    "build_precompiled",
    "cache_exposure",
    "check_source_names",
    "compile_program",
    "effective_limits",
    "execute",
    "load_runtime",
    "load_runtimes",
    "run_selftest",
    "source_files",
    "stage_limits",
    "warm_interpreter",
]
