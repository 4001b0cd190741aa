"""File names from requests, made safe to create inside a working directory."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from .errors import UnsafeName

MAX_NAME_BYTES = 4096
MAX_COMPONENT_BYTES = 255
PATH_MAX = 4096  # Linux's limit on a whole path, terminating NUL included


def resolve_inside(root: Path, name: str) -> Path:
    """The path `name` names under `root`, refusing anything that could land elsewhere.

    >>> resolve_inside(Path("/w"), "src/./main.cpp")
    PosixPath('/w/src/main.cpp')

    Absolute names, `..` components, NUL characters, empty names and over-long names raise
    `UnsafeName`. Symlinks cannot be involved: names are only used before any program ran.
    """
    if not name or "\0" in name:
        raise UnsafeName("file names must be non-empty and contain no NUL character")
    try:
        encoded = name.encode()
    except UnicodeEncodeError:
        raise UnsafeName("file names must be valid Unicode") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise UnsafeName(f"file names must be at most {MAX_NAME_BYTES} bytes")
    pure = PurePosixPath(name)
    if pure.is_absolute():
        raise UnsafeName(f"file name {name!r} must be relative")
    parts = [part for part in pure.parts if part != "."]
    if not parts:
        raise UnsafeName(f"file name {name!r} names no file")
    for part in parts:
        if part == "..":
            raise UnsafeName(f"file name {name!r} must not contain '..'")
        if len(part.encode()) > MAX_COMPONENT_BYTES:
            raise UnsafeName(f"each part of a file name must be at most {MAX_COMPONENT_BYTES} bytes")
    path = root.joinpath(*parts)
    if len(bytes(path)) >= PATH_MAX:
        # Checked before any folder is made, so a refused name leaves nothing behind.
        raise UnsafeName(f"file name is too long: its path would exceed {PATH_MAX - 1} bytes")
    return path
