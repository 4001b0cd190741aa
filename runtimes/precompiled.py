"""Precompiled system headers: built once, then found by every compile of the runtime.

Only system headers are precompiled (the runtime's TOML names them), by the service itself:
no request's code is involved, so this needs no sandbox. The result lives in a folder the
service owns that runs may read (their compiler loads it) but never change: a run that could
replace it would inject code into everyone's programs. So it is used only where runs cannot
write there (per-run uids or Landlock), which the caller decides.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import stat
import subprocess
import tempfile
from pathlib import Path

from .errors import RuntimesError
from .runtime import Runtime

BUILD_TIMEOUT_S = 300


def _system_header(compiler: str, std_flags: list[str], header: str) -> Path:
    """Where the compiler finds `#include <header>`, asked of the compiler itself."""
    found = subprocess.run([compiler, *std_flags, "-x", "c++", "-M", "-"],
                           input=f"#include <{header}>\n", capture_output=True, text=True,
                           timeout=60, env={"PATH": "/usr/bin:/bin"}, check=False)
    for path in re.split(r"[\s\\]+", found.stdout):
        if path.endswith("/" + header):
            return Path(path)
    raise RuntimesError(f"the compiler does not find <{header}>: {found.stderr.strip()[-300:]}")


def build_precompiled(runtime: Runtime, root: Path) -> Runtime:
    """Precompiles the runtime's headers under `root` (reusing an earlier build of the same
    compiler and flags) and returns the runtime with its compile stage pointed at them."""
    stage = runtime.compile
    if stage is None or stage.precompiled is None:
        return runtime
    spec = stage.precompiled
    values = dict(runtime.executables)
    fingerprint = hashlib.sha256(repr((runtime.name, runtime.version, spec.argv,
                                       sorted(values.items()))).encode()).hexdigest()[:16]
    folder = root / f"{runtime.name}-{runtime.version}-{fingerprint}"
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    folder.mkdir(mode=0o755, exist_ok=True)
    os.chmod(root, 0o755)
    os.chmod(folder, 0o755)
    std_flags = [arg for arg in spec.argv if arg.startswith("-std=")]
    for folder_on_path in (root, folder):
        _check_ours(folder_on_path)
    for header in spec.headers:
        output = folder / (header + ".gch")
        if os.path.lexists(output):
            try:
                _check_ours(output)
                continue
            except RuntimesError:
                # Not provably ours and untouched since: built again, never trusted.
                os.unlink(output)
        source = _system_header(spec.argv[0].format(**values), std_flags, header)
        output.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        # Built beside its final name and renamed: a crash leaves no half-written header that a
        # compile would trip over.
        fd, partial = tempfile.mkstemp(dir=output.parent, suffix=".partial")
        os.close(fd)
        try:
            argv = [arg.format(**values, header=source, output=partial) for arg in spec.argv]
            built = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                                   env={"PATH": "/usr/bin:/bin"}, check=False)
            if built.returncode != 0:
                raise RuntimesError(f"precompiling <{header}> failed: "
                                    f"{built.stderr.strip()[-500:]}")
            os.chmod(partial, 0o644)
            os.replace(partial, output)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    env = dict(stage.env)
    env[spec.include_env] = str(folder)
    compile_stage = dataclasses.replace(stage, env=env)
    return dataclasses.replace(runtime, compile=compile_stage,
                               read_paths=(*runtime.read_paths, str(folder)))


def _check_ours(path: Path) -> None:
    """`path` is ours (the service's uid), not a link, and no one else may write to it: what a
    compile loads from here must not have been planted by a run of an earlier, less confined
    service sharing our uid."""
    info = os.lstat(path)
    kind_ok = stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)
    if info.st_uid != os.geteuid() or not kind_ok \
            or info.st_mode & 0o022:
        raise RuntimesError(f"{path} is not the service's own read-only file or folder")
