"""A write-behind part whose COMMIT lost its connection on PostgreSQL: it may have landed or not.
Written again blindly, a landed part doubled its page views and page count; never written
again, a lost one lost them. Either way each page view is now stored once (real PostgreSQL,
the lost acknowledgement injected after, or instead of, the real transaction)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select

from pbx.storage.retention import WRITE_PROGRESS_KEPT, forget_write_progress_before
from pbx.storage.tables import page_views, sessions, write_behind_progress
from pbx.storage.visits import VisitRequest, VisitStore
from tests.helpers import visit_store

pytestmark = pytest.mark.postgres

PAGES = 3
#: what became of a transaction whose COMMIT's acknowledgement was lost
COMMITTED, ROLLED_BACK, NEVER_RAN = "committed", "ran, rolled back", "never ran"


def losing_acknowledgements(
    store: VisitStore, outcome: str
) -> Callable[[Callable[[Any], Any]], Awaitable[Any]]:
    """The store's `transactions.run` with every COMMIT's acknowledgement lost (asyncpg's error
    for a connection the server closed), the transaction `outcome`: COMMITTED, ROLLED_BACK (its
    work ran whole, then the transaction was undone) or NEVER_RAN."""
    real_run = store.transactions.run

    def lost() -> Exception:
        return asyncpg.exceptions.ConnectionDoesNotExistError(
            "connection was closed in the middle of operation"
        )

    async def connection_lost(work: Callable[[Any], Any]) -> Any:
        if outcome == COMMITTED:
            await real_run(work)
        elif outcome == ROLLED_BACK:

            def then_lost(tx: Any) -> Any:
                work(tx)
                raise lost()

            await real_run(then_lost)
        raise lost()

    return connection_lost


@pytest.mark.parametrize("outcome", [COMMITTED, NEVER_RAN], ids=["committed", "rolled-back"])
async def test_a_part_whose_commit_was_not_acknowledged_is_written_once(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    async with visit_store(postgres_url) as db:
        store, clock = db.store, db.clock
        visit = await store.start_visit(
            VisitRequest(db.settings.sites[0], "https://shop.test/", None, None, None, "10.0.0.1")
        )
        await store.flush()
        for n in range(PAGES):
            clock.advance(10)
            await store.ping(visit.session_id, visit.visitor_id, f"https://shop.test/p{n}")

        monkeypatch.setattr(store.transactions, "run", losing_acknowledgements(store, outcome))
        with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError):
            await store.flush()
        monkeypatch.undo()
        clock.advance(10)
        await store.ping(visit.session_id, visit.visitor_id, "https://shop.test/after")
        await store.flush()

        async with db.engine.connect() as conn:
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
        assert await forget_write_progress_before(db.engine, clock() - WRITE_PROGRESS_KEPT) == 0
        assert await forget_write_progress_before(db.engine, clock() + 1) == 1
