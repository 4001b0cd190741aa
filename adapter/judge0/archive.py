"""Judge0's `additional_files`: a zip read into files placed beside the program's source.

    ValueError
     └── ArchiveError   the archive is refused; its message is shown to the client

Nothing is written here: the files are returned, and the runtimes write them inside the run's
working folder like any other source file. Every entry is checked before one byte of it is
decompressed, and the decompressed bytes are counted as they come.
"""

from __future__ import annotations

import io
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Collection, Iterable, Sequence
from typing import IO

from runtimes import SourceFile

# Decompressed bytes asked for at a time: the bound is checked between chunks, so at most this
# much past it is ever held.
CHUNK_BYTES = 64 * 1024
# Linux refuses longer path components (NAME_MAX); refusing them here names the entry instead
# of failing the run when the file is written.
MAX_COMPONENT_BYTES = 255
# Stored and deflated entries only. The stdlib inflates deflate with an output bound per call,
# but decompresses bzip2 and LZMA chunks whole: a few KiB of either can expand to gigabytes in
# memory before any count of ours sees them.
COMPRESSIONS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
# "C:x" or "c:" leading a name: a drive on Windows, where a client may unpack the same archive.
DRIVE = re.compile(r"[A-Za-z]:")
# Everything the stdlib raises on a malformed archive, while reading the directory or an entry.
CORRUPT = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
           ValueError, struct.error, NotImplementedError)


class ArchiveError(ValueError):
    """Why the archive is refused; the message is shown to the client as
    {"additional_files": [message]}."""


