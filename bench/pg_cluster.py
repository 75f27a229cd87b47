"""A throwaway PostgreSQL for a benchmark run: initdb and pg_ctl from Debian's binaries.

As tests/postgres/conftest.py does for the tests: a cluster in a temporary directory owned by
`postgres` (the server refuses to run as root), listening on a free port of 127.0.0.1 with trust
authentication, stopped and removed afterwards. The server keeps PostgreSQL's default durability
(fsync and synchronous commit on), as an install would.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.lease_api import free_port

SERVER_USER = "postgres"


def bindir() -> Path:
    """The newest /usr/lib/postgresql/N/bin."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if not found:
        raise SystemExit(
            "PostgreSQL server binaries not found (Debian: apt-get install postgresql)"
        )
    return Path(found[-1]).parent


@contextlib.contextmanager
def throwaway_postgres(settings: Sequence[str] = ()) -> Iterator[str]:
    """A running cluster's `postgres` database: its SQLAlchemy (asyncpg) URL. `settings`:
    server settings as `name=value` (e.g. synchronous_commit=off), given to postgres as -c."""
    tools = bindir()
    prefix: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="calltrack-bench-pg-"))
    if os.geteuid() == 0:
        prefix = ["runuser", "-u", SERVER_USER, "--"]
        owner = pwd.getpwnam(SERVER_USER)
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, log, port = root / "data", root / "server.log", free_port()

    def run(*argv: str) -> None:
        subprocess.run([*prefix, *argv], check=True, capture_output=True)

    try:
        run(str(tools / "initdb"), "-D", str(data), "-U", SERVER_USER, "--auth=trust", "-E", "UTF8")
        options = " ".join([f"-p {port} -h 127.0.0.1 -k {root}", *(f"-c {x}" for x in settings)])
        run(str(tools / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        try:
            yield f"postgresql+asyncpg://{SERVER_USER}@127.0.0.1:{port}/postgres"
        finally:
            run(str(tools / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
