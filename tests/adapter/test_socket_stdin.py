"""Stdin sent over Piston's WebSocket faster than the program takes it is not held by the
service: its inbox is bounded (the client is slowed) and so is a socket's stdin in all."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
from websockets.exceptions import ConnectionClosed

from ..utils import Server, serve
from .test_hostile_clients import HEALTH_LATENCY_S, HealthWatch
from .test_piston_socket import NOTIFIED_ERROR, Conversation, conversation, init, is_data

MiB = 1 << 20
# Default of SANDBOX_MAX_SOCKET_STDIN_BYTES.
STDIN_BOUND = 32 * MiB
MAX_RSS_GROWTH = 50 * MiB
NEVER_READS = "import sys, time\nsys.stdout.write('ready\\n')\ntime.sleep(60)\n"
COUNTS_STDIN = "import sys\nprint(len(sys.stdin.buffer.read()))\n"


class Sender:
    """Sends `frames` stdin messages of 1 MiB from a thread, then optionally end-of-file;
    stops quietly when the service closes the connection."""

    def __init__(self, talk: Conversation, frames: int, eof: bool = False) -> None:
        self.talk = talk
        self.frames = frames
        self.eof = eof
        self.sent = 0
        # Random text: the WebSocket's compression would shrink repeated bytes to almost
        # nothing on the wire, and the kernel's buffers would hide any amount of them.
        data = base64.b64encode(os.urandom(MiB * 3 // 4)).decode()
        self.message = json.dumps({"type": "data", "stream": "stdin", "data": data})
        self.thread = threading.Thread(target=self._send, daemon=True)
        self.thread.start()

    def _send(self) -> None:
        try:
            for _ in range(self.frames):
                self.talk.send(self.message)
                self.sent += 1
            if self.eof:
                self.talk.send({"type": "data", "stream": "stdin", "eof": True})
        except (ConnectionClosed, OSError):
            pass


class PeakRss:
    """The highest resident size of process `pid` sampled every 50 ms, in a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.start: int = self.process.memory_info().rss
        self.peak: int = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, int(self.process.memory_info().rss))
            except psutil.NoSuchProcess:
                return  # the service died: the test's own checks say so

    def growth(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak - self.start


@pytest.fixture(scope="module")
def one_slot() -> Iterator[Server]:
    """A service that runs one program at a time, so that a job can be made to wait."""
    with serve({"SANDBOX_MAX_CONCURRENT_RUNS": "1",
                "SANDBOX_MAX_SOCKET_STDIN_BYTES": str(128 * MiB)}) as server:
        yield server


def test_stdin_to_a_program_that_never_reads_is_slowed_or_bounded(server: Server) -> None:
    rss = PeakRss(server.process.pid)
    with HealthWatch(server) as health, conversation(server) as talk:
        talk.send(init("python", NEVER_READS, run_timeout=8000))
        talk.receive_until(is_data("ready\n"))
        sender = Sender(talk, 300)
        messages = talk.rest(timeout=25)
        sender.thread.join(5)
    growth = rss.growth()
    assert growth < MAX_RSS_GROWTH, f"the service grew by {growth / MiB:.0f} MiB"
    if talk.close == NOTIFIED_ERROR:
        errors = [m for m in messages if m["type"] == "error"]
        assert len(errors) == 1
        error = errors[0]
        assert str(STDIN_BOUND) in error["message"]
        assert "SANDBOX_MAX_SOCKET_STDIN_BYTES" in error["message"]
        # Past the bound the service reads no more: what the client got out beyond it
        # went no further than the kernel's socket buffers.
        assert sender.sent < 300
    else:
        # The launcher pushed back too: the client was held until the wall limit ended it,
        # having got out only what the launcher, the service and the socket buffers hold.
        assert talk.close == (4999, "Job Completed")
        assert sender.sent < 50
        assert any(m["type"] == "exit" and m["stage"] == "run" for m in messages)
    assert set(health.statuses) == {200}
    assert max(health.latencies) < HEALTH_LATENCY_S


def test_stdin_for_a_job_still_waiting_is_held_back_then_arrives_whole(
        one_slot: Server) -> None:
    """While the job waits for the slot, the service reads ~1 MiB of its stdin and no more;
    once it runs, every byte reaches the program."""
    frames = 60
    busy = threading.Thread(target=one_slot.post, daemon=True, args=(
        "/python/execute", {"properties": {"code": "import time; time.sleep(4)"}}))
    busy.start()
    time.sleep(0.5)  # the slot is taken
    rss = PeakRss(one_slot.process.pid)
    with conversation(one_slot) as talk:
        talk.send(init("python", COUNTS_STDIN))
        sender = Sender(talk, frames, eof=True)
        time.sleep(2.5)
        sent_while_waiting = sender.sent
        waiting_growth = rss.peak - rss.start
        messages = talk.rest(timeout=20)
    busy.join()
    growth = rss.growth()
    # What was sent but not read sits in the kernel's socket buffers, not in the service.
    assert sent_while_waiting < frames // 2, (sent_while_waiting, waiting_growth / MiB)
    assert waiting_growth < 16 * MiB, f"{waiting_growth / MiB:.0f} MiB while waiting"
    assert growth < MAX_RSS_GROWTH
    assert sender.sent == frames
    assert talk.close == (4999, "Job Completed")
    stdout = "".join(m["data"] for m in messages
                     if m["type"] == "data" and m["stream"] == "stdout")
    assert stdout == f"{frames * MiB}\n"
