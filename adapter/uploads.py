"""Multipart uploads streamed into a session's folder as they arrive.

Each `file` part goes to a temporary file in the session's folder, written through the jail
(O_EXCL, O_NOFOLLOW) chunk by chunk, with the session's disk quota counted as it grows; only
when the whole body has arrived and every part fitted are the temporary files renamed to their
names, so an upload is stored whole or not at all. A refused upload (a bad name, past the quota,
the disk full) removes what it wrote at once and reads the rest of the body without keeping it,
to answer with the exact figures. Memory is a chunk or two per upload, whatever its size.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from .errors import BadRequest, PayloadTooLarge, ServiceError
from .sessions import FileInfo, Session

FIELD = "file"
TEMP_PREFIX = ".upload-"
MAX_PARTS = 100  # file parts and other fields, each
MAX_FIRST_LINE_BYTES = 4096  # a boundary is at most 70 characters (RFC 2046)


class _Part:
    """One `file` part being written: its temporary file in the session's folder."""

    def __init__(self, temp: str, file: BinaryIO | None) -> None:
        self.temp = temp
        self.file = file
        self.size = 0


class Upload:
    """The `file` parts of one multipart body, written into a session's folder as they come.

    `open_session` gives the session (started if new) and is called at the first file part,
    so a body without one starts none; the session's lock is held from then to the end."""

    def __init__(self, open_session: Callable[[], Awaitable[Session]], max_bytes: int,
                 max_files: int) -> None:
        self.open_session = open_session
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.session: Session | None = None
        self.parts: dict[str, _Part] = {}  # a name sent twice: the last part wins
        self.current: _Part | None = None
        self.refusal: ServiceError | None = None
        self.over_quota = False
        self.used_bytes = self.used_entries = 0
        self.replaced_bytes = self.replaced_entries = 0
        self.replacing: list[str] = []  # the session's files that parts will replace
        self.fields = 0
        self.finished = False  # the closing boundary was seen
        # What the parser's callbacks saw during one write, handled after it (they cannot wait).
        self.events: list[tuple[str, bytes | None]] = []
        self.header_name = self.header_value = b""
        self.disposition = b""

    # -- the parser's callbacks: they only record ------------------------------------------

    def _callbacks(self) -> dict[str, Callable[..., None]]:
        def on_part_begin() -> None:
            self.disposition = b""

        def on_header_field(data: bytes, start: int, end: int) -> None:
            self.header_name += data[start:end]

        def on_header_value(data: bytes, start: int, end: int) -> None:
            self.header_value += data[start:end]

        def on_header_end() -> None:
            if self.header_name.lower() == b"content-disposition":
                self.disposition = self.header_value
            self.header_name = self.header_value = b""

        def on_headers_finished() -> None:
            _kind, options = parse_options_header(self.disposition)
            name = options.get(b"name")
            filename = options.get(b"filename")
            if name is None:
                raise BadRequest("the upload is not valid multipart/form-data: a part has no "
                                 "name in its Content-Disposition")
            if _decode(name) == FIELD and filename is not None:
                self.events.append(("begin", filename))
            else:
                self.fields += 1
                if self.fields > MAX_PARTS:
                    raise BadRequest(f"the upload has more than {MAX_PARTS} fields")
                self.events.append(("field", None))

        def on_part_data(data: bytes, start: int, end: int) -> None:
            self.events.append(("data", data[start:end]))

        def on_part_end() -> None:
            self.events.append(("end", None))

        def on_end() -> None:
            self.finished = True

        return {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                "on_header_value": on_header_value, "on_header_end": on_header_end,
                "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
                "on_part_end": on_part_end, "on_end": on_end}

    # -- reading the body -------------------------------------------------------------------

    async def receive(self, boundary: bytes, body: AsyncIterator[bytes]) -> list[FileInfo]:
        """Parses `body` and stores its file parts; the stored files' information."""
        parser = MultipartParser(boundary, self._callbacks())  # type: ignore[arg-type]
        try:
            async for chunk in body:
                try:
                    parser.write(chunk)
                except MultipartParseError as exc:
                    raise BadRequest(f"the upload is not valid multipart/form-data: {exc}"
                                     ) from None
                await self._handle_events()
            try:
                parser.finalize()
            except MultipartParseError as exc:
                raise BadRequest(f"the upload is not valid multipart/form-data: {exc}") from None
            await self._handle_events()
            return self._commit()
        finally:
            self._discard()
            if self.session is not None:
                # Used until now: a long upload is not idle time for the cooldown.
                self.session.touch()
                self.session.lock.release()

    async def _handle_events(self) -> None:
        events, self.events = self.events, []
        for kind, data in events:
            if kind == "begin":
                assert data is not None
                await self._begin(_decode(data))
            elif kind == "data" and self.current is not None:
                assert data is not None
                self._write(self.current, data)
            elif kind == "field":
                self.current = None  # not a file: its data is not kept
            elif kind == "end" and self.current is not None:
                if self.current.file is not None:
                    self._close(self.current)
                self.current = None

    async def _begin(self, filename: str) -> None:
        if self.session is None:
            session = await self.open_session()
            # Taken before anything is written: a cell of the session, or its end
            # (DELETE /session, the cooldown), waits for the upload, which never writes into
            # an ended session's folder.
            await session.lock.acquire()
            self.session = session
            session.accessible()
            self.used_bytes, self.used_entries = session.usage()
        session = self.session
        if len(self.parts) >= MAX_PARTS:
            self._refuse(BadRequest(f"the upload has more than {MAX_PARTS} files"))
        if self.refusal is not None or self.over_quota:
            # Refused already: the rest is counted for the reply, never written.
            name = filename
        else:
            try:
                name = session.file_name(filename)
            except BadRequest as exc:
                self._refuse(exc)
                name = filename
        earlier = self.parts.pop(name, None)
        if earlier is not None:
            self._drop(earlier)
        elif self.refusal is None:
            self._count_replaced(session, name)
        if self.refusal is None and not self.over_quota and (
                self.used_entries - self.replaced_entries + len(self.parts) + 1
                > self.max_files):
            self._refuse(PayloadTooLarge(f"a session holds at most {self.max_files} files and "
                                         "folders"))
        part = _Part(TEMP_PREFIX + secrets.token_hex(8), None)
        if self.refusal is None and not self.over_quota:
            part.file = self._create(session, part.temp)
        self.parts[name] = part
        self.current = part

    def _create(self, session: Session, temp: str) -> BinaryIO | None:
        while True:
            try:
                return session.jail.create_file(temp)
            except OSError as exc:
                if exc.errno == errno.ENOSPC and self.replacing:
                    # No inode left beside the files it replaces (see `_write`).
                    self._remove_replaced()
                    continue
                self._refuse(PayloadTooLarge(f"the session's disk is full: {exc.strerror}"))
                return None

    def _count_replaced(self, session: Session, name: str) -> None:
        try:
            found = os.stat(session.jail.path / name, follow_symlinks=False)
        except FileNotFoundError:
            return
        except OSError:
            return  # an unreadable name: it is not replaced, and the rename below says so
        if stat.S_ISDIR(found.st_mode):
            self._refuse(BadRequest(f"{name!r} is a folder in this session, not a file"))
            return
        self.replaced_entries += 1
        self.replaced_bytes += found.st_size if stat.S_ISREG(found.st_mode) else 0
        self.replacing.append(name)

    def _write(self, part: _Part, data: bytes) -> None:
        part.size += len(data)
        if part.file is None:
            return
        if self._new_bytes() > self.max_bytes:
            self.over_quota = True
            self._discard()
            return
        fd = part.file.fileno()  # written unbuffered: after a short write, the rest is known
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view):]
            except OSError as exc:
                if exc.errno == errno.ENOSPC and self.replacing:
                    # Within the quota but not beside the files it replaces (the tmpfs is the
                    # quota's size): those go now, as they would once stored, as an upload
                    # always did; then the write goes on.
                    self._remove_replaced()
                    continue
                # The tmpfs rounds every file up to whole pages, so it can fill up before the
                # byte count says so: what was begun goes, and the caller hears why.
                self._refuse(PayloadTooLarge(f"the session's disk is full: {exc.strerror}"))
                return

    def _remove_replaced(self) -> None:
        assert self.session is not None
        for name in self.replacing:
            with contextlib.suppress(OSError):
                os.unlink(self.session.jail.path / name)  # never follows a link
        self.replacing = []

    def _new_bytes(self) -> int:
        return (self.used_bytes - self.replaced_bytes
                + sum(part.size for part in self.parts.values()))

    def _refuse(self, refusal: ServiceError) -> None:
        """The upload is refused (the first reason is the one given): what it wrote goes now."""
        if self.refusal is None:
            self.refusal = refusal
        self._discard()

    # -- the end ----------------------------------------------------------------------------

    def _commit(self) -> list[FileInfo]:
        if self.over_quota and self.refusal is None:
            self.refusal = PayloadTooLarge(
                f"the session's files would take {self._new_bytes()} bytes; the limit is "
                f"{self.max_bytes}")
        if self.refusal is not None:
            raise self.refusal
        if not self.finished:
            # A body cut short of its closing boundary would store a part cut short too.
            raise BadRequest("the upload is not valid multipart/form-data: it ends before its "
                             "closing boundary")
        if not self.parts:
            raise BadRequest("the upload has no part named file")
        session = self.session
        assert session is not None
        for part in self.parts.values():
            if part.file is not None:
                self._close(part)
        for name, part in self.parts.items():
            try:
                # rename never follows a link at either name: one code planted is replaced.
                os.rename(session.jail.path / part.temp, session.jail.path / name)
            except IsADirectoryError:
                raise BadRequest(f"{name!r} is a folder in this session, not a file") from None
            except OSError as exc:
                raise BadRequest(f"{name!r} could not be stored: {exc.strerror}") from None
            part.temp = ""  # stored: no longer the upload's to remove
        return [session.info(name) for name in self.parts]

    def _close(self, part: _Part) -> None:
        assert part.file is not None
        file, part.file = part.file, None
        try:
            file.close()
        except OSError as exc:
            self._refuse(PayloadTooLarge(f"the session's disk is full: {exc.strerror}"))

    def _drop(self, part: _Part) -> None:
        if part.file is not None:
            with contextlib.suppress(OSError):
                part.file.close()
            part.file = None
        if part.temp and self.session is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.session.jail.path / part.temp)
        part.temp = ""

    def _discard(self) -> None:
        """Removes every temporary file not yet stored (sizes stay counted)."""
        for part in self.parts.values():
            self._drop(part)


def _decode(raw: bytes) -> str:
    """A header value as Starlette reads it: UTF-8, else Latin-1 (which never fails)."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("latin-1")


async def multipart_boundary(content_type: str, body: AsyncIterator[bytes]
                             ) -> tuple[bytes, AsyncIterator[bytes]]:
    """The boundary of a multipart body and the body to parse. Taken from `content_type`
    when it says multipart/form-data; else from the body's first line, when it is `--boundary`
    (one client labels multipart bodies application/json), read without reading more."""
    if content_type.startswith("multipart/form-data"):
        _kind, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if not boundary:
            raise BadRequest("the upload is not valid multipart/form-data: Missing boundary in "
                             "multipart.")
        return boundary, body
    head = b""
    async for chunk in body:
        head += chunk
        if b"\r\n" in head or len(head) > MAX_FIRST_LINE_BYTES:
            break
    first_line = head.split(b"\r\n", 1)[0]
    if (not first_line.startswith(b"--") or len(first_line) < 3
            or len(first_line) > MAX_FIRST_LINE_BYTES):
        raise BadRequest("the upload must be multipart/form-data with a part named file")

    async def whole() -> AsyncIterator[bytes]:
        yield head
        async for chunk in body:
            yield chunk

    return first_line[2:], whole()
