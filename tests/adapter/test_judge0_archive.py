"""Judge0's additional_files: every refusal with a real zip, and what is accepted comes back whole."""

from __future__ import annotations

import io
import stat
import struct
import time
import zipfile
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.judge0.archive import ArchiveError, read_archive, read_bounded
from runtimes import SourceFile

GiB = 1 << 30
BOMB_BYTES = GiB


def zip_of(files: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED,
           edit: Callable[[zipfile.ZipInfo], None] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            if edit is not None:
                edit(info)
            archive.writestr(info, content)
    return buffer.getvalue()


def read(data: bytes, *, max_files: int = 16, max_bytes: int = 1 << 20,
         taken: tuple[str, ...] = ("main.py",)) -> tuple[SourceFile, ...]:
    return read_archive(data, max_files=max_files, max_bytes=max_bytes, taken=taken)


def refusal(data: bytes, *, max_files: int = 16, max_bytes: int = 1 << 20,
            taken: tuple[str, ...] = ("main.py",)) -> str:
    with pytest.raises(ArchiveError) as caught:
        read(data, max_files=max_files, max_bytes=max_bytes, taken=taken)
    return str(caught.value)


def central_directory(data: bytes) -> Iterator[int]:
    """The offset of each central directory header, found from the end record (the first
    `PK\\1\\2` in the bytes could be inside compressed data)."""
    end = data.rindex(b"PK\x05\x06")
    count, _size, offset = struct.unpack_from("<HII", data, end + 10)
    for _ in range(count):
        assert data[offset:offset + 4] == b"PK\x01\x02"
        yield offset
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, offset + 28)
        offset += 46 + name_len + extra_len + comment_len


def with_declared_sizes(data: bytes, file_size: int) -> bytes:
    """`data` with every entry claiming `file_size` uncompressed bytes in the central directory,
    which is where zipfile reads sizes from."""
    patched = bytearray(data)
    for offset in central_directory(data):
        struct.pack_into("<I", patched, offset + 24, file_size)
    return bytes(patched)


def renamed(data: bytes, old: bytes, new: bytes) -> bytes:
    # Names zipfile will not write (a NUL in them), put in the local and central headers.
    assert len(old) == len(new) and data.count(old) == 2
    return data.replace(old, new)


def test_files_and_sub_folders_are_read() -> None:
    data = zip_of({"input.txt": b"1 2\n", "lib/util.py": b"x = 1\n", "lib/deep/er.h": b"",
                   "./dot/one": b"\0\xff"})
    assert read(data) == (SourceFile("input.txt", b"1 2\n"), SourceFile("lib/util.py", b"x = 1\n"),
                          SourceFile("lib/deep/er.h", b""), SourceFile("dot/one", b"\0\xff"))


def test_folder_entries_are_skipped() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.mkdir("lib")
        archive.writestr("lib/a.txt", b"a")
        archive.mkdir("empty")
    assert read(buffer.getvalue(), max_files=1) == (SourceFile("lib/a.txt", b"a"),)


def test_stored_entries_are_read() -> None:
    assert read(zip_of({"a": b"abc"}, compression=zipfile.ZIP_STORED)) == (SourceFile("a", b"abc"),)


def test_an_empty_archive_gives_no_files() -> None:
    assert read(zip_of({})) == ()


@pytest.mark.parametrize("data", [b"", b"not a zip", b"PK\x03\x04" + b"\0" * 40,
                                  zip_of({"a": b"x" * 100})[:-30]])
def test_what_is_not_a_zip_is_refused(data: bytes) -> None:
    assert refusal(data).startswith("is not a valid zip archive")


def test_corrupt_compressed_data_is_refused() -> None:
    data = bytearray(zip_of({"a.txt": bytes(range(256)) * 64}))
    start = 30 + len("a.txt")  # the first entry's data follows its local header
    data[start + 10:start + 40] = b"\xff" * 30
    assert refusal(bytes(data)).startswith("entry 'a.txt' is corrupt")


def test_symbolic_links_are_refused() -> None:
    def link(info: zipfile.ZipInfo) -> None:
        if info.filename != "passwd":
            return
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16

    data = zip_of({"ok.txt": b"", "passwd": b"/etc/passwd"}, edit=link)
    assert refusal(data) == "entry 'passwd' is a symbolic link; only regular files are accepted"


@pytest.mark.parametrize("kind", [stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK,
                                  stat.S_IFDIR])
def test_other_file_types_are_refused(kind: int) -> None:
    def typed(info: zipfile.ZipInfo) -> None:
        info.external_attr = (kind | 0o644) << 16

    assert refusal(zip_of({"dev": b""}, edit=typed)) == (
        "entry 'dev' is not a regular file; only regular files are accepted")


