"""PostgreSQL restarted under a real `calltrack serve`: while it is down visitors get 200 with
the site's own numbers, /healthz 503 and the log say the database is down; once it is back,
leases work again within seconds and the writes that waited (page views) land."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import select

from pbx.storage.db import open_engine
from pbx.storage.tables import page_views
from tests.faults.conftest import serving
from tests.postgres.conftest import PostgresCluster

PAID = "https://shop.test/?utm_source=google&utm_medium=cpc"
ORGANIC = "https://shop.test/?utm_medium=organic"
CONTACTS = "https://shop.test/contacts"
#: from the server accepting connections again to the first lease
RECOVERY = 5.0


async def viewed(url: str, session_id: str) -> list[str]:
    engine = open_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(page_views.c.url)
                .where(page_views.c.session_id == session_id)
                .order_by(page_views.c.at)
            )
            return list(rows.scalars())
    finally:
        await engine.dispose()


async def test_leases_go_on_after_postgres_restarts_and_nothing_waiting_is_lost(
    postgres_cluster: PostgresCluster, postgres_url: str, tmp_path: Path
) -> None:
    async with serving(tmp_path, postgres_url) as site:
        status, before = await site.visit(PAID)
        assert status == 200 and before["numbers"][0]["number"] == "+74990000001"

        postgres_cluster.stop()
        try:
            answers = [await site.visit(ORGANIC) for _ in range(5)]
            assert [status for status, _ in answers] == [200] * 5
            assert all(body["numbers"] == [] for _, body in answers), answers
            status, pinged = await site.ping(before, CONTACTS)
            assert status == 200 and pinged["session_id"] == before["session_id"]
            status, health = await site.health()
            assert status == 503 and health["database"].startswith("down: "), health
            assert "database cannot take writes (down: " in site.log
        finally:
            postgres_cluster.start()
        back = time.monotonic()
        while True:
            status, after = await site.visit(ORGANIC)
            assert status == 200
            if after["numbers"]:
                break
            assert time.monotonic() - back < RECOVERY, site.log[-3000:]
            await asyncio.sleep(0.05)
        assert after["numbers"][0]["number"] == "+74990000011"
        await site.wait_health(200, RECOVERY)
        for _ in range(100):
            if CONTACTS in await viewed(postgres_url, before["session_id"]):
                break
            await asyncio.sleep(0.05)
        assert await viewed(postgres_url, before["session_id"]) == [PAID, CONTACTS]
        assert "database takes writes again after" in site.log
        assert "Traceback" not in site.log, site.log
