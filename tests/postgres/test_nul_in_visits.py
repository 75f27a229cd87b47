"""A NUL a visitor's link spells (%00) never reaches PostgreSQL, which refuses it in text: the
visit is stored, its tags without it (a raw NUL in the body is refused by the API: a 400, see
tests/api/test_visitor_api.py)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, text

from attribution.leasing import Tracking
from pbx.storage.tables import sessions
from pbx.storage.visits import VisitRequest
from tests.helpers import visit_store

pytestmark = pytest.mark.postgres


async def test_a_nul_in_a_links_tags_is_dropped_and_the_visit_stored(postgres_url: str) -> None:
    async with visit_store(postgres_url) as db:
        url = "https://shop.test/?utm_source=%00mail&utm_medium=cpc&utm_campaign=a%00b&gclid=%00"
        visit = await db.store.start_visit(
            VisitRequest(db.settings.sites[0], url, None, None, None, "10.0.0.1")
        )
        await db.store.flush()
        async with db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(sessions.c.source, sessions.c.campaign, sessions.c.click_ids).where(
                        sessions.c.id == visit.session_id
                    )
                )
            ).one()
        assert tuple(row) == ("mail", "ab", "{}")


async def test_a_referrer_with_a_host_past_the_source_column_is_stored(postgres_url: str) -> None:
    """The referrer was cut to 1,024 characters but its host, which becomes the source, was
    not: PostgreSQL refused a source over String(512), the visitor got a 500 and the log a
    traceback for every such visit (SQLite ignores the width)."""
    async with visit_store(postgres_url) as db:
        host = "a" * 1000 + ".com"
        for url in ("https://shop.test/", "https://shop.test/?utm_medium=cpc"):
            visit = await db.store.start_visit(
                VisitRequest(db.settings.sites[0], url, f"https://{host}/", None, None, "10.0.0.1")
            )
            await db.store.flush()
            async with db.engine.connect() as conn:
                source = await conn.scalar(
                    select(sessions.c.source).where(sessions.c.id == visit.session_id)
                )
            assert source == host[:512]


async def test_parallel_new_visits_of_one_client_stay_within_its_cap(postgres_url: str) -> None:
    """The cap was counted, then a number taken, in two statements at READ COMMITTED: new
    visits of one client at once each counted fewer than the cap and all took a number."""
    async with visit_store(postgres_url, http={"max_leases_per_ip": 1}) as db:
        url = "https://shop.test/?utm_source=google&utm_medium=cpc"
        site = db.settings.sites[0]
        for _round in range(5):
            await db.store.flush()
            async with db.engine.begin() as conn:  # every number free again
                await conn.execute(text("UPDATE numbers SET held_until = 0, client_ip = NULL"))
            visits = await asyncio.gather(
                *(
                    db.store.start_visit(VisitRequest(site, url, None, None, None, "10.0.0.9"))
                    for _ in range(8)
                )
            )
            assert sum(v.tracking is Tracking.TRACKED for v in visits) == 1
