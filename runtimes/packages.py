"""Which Debian packages provide the runtimes' toolchains, read from the runtime files' own
`packages` key: for scripts/install and the image, which installs a chosen subset.

Runs as a plain script (`python runtimes/packages.py c++ java`), with nothing but the
standard library: the image runs it before the service's own dependencies can load.

    python runtimes/packages.py all               every runtime's packages, one per line
    python runtimes/packages.py --prune python c++
        the packages of python and c++, and the other runtime files removed from the folder
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALL = "all"
# Stateful sessions run Python whatever else is served: the service does not start without it.
ALWAYS = "python"


def runtime_packages(folder: Path) -> dict[str, tuple[Path, list[str]]]:
    """Each runtime's name (variants have the file's name), file and packages, unloaded: the
    toolchains need not be installed yet."""
    found = {}
    for path in sorted(folder.glob("*.toml")):
        data = tomllib.loads(path.read_text())
        packages = data.get("packages", [])
        if not isinstance(packages, list) or not all(isinstance(p, str) for p in packages):
            raise ValueError(f"{path}: packages: must be a list of strings")
        found[str(data["name"])] = (path, packages)
    return found


def select(folder: Path, names: Sequence[str], prune: bool = False) -> list[str]:
    """The packages of runtimes `names` (or every one, for `all`); with `prune`, the files of
    the others are removed, so that the service loads only what is installed."""
    known = runtime_packages(folder)
    wanted = set(known) if ALL in names else set(names)
    unknown = sorted(wanted - set(known))
    if unknown:
        raise ValueError(f"unknown runtimes {', '.join(unknown)} (known: {', '.join(known)})")
    if ALWAYS not in wanted:
        raise ValueError(f"{ALWAYS} is always needed: stateful sessions run it")
    if prune:
        for name, (path, _packages) in known.items():
            if name not in wanted:
                path.unlink()
    return sorted({package for name in wanted for package in known[name][1]})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prune", action="store_true",
                        help="remove the runtime files of the runtimes not named")
    parser.add_argument("--folder", type=Path, default=HERE)
    parser.add_argument("names", nargs="+", help=f"runtime names, or {ALL}")
    options = parser.parse_args(argv)
    try:
        packages = select(options.folder, options.names, options.prune)
    except (ValueError, OSError, tomllib.TOMLDecodeError) as exc:
        print(f"runtimes/packages.py: {exc}", file=sys.stderr)
        return 2
    print("\n".join(packages))
    return 0


if __name__ == "__main__":
    sys.exit(main())
