"""On a real PostgreSQL: page views keep being stored past 2**31 of them (migration 0021). The
id was `serial`, whose sequence stops at 2,147,483,647: every later page view's insert failed."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from pbx.storage.tables import page_views
from pbx.storage.visits import VisitRequest
from tests.helpers import visit_store

pytestmark = pytest.mark.postgres

LAST_32_BIT_ID = 2**31 - 1


async def test_page_views_are_stored_past_the_32_bit_ids(postgres_url: str) -> None:
    async with visit_store(postgres_url) as db:
        async with db.engine.begin() as conn:
            await conn.execute(
                text("SELECT setval(pg_get_serial_sequence('page_views', 'id'), :last)"),
                {"last": LAST_32_BIT_ID},
            )
        visit = await db.store.start_visit(
            VisitRequest(db.settings.sites[0], "https://shop.test/", None, None, None, "10.0.0.1")
        )
        db.clock.advance(10)
        await db.store.ping(visit.session_id, visit.visitor_id, "https://shop.test/prices")
        await db.store.flush()
        async with db.engine.connect() as conn:
            ids = (await conn.scalars(select(page_views.c.id).order_by(page_views.c.id))).all()
            kinds = await conn.scalar(
                text(
                    "SELECT data_type FROM information_schema.columns"
                    " WHERE table_name = 'page_views' AND column_name = 'id'"
                )
            )
        assert kinds == "bigint"
        assert ids == [LAST_32_BIT_ID + 1, LAST_32_BIT_ID + 2]
