"""The session-pool image without Docker: Dockerfile.session read instruction by instruction, and
the service installed from its wheel the way the image installs it, started with exactly the
image's command and checked with the deployment check."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from .utils import (
    BUILD_COMPLETE,
    IS_ROOT,
    PROJECT_PACKAGES,
    REPO,
    ROOT_MODE,
    UNPRIVILEGED_MODE,
    USER_VENVS,
    Server,
    build_venv,
    cached_build,
    descendants,
    find_base_python,
    free_port,
    make_work_root,
    next_server_uids,
    run_checked,
    run_folders,
    run_processes,
    wait_until_healthy,
)

DOCKERFILE = REPO / "Dockerfile.session"
TINI = Path("/usr/bin/tini")
# uvicorn's graceful shutdown (30 s, adapter/__main__.py) and a margin.
GRACE_S = 35
# Where installed copies of the image's service are kept between sessions, keyed by the sources.
CACHE = USER_VENVS if IS_ROOT else Path.home() / ".cache" / "sandbox-service-tests"


# ---- Dockerfile.session, read ------------------------------------------------------------------

@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    args: str  # the rest of the instruction, continuation lines joined
    stage: int  # index of the FROM it belongs to


def read_instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile: comment lines dropped (inside continuations too),
    lines ending in a backslash joined to the next."""
    instructions: list[Instruction] = []
    stage, pending = -1, ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword.upper(), args.strip(), stage))
    assert not pending, "the Dockerfile ends inside a continuation"
    return instructions


INSTRUCTIONS = read_instructions(DOCKERFILE.read_text())
FINAL_STAGE = max(i.stage for i in INSTRUCTIONS)


def of(keyword: str, stage: int | None = None) -> list[Instruction]:
    return [i for i in INSTRUCTIONS
            if i.keyword == keyword and (stage is None or i.stage == stage)]


def exec_form(args: str) -> list[str]:
    """The argv of an exec-form (JSON) ENTRYPOINT, CMD or HEALTHCHECK CMD."""
    argv = json.loads(args)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), args
    return argv


def split_flags(args: str) -> tuple[dict[str, str], list[str]]:
    """`--from=builder a b` -> ({"from": "builder"}, ["a", "b"])."""
    words = shlex.split(args)
    flags: dict[str, str] = {}
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        flags[name] = value
    return flags, words


def env_of(stage: int) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in of("ENV", stage):
        for word in shlex.split(instruction.args):
            name, _, value = word.partition("=")
            env[name] = value
    return env


def apt_installs(stage: int) -> set[str]:
    """The packages that the stage's RUN instructions `apt-get install`."""
    packages: set[str] = set()
    for instruction in of("RUN", stage):
        for command in instruction.args.split("&&"):
            words = command.split()
            if words[:2] == ["apt-get", "install"]:
                packages |= {w for w in words[2:] if not w.startswith("-")}
    return packages


def image_command() -> list[str]:
    """What the image runs: ENTRYPOINT followed by CMD, both exec form."""
    [entrypoint], [cmd] = of("ENTRYPOINT", FINAL_STAGE), of("CMD", FINAL_STAGE)
    return exec_form(entrypoint.args) + exec_form(cmd.args)


def healthcheck_command() -> list[str]:
    """The argv of the final stage's HEALTHCHECK (options, then CMD in exec form)."""
    [healthcheck] = of("HEALTHCHECK", FINAL_STAGE)
    options, _, command = healthcheck.args.partition(" CMD ")
    assert all(word.startswith("--") for word in options.split()), healthcheck.args
    return exec_form(command)


def local_argv(argv: Sequence[str], bin_dir: Path) -> list[str]:
    """The image's argv for this machine: `tini` is /usr/bin/tini where it is installed, else
    dropped with its options; a bare program name is the one in `bin_dir` (the image's PATH
    puts the service's environment first)."""
    argv = list(argv)
    prefix: list[str] = []
    if argv[0] == "tini":
        end = argv.index("--") + 1 if "--" in argv else 1
        prefix = [str(TINI), *argv[1:end]] if TINI.exists() else []
        argv = argv[end:]
    program = argv[0] if "/" in argv[0] else str(bin_dir / argv[0])
    return [*prefix, program, *argv[1:]]


