"""Runs one argv under confinement and limits, and reports what happened.

Knows nothing of HTTP, wire formats, TOML or languages.
"""

from .cgroup import own_memory_limit_bytes
from .config import Mode, SandboxConfig, layer_modes, parse_mode
from .errors import LaunchError, SandboxError, UnsafeName
from .jail import Jail, Sandbox
from .layers import Layer
from .limits import LIMIT_FIELDS, Limits
from .names import resolve_inside
from .process import OutputCallback, Process, Stream
from .result import Outcome, RunResult
from .service import harden_service
from .warm import WarmInterpreter
from .workdir import private_folder

__all__ = [
    "LIMIT_FIELDS",
    "Jail",
    "LaunchError",
    "Layer",
    "Limits",
    "Mode",
    "Outcome",
    "OutputCallback",
    "Process",
    "RunResult",
    "Sandbox",
    "SandboxConfig",
    "SandboxError",
    "Stream",
    "UnsafeName",
    "WarmInterpreter",
    "harden_service",
    "layer_modes",
    "own_memory_limit_bytes",
    "parse_mode",
    "private_folder",
    "resolve_inside",
]
