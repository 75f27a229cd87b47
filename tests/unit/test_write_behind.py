"""The write-behind when the daemon stops: a flush under way is finished, not lost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.sql.base import Executable

from pbx.storage import write_behind
from pbx.storage.db import open_engine
from pbx.storage.write_behind import ROWS_PER_TRANSACTION, WriteBehind
from tests.helpers import FakeClock


class _PageViews:
    """A Tx that keeps the page views written (the other statements of a flush are let by)."""

    postgres = False

    def __init__(self, kept: list[str]) -> None:
        self._kept = kept

    def run_many(self, statement: Executable, rows: Sequence[Mapping[str, Any]]) -> None:
        if statement is write_behind._INSERT_PAGE_VIEW:
            self._kept.extend(row["session_id"] for row in rows)


class SlowDatabase:
    """Transactions that wait for the test to let them through, so a flush is under way."""

    def __init__(self) -> None:
        self.page_views: list[str] = []
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def run(self, work: Callable[[Any], Any]) -> Any:
        self.entered.set()
        await self.release.wait()
        return work(_PageViews(self.page_views))


async def test_a_flush_under_way_when_the_daemon_stops_is_finished_not_lost() -> None:
    engine = open_engine("sqlite+aiosqlite:///:memory:")  # the checkpoint's; nothing is on it
    database = SlowDatabase()
    writes = WriteBehind(engine, database, FakeClock())  # type: ignore[arg-type]
    sessions = [f"s{i}" for i in range(ROWS_PER_TRANSACTION * 3)]  # three transactions
    for session in sessions:
        writes.viewed(session, 1.0, "https://shop.test/", keep=True)
    flusher = asyncio.create_task(writes.run())
    try:
        await asyncio.wait_for(database.entered.wait(), 5)  # its first part is being written
        flusher.cancel()  # the daemon stopping (pbx.app)
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        database.release.set()
        await asyncio.wait_for(writes.flush(), 5)  # the last flush on the way out (pbx.app)
        assert sorted(database.page_views) == sorted(sessions)  # each once, none lost
    finally:
        await engine.dispose()


async def test_a_flush_whose_caller_gives_up_waiting_is_finished_not_lost() -> None:
    """A call's routing flushes before it reads who held the number, within its AGI answer's
    time (asyncio.wait_for): a slow database made the wait time out, and the batch the flush
    had taken out of the pending one (lease extensions, page views) was gone."""
    engine = open_engine("sqlite+aiosqlite:///:memory:")
    database = SlowDatabase()
    writes = WriteBehind(engine, database, FakeClock())  # type: ignore[arg-type]
    sessions = [f"s{i}" for i in range(ROWS_PER_TRANSACTION * 2)]  # two transactions
    for session in sessions:
        writes.viewed(session, 1.0, "https://shop.test/", keep=True)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(writes.flush(), 0.05)  # the routing's deadline passes
        assert database.entered.is_set() and not database.page_views
        database.release.set()
        await asyncio.wait_for(writes.flush(), 5)  # the next flush waits for the first
        assert sorted(database.page_views) == sorted(sessions)  # each once, none lost
    finally:
        await engine.dispose()


async def test_the_flusher_stops_when_cancelled_as_a_ping_wakes_it() -> None:
    """On Python 3.11 a wait_for whose event is set as its task is cancelled drops the
    cancellation: the flusher went on, and the daemon stopping waited for it forever."""
    engine = open_engine("sqlite+aiosqlite:///:memory:")
    database = SlowDatabase()
    writes = WriteBehind(engine, database, FakeClock())  # type: ignore[arg-type]
    flusher = asyncio.create_task(writes.run())
    try:
        await asyncio.sleep(0.05)  # parked, waiting to be woken
        writes.viewed("s1", 1.0, "https://shop.test/", keep=True)  # a ping wakes it...
        flusher.cancel()  # ...as the daemon stops
        done, _ = await asyncio.wait({flusher}, timeout=2)
        assert flusher in done, "the flusher went on after it was cancelled"
    finally:
        database.release.set()
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
        await engine.dispose()
