"""The AMI consumer lock (pbx.ami_role) between processes on one real PostgreSQL: one holder at a
time; a holder killed or frozen loses it to a waiting process within 5 s, and a frozen holder
that wakes up learns that it lost it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from pbx.ami_role import AmiConsumerLock, consume_when_elected
from pbx.keys import PbxLink

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


class FakeBridge:
    """Stands in for the AMI bridge: records whether it runs."""

    connected = False  # as /healthz asks

    def __init__(self) -> None:
        self.running = False

    def start(self) -> None:
        self.running = True

    async def close(self) -> None:
        self.running = False


async def test_a_consumer_whose_session_ends_stops_following_ami_and_waits_its_turn(
    postgres_url: str,
) -> None:
    bridges: list[FakeBridge] = []

    def new_bridge() -> FakeBridge:
        bridges.append(FakeBridge())
        return bridges[-1]

    link = PbxLink()
    lock = AmiConsumerLock(postgres_url, retry_every=RETRY, idle_limit=IDLE_LIMIT)
    role = asyncio.create_task(consume_when_elected(lock, new_bridge, link))
    admin = create_async_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        await until(lambda: bool(bridges) and bridges[0].running)
        assert len(bridges) == 1 and link.state()["ami"] == "disconnected"  # the fake never is
        async with admin.connect() as conn:  # the server ends the lock's session (a restart)
            ended = await conn.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = 'calltrack ami lock'"
                )
            )
        assert ended == 1
        await until(lambda: not bridges[0].running)
        # nobody else holds it: the daemon takes it again, with a new bridge
        await until(lambda: len(bridges) == 2 and bridges[1].running)
        assert link.state()["ami"] == "disconnected"
    finally:
        role.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await role
        await admin.dispose()
    assert not bridges[-1].running and link.state()["ami"] == "standby"


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
