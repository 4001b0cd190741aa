"""The frames the service and a launcher speak, importable from both sides.

On the launcher's stdin: one SPEC frame (a marshalled dict), then STDIN data, CLOSE_STDIN and
SIGNAL frames; on its stdout: STDOUT and STDERR chunks in arrival order, then one RESULT frame
(a marshalled dict). The launcher's stderr carries only its own diagnostics.
"""

from __future__ import annotations

# The launcher imports this at every start: marshal instead of json (which pulls in re),
# typing only for the type checker. The spec and result are plain dicts from a trusted peer.
import marshal
import math
import os
import select
import struct
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any

HEADER = struct.Struct(">cI")
# service → launcher
SPEC, STDIN, CLOSE_STDIN, SIGNAL = b"S", b"I", b"C", b"K"
# launcher → service
STDOUT, STDERR, RESULT = b"O", b"E", b"R"

CHUNK_BYTES = 65536


def encode_frame(kind: bytes, payload: bytes = b"") -> bytes:
    """One frame: a kind byte, a 4-byte big-endian length, the payload."""
    return HEADER.pack(kind, len(payload)) + payload


class FrameReader:
    """Splits bytes read from a pipe into (kind, payload) frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= HEADER.size:
            kind, length = HEADER.unpack_from(self._buffer)
            if len(self._buffer) < HEADER.size + length:
                break
            frames.append((kind, bytes(self._buffer[HEADER.size:HEADER.size + length])))
            del self._buffer[:HEADER.size + length]
        return frames


def read_spec(reader: FrameReader) -> tuple[dict[str, Any], list[tuple[bytes, bytes]]]:
    """Blocks until the SPEC frame arrived on stdin; returns it and any frames that followed."""
    while True:
        data = os.read(0, CHUNK_BYTES)
        if not data:
            raise SystemExit("launcher: control pipe closed before the spec arrived")
        frames = reader.feed(data)
        if frames:
            kind, payload = frames[0]
            if kind != SPEC:
                raise SystemExit(f"launcher: expected a spec frame, got {kind!r}")
            spec: dict[str, Any] = marshal.loads(payload)
            return spec, frames[1:]


def write_frame(kind: bytes, payload: bytes, deadline: float = math.inf) -> bool:
    """Writes one frame to the service on stdout; False when it took none of it before
    `deadline` (monotonic), so a service that stops reading cannot hold a run past its wall
    clock. A frame once begun is finished whatever the time: a half frame would garble the
    rest."""
    frame = encode_frame(kind, payload)
    data = memoryview(frame)
    while data:
        try:
            written = os.write(1, data)
        except InterruptedError:
            continue
        except BlockingIOError:
            wait_s = None
            if len(data) == len(frame) and deadline != math.inf:
                wait_s = deadline - time.monotonic()
                if wait_s <= 0:
                    return False
            select.select([], [1], [], wait_s)
            continue
        data = data[written:]
    return True
