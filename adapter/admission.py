"""Admission of runs: at most N run at once, a bounded number wait, the rest are turned away."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from .errors import ServiceBusy


class Admission:
    def __init__(self, max_running: int, max_waiting: int) -> None:
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.running = 0
        self.waiting = 0
        self._slots = asyncio.Semaphore(max_running)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Waits for a free slot; raises ServiceBusy when the waiting line is full."""
        if self._slots.locked() and self.waiting >= self.max_waiting:
            raise ServiceBusy(f"{self.running} runs are in progress and {self.waiting} are "
                              "waiting; retry shortly")
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self._slots.release()
