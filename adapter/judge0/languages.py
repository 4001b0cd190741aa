"""Judge0's language ids, mapped to our runtimes.

Clients choose a language by Judge0's id (the `judge0` SDK turns `PYTHON` into 71 through its
table for the version `/about` reports), so the ids are Judge0 CE 1.13's; the names carry our
toolchains' versions, as a Judge0 server's carry its own. Only ids whose runtime is installed
are listed or accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtimes import Registry, Runtime, UnknownRuntime
from runtimes.runtime import Stage


@dataclass(frozen=True)
class Language:
    id: int
    runtime: str  # our runtime's name
    label: str  # the name before the version, e.g. "C++ (GCC"


# (id, runtime, label): every id Judge0 CE 1.13 gives a language we have. C++ answers to 52 as
# well as 54: the SDK's CPP and CPP_GCC mean 52. C's 75 is Clang in Judge0; here it is GCC too.
LANGUAGES = tuple(Language(*row) for row in (
    (46, "bash", "Bash ("),
    (50, "c", "C (GCC "),
    (52, "c++", "C++ (GCC "),
    (54, "c++", "C++ (GCC "),
    (60, "go", "Go ("),
    (62, "java", "Java (OpenJDK "),
    (63, "javascript", "JavaScript (Node.js "),
    (71, "python", "Python ("),
    (73, "rust", "Rust ("),
    (75, "c", "C (GCC "),
))


class Languages:
    """The ids this service serves, each with its runtime."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.runtimes: dict[int, tuple[Language, Runtime]] = {}
        for language in LANGUAGES:
            try:
                self.runtimes[language.id] = (language, registry.find(language.runtime))
            except UnknownRuntime:
                continue

    def __contains__(self, language_id: object) -> bool:
        return language_id in self.runtimes

    def runtime(self, language_id: int) -> Runtime:
        return self.runtimes[language_id][1]

    def with_options(self, language_id: int, options: str | None) -> Runtime:
        """The runtime for Judge0's `compiler_options`: there are no free-form compiler flags
        here (a flag can read files, load plugins or write where it likes), but a `-std=`
        naming one of the runtime's standards chooses that standard, in its GNU dialect as
        the runtime compiles it (`-std=c++20` and `-std=gnu++20` alike), and the flags the
        runtime already passes are accepted. Raises ValueError saying what is accepted."""
        runtime = self.runtime(language_id)
        words = (options or "").split()
        if not words:
            return runtime
        standards = {}
        for candidate in self.registry:
            if candidate is runtime or runtime.name in candidate.family:
                flag = _standard_flag(candidate)
                if flag is not None:
                    standards[flag] = candidate
                    standards[flag.replace("=gnu", "=c", 1)] = candidate
        chosen = runtime
        passed = set(runtime.compile.argv) if runtime.compile is not None else set()
        for word in words:
            if word in standards:
                chosen = standards[word]
            elif word not in passed or word.startswith("{"):
                accepted = sorted(flag for flag in standards if "=gnu" in flag)
                raise ValueError(
                    f"{word!r} is not accepted: only -std= naming one of "
                    f"{', '.join(accepted) or 'no standards (this language has none)'} "
                    "is (or its -std=c… spelling)")
        return chosen

    def name(self, language_id: int) -> str:
        language, runtime = self.runtimes[language_id]
        return f"{language.label}{runtime.version})"

    def listed(self) -> list[dict[str, object]]:
        """`GET /languages`: id and name, by id."""
        return [{"id": language_id, "name": self.name(language_id)}
                for language_id in sorted(self.runtimes)]

    def detail(self, language_id: int) -> dict[str, object]:
        """`GET /languages/{id}`: its source file and, as text, how it is compiled and run."""
        runtime = self.runtime(language_id)
        return {"id": language_id, "name": self.name(language_id), "is_archived": False,
                "source_file": runtime.source_file,
                "compile_cmd": (None if runtime.compile is None
                                else command_text(runtime.compile, runtime)),
                "run_cmd": command_text(runtime.run, runtime)}


def _standard_flag(runtime: Runtime) -> str | None:
    if runtime.compile is None:
        return None
    return next((arg for arg in runtime.compile.argv if arg.startswith("-std=")), None)


def command_text(stage: Stage, runtime: Runtime) -> str:
    """A stage's argv as a line to read (not to run): executables resolved, the sources as the
    source file, the working folder as `.`, the program's arguments left out."""
    values = {**runtime.executables, "workdir": ".", "source": runtime.source_file,
              "entry": "Main", "memory_mb": "{memory_mb}", "heap_mb": "{heap_mb}",
              "stack_mb": "{stack_mb}"}
    words = []
    for arg in stage.argv:
        if arg == "{args...}":
            continue
        words.append(runtime.source_file if arg == "{sources...}" else arg.format(**values))
    return " ".join(words)
