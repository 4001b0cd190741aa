"""A private PostgreSQL server for the tests: Debian's `postgresql` package, run from a
temporary folder on a free port of 127.0.0.1 for one test session, then stopped and removed.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user Debian's
package makes (else `nobody`), never as the unprivileged service's user: every process of that
user is taken for a leftover of the service's runs; otherwise as the tests' own user. Local
connections are trusted: the server listens on loopback and a socket in its own folder only,
and holds nothing but test data.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from .utils import IS_ROOT, SERVICE_USER, ServiceUser, find_user, free_port

# Set to 1 where PostgreSQL must be there (CI): its tests then fail instead of skipping.
REQUIRE_POSTGRES = "SANDBOX_TEST_REQUIRE_POSTGRES"
BINARIES = "/usr/lib/postgresql/*/bin"
# The users the server may run as when the tests are root, in order of preference; not
# SERVICE_USER, whose every process the unprivileged-mode tests count as a run's.
SERVER_USERS = ("postgres", "nobody")
SUPERUSER = "sandbox"
START_TIMEOUT_S = 60

_databases = itertools.count()


@dataclass(frozen=True)
class PostgresServer:
    port: int
    folder: Path  # the server's user's: its data, its socket and its log
    binaries: Path
    runs_as: ServiceUser | None  # None: the tests' own user
    user: str = SUPERUSER
    host: str = "127.0.0.1"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        """The URL of a database of its own, empty: a test's tables never meet another's."""
        name = f"test_{os.getpid()}_{next(_databases)}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def start(self) -> None:
        """Starts the server on its port, and returns once it accepts connections."""
        # fsync and synchronous commits off: the data is thrown away at the end, and the
        # tests' many small transactions would otherwise wait on the disk.
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self.pg_ctl("-o", options, "-w", "-t", str(START_TIMEOUT_S), "start")

    def stop(self) -> None:
        """Stops the server, its connections cut (what a restart or failover does to them)."""
        self.pg_ctl("-m", "fast", "-w", "stop")

    def pg_ctl(self, *args: str) -> None:
        log = self.folder / "log"
        _run(self.runs_as, self.folder, [str(self.binaries / "pg_ctl"), "-D",
                                         str(self.folder / "data"), "-l", str(log), *args], log)


def postgres_binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian installs each major version side by
    side), or None when none is installed."""
    found = [Path(folder) for folder in glob.glob(BINARIES)
             if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file()]
    return max(found, key=lambda folder: _version(folder.parent.name), default=None)


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def server_user() -> ServiceUser | None:
    """Whom the server runs as: None for the tests' own user (not root)."""
    if not IS_ROOT:
        return None
    for name in SERVER_USERS:
        user = find_user(name)
        if user is not None and user.uid != 0 and name != SERVICE_USER:
            return user
    return None


def postgres_unavailable() -> str | None:
    """Why no PostgreSQL server can be started here, or None."""
    if postgres_binaries() is None:
        return f"no PostgreSQL server installed ({BINARIES}); install Debian's postgresql"
    if IS_ROOT and server_user() is None:
        return ("PostgreSQL refuses to run as root, and none of the users "
                f"{', '.join(SERVER_USERS)} exists")
    return None


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of its own until the block ends; then stopped and removed."""
    binaries = postgres_binaries()
    assert binaries is not None, postgres_unavailable()
    user = server_user()
    # The parent is the tests' (0711: the server's user can reach its folder, nobody can list
    # it); the data and socket folder is the server's user's, as initdb demands.
    parent = Path(tempfile.mkdtemp(prefix="sandbox-test-pg-", dir="/tmp"))
    os.chmod(parent, 0o711)
    folder = parent / "server"
    folder.mkdir(mode=0o700)
    if user is not None:
        os.chown(folder, user.uid, user.gid)
    server = PostgresServer(free_port(), folder, binaries, user)
    try:
        _run(user, folder, [str(binaries / "initdb"), "-D", str(folder / "data"), "-U",
                            SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"])
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def _run(user: ServiceUser | None, cwd: Path, argv: list[str], log: Path | None = None) -> None:
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False,
                          user=None if user is None else user.uid,
                          group=None if user is None else user.gid,
                          extra_groups=None if user is None else [])
    if done.returncode != 0:
        server_log = log.read_text()[-3000:] if log is not None and log.exists() else ""
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n"
                           f"{(done.stdout + done.stderr)[-3000:]}\n{server_log}")
