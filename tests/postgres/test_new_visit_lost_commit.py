"""A new visit whose COMMIT lost its connection on PostgreSQL (a restart at the wrong moment):
the session may have been stored or not. Answered with the site's own numbers although stored,
the visitor's next page started a second session, while the first held its numbers for the
freeze time and counted a visit. The store now asks whether the row is there (real PostgreSQL,
the lost acknowledgement injected after, or instead of, the real transaction)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select

from pbx.storage.db import open_engine, upgrade
from pbx.storage.tables import leases, sessions, visit_channels
from pbx.storage.visits import VisitRequest, VisitStore
from tests.helpers import FakeClock, make_settings

pytestmark = pytest.mark.postgres

PAID = "https://shop.test/?utm_source=google&utm_medium=cpc"


@pytest.mark.parametrize(
    "outcome", ["committed", "ran, rolled back", "never ran"], ids=lambda outcome: outcome
)
async def test_a_new_visit_whose_commit_was_not_acknowledged_is_one_session(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    settings = make_settings(postgres_url)
    engine = open_engine(postgres_url)
    try:
        await upgrade(engine)
        clock = FakeClock()
        store = VisitStore(engine, settings, clock)
        await store.sync_numbers()
        site = settings.sites[0]
        real_run = store.transactions.run

        def lost() -> Exception:
            return asyncpg.exceptions.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation"
            )

        async def connection_lost(work: Callable[[Any], Any]) -> Any:
            if outcome == "committed":
                await real_run(work)
            elif outcome == "ran, rolled back":  # the work whole, then the transaction undone

                def then_lost(tx: Any) -> Any:
                    work(tx)
                    raise lost()

                await real_run(then_lost)
            raise lost()

        monkeypatch.setattr(store.transactions, "run", connection_lost)
        request = VisitRequest(site, PAID, None, None, None, "10.0.0.1")
        landed = outcome == "committed"
        if landed:
            visit = await store.start_visit(request)
        else:
            with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError):
                await store.start_visit(request)
        monkeypatch.undo()
        async with engine.connect() as conn:
            stored = list(await conn.execute(select(sessions.c.id, sessions.c.visitor_id)))
            holders = list(await conn.execute(select(leases.c.session_id, leases.c.number)))
            counted = await conn.scalar(select(func.sum(visit_channels.c.visits)))
        if not landed:
            assert (stored, holders, counted) == ([], [], None)
            return
        # the answer is the stored session: its ids, its number; its pages go on
        assert stored == [(visit.session_id, visit.visitor_id)] and counted == 1
        assert holders == [(visit.session_id, visit.number)]
        clock.advance(30)
        again = await store.ping(visit.session_id, visit.visitor_id, "https://shop.test/p2")
        assert again is not None and again.number == visit.number
        store.close()
    finally:
        await engine.dispose()