def test_every_copied_source_is_in_the_repository() -> None:
    copies = of("COPY")
    assert copies
    for instruction in copies:
        flags, words = split_flags(instruction.args)
        if "from" in flags:
            continue
        for source in words[:-1]:
            assert list(REPO.glob(source)), f"COPY {instruction.args}: no {source}"


def test_the_builder_copies_everything_the_wheel_is_built_from() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    # A sub-package (sandbox.launcher) comes with its top-level folder.
    needed = {"pyproject.toml", "README.md",
              *(package.split(".")[0] for package in project["tool"]["setuptools"]["packages"])}
    copied = {source for i in of("COPY", 0) for source in split_flags(i.args)[1][:-1]}
    assert needed <= copied


def test_both_stages_are_debian_python_3_11() -> None:
    assert [i.args.split()[0] for i in of("FROM")] == ["python:3.11-slim-bookworm"] * 2


def test_build_tools_stay_in_the_builder() -> None:
    assert {"gcc", "libcap-dev"} <= apt_installs(0)
    # The toolchains are those the runtime files name (`$packages`, see below), nothing else.
    assert apt_installs(FINAL_STAGE) == {"libcap2", "libseccomp2", "tini", "$packages"}
    # The final stage takes the installed service from the builder, never the source tree.
    for instruction in of("COPY", FINAL_STAGE):
        assert split_flags(instruction.args)[0].get("from") == "builder", instruction.args
    assert any("pip wheel" in i.args for i in of("RUN", 0))


def packages_command() -> list[str]:
    """The final stage's runtimes/packages.py command, as the shell would split it."""
    [run] = [i for i in of("RUN", FINAL_STAGE) if "packages.py" in i.args]
    found = re.search(r'packages="\$\(([^)]*)\)"', run.args)
    assert found, run.args
    return shlex.split(found.group(1))


def test_the_programs_python_gets_ipython_and_the_stack() -> None:
    """Debian's python3-* packages serve /usr/bin/python3; the image's programs run the
    official image's /usr/local/bin/python3, so pip installs them for it."""
    [libraries] = [i.args for i in of("ARG", FINAL_STAGE) if i.args.startswith("PYTHON_LIB")]
    for name in ("numpy", "pandas", "matplotlib", "scipy", "scikit-learn", "sympy"):
        assert f"{name}==" in libraries
    [install] = [i.args for i in of("RUN", FINAL_STAGE) if i.args.startswith("pip install")]
    assert '"ipython==8.*" $PYTHON_LIBRARIES' in install


