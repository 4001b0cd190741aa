"""Language standards as variants, Java's entry class, the memory keys of VM runtimes and a
compile's scratch folders: loaded from the runtime files, checked with the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtimes import Registry, RuntimeConfigError, load_runtime, load_runtimes
from runtimes.compile_cache import compile_key
from runtimes.entry import EntryPoint, find_entry
from runtimes.execution import _expand, collect_outputs

REGISTRY = Registry(load_runtimes())
MiB = 1 << 20
VARIANTS = """
name = "cc"
source_file = "main.c"
read_paths = ["/usr", "/lib"]
compile_sources = ["*.c"]
[executables]
gcc = ["/usr/bin/gcc"]
[version]
argv = ["{gcc}", "-dumpfullversion"]
[compile]
argv = ["{gcc}", "{variant...}", "-o", "main", "{sources...}"]
[run]
argv = ["{workdir}/main"]
[selftest]
code = "int main(void){return 0;}"
[[variants]]
name = "cc17"
aliases = ["c17x"]
flags = ["-std=gnu17"]
[[variants]]
name = "cc11"
flags = ["-std=gnu11", "-O1"]
"""


def test_variants_are_runtimes_that_differ_in_their_flags(tmp_path: Path) -> None:
    path = tmp_path / "cc.toml"
    path.write_text(VARIANTS)
    default, c11 = load_runtimes(tmp_path)
    assert (default.name, default.aliases, default.variant) == ("cc", ("cc17", "c17x"), "cc17")
    assert (c11.name, c11.aliases, c11.variant, c11.family) == ("cc11", (), "cc11", ("cc",))
    assert default.compile is not None and c11.compile is not None
    assert default.compile.argv == ("{gcc}", "-std=gnu17", "-o", "main", "{sources...}")
    assert c11.compile.argv == ("{gcc}", "-std=gnu11", "-O1", "-o", "main", "{sources...}")
    assert load_runtime(path) == default
    # The flags are part of what names a compile: the same sources are two cache entries.
    files = [("main.c", b"int main(void){return 0;}")]
    assert compile_key(default, files, "main.c") != compile_key(c11, files, "main.c")


def test_the_builtin_standards() -> None:
    cpp, cpp20, cpp23 = (REGISTRY.find(name) for name in ("cpp", "cpp20", "c++23"))
    assert REGISTRY.find("cpp17") is cpp and REGISTRY.find("c++17") is cpp
    assert [rt.compile.argv[1] for rt in (cpp, cpp20, cpp23) if rt.compile] == [
        "-std=gnu++17", "-std=gnu++20", "-std=gnu++23"]
    # Each precompiles its headers with its own -std: g++ ignores a .gch of another standard.
    assert [rt.compile.precompiled.argv[1] for rt in (cpp, cpp20, cpp23)
            if rt.compile and rt.compile.precompiled] == [
        "-std=gnu++17", "-std=gnu++20", "-std=gnu++23"]
    c, c11 = REGISTRY.find("c"), REGISTRY.find("c11")
    assert REGISTRY.find("c17") is c and REGISTRY.find("gcc") is c
    assert (c.variant, c11.variant, c11.family) == ("c17", "c11", ("c", "gcc"))


@pytest.mark.parametrize(("old", "new", "message"), [
    ('"{variant...}", ', "", "variants: need {variant...} in compile.argv"),
    ('aliases = ["c17x"]', 'aliases = ["cc"]', "variants[0].aliases: 'cc' is already a name"),
    ('name = "cc11"', 'name = "cc17"', "variants[1].name: 'cc17' is already a name"),
    ('flags = ["-std=gnu17"]', 'flags = "-std=gnu17"', "variants[0].flags: must be a list"),
    ('[[variants]]\nname = "cc11"', '[[variants]]\nname = "cc11"\nstd = 1',
     "variants[1].std: unknown key"),
    ('argv = ["{workdir}/main"]', 'argv = ["{workdir}/main", "{variant...}"]',
     "run.argv[1]: {variant...} is for the compile only"),
    ('[run]', '[run]\naddress_space = "no"', "run.address_space: must be true or false"),
    ('[run]', '[run]\nheap_reserve_bytes = -1', "run.heap_reserve_bytes: must be a whole number"),
    ('[run]', '[run]\nscratch = ["../x"]', "run.scratch[0]:"),
    ('[run]', '[entry]\nclass_pattern = "x"\nmain_pattern = "m"\npackage_pattern = "(p)"\n[run]',
     "entry.class_pattern: needs a group"),
])
def test_mistakes_name_file_and_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in VARIANTS
    path = tmp_path / "cc.toml"
    path.write_text(VARIANTS.replace(old, new, 1))
    with pytest.raises(RuntimeConfigError) as caught:
        load_runtime(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_variants_without_the_placeholder_need_none(tmp_path: Path) -> None:
    text = VARIANTS.split("[[variants]]")[0].replace('"{variant...}", ', "")
    (tmp_path / "cc.toml").write_text(text.replace('"-o"', '"{variant...}", "-o"'))
    with pytest.raises(RuntimeConfigError, match="variants: are needed when compile.argv uses"):
        load_runtimes(tmp_path)


JAVA = REGISTRY.find("java")
SOLUTION = b"import java.util.*;\n\npublic final class Solution {\n    public static void " \
           b"main(String[] args) {}\n}\n"


@pytest.mark.parametrize(("sources", "main", "found"), [
    # A one-file request arrives as Main.java whatever its class is called.
    ([("Main.java", SOLUTION)], "Main.java",
     EntryPoint("Solution.java", "Solution", {"Main.java": "Solution.java"})),
    ([("Main.java", b"public class Main { public static void main(String[] a) {} }")],
     "Main.java", EntryPoint("Main.java", "Main", {})),
    # The main file has no main: the first source that declares one, in its package.
    ([("util/Lib.java", b"package util;\npublic class Lib {}"),
      ("app/App.java", (b"package app;\npublic class App {\n static public void main(String[] a)"
                       b" {}\n}"))],
     "util/Lib.java", EntryPoint("util/Lib.java", "app.App", {})),
    # Never over another source: javac then says what is wrong.
    ([("Main.java", SOLUTION), ("Solution.java", b"class X {}")], "Main.java",
     EntryPoint("Main.java", "Solution", {})),
    # No public class: the file's own name.
    ([("Main.java", b"class Main { public static void main(String[] a) {} }")], "Main.java",
     EntryPoint("Main.java", "Main", {})),
])
def test_the_entry_class_and_the_file_names_javac_needs(
        sources: list[tuple[str, bytes]], main: str, found: EntryPoint) -> None:
    assert JAVA.entry is not None
    assert find_entry(JAVA.entry, sources, main) == found


def test_limit_placeholders_follow_the_stages_limits() -> None:
    node = REGISTRY.find("node")
    limits = node.run.limits.replace(memory_bytes=256 * MiB)
    argv, _env = _expand(node.run, node, Path("/w"), "main.js", (), ("x",), limits)
    # 256 MiB less the 96 MiB V8 and Node need beside the old generation.
    assert "--max-old-space-size=160" in argv and argv[-2:] == ["main.js", "x"]
    assert not node.run.address_space
    small = node.run.limits.replace(memory_bytes=64 * MiB)
    argv, _env = _expand(node.run, node, Path("/w"), "main.js", (), (), small)
    assert "--max-old-space-size=32" in argv  # never less than half the limit
    java = REGISTRY.find("java")
    argv, _env = _expand(java.run, java, Path("/w"), "Main.java", (), (), limits, "app.App")
    assert {"-Xmx160m", "-Xss64m", "app.App"} <= set(argv)
    go = REGISTRY.find("go")
    _argv, env = _expand(go.run, go, Path("/w"), "main.go", (), (), limits)
    assert env["GOMEMLIMIT"] == "224MiB"


def test_a_compiles_scratch_folders_are_not_kept(tmp_path: Path) -> None:
    (tmp_path / ".cache" / "go-build").mkdir(parents=True)
    (tmp_path / ".cache" / "go-build" / "entry").write_bytes(b"x")
    (tmp_path / "main").write_bytes(b"\x7fELF")
    (tmp_path / "main.go").write_bytes(b"package main")
    produced = collect_outputs(tmp_path, {"main.go"}, (".cache",))
    assert [f.name for f in produced] == ["main"]
