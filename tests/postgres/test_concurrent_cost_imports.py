"""On a real PostgreSQL: cost imports at once (a double-clicked Import, the CLI beside the page)
each replace their days in turn, as SQLite's write lock makes them; none fails."""

from __future__ import annotations

import asyncio

import pytest

from attribution.costs import CostFile, CostRow
from pbx.storage.costs import daily_costs, replace_costs
from pbx.storage.db import open_engine, upgrade

pytestmark = pytest.mark.postgres


def google(cents: int, *days: int) -> CostFile:
    return CostFile("g.csv", tuple(CostRow(day, "google", "cpc", "brand", cents) for day in days))


async def test_imports_at_once_replace_in_turn_and_none_fails(postgres_url: str) -> None:
    """At READ COMMITTED the second import's delete did not see the first one's rows, and its
    inserts met them: a unique violation, a 500 on the costs page."""
    engine = open_engine(postgres_url)
    await upgrade(engine)
    try:
        files = [google(100 * n, *range(20240301, 20240332)) for n in range(1, 7)]
        results = await asyncio.gather(
            *(replace_costs(engine, f, float(n)) for n, f in enumerate(files)),
            return_exceptions=True,
        )
        assert [r for r in results if r is not None] == []
        stored = await daily_costs(engine, 20240301, 20240331)
        # one file's rows whole, whichever went last: no mix, no duplicate
        assert len(stored) == 31 and len({cents for *_, cents in stored}) == 1
    finally:
        await engine.dispose()
