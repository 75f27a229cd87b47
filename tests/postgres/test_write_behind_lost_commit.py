"""A write-behind part whose COMMIT lost its connection on PostgreSQL: it may have landed or not.
Written again blindly, a landed part doubled its page views and page count; never written
again, a lost one lost them. Either way each page view is now stored once (real PostgreSQL,
the lost acknowledgement injected after, or instead of, the real transaction)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select

from pbx.storage.db import open_engine, upgrade
from pbx.storage.retention import WRITE_PROGRESS_KEPT, forget_write_progress_before
from pbx.storage.tables import page_views, sessions, write_behind_progress
from pbx.storage.visits import VisitRequest, VisitStore
from tests.helpers import FakeClock, make_settings

pytestmark = pytest.mark.postgres

PAGES = 3


@pytest.mark.parametrize("landed", [True, False], ids=["committed", "rolled-back"])
async def test_a_part_whose_commit_was_not_acknowledged_is_written_once(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, landed: bool
) -> None:
    settings = make_settings(postgres_url)
    engine = open_engine(postgres_url)
    try:
        await upgrade(engine)
        clock = FakeClock()
        store = VisitStore(engine, settings, clock)
        await store.sync_numbers()
        site = settings.sites[0]
        visit = await store.start_visit(
            VisitRequest(site, "https://shop.test/", None, None, None, "10.0.0.1")
        )
        await store.flush()
        for n in range(PAGES):
            clock.advance(10)
            await store.ping(visit.session_id, visit.visitor_id, f"https://shop.test/p{n}")

        real_run = store.transactions.run

        async def connection_lost(work: Callable[[Any], Any]) -> Any:
            if landed:
                await real_run(work)
            raise asyncpg.exceptions.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation"
            )

        monkeypatch.setattr(store.transactions, "run", connection_lost)
        with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError):
            await store.flush()
        monkeypatch.undo()
        clock.advance(10)
        await store.ping(visit.session_id, visit.visitor_id, "https://shop.test/after")
        await store.flush()

        async with engine.connect() as conn:
            views = await conn.scalar(
                select(func.count())
                .select_from(page_views)
                .where(page_views.c.session_id == visit.session_id)
            )
            counted = await conn.scalar(
                select(sessions.c.pages_viewed).where(sessions.c.id == visit.session_id)
            )
            writers = await conn.scalar(select(func.count()).select_from(write_behind_progress))
        assert (views, counted) == (1 + PAGES + 1, 1 + PAGES + 1)
        assert writers == 1  # one row per daemon process
        # the retention job keeps it while its daemon wrote within the week
        assert await forget_write_progress_before(engine, clock() - WRITE_PROGRESS_KEPT) == 0
        assert await forget_write_progress_before(engine, clock() + 1) == 1
        store.close()
    finally:
        await engine.dispose()
