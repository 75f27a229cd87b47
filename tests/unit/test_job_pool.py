"""A daemon killed without a word (SIGKILL, the OOM killer) leaves no worker process behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: a daemon's pool: a worker started through the fork server, then the daemon killed
DAEMON = """
import asyncio, os, sys
from pbx.job_pool import JobPool

async def main():
    pool = JobPool(1, "test", preload=sys.argv[1:])
    print(await pool.run(os.getpid), await pool.run(os.getppid), flush=True)
    os.kill(os.getpid(), 9)

asyncio.run(main())
"""


def running(pid: int) -> bool:
    """Whether the process runs (a zombie waiting for its parent to reap it does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.mark.parametrize("preload", [["os"], ["tests.no_pidfd"]], ids=["pidfd", "no-pidfd"])
def test_the_worker_and_the_fork_server_end_with_the_daemon(
    tmp_path: Path, preload: list[str]
) -> None:
    out = tmp_path / "pids"
    argv = [sys.executable, "-c", DAEMON, *preload]
    with out.open("w") as stdout:  # a file: an orphan holding a pipe would keep run() waiting
        daemon = subprocess.run(argv, cwd=REPO, stdout=stdout, timeout=60)
    assert daemon.returncode == -signal.SIGKILL
    worker, fork_server = (int(pid) for pid in out.read_text().split())
    try:
        deadline = time.monotonic() + 10
        while (running(worker) or running(fork_server)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(worker), "the worker outlived the daemon"
        assert not running(fork_server), "the fork server outlived the daemon"
    finally:
        for pid in (worker, fork_server):  # an orphan left by a failure
            if running(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