def test_regular_modes_are_accepted() -> None:
    def executable(info: zipfile.ZipInfo) -> None:
        info.external_attr = (stat.S_IFREG | 0o755) << 16

    assert read(zip_of({"run.sh": b"echo\n"}, edit=executable)) == (SourceFile("run.sh", b"echo\n"),)


@pytest.mark.parametrize(("name", "message"), [
    ("/etc/passwd", "entry '/etc/passwd' has an absolute name"),
    ("../up.txt", "entry '../up.txt' has a '..' component in its name"),
    ("a/../../up.txt", "entry 'a/../../up.txt' has a '..' component in its name"),
    ("a/..", "entry 'a/..' has a '..' component in its name"),
    ("..\\up.txt", "entry '..\\\\up.txt' has a backslash in its name; use '/'"),
    ("a\\b", "entry 'a\\\\b' has a backslash in its name; use '/'"),
    ("C:/Windows/x", "entry 'C:/Windows/x' starts with a drive letter"),
    ("c:x", "entry 'c:x' starts with a drive letter"),
    ("a//b", "entry 'a//b' has an empty component in its name"),
    (".", "entry '.' names no file"),
    ("./.", "entry './.' names no file"),
    ("a" * 256, f"entry {'a' * 256!r} has a name component over 255 bytes"),
    ("d/" + "é" * 128, f"entry {'d/' + 'é' * 128!r} has a name component over 255 bytes"),
])
def test_unsafe_names_are_refused(name: str, message: str) -> None:
    assert refusal(zip_of({name: b"x"})) == message


def test_a_nul_in_a_name_is_refused() -> None:
    # zipfile cuts the name at the NUL ("a"); another unpacker could see "a\0b".
    data = renamed(zip_of({"aXb.txt": b"x"}), b"aXb.txt", b"a\0b.txt")
    assert refusal(data) == "entry 'a\\x00b.txt' has a NUL character in its name"


def test_a_255_byte_component_is_accepted() -> None:
    name = "d/" + "é" * 127 + "a"
    assert read(zip_of({name: b"x"})) == (SourceFile(name, b"x"),)


@pytest.mark.parametrize(("names", "message"), [
    (["a.txt", "./a.txt"], "entry './a.txt' has the same name as entry 'a.txt'"),
    (["x/a.txt", "x/./a.txt"], "entry 'x/./a.txt' has the same name as entry 'x/a.txt'"),
    (["main.py"], "entry 'main.py' has the same name as the program's source file"),
    (["./main.py"], "entry './main.py' has the same name as the program's source file"),
    (["lib", "lib/a.txt"], "entry 'lib/a.txt' needs a folder where entry 'lib' is a file"),
    (["lib/a.txt", "lib"], "entry 'lib' is a file where entry 'lib/a.txt' needs a folder"),
    (["main.py/x"], "entry 'main.py/x' needs a folder where the program's source file is a file"),
    (["a/b/c", "a/b"], "entry 'a/b' is a file where entry 'a/b/c' needs a folder"),
])
def test_colliding_names_are_refused(names: list[str], message: str) -> None:
    # zip_of takes a dict, so the same spelling twice is built by hand below.
    assert refusal(zip_of(dict.fromkeys(names, b"x"))) == message


def test_the_same_name_twice_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", b"first")
        with pytest.warns(UserWarning, match="Duplicate"):
            archive.writestr("a.txt", b"second")
    assert refusal(buffer.getvalue()) == "entry 'a.txt' has the same name as entry 'a.txt'"


def test_a_taken_name_in_a_sub_folder_is_kept_free() -> None:
    assert refusal(zip_of({"src": b"x"}), taken=("src/main.cpp",)) == (
        "entry 'src' is a file where the program's source file needs a folder")


def test_encrypted_entries_are_refused() -> None:
    # zipfile cannot encrypt; the flag in the central directory is what a reader goes by.
    data = zip_of({"secret.txt": b"x"}, compression=zipfile.ZIP_STORED)
    data = bytearray(data)
    for offset in central_directory(bytes(data)):
        struct.pack_into("<H", data, offset + 8, struct.unpack_from("<H", data, offset + 8)[0] | 1)
    assert refusal(bytes(data)) == "entry 'secret.txt' is encrypted"


