"""What each confinement layer costs per run, against the sandbox with every optional layer off.

    .venv/bin/python bench/layers.py [--runs N]

For `/bin/true`, `python3 -c pass` and a `pass` script run by a warm interpreter (forked,
see sandbox.warm), runs N times through `Sandbox.jail()` + `Jail.run` with:
all optional layers off (the baseline: launcher, rlimits, no-new-privs, per-run uid when root),
then each of seccomp, Landlock, tmpfs, netns and cgroups alone, then all of them; prints p50 and p99 in
ms and the p50 ratio against the baseline. Layers the machine lacks are reported and skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox import Limits, Sandbox, SandboxConfig, WarmInterpreter

OPTIONAL = ("seccomp", "landlock", "tmpfs", "netns", "cgroups")
ENV = {"PATH": "/usr/bin:/bin"}
WARM = WarmInterpreter.of(["/usr/bin/python3"], ENV)
PROGRAMS: dict[str, tuple[list[str], WarmInterpreter | None]] = {
    "/bin/true": (["/bin/true"], None),
    "python3 -c pass": (["/usr/bin/python3", "-c", "pass"], None),
    "warm python3 main.py (pass)": (["/usr/bin/python3", "main.py"], WARM),
}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(sandbox: Sandbox, argv: list[str], warm: WarmInterpreter | None,
                  runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        async with sandbox.jail() as jail:
            jail.write_file("main.py", b"pass")
            result = await jail.run(argv, ENV, Limits(), warm=warm)
        times.append((time.perf_counter() - started) * 1000)
        if not result.ok:
            raise SystemExit(f"{argv} failed: {result}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    options = parser.parse_args()
    parent = Path(tempfile.mkdtemp(prefix="bench-layers-", dir="/tmp"))
    parent.chmod(0o711)
    configs: dict[str, dict[str, str]] = {"baseline (all off)": dict.fromkeys(OPTIONAL, "off")}
    for name in OPTIONAL:
        configs[f"{name} only"] = {**dict.fromkeys(OPTIONAL, "off"), name: "auto"}
    configs["all layers"] = dict.fromkeys(OPTIONAL, "auto")
    try:
        for label, (argv, warm) in PROGRAMS.items():
            print(f"\n{label}: {options.runs} runs each")
            print(f"{'configuration':<22}{'p50 ms':>9}{'p99 ms':>9}{'x baseline':>12}")
            baseline = 0.0
            for name, modes in configs.items():
                sandbox = Sandbox(SandboxConfig(parent / "work", **modes))  # type: ignore[arg-type]
                missing = [x.name for x in sandbox.layers.all
                           if x.name in modes and modes[x.name] == "auto" and not x.active]
                if missing:
                    print(f"{name:<22}   (not available here: {', '.join(missing)})")
                    continue
                sandbox.warm_zygote(warm)
                asyncio.run(measure(sandbox, argv, warm, 5))  # warm the page cache
                times = asyncio.run(measure(sandbox, argv, warm, options.runs))
                sandbox.close()
                p50 = statistics.median(times)
                baseline = baseline or p50
                print(f"{name:<22}{p50:>9.2f}{percentile(times, 0.99):>9.2f}"
                      f"{p50 / baseline:>11.2f}x")
    finally:
        shutil.rmtree(parent, ignore_errors=True)


if __name__ == "__main__":
    main()
