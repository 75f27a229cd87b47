"""A small tmpfs to fill, and `calltrack serve` on a config of the tests' own (no lab needed).

Mounting needs root (CI runs as root): elsewhere the tests are skipped with the reason, unless
CALLTRACK_REQUIRE_TMPFS is set (as `make test` does), where that is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import Daemon, free_port
from tests.helpers import ORIGIN, config_dict, write_config

TMPFS_SIZE = "64m"


def _unavailable(reason: str) -> None:
    if os.environ.get("CALLTRACK_REQUIRE_TMPFS"):
        pytest.fail(f"a tmpfs is required (CALLTRACK_REQUIRE_TMPFS) but {reason}")
    pytest.skip(f"no tmpfs to fill: {reason}")


class NoTmpfs(Exception):
    """This machine cannot mount one (not root, or no right to mount)."""


@contextlib.contextmanager
def tmpfs(size: str = TMPFS_SIZE) -> Iterator[Path]:
    """An empty tmpfs of `size`, unmounted when the block ends. Also used by bench/faults.py."""
    if os.geteuid() != 0:
        raise NoTmpfs("mounting one needs root")
    folder = Path(tempfile.mkdtemp(prefix="calltrack-full-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        folder.rmdir()
        raise NoTmpfs(f"`mount -t tmpfs` failed: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        folder.rmdir()


@pytest.fixture
def small_tmpfs() -> Iterator[Path]:
    try:
        with tmpfs() as folder:
            yield folder
    except NoTmpfs as exc:
        _unavailable(str(exc))


def fill(folder: Path) -> Path:
    """Write zeros into `folder` until its filesystem is full; the filler file.

    The WAL of each SQLite database there is emptied first (a TRUNCATE checkpoint, between the
    daemon's transactions): SQLite reuses a WAL's space after a checkpoint, so a full disk only
    stops the writes that need the files to grow, and here the next one does.
    """
    for database in folder.glob("*.db"):
        with contextlib.closing(sqlite3.connect(database, timeout=5)) as conn:
            for _ in range(100):  # a reader of the daemon's may be reading the WAL just now
                busy, _frames, _copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    break
                time.sleep(0.01)
            assert not busy, f"{database}: the WAL stayed in use"
    filler = folder / "filler"
    # unbuffered: nothing is left to write (and fail) when the file is closed
    with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):  # ENOSPC
        while True:
            out.write(bytes(1 << 16))
    return filler


class SiteClient:
    """`calltrack serve` on tests.helpers' config (site "main"), spoken to as the widget does."""

    def __init__(self, folder: Path, database: str, **overrides: Any) -> None:
        config = config_dict(database, http={"host": "127.0.0.1", "port": free_port()}, **overrides)
        path = write_config(folder / "calltrack.yaml", config)
        upgraded = subprocess.run(
            [sys.executable, "-m", "pbx.cli", "db", "upgrade", "-c", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert upgraded.returncode == 0, upgraded.stderr
        self.daemon = Daemon(path, config["http"]["port"], folder / "daemon.log")

    @property
    def log(self) -> str:
        return self.daemon.log.read_text()

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.daemon.url + path, json=body, headers={"Origin": ORIGIN}) as response,
        ):
            return response.status, await response.json()

    async def visit(self, url: str, **ids: str | None) -> tuple[int, dict[str, Any]]:
        return await self.post("/api/v1/visits", {"site": "main", "url": url, **ids})

    async def ping(self, visit: dict[str, Any], url: str) -> tuple[int, dict[str, Any]]:
        body = {"visitor_id": visit["visitor_id"], "url": url}
        return await self.post(f"/api/v1/visits/{visit['session_id']}/ping", body)

    async def health(self) -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(self.daemon.url + "/healthz") as response,
        ):
            return response.status, await response.json()

    async def wait_health(self, status: int, within: float) -> float:
        """Seconds until /healthz answers `status`."""
        start = time.monotonic()
        while time.monotonic() - start < within:
            assert self.daemon.proc is not None and self.daemon.proc.poll() is None, self.log
            with contextlib.suppress(aiohttp.ClientError):
                if (await self.health())[0] == status:
                    return time.monotonic() - start
            await asyncio.sleep(0.05)
        raise AssertionError(f"/healthz not {status} in {within}s:\n{self.log[-3000:]}")


@contextlib.asynccontextmanager
async def serving(folder: Path, database: str, **overrides: Any) -> AsyncIterator[SiteClient]:
    site = SiteClient(folder, database, **overrides)
    site.daemon.start()
    try:
        await site.wait_health(200, 30)
        yield site
    finally:
        site.daemon.stop()
