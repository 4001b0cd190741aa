"""The loaded runtimes, found by name or alias."""

from __future__ import annotations

from collections.abc import Iterator

from .errors import UnknownRuntime
from .runtime import Runtime


class Registry:
    """Runtimes by every name and alias (exact, case-sensitive, as Piston matches them)."""

    def __init__(self, runtimes: tuple[Runtime, ...]) -> None:
        self.runtimes = runtimes
        self._by_name = {name: runtime for runtime in runtimes for name in runtime.names}

    def __iter__(self) -> Iterator[Runtime]:
        return iter(self.runtimes)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def replace(self, runtime: Runtime) -> None:
        """Puts `runtime` in the place of the one of the same name (a new version of its data,
        such as precompiled headers once they are built)."""
        self.runtimes = tuple(runtime if rt.name == runtime.name else rt for rt in self.runtimes)
        for name in runtime.names:
            self._by_name[name] = runtime

    def find(self, name: str) -> Runtime:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownRuntime(name, self.names()) from None