def test_the_runtimes_argument_selects_toolchains_and_runtime_files(tmp_path: Path) -> None:
    args = [i.args for i in of("ARG", FINAL_STAGE)]
    assert "RUNTIMES=all" in args
    python, script, *options = packages_command()
    # The script as the wheel installs it, run by the image's own Python (the FROM's 3.11).
    assert python == "python"
    assert script == "/opt/sandbox-service/lib/python3.11/site-packages/runtimes/packages.py"
    assert options == ["--prune", "$RUNTIMES"]
    every = {name for path in (REPO / "runtimes").glob("*.toml")
             for name in [tomllib.loads(path.read_text())["name"]]}

    def select(*names: str) -> tuple[list[str], set[str]]:
        folder = tmp_path / "-".join(names)
        shutil.copytree(REPO / "runtimes", folder, ignore=shutil.ignore_patterns("*.py*"))
        done = subprocess.run([sys.executable, str(REPO / "runtimes" / "packages.py"),
                               "--folder", str(folder), "--prune", *names],
                              capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        kept = {tomllib.loads(p.read_text())["name"] for p in folder.glob("*.toml")}
        return done.stdout.split(), kept

    packages, kept = select("all")
    assert kept == every >= {"python", "c++", "c", "java", "javascript", "bash", "go", "rust"}
    assert {"g++", "openjdk-17-jdk-headless", "nodejs", "golang-go", "rustc"} <= set(packages)
    packages, kept = select("python", "c++")
    assert (packages, kept) == (["g++"], {"python", "c++"})
    done = subprocess.run([sys.executable, str(REPO / "runtimes" / "packages.py"), "c++"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "python is always needed" in done.stderr


def test_the_image_listens_on_port_8080() -> None:
    assert [i.args for i in of("EXPOSE", FINAL_STAGE)] == ["8080"]
    assert env_of(FINAL_STAGE)["PORT"] == "8080"


def test_tini_is_pid_1_and_the_service_its_child() -> None:
    # `serve` by name: a bare `sandbox-service` prints its help and exits.
    assert image_command() == ["tini", "--", "sandbox-service", "serve"]
    assert not of("USER"), "the service must be root to give each run a uid of its own"


def test_the_healthcheck_asks_health_on_port() -> None:
    argv = healthcheck_command()
    # The image has no curl or wget: its Python (of the python:3.11 base, and the service's
    # environment first on PATH) asks.
    assert argv[0] == "python" and "/health" in argv[-1] and "PORT" in argv[-1]
    # Nothing listening: the check must fail, not hang or pass.
    done = subprocess.run([sys.executable, *argv[1:]], env={"PORT": str(free_port())},
                          capture_output=True, timeout=30, check=False)
    assert done.returncode != 0


@pytest.mark.parametrize("document", [DOCKERFILE, REPO / "docs" / "operating.md"])
def test_podman_and_buildah_builds_keep_the_healthcheck(document: Path) -> None:
    # Their default, the OCI format, has no HEALTHCHECK: they drop it unless told otherwise.
    text = " ".join(document.read_text().replace("#", " ").split())
    assert "podman build --format docker -f Dockerfile.session" in text
    assert "buildah bud --format docker -f Dockerfile.session" in text


def test_local_argv_maps_tini_and_bare_names(tmp_path: Path) -> None:
    tini = [str(TINI), "--"] if TINI.exists() else []
    assert local_argv(["tini", "--", "sandbox-service", "serve"], tmp_path) == [
        *tini, str(tmp_path / "sandbox-service"), "serve"]
    assert local_argv(["python", "-m", "adapter", "serve"], tmp_path) == [
        str(tmp_path / "python"), "-m", "adapter", "serve"]


# ---- the service as the image installs it --------------------------------------------------------

@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    needed: list[str]  # files the service needs at run time, relative to the project


def needed_files(source: Path) -> list[str]:
    """Every module of the project's packages and every runtime description."""
    files = [p for package in PROJECT_PACKAGES for p in (source / package).rglob("*.py")]
    files += (source / "runtimes").glob("*.toml")
    return sorted(str(p.relative_to(source)) for p in files)


def build(target: Path, base_python: str, source: Path) -> None:
    """The wheel of `source`, and a virtual environment of `base_python` with it installed
    (dependencies from the configured index, through pip's caches)."""
    shutil.rmtree(target, ignore_errors=True)
    (target / "wheel").mkdir(parents=True)
    run_checked([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                 "--no-deps", "--wheel-dir", str(target / "wheel"), str(source)])
    [wheel] = (target / "wheel").glob("*.whl")
    build_venv(target / "venv", base_python, wheel)
    (target / BUILD_COMPLETE).write_text("complete\n")


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    """The current sources built into a wheel and installed into a fresh virtual environment,
    reused while the sources stay the same (keyed like tests.utils.provide_user_python)."""
    base_python = find_base_python()
    if base_python is None:
        pytest.skip("no Python 3.11+ at /usr/bin/python3 or /usr/local/bin/python3")
    with cached_build(CACHE, "image", base_python, build) as (target, source):
        needed = needed_files(source)
    [wheel] = (target / "wheel").glob("*.whl")
    yield Installed(wheel, target / "venv", needed)


def test_the_wheel_holds_every_file_the_service_needs(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        entry_points = next(wheel.read(n).decode() for n in names
                            if n.endswith(".dist-info/entry_points.txt"))
    assert "sandbox/launcher/__main__.py" in names and "runtimes/python.toml" in names
    assert [f for f in installed.needed if f not in names] == []
    assert "sandbox-service = adapter.__main__:main" in entry_points


def test_the_installed_service_is_the_wheel_not_the_sources(installed: Installed) -> None:
    # From "/", nothing of the repository is importable: what loads is what was installed.
    done = subprocess.run([str(installed.venv / "bin" / "python"), "-c",
                           "import adapter, sandbox.launcher; print(adapter.__file__)"],
                          cwd="/", env={"PATH": "/usr/bin:/bin"}, capture_output=True,
                          text=True, timeout=60, check=True)
    assert Path(done.stdout.strip()).is_relative_to(installed.venv)


def service_env(installed: Installed, port: int, work_root: Path, uids: range) -> dict[str, str]:
    """The image's environment, for this machine: PORT free, its own work root, loopback only,
    and (as root) uids of this test session's own range."""
    env = {"PATH": f"{installed.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
           "HOME": os.environ.get("HOME", "/"), "PORT": str(port), "HOST": "127.0.0.1",
           "SANDBOX_WORK_ROOT": str(work_root)}
    if uids:
        env |= {"SANDBOX_UID_FIRST": str(uids.start), "SANDBOX_UID_COUNT": str(len(uids))}
    return env


def run_leftovers(top: int, under_tini: bool, uids: range) -> list[psutil.Process]:
    """Processes of runs still alive: below the service (tini's child when tini started it),
    or of the run uids."""
    found = [p for p in descendants(top) if not (under_tini and p.ppid() == top)]
    return found + [p for p in run_processes(uids) if p not in found]


def assert_nothing_left_of(top: int, under_tini: bool, work_root: Path, uids: range) -> None:
    deadline = time.monotonic() + 5
    while True:
        leftovers = run_leftovers(top, under_tini, uids)
        files = run_folders(work_root) if work_root.exists() else []
        if not leftovers and not files:
            return
        assert time.monotonic() < deadline, f"left behind: processes {leftovers}, files {files}"
        time.sleep(0.05)


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    """Kills the image's command and everything below it: killed alone, tini would leave the
    service running as an orphan."""
    if process.poll() is not None:
        return
    below = descendants(process.pid)
    process.kill()
    process.wait()
    for child in below:
        try:
            child.kill()
        except psutil.Error:
            continue


def test_the_image_command_serves_passes_the_check_and_stops_cleanly(
        installed: Installed) -> None:
    bin_dir = installed.venv / "bin"
    argv = local_argv(image_command(), bin_dir)
    work_root, port = make_work_root(), free_port()
    uids = next_server_uids() if IS_ROOT else range(0)
    log_path = work_root.parent / "service.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, cwd="/", stdout=log, stderr=subprocess.STDOUT,
                                   env=service_env(installed, port, work_root, uids))
    server = Server(f"http://127.0.0.1:{port}", process, work_root,
                    mode=ROOT_MODE if IS_ROOT else UNPRIVILEGED_MODE, uid=os.geteuid(),
                    run_uids=uids, dedicated_uid=False, started=time.time())
    try:
        wait_until_healthy(server, log_path)
        health = subprocess.run(local_argv(healthcheck_command(), bin_dir),
                                env={"PORT": str(port)}, capture_output=True, text=True,
                                timeout=30, check=False)
        assert health.returncode == 0, health.stderr
        check = subprocess.run([str(bin_dir / "sandbox-service"), "check", "--endpoint",
                                server.url], cwd="/", capture_output=True, text=True,
                               timeout=300, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.splitlines()[-1] == "OK: all 9 checks passed"
        assert_nothing_left_of(process.pid, Path(argv[0]).name == "tini", work_root, uids)
        process.send_signal(signal.SIGTERM)
        assert process.wait(GRACE_S) == 0, log_path.read_text()[-3000:]
        assert not work_root.exists() or run_folders(work_root) == []
    finally:
        kill_tree(process)
        shutil.rmtree(work_root.parent, ignore_errors=True)
