"""What a runtime that runs a class rather than a file runs (Java), and the names its sources
must have: javac refuses `public class Solution` in `Main.java`, which is what a one-file
request (`properties.code`) becomes, so that file is compiled as `Solution.java`.

>>> find_entry(java.entry, [("Main.java", b"public class Solution { "
...            b"public static void main(String[] a) {} }")], "Main.java")
EntryPoint(main='Solution.java', name='Solution', renames={'Main.java': 'Solution.java'})
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from .request import SourceFile
from .runtime import Entry, Runtime


@dataclass(frozen=True)
class EntryPoint:
    """Sources to write under another name (old -> new), the main file's name after that, and
    the class to run (`{entry}`)."""

    main: str
    name: str
    renames: Mapping[str, str] = field(default_factory=dict)


def find_entry(entry: Entry, sources: Sequence[tuple[str, bytes]], main: str) -> EntryPoint:
    """The entry of `sources` (name, content pairs): the public class, in its package, of the
    first source declaring a `main`, the main file first; else the main file's own class."""
    names = {name for name, _content in sources}
    renames: dict[str, str] = {}
    classes: dict[str, str] = {}  # new file name -> its class, package included
    with_main: list[str] = []
    suffix = PurePosixPath(main).suffix
    for name, content in sources:
        if PurePosixPath(name).suffix != suffix:
            continue
        text = content.decode(errors="replace")
        found = re.search(entry.class_pattern, text)
        if found is None:
            classes[name] = PurePosixPath(name).stem
            continue
        wanted = str(PurePosixPath(name).with_name(found.group(1) + suffix))
        # Never over another source: javac then says which file holds which class.
        if wanted != name and wanted not in names:
            renames[name] = wanted
            names.add(wanted)
        package = re.search(entry.package_pattern, text)
        qualified = f"{package.group(1)}.{found.group(1)}" if package else found.group(1)
        new_name = renames.get(name, name)
        classes[new_name] = qualified
        if re.search(entry.main_pattern, text):
            with_main.append(new_name)
    new_main = renames.get(main, main)
    chosen = new_main if new_main in with_main or not with_main else with_main[0]
    return EntryPoint(new_main, classes.get(chosen, PurePosixPath(chosen).stem), renames)


def entry_point(runtime: Runtime, files: tuple[SourceFile, ...], main: str
                ) -> tuple[tuple[SourceFile, ...], str, str]:
    """The sources under the names the runtime needs, the main file, and what to run
    (`{entry}`); unchanged for a runtime that runs its main file."""
    if runtime.entry is None:
        return files, main, ""
    found = find_entry(runtime.entry, [(f.name, f.content) for f in files], main)
    renamed = tuple(SourceFile(found.renames.get(f.name, f.name), f.content) for f in files)
    return renamed, found.main, found.name
