"""What an agent waits for: a new session's first cell, a later cell, and a run that imports
numpy, against the bare interpreter importing the same measured in the same run.

    .venv/bin/python bench/sessions.py [--runs N]

Rows: a new session's first cell `import pandas as pd; pd.DataFrame({"a": [1, 2]}).sum()`
(the kernel's start, IPython, pandas), a second cell `1 + 1`, a plot returned as an image,
a `/python/execute` run of `import numpy`, a shell command in a session, and the floors
`python3 -c 'import pandas'`, `python3 -c 'import numpy'` and `python3 -c pass`, spawned
bare; p50 and p99 in ms and each row's p50 over its floor.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx
from service import percentile, start_service, timed

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "/usr/local/bin/python3"
FIRST_CELL = "import pandas as pd\npd.DataFrame({'a': [1, 2]}).sum()"
PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.show()"
LEGACY = "2024-02-02-preview"
NEWER = "2025-02-02-preview"


def bare(code: str) -> Callable[[], object]:
    env = {"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return lambda: subprocess.run([PYTHON, "-c", code], check=True, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sandbox-bench-", dir="/tmp"))
    os.chmod(work, 0o711)
    proc, url = start_service(work)
    try:
        client = httpx.Client(base_url=url, timeout=120)

        def cell(identifier: str, code: str) -> dict[str, object]:
            reply = client.post("/code/execute", params={"identifier": identifier,
                                                         "api-version": LEGACY},
                                json={"properties": {"code": code}})
            props: dict[str, object] = reply.json()["properties"]
            assert props["status"] == "Success", props
            return props

        def end(identifier: str) -> None:
            client.delete("/session", params={"identifier": identifier})

        def first_cell() -> None:
            identifier = "bench-" + secrets.token_hex(6)
            cell(identifier, FIRST_CELL)
            end(identifier)

        kept = "bench-kept-" + secrets.token_hex(6)
        cell(kept, "import matplotlib.pyplot as plt")

        def plot() -> None:
            result = cell(kept, PLOT)["result"]
            assert isinstance(result, dict) and result["type"] == "image"

        def shell() -> None:
            reply = client.post("/executions", params={"identifier": kept, "api-version": NEWER},
                                json={"shellCommand": "echo 1"}).json()
            assert reply["status"] == "0", reply

        def numpy_run() -> None:
            props = client.post("/python/execute", json={"properties": {
                "code": "import numpy\nprint(1)"}}).json()["properties"]
            assert props["stdout"] == "1\n", props

        first_cell()  # the page cache
        rows: list[tuple[str, list[float], str]] = [
            ("session: first cell (kernel, IPython, pandas)", timed(first_cell, options.runs),
             "pandas"),
            ("session: a later cell (1 + 1)", timed(lambda: cell(kept, "1 + 1"),
                                                    options.runs * 5), "pass"),
            ("session: a plot as an image", timed(plot, options.runs), "pass"),
            ("session: shellCommand echo 1", timed(shell, options.runs * 2), "pass"),
            ("/python/execute: import numpy", timed(numpy_run, options.runs * 2), "numpy"),
        ]
        floors = {"pandas": timed(bare("import pandas"), options.runs),
                  "numpy": timed(bare("import numpy"), options.runs),
                  "pass": timed(bare("pass"), options.runs)}
        end(kept)
        print(f"{os.cpu_count()} CPUs, floors: {PYTHON} -c '<import>' spawned bare\n")
        print(f"{'row':<48}{'p50 ms':>9}{'p99 ms':>9}{'floor p50':>11}{'x floor':>9}")
        for name, floor in floors.items():
            print(f"{'floor: python3 -c ' + repr('import ' + name if name != 'pass' else 'pass'):<48}"
                  f"{statistics.median(floor):9.1f}{percentile(floor, 0.99):9.1f}")
        for name, samples, floor_name in rows:
            p50, floor_p50 = statistics.median(samples), statistics.median(floors[floor_name])
            print(f"{name:<48}{p50:9.1f}{percentile(samples, 0.99):9.1f}{floor_p50:11.1f}"
                  f"{p50 / floor_p50:9.2f}")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
