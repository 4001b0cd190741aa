"""The C library through ctypes, for the syscalls Python does not wrap; loaded once, lazily."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

_ctypes_module: Any = None


def ctypes() -> Any:
    """ctypes, imported once, when a run first needs it. Kept here rather than looked up in
    sys.modules: a warm interpreter removes it from there (programs must not find it), and
    importing it again would cost each run ~2 ms."""
    global _ctypes_module
    if _ctypes_module is None:
        import ctypes

        _ctypes_module = ctypes
    return _ctypes_module


_libc_handle: Any = None


def load() -> Any:
    """The C library, loaded once, when a run first needs it (a zygote loads it for all its
    launchers). CDLL by soname, as find_library would fork ldconfig."""
    global _libc_handle
    if _libc_handle is None:
        module = ctypes()
        _libc_handle = module.CDLL("libc.so.6", use_errno=True)
        _libc_handle.syscall.restype = module.c_long
    return _libc_handle


def c_int(value: int) -> Any:
    return ctypes().c_int(value)


def syscall(libc: Any, what: str, number: int, *args: Any) -> int:
    """A raw syscall; OSError naming `what` when it fails."""
    result = int(libc.syscall(number, *args))
    if result < 0:
        err = ctypes().get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result