@pytest.mark.parametrize("compression", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_compressions_decompressed_without_a_bound_are_refused(compression: int) -> None:
    assert refusal(zip_of({"a": b"x"}, compression=compression)) == (
        f"entry 'a' uses an unsupported compression method ({compression}); use stored or "
        "deflated")


def test_more_files_than_allowed_are_refused() -> None:
    data = zip_of({f"f{i}": b"" for i in range(5)})
    assert len(read(data, max_files=5)) == 5
    assert refusal(data, max_files=4) == "has 5 files, more than the 4 allowed"


def test_declared_sizes_over_the_bound_are_refused_early() -> None:
    data = zip_of({f"f{i}": b"x" * 100 for i in range(11)})
    assert len(read(data, max_bytes=1100)) == 11
    assert refusal(data, max_bytes=1099) == "holds 1100 bytes uncompressed, more than the 1099 allowed"


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A 1 GiB entry of zeros deflated to about 1 MiB, written in chunks: never whole in memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive, \
            archive.open("zeros.bin", "w") as entry:
        chunk = bytes(1 << 20)
        for _ in range(BOMB_BYTES // len(chunk)):
            entry.write(chunk)
    return buffer.getvalue()


def test_a_zip_bomb_is_refused_by_its_declared_size(bomb: bytes) -> None:
    assert len(bomb) < 10 << 20
    assert refusal(bomb) == f"holds {BOMB_BYTES} bytes uncompressed, more than the 1048576 allowed"


def test_a_zip_bomb_lying_about_its_size_is_stopped_at_the_bound(bomb: bytes) -> None:
    # The header claims 100 bytes; reading stops there (zipfile's own cut at the declared size,
    # then its CRC check), or at our count: never the gigabyte.
    started = time.monotonic()
    message = refusal(with_declared_sizes(bomb, 100), max_bytes=1000)
    assert message.startswith("entry 'zeros.bin'")
    assert time.monotonic() - started < 2


def test_a_header_lying_upwards_is_refused_early() -> None:
    data = with_declared_sizes(zip_of({"a": b"small"}), 1 << 30)
    assert refusal(data).startswith("holds 1073741824 bytes uncompressed")


def test_decompressed_bytes_are_counted_not_declared() -> None:
    # What zipfile gives beyond the declared size is cut by it; read_bounded is the count that
    # does not rely on that, tried on a stream giving more than its budget.
    assert read_bounded(io.BytesIO(b"x" * 10), 10) == b"x" * 10
    assert read_bounded(io.BytesIO(b"x" * 11), 10) is None
    assert read_bounded(io.BytesIO(b""), 0) == b""
    assert read_bounded(io.BytesIO(b"x"), 0) is None


def test_reading_a_bomb_stops_one_chunk_past_the_bound(bomb: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(bomb)) as archive, archive.open("zeros.bin") as stream:
        assert read_bounded(stream, 1 << 20) is None
        assert stream.tell() <= (1 << 20) + (64 << 10) + 1


# Components safe on their own: no slash, NUL or backslash, not `.` or `..`, no drive prefix,
# at most 255 bytes.
safe_parts = st.text(st.characters(exclude_characters="/\\\0", exclude_categories=["Cs"]),
                     min_size=1, max_size=12).filter(
    lambda part: part not in (".", "..") and len(part.encode()) <= 255)
safe_names = st.lists(safe_parts, min_size=1, max_size=4).map("/".join).filter(
    lambda name: not (len(name) >= 2 and name[1] == ":" and name[0].isascii()
                      and name[0].isalpha()))


def no_collisions(names: list[str]) -> bool:
    folders = {"/".join(name.split("/")[:depth]) for name in names
               for depth in range(1, name.count("/") + 1)}
    return not folders & set(names) and "main.py" not in names and "main.py" not in folders


@given(st.lists(safe_names, max_size=8, unique=True).filter(no_collisions).flatmap(
    lambda names: st.tuples(st.just(names), st.lists(st.binary(max_size=256), min_size=len(names),
                                                     max_size=len(names)))),
       st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
def test_safe_archives_come_back_exactly(drawn: tuple[list[str], list[bytes]],
                                         compression: int) -> None:
    names, contents = drawn
    files = dict(zip(names, contents, strict=True))
    got = read_archive(zip_of(files, compression=compression), max_files=8,
                       max_bytes=8 * 256, taken=["main.py"])
    assert got == tuple(SourceFile(name, content) for name, content in files.items())


@given(st.binary(max_size=512) | st.builds(
    lambda data, at, junk: data[:at] + junk + data[at + len(junk):],
    st.just(zip_of({"a.txt": b"hello " * 50, "b/c": b"x"})), st.integers(0, 400),
    st.binary(min_size=1, max_size=8)))
def test_any_bytes_give_files_or_an_archive_error(data: bytes) -> None:
    try:
        files = read(data)
    except ArchiveError:
        return
    assert all(isinstance(file, SourceFile) for file in files)
