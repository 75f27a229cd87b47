"""A real PostgreSQL for the tests in this folder: a throwaway cluster from Debian's binaries.

The cluster lives in a temporary directory owned by `postgres` (the server refuses to run as
root), listens on a free port of 127.0.0.1 with trust authentication, and is stopped and removed
after the session. Without the binaries the tests are skipped, unless CALLTRACK_REQUIRE_POSTGRES
is set (as `make test` and CI do): then a missing PostgreSQL is a failure, not a silent skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.lease_api import free_port

SERVER_USER = "postgres"


def pg_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin with initdb, or CALLTRACK_PG_BINDIR."""
    if override := os.environ.get("CALLTRACK_PG_BINDIR"):
        return Path(override)
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    return Path(found[-1]).parent if found else None


@dataclass(frozen=True)
class PostgresCluster:
    bindir: Path
    port: int
    as_server_user: tuple[str, ...]  # command prefix: run as `postgres` when we are root
    data: Path
    log: Path
    options: str  # the server's command-line options (port, socket folder, settings)

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.as_server_user, str(self.bindir / tool), *args],
            check=True,
            capture_output=True,
            text=True,
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self.run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self.options, "-w", "start"
        )

    def stop(self) -> None:
        """Stop the server (fast: sessions are ended, as in a restart), and wait for it."""
        self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self, icu_locale: str | None = None) -> str:
        """A new, empty database (collated C as the cluster, or as ICU's `icu_locale`, which
        orders text as people do: "a" before "B"); its SQLAlchemy URL."""
        name = f"calltrack_{uuid.uuid4().hex[:12]}"
        collation = (
            ("-T", "template0", "--locale-provider=icu", f"--icu-locale={icu_locale}")
            if icu_locale
            else ()
        )
        self.run(
            "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", SERVER_USER, *collation, name
        )
        return f"postgresql+asyncpg://{SERVER_USER}@127.0.0.1:{self.port}/{name}"


@contextlib.contextmanager
def temporary_cluster(bindir: Path) -> Iterator[PostgresCluster]:
    """A new cluster from `bindir`'s binaries, running until the block ends, then removed.
    Raises RuntimeError (with the server's log) if it cannot start. Also used by bench/."""
    prefix: tuple[str, ...] = ()
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        owner = pwd.getpwnam(SERVER_USER)
        prefix = ("runuser", "-u", SERVER_USER, "--")
    # not under pytest's basetemp: that is private to root, and the server runs as postgres
    root = Path(tempfile.mkdtemp(prefix="calltrack-pg-"))
    data, log = root / "data", root / "server.log"
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    port = free_port()
    options = (
        f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off -c synchronous_commit=off"
        " -c full_page_writes=off -c max_connections=100"
    )
    cluster = PostgresCluster(bindir, port, prefix, data, log, options)
    try:
        cluster.run(
            "initdb", "-D", str(data), "-U", SERVER_USER, "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        cluster.start()
    except subprocess.CalledProcessError as exc:
        server_log = log.read_text() if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {exc.stderr}\n{server_log}") from None
    try:
        yield cluster
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    bindir = pg_bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        message = "PostgreSQL server binaries not found (Debian: apt-get install postgresql)"
        if os.environ.get("CALLTRACK_REQUIRE_POSTGRES"):
            pytest.fail(f"{message}; CALLTRACK_REQUIRE_POSTGRES is set")
        pytest.skip(message)
    try:
        with temporary_cluster(bindir) as cluster:
            yield cluster
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """An empty database of its own for each test: `postgresql+asyncpg://...`."""
    return postgres_cluster.create_database()