def read_archive(data: bytes, *, max_files: int, max_bytes: int,
                 taken: Collection[str] = ()) -> tuple[SourceFile, ...]:
    """The regular files of the zip `data`, named relative to the program's working folder.

    >>> read_archive(zip_of({"lib/util.py": b"x = 1\\n"}), max_files=8, max_bytes=1024,
    ...              taken=["main.py"])
    (SourceFile(name='lib/util.py', content=b'x = 1\\n'),)

    Folder entries are skipped (folders are implied by the names). Raises ArchiveError, naming
    the entry, for anything unsafe or over `max_files` files or `max_bytes` decompressed bytes;
    `taken`: names already used (the source file), which no entry may replace.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except CORRUPT as exc:
        raise ArchiveError(f"is not a valid zip archive ({exc})") from None
    with archive:
        entries = [info for info in archive.infolist() if not info.is_dir()]
        check_count(entries, max_files)
        names = [check_entry(info) for info in entries]
        check_collisions(entries, names, taken)
        check_declared_sizes(entries, max_bytes)
        return tuple(read_entries(archive, entries, names, max_bytes))


def check_count(entries: Sequence[zipfile.ZipInfo], max_files: int) -> None:
    # Each file costs an inode, a write and a place in the run's file list.
    if len(entries) > max_files:
        raise ArchiveError(f"has {len(entries)} files, more than the {max_files} allowed")


def check_entry(info: zipfile.ZipInfo) -> str:
    """The entry's name, normalized (`.` components dropped), once its type, encryption,
    compression and name are known to be safe."""
    name = info.orig_filename
    check_type(info, name)
    if info.flag_bits & 0x1:
        # Nobody could give the password, and reading would fail halfway through.
        raise ArchiveError(f"entry {name!r} is encrypted")
    if info.compress_type not in COMPRESSIONS:
        raise ArchiveError(f"entry {name!r} uses an unsupported compression method "
                           f"({info.compress_type}); use stored or deflated")
    return check_name(name)


def check_type(info: zipfile.ZipInfo, name: str) -> None:
    # The Unix mode a zip tool stored; 0 when made elsewhere, which means a regular file. A
    # symlink's content is its target, and a program following it would read or write outside
    # its folder (or the service's files) when unpacked as a link; devices and fifos are never
    # source files.
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise ArchiveError(f"entry {name!r} is a symbolic link; only regular files are accepted")
    if kind not in (0, stat.S_IFREG):
        raise ArchiveError(f"entry {name!r} is not a regular file; only regular files are "
                           "accepted")


def check_name(name: str) -> str:
    """`name` with `.` components dropped; ArchiveError if it could land outside the working
    folder or be created differently from what it says."""
    # zipfile cuts a name at its first NUL; the raw name is what another tool would see, so a
    # NUL means two tools disagree on which file this is.
    if "\0" in name:
        raise ArchiveError(f"entry {name!r} has a NUL character in its name")
    # A backslash is a separator to Windows tools: `..\\x` climbs out there.
    if "\\" in name:
        raise ArchiveError(f"entry {name!r} has a backslash in its name; use '/'")
    # Absolute names and drive letters are written wherever they point by naive unpackers.
    if name.startswith("/"):
        raise ArchiveError(f"entry {name!r} has an absolute name")
    if DRIVE.match(name):
        raise ArchiveError(f"entry {name!r} starts with a drive letter")
    parts = name.split("/")
    # `a//b` is `a/b` to the file system: two spellings of one file defeat the duplicate check.
    if "" in parts:
        raise ArchiveError(f"entry {name!r} has an empty component in its name")
    # `..` is the classic zip-slip: it climbs out of the working folder.
    if ".." in parts:
        raise ArchiveError(f"entry {name!r} has a '..' component in its name")
    kept = [part for part in parts if part != "."]
    if not kept:
        raise ArchiveError(f"entry {name!r} names no file")
    if any(len(part.encode()) > MAX_COMPONENT_BYTES for part in kept):
        raise ArchiveError(f"entry {name!r} has a name component over {MAX_COMPONENT_BYTES} "
                           "bytes")
    return "/".join(kept)


def check_collisions(entries: Sequence[zipfile.ZipInfo], names: Sequence[str],
                     taken: Iterable[str]) -> None:
    # The runtimes write the files in turn: a second entry of a name would silently replace the
    # first (or the program's source, when it is a taken name), and a file where another
    # entry needs a folder (or a folder where a file is) fails the run halfway through writing.
    files: dict[str, str] = {}    # normalized name → what it is, for messages
    folders: dict[str, str] = {}  # every folder a name implies → the entry implying it
    for name in taken:
        claim(name, "the program's source file", files, folders)
    for info, name in zip(entries, names, strict=True):
        claim(name, f"entry {info.orig_filename!r}", files, folders)


def claim(name: str, what: str, files: dict[str, str], folders: dict[str, str]) -> None:
    name = "/".join(part for part in name.split("/") if part not in ("", "."))
    if name in files:
        raise ArchiveError(f"{what} has the same name as {files[name]}")
    if name in folders:
        raise ArchiveError(f"{what} is a file where {folders[name]} needs a folder")
    parts = name.split("/")
    for depth in range(1, len(parts)):
        folder = "/".join(parts[:depth])
        if folder in files:
            raise ArchiveError(f"{what} needs a folder where {files[folder]} is a file")
        folders.setdefault(folder, what)
    files[name] = what


def check_declared_sizes(entries: Sequence[zipfile.ZipInfo], max_bytes: int) -> None:
    # Refuses an honest big archive before decompressing anything. The declared sizes are only
    # a claim: read_entries counts what really comes out.
    declared = sum(info.file_size for info in entries)
    if declared > max_bytes:
        raise ArchiveError(f"holds {declared} bytes uncompressed, more than the {max_bytes} "
                           "allowed")


def read_entries(archive: zipfile.ZipFile, entries: Sequence[zipfile.ZipInfo],
                 names: Sequence[str], max_bytes: int) -> Iterable[SourceFile]:
    budget = max_bytes
    for info, name in zip(entries, names, strict=True):
        try:
            with archive.open(info) as stream:
                content = read_bounded(stream, budget)
        except CORRUPT as exc:
            raise ArchiveError(f"entry {info.orig_filename!r} is corrupt ({exc})") from None
        if content is None:
            raise ArchiveError(f"entry {info.orig_filename!r} takes the archive over the "
                               f"{max_bytes} bytes allowed uncompressed")
        budget -= len(content)
        yield SourceFile(name, content)


def read_bounded(stream: IO[bytes], budget: int) -> bytes | None:
    """All of `stream`, or None as soon as it gives more than `budget` bytes.

    In chunks, so a zip bomb (or a header lying about its size) costs at most one chunk past
    the bound, never the whole expansion."""
    chunks: list[bytes] = []
    while chunk := stream.read(min(CHUNK_BYTES, budget + 1)):
        budget -= len(chunk)
        if budget < 0:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
