"""What preloading numpy in the warm interpreter of plain Python runs would cost and bring:
the same service twice, with python.toml's preload as it is and with numpy added, each
measured for `print(1)` and `import numpy` through POST /python/execute and for the warm
interpreter's resident memory (GET /).

    .venv/bin/python bench/warm_preload.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import httpx
from service import percentile, start_service, timed

RUNTIMES = Path(__file__).resolve().parent.parent / "runtimes"


def runtimes_with(work: Path, extra: list[str]) -> Path:
    """A runtimes folder whose python.toml preloads `extra` too (the other files unchanged)."""
    folder = work / "runtimes"
    shutil.copytree(RUNTIMES, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    shutil.copy(RUNTIMES / "python_kernel.py", folder)
    toml = folder / "python.toml"
    text = toml.read_text()
    added = "".join(f'"{name}", ' for name in extra)
    toml.write_text(text.replace('preload = ["math", ', f'preload = [{added}"math", ', 1))
    return folder


def measure(work: Path, extra: list[str], runs: int) -> dict[str, float]:
    proc, url = start_service(work, {"SANDBOX_RUNTIMES_DIRS": str(runtimes_with(work, extra)),
                                     "SANDBOX_WARM_SESSIONS": "off"})
    try:
        client = httpx.Client(base_url=url, timeout=60)

        def run(code: str) -> None:
            props = client.post("/python/execute", json={"properties": {"code": code}}).json()
            assert props["properties"]["stdout"] == "1\n", props

        run("print(1)")  # the page cache
        hello = timed(lambda: run("print(1)"), runs)
        numpy = timed(lambda: run("import numpy\nprint(1)"), runs)
        status = client.get("/").json()
        python = next(r for r in status["runtimes"] if r["language"] == "python")
        return {"print p50": statistics.median(hello), "print p99": percentile(hello, 0.99),
                "numpy p50": statistics.median(numpy), "numpy p99": percentile(numpy, 0.99),
                "rss MiB": python["warmInterpreter"]["residentBytes"] / (1 << 20)}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    options = parser.parse_args()
    rows = {}
    for name, extra in (("preload as in python.toml", []), ("with numpy preloaded", ["numpy"])):
        work = Path(tempfile.mkdtemp(prefix="sandbox-bench-", dir="/tmp"))
        os.chmod(work, 0o711)
        try:
            rows[name] = measure(work, extra, options.runs)
        finally:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    print(f"{os.cpu_count()} CPUs, {options.runs} samples a figure, ms\n")
    columns = ["print p50", "print p99", "numpy p50", "numpy p99", "rss MiB"]
    print(f"{'warm interpreter':<28}" + "".join(f"{c:>11}" for c in columns))
    for name, figures in rows.items():
        print(f"{name:<28}" + "".join(f"{figures[c]:11.1f}" for c in columns))


if __name__ == "__main__":
    main()
