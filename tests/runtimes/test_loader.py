from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from runtimes import (
    BUILTIN_DIR,
    Registry,
    RuntimeConfigError,
    UnknownRuntime,
    load_runtime,
    load_runtimes,
    run_selftest,
)
from sandbox import Limits, Sandbox

GOOD = """
name = "pyalt"
aliases = ["pa"]
source_file = "prog.py"
read_paths = ["/usr", "/lib", "/etc/ld.so.cache"]
[executables]
py = ["/nonexistent/python3", "/usr/bin/python3"]
[version]
argv = ["{py}", "--version"]
[run]
argv = ["{py}", "-u", "{source}", "{args...}"]
env = { GREETING = "hi from {workdir}" }
[run.limits]
wall_timeout_s = 3
[selftest]
code = "import os; print(os.environ['GREETING'].startswith('hi from /'))"
stdout = "True\\n"
"""


def write(folder: Path, text: str, name: str = "alt.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_builtin_runtimes_load_with_real_versions() -> None:
    registry = Registry(load_runtimes())
    python, cpp = registry.find("py3"), registry.find("g++")
    assert python.name == "python" and cpp.name == "c++"
    assert re.fullmatch(r"3\.\d+\.\d+", python.version)
    assert re.fullmatch(r"\d+\.\d+\.\d+", cpp.version)
    assert python.executables["python"].startswith("/")
    with pytest.raises(UnknownRuntime, match="unknown language 'cobol'; available: bash, c, c\\+\\+, "):
        registry.find("cobol")


def test_a_third_runtime_is_one_more_file(tmp_path: Path, sandbox: Sandbox) -> None:
    write(tmp_path / "extra", GOOD)
    registry = Registry(load_runtimes(BUILTIN_DIR, tmp_path / "extra"))
    runtime = registry.find("pa")
    assert runtime.executables["py"] == str(Path("/usr/bin/python3").resolve())
    assert runtime.run.limits.wall_timeout_s == 3
    result = asyncio.run(run_selftest(sandbox, runtime, Limits()))
    assert result.passed, result.detail


@pytest.mark.parametrize(("change", "message"), [
    (("name = \"pyalt\"", "name = 5"), "alt.toml: name: must be a non-empty string"),
    (("source_file = \"prog.py\"", "source_file = \"a/b.py\""), "source_file: must be a plain"),
    (("\"/usr/bin/python3\"]", "\"python3\"]"), "executables.py: 'python3' must be an absolute"),
    (("\"/usr/bin/python3\"]", "\"/nope\"]"), "executables.py: none of /nonexistent/python3, /nope"),
    (("\"{source}\"", "\"{sauce}\""), "run.argv[2]: unknown placeholder {sauce}"),
    (("wall_timeout_s = 3", "wall_timeout_s = -3"), "run.limits.wall_timeout_s: wall_timeout_s must"),
    (("wall_timeout_s = 3", "wall_time = 3"), "run.limits.wall_time: unknown key"),
    (("[selftest]", "[selftest]\nexpected = 1"), "selftest.expected: unknown key"),
    (("argv = [\"{py}\", \"--version\"]", "argv = [\"{py}\", \"-c\", \"print('x')\"]"),
     "version.pattern: no version found"),
    (("[run]", "[rnu]"), "rnu: unknown key"),
    (("read_paths = [\"/usr\", ", "read_paths = ["), "read_paths: covers no folder of executable py"),
    (("\"/usr\", \"/lib\"", "\"usr\", \"/lib\""), "read_paths: 'usr' must be an absolute path"),
    (("read_paths = [\"/usr\", \"/lib\", \"/etc/ld.so.cache\"]", "read_paths = []"),
     "read_paths: must not be empty"),
    (("name = ", "name = = "), "alt.toml: "),
])
def test_mistakes_name_file_and_key(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(RuntimeConfigError) as caught:
        load_runtime(path)
    assert str(caught.value).startswith(str(path))
    assert message in str(caught.value)


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    write(tmp_path, GOOD.replace('aliases = ["pa"]', 'aliases = ["py"]'))
    with pytest.raises(RuntimeConfigError, match="name 'py' is already used by"):
        load_runtimes(BUILTIN_DIR, tmp_path)


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeConfigError, match="no runtime files"):
        load_runtimes(tmp_path)
