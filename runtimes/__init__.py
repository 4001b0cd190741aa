"""Language runtimes as data: turns a runtime description plus source files into sandbox runs."""

from .errors import RuntimeConfigError, RuntimesError, UnknownRuntime
from .execution import (
    Execution,
    SourceFile,
    StageEvents,
    effective_limits,
    execute,
    source_files,
    stage_limits,
)
from .loader import BUILTIN_DIR, load_runtime, load_runtimes
from .registry import Registry, SelfTestResult, run_selftest
from .runtime import Runtime, SelfTest, SessionStage, Stage
from .session import CellResult, InterpreterSession

__all__ = [
    "BUILTIN_DIR",
    "CellResult",
    "Execution",
    "InterpreterSession",
    "Registry",
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
    "effective_limits",
    "execute",
    "load_runtime",
    "load_runtimes",
    "run_selftest",
    "source_files",
    "stage_limits",
]
