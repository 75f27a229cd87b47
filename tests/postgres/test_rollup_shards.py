"""New visits of one channel do not wait on each other's rollup row (migration 0015).

A visit is counted in its session's transaction, and PostgreSQL holds the counted row's lock
until that transaction commits. With one row per key, every daemon's visits of a day's busiest
channel queued on it (upserts waited 170 ms on average at 200 visits/s in bench/soak.py). On
PostgreSQL a count goes to one of the key's shard rows, chosen by the session id.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from attribution.traffic import read_source
from pbx.storage.db import open_engine, run_in, upgrade
from pbx.storage.report_rollups import rebuild_reports
from pbx.storage.tables import visit_channels, visit_facets
from pbx.storage.visit_rollups import SHARDS, VisitRollups, landing_and_referrer
from pbx.storage.visits import VisitRequest, VisitStore
from tests.helpers import make_settings

DIRECT = read_source("https://shop.test/", None)


async def test_a_visit_is_counted_while_another_of_its_channel_is_uncommitted(
    postgres_url: str,
) -> None:
    settings = make_settings(postgres_url)
    engine = open_engine(settings.database)
    rollups = VisitRollups(settings, postgres=True)
    now = time.time()

    def count(session_id: str) -> Any:
        places = landing_and_referrer(DIRECT.landing_url, DIRECT.referrer)
        return lambda tx: rollups.count(tx, session_id, "shop", "main", DIRECT, now, places)

    async def count_alone(session_id: str) -> None:
        async with engine.begin() as conn:
            await conn.execute(text("SET LOCAL lock_timeout = '2s'"))
            await run_in(conn, count(session_id))

    def session_of(shard: int, after: int = 0) -> str:
        return next(
            f"{i:032x}" for i in itertools.count(after + 1) if rollups.shard(f"{i:032x}") == shard
        )

    first = session_of(0)
    try:
        await upgrade(engine)
        async with engine.begin() as holder:  # a visit counted, its transaction still open
            await run_in(holder, count(first))
            await count_alone(session_of(1))  # another shard: no wait
            with pytest.raises(DBAPIError, match="lock timeout"):  # the same shard waits
                await count_alone(session_of(0, after=int(first, 16)))
        async with engine.connect() as conn:
            total = await conn.scalar(select(func.sum(visit_channels.c.visits)))
            shards = set(await conn.scalars(select(visit_channels.c.shard)))
        assert (total, shards) == (2, {0, 1})
    finally:
        await engine.dispose()


async def test_sharded_counts_are_what_a_rebuild_makes(postgres_url: str) -> None:
    """Two daemons' concurrent visits of one channel: every visit counted once, over several
    shards, and `calltrack reports rebuild` puts each count back on the same row."""
    settings = make_settings(postgres_url)
    engine = open_engine(settings.database)
    try:
        await upgrade(engine)
        stores = [VisitStore(engine, settings, time.time) for _ in range(2)]
        await stores[0].sync_numbers()
        site = settings.sites[0]

        async def visit(i: int) -> None:
            request = VisitRequest(site, "https://shop.test/", None, None, None, f"10.0.{i}.1")
            await stores[i % 2].start_visit(request)

        await asyncio.gather(*(visit(i) for i in range(64)))

        async def rows() -> list[list[tuple[Any, ...]]]:
            async with engine.connect() as conn:
                return [
                    sorted(tuple(r) for r in await conn.execute(select(table)))
                    for table in (visit_channels, visit_facets)
                ]

        live = await rows()
        assert sum(r[-1] for r in live[0]) == 64  # visits is the last column
        assert len({r[6] for r in live[0]}) > 1  # the shard
        assert all(0 <= r[6] < SHARDS for r in live[0])
        await rebuild_reports(engine, settings, time.time())
        assert await rows() == live
    finally:
        await engine.dispose()


def test_sqlite_counts_on_one_row_per_key() -> None:
    rollups = VisitRollups(make_settings("sqlite+aiosqlite:///:memory:"), postgres=False)
    assert {rollups.shard(f"{i:032x}") for i in range(64)} == {0}
