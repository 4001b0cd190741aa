"""Checks of request fields, each naming the JSON path of what is wrong."""

from __future__ import annotations

import math
from typing import Any

from .errors import BadRequest

# execve refuses one argument over 128 KiB and all of them over about 2 MiB (E2BIG).
MAX_ARG_BYTES = 128 * 1024 - 1
MAX_ARGS_BYTES = 1024 * 1024


def require_object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{path} must be an object")
    return value


def require_string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{path} must be a string")
    return value


def optional_string(value: Any, path: str, default: str = "") -> str:
    return default if value is None else require_string(value, path)


def utf8(value: str, path: str) -> bytes:
    """The UTF-8 bytes of a string; JSON can carry lone surrogates, which have none."""
    try:
        return value.encode()
    except UnicodeEncodeError:
        raise BadRequest(f"{path} must be valid Unicode (it has a lone surrogate)") from None


def optional_args(value: Any, path: str) -> tuple[str, ...]:
    """A list of strings usable as program arguments."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BadRequest(f"{path} must be an array of strings")
    total = 0
    for i, arg in enumerate(value):
        if not isinstance(arg, str):
            raise BadRequest(f"{path}[{i}] must be a string")
        if "\0" in arg:
            raise BadRequest(f"{path}[{i}] must not contain a NUL character")
        size = len(utf8(arg, f"{path}[{i}]"))
        if size > MAX_ARG_BYTES:
            raise BadRequest(f"{path}[{i}] is {size} bytes; one argument may have {MAX_ARG_BYTES}")
        total += size + 1
    if total > MAX_ARGS_BYTES:
        raise BadRequest(f"{path} total {total} bytes; the arguments may have {MAX_ARGS_BYTES}")
    return tuple(value)


def optional_positive_integer(value: Any, path: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BadRequest(f"{path} must be a positive integer")
    return value


def optional_positive_number(value: Any, path: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise BadRequest(f"{path} must be a positive number")
    return float(value)
