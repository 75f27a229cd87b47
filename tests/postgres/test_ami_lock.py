"""The AMI consumer lock (pbx.ami_role) between processes on one real PostgreSQL: one holder at a
time; a holder killed or frozen loses it to a waiting process within 5 s, and a frozen holder
that wakes up learns that it lost it."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pbx.ami_role import AmiConsumerLock

pytestmark = pytest.mark.postgres

RETRY = 0.5
IDLE_LIMIT = 2.0

HOLDER = """
import asyncio, sys
from pbx.ami_role import AmiConsumerLock

async def main():
    lock = AmiConsumerLock(sys.argv[1], retry_every=float(sys.argv[2]), idle_limit=float(sys.argv[3]))
    await lock.acquire()
    print("held", flush=True)
    await lock.hold()
    print("lost", flush=True)

asyncio.run(main())
"""


@contextmanager
def holder(url: str) -> Iterator[subprocess.Popen[str]]:
    """Another process that takes the lock and holds it (prints `held`, then `lost`)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, str(RETRY), str(IDLE_LIMIT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, "the other process never took the lock"
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait(10)


async def takeover_seconds(lock: AmiConsumerLock, freed: float) -> float:
    await asyncio.wait_for(lock.acquire(), 10)
    return time.monotonic() - freed


async def test_a_killed_holder_loses_the_lock_to_a_waiting_daemon(postgres_url: str) -> None:
    waiting = AmiConsumerLock(postgres_url, retry_every=RETRY, idle_limit=IDLE_LIMIT)
    try:
        with holder(postgres_url) as proc:
            with pytest.raises(TimeoutError):  # held elsewhere: no second consumer
                await asyncio.wait_for(waiting.acquire(), 3 * RETRY + IDLE_LIMIT)
            proc.kill()
            proc.wait(10)
            took = await takeover_seconds(waiting, time.monotonic())
        assert took < 2 * RETRY + 0.5
    finally:
        await waiting.close()


async def test_a_frozen_holder_loses_the_lock_and_learns_it_when_it_wakes(
    postgres_url: str,
) -> None:
    waiting = AmiConsumerLock(postgres_url, retry_every=RETRY, idle_limit=IDLE_LIMIT)
    try:
        with holder(postgres_url) as proc:
            os.kill(proc.pid, signal.SIGSTOP)  # its socket stays open: only the idle limit helps
            took = await takeover_seconds(waiting, time.monotonic())
            assert took < 5.0
            assert took > IDLE_LIMIT - RETRY  # the server ended the frozen session
            os.kill(proc.pid, signal.SIGCONT)
            out, _ = proc.communicate(timeout=10)
        assert out.strip() == "lost"
    finally:
        await waiting.close()


async def test_closing_releases_the_lock(postgres_url: str) -> None:
    first = AmiConsumerLock(postgres_url, retry_every=RETRY, idle_limit=IDLE_LIMIT)
    second = AmiConsumerLock(postgres_url, retry_every=RETRY, idle_limit=IDLE_LIMIT)
    try:
        await asyncio.wait_for(first.acquire(), 5)
        await first.close()
        await asyncio.wait_for(second.acquire(), 2 * RETRY + 0.5)
    finally:
        await second.close()
