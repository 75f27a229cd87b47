"""Calls are stored in the event loop (no thread hop per statement), and in a thread when
another connection holds SQLite's write lock, so the loop never waits for that lock."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from attribution.calls import CallReport
from pbx.storage.calls import CallStore
from pbx.storage.db import open_engine
from pbx.storage.inline_sqlite import open_inline_engine
from pbx.storage.visits import VisitStore
from tests.helpers import FakeClock, migrate, settings_for


@dataclass
class Stores:
    store: CallStore
    path: str


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[Stores]:
    settings = settings_for(tmp_path)
    await migrate(settings)
    engine = open_engine(settings.database)
    inline = open_inline_engine(str(engine.url.database))
    clock = FakeClock(time.time())
    visits = VisitStore(engine, settings, clock)
    try:
        yield Stores(
            CallStore(engine, settings, visits, clock, None, inline), str(engine.url.database)
        )
    finally:
        await inline.dispose()
        await engine.dispose()


def report(linkedid: str) -> CallReport:
    at = time.time()
    return CallReport(linkedid, "+79161234567", "+74990000101", at, at + 10, at + 2, "ANSWER")


async def loop_turns_during(work: asyncio.Future[object] | asyncio.Task[object]) -> int:
    """How many times the event loop ran another task while `work` ran."""
    turns = 0

    async def spin() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    spinner = asyncio.create_task(spin())
    await asyncio.sleep(0)
    start = turns
    await work
    spinner.cancel()
    return turns - start


async def test_a_call_is_stored_without_handing_the_loop_over(stores: Stores) -> None:
    await stores.store.store(report("warm"))  # the connection is opened once
    turns = await loop_turns_during(asyncio.ensure_future(stores.store.store(report("1.1"))))
    # through aiosqlite's thread every statement hands the loop over, several times (~600 turns)
    assert turns <= 20
    with sqlite3.connect(stores.path) as db:
        assert db.execute("SELECT count(*) FROM calls WHERE linkedid = '1.1'").fetchone() == (1,)


async def test_a_taken_write_lock_is_waited_for_in_a_thread_not_in_the_loop(
    stores: Stores,
) -> None:
    await stores.store.store(report("warm"))
    holder = sqlite3.connect(stores.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another connection writes for a while
    storing = asyncio.create_task(stores.store.store(report("2.1")))
    lags: list[float] = []
    for _ in range(20):
        before = time.monotonic()
        await asyncio.sleep(0.01)
        lags.append(time.monotonic() - before)
    assert not storing.done(), "the call waits for the lock"
    holder.execute("COMMIT")
    holder.close()
    assert await asyncio.wait_for(storing, 10) is not None
    # waited for in the loop, the lock would freeze it for the whole busy timeout (the holder
    # lets go only after these sleeps); a shared 2-core CI machine alone delays a turn by 0.3 s
    assert max(lags) < 0.5, "the loop went on meanwhile"
    assert await stores.store.store(report("2.1")) is None, "stored once"
