"""Taking a number on PostgreSQL reads one index entry, not the whole free list (migration 0013).

"Free the longest" orders a pool's free numbers by held_until, never-leased (NULL) first. With
only the (site, pool, held_until) index PostgreSQL (NULLs last there) sorted every free number
of the pool on each lease: 13 ms at 41,000 numbers, which capped two daemons at ~90 new visits
a second in bench/soak.py. The plan of the real query must be an ordered index scan, no sort,
from the first lease on: on a table PostgreSQL had not analysed yet (numbers just added by
sync_numbers) it sorted the pool through the other index, 20 ms a lease, until autovacuum
analysed it; sync_numbers now does.
"""

from __future__ import annotations

import time

from pbx.storage.db import open_engine, upgrade
from pbx.storage.number_claims import _TAKE_LONGEST_FREE
from pbx.storage.visits import VisitStore
from tests.helpers import make_settings

NUMBERS = 15850  # a pool


def _numbers(block: int, count: int) -> list[str]:
    return [f"+7499{block}{i:06d}" for i in range(count)]


async def test_the_longest_free_number_is_found_without_sorting_the_pool(
    postgres_url: str,
) -> None:
    settings = make_settings(postgres_url)
    site = settings.sites[0].model_dump(mode="json")
    # two pools of a site, as in bench/soak.py, where the sort was seen
    site["pools"] = [
        {"name": "paid", "when": {"utm_medium": ["cpc"]}, "numbers": _numbers(1, NUMBERS)},
        {"name": "other", "numbers": _numbers(2, NUMBERS)},
    ]
    settings = make_settings(postgres_url, sites=[site])
    engine = open_engine(settings.database)
    try:
        await upgrade(engine)
        await VisitStore(engine, settings, time.time).sync_numbers()
        pool = settings.sites[0].pools[0].name
        values = {
            **{"lid": "0" * 32, "sid": "1" * 32, "until": 0.0, "ip": None},
            **{"of_site": settings.sites[0].name, "of_pool": pool, "now": time.time()},
        }
        query = _TAKE_LONGEST_FREE.compile(dialect=engine.dialect)
        args = tuple({**query.params, **values}[name] for name in query.positiontup or ())
        async with engine.begin() as conn:  # no ANALYZE here: sync_numbers leaves statistics
            plan = [row[0] for row in await conn.exec_driver_sql(f"EXPLAIN {query}", args)]
        assert any("ix_numbers_pool_free" in line for line in plan), plan
        assert not any("Sort" in line for line in plan), plan
    finally:
        await engine.dispose()
