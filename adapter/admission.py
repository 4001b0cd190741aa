"""Admission of runs: at most N run at once, their memory together inside the service's memory
budget, a bounded number wait, the rest are turned away.

Every run's cgroup (or watchdog) holds it to its own memory limit; admission keeps the sum of
those limits, with what sessions and uploads hold, inside the memory the machine (or the
container's cgroup) leaves the service, so the kernel's OOM killer never has to choose."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from .errors import BadRequest, ServiceBusy

BUDGET_SETTING = "SANDBOX_MEMORY_BUDGET_BYTES"


class Admission:
    def __init__(self, max_running: int, max_waiting: int, memory_budget_bytes: int) -> None:
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.memory_budget_bytes = memory_budget_bytes
        self.running = 0
        self.waiting = 0
        self.reserved_bytes = 0  # memory limits of runs, sessions and uploads admitted now
        self._changed = asyncio.Condition()

    def _check_fits(self, memory_bytes: int) -> None:
        if memory_bytes > self.memory_budget_bytes:
            raise BadRequest(f"{memory_bytes} bytes of memory (the memory limit and the "
                             f"output it may keep) cannot fit the service's memory budget of "
                             f"{self.memory_budget_bytes} bytes ({BUDGET_SETTING})")

    def _room(self, memory_bytes: int) -> bool:
        return self.reserved_bytes + memory_bytes <= self.memory_budget_bytes

    @contextlib.asynccontextmanager
    async def slot(self, memory_bytes: int = 0) -> AsyncIterator[None]:
        """Waits for a free slot and `memory_bytes` of the budget; raises ServiceBusy when the
        waiting line is full, BadRequest when the memory could never fit."""
        self._check_fits(memory_bytes)

        def admissible() -> bool:
            return self.running < self.max_running and self._room(memory_bytes)
        if not admissible() and self.waiting >= self.max_waiting:
            raise ServiceBusy(f"{self.running} runs are in progress and {self.waiting} are "
                              "waiting; retry shortly")
        self.waiting += 1
        try:
            async with self._changed:
                await self._changed.wait_for(admissible)
                self.running += 1
                self.reserved_bytes += memory_bytes
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self.running -= 1
            await self._release(memory_bytes)

    async def _release(self, memory_bytes: int) -> None:
        # Shielded: a cancelled request must still give back what it held.
        async def release() -> None:
            async with self._changed:
                self.reserved_bytes -= memory_bytes
                self._changed.notify_all()
        await asyncio.shield(release())

    def reserve(self, memory_bytes: int, what: str) -> None:
        """Holds `memory_bytes` of the budget for something long-lived (a session's kernel and
        files), without a run slot; raises ServiceBusy when it does not fit now."""
        self._check_fits(memory_bytes)
        if not self._room(memory_bytes):
            raise ServiceBusy(f"the service's memory budget cannot hold {what} now "
                              f"({self.reserved_bytes} of {self.memory_budget_bytes} bytes are "
                              "held); retry shortly", retry_after_s=5)
        self.reserved_bytes += memory_bytes

    async def unreserve(self, memory_bytes: int) -> None:
        """Gives back what `reserve` held; waiting runs may now fit."""
        await self._release(memory_bytes)
