"""On a real PostgreSQL, where transactions do run at once (SQLite's one connection queues
them): a sale posted many times at once is stored and counted once, and sales and corrections
of the same calls at once keep each call's crm_sales / crm_sale_cents equal to its sales."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from attribution.calls import CallReport
from pbx.storage.calls import CallStore
from pbx.storage.db import open_engine, upgrade
from pbx.storage.outbox import Outbox
from pbx.storage.sales import Credited, Sale, SaleStore
from pbx.storage.tables import calls, sales
from pbx.storage.visits import VisitStore
from tests.helpers import FakeClock, make_settings

pytestmark = pytest.mark.postgres

NOW = 1_800_000_000.0
CALLER = "+79161234567"


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = open_engine(postgres_url)
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _store_calls(engine: AsyncEngine, postgres_url: str, *starts: float) -> list[int]:
    settings = make_settings(postgres_url)
    clock = FakeClock(NOW)
    store = CallStore(engine, settings, VisitStore(engine, settings, clock), clock)
    for n, start in enumerate(starts):
        report = CallReport(f"c{n}", CALLER, "+74990000101", start, start + 30, start + 5, "ANSWER")
        assert await store.store(report)
    async with engine.connect() as conn:
        return list(await conn.scalars(select(calls.c.id).order_by(calls.c.started_at)))


async def _crm(engine: AsyncEngine) -> dict[int, tuple[int, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(calls.c.id, calls.c.crm_sales, calls.c.crm_sale_cents))
        return {row.id: (row.crm_sales, row.crm_sale_cents) for row in rows}


def sale_store(engine: AsyncEngine, postgres_url: str) -> SaleStore:
    clock = FakeClock(NOW)
    return SaleStore(engine, "RU", 90, clock, Outbox(make_settings(postgres_url), clock))


async def test_one_sale_posted_at_once_many_times_counts_once(
    engine: AsyncEngine, postgres_url: str
) -> None:
    [call] = await _store_calls(engine, postgres_url, NOW - 3600)
    store = sale_store(engine, postgres_url)
    sale = Sale("D-1", CALLER, 150000, NOW)
    results = await asyncio.gather(*(store.record(sale, "crm") for _ in range(8)))
    assert all(isinstance(r, Credited) and r.call_id == call for r in results)
    assert sorted(r.created for r in results if isinstance(r, Credited)) == [False] * 7 + [True]
    assert await _crm(engine) == {call: (1, 150000)}
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(sales)) == 1


async def test_sales_and_corrections_at_once_keep_the_calls_in_step(
    engine: AsyncEngine, postgres_url: str
) -> None:
    old, new = await _store_calls(engine, postgres_url, NOW - 10 * 86_400, NOW - 3600)
    store = sale_store(engine, postgres_url)
    early = NOW - 5 * 86_400  # credited to `old`; NOW is credited to `new`
    for n in range(10):
        assert isinstance(await store.record(Sale(f"D-{n}", CALLER, 100, early), "crm"), Credited)
    # at once: each of the ten moves to `new` with 200, and ten more sales of 1 each
    moves = [store.record(Sale(f"D-{n}", CALLER, 200, NOW), "crm") for n in range(10)]
    more = [store.record(Sale(f"E-{n}", CALLER, 1, early), "crm") for n in range(10)]
    results = await asyncio.gather(*moves, *more)
    assert all(isinstance(r, Credited) for r in results)
    assert await _crm(engine) == {old: (10, 10), new: (10, 2000)}
    # at once: one deal corrected ten ways; whichever is stored last, the call says the same
    fixes = [store.record(Sale("D-0", CALLER, 300 + n, NOW), "crm") for n in range(10)]
    await asyncio.gather(*fixes)
    async with engine.connect() as conn:
        stored = await conn.scalar(select(sales.c.amount_cents).where(sales.c.reference == "D-0"))
    assert await _crm(engine) == {old: (10, 10), new: (10, 1800 + stored)}
