"""A new visit whose COMMIT lost its connection on PostgreSQL (a restart at the wrong moment):
the session may have been stored or not. Answered with the site's own numbers although stored,
the visitor's next page started a second session, while the first held its numbers for the
freeze time and counted a visit. The store now asks whether the row is there (real PostgreSQL,
the lost acknowledgement injected after, or instead of, the real transaction)."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import func, select

from pbx.storage.tables import leases, sessions, visit_channels
from pbx.storage.visits import VisitRequest
from tests.helpers import visit_store
from tests.postgres.test_write_behind_lost_commit import (
    COMMITTED,
    NEVER_RAN,
    ROLLED_BACK,
    losing_acknowledgements,
)

pytestmark = pytest.mark.postgres

PAID = "https://shop.test/?utm_source=google&utm_medium=cpc"


@pytest.mark.parametrize("outcome", [COMMITTED, ROLLED_BACK, NEVER_RAN], ids=lambda o: o)
async def test_a_new_visit_whose_commit_was_not_acknowledged_is_one_session(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    async with visit_store(postgres_url) as db:
        store, clock = db.store, db.clock
        monkeypatch.setattr(store.transactions, "run", losing_acknowledgements(store, outcome))
        request = VisitRequest(db.settings.sites[0], PAID, None, None, None, "10.0.0.1")
        landed = outcome == COMMITTED
        if landed:
            visit = await store.start_visit(request)
        else:
            with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError):
                await store.start_visit(request)
        monkeypatch.undo()
        async with db.engine.connect() as conn:
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
