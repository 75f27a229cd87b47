"""Reports over stored visits: how well each pool covers its traffic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from attribution.leasing import Tracking
from pbx.settings import Settings
from pbx.storage.tables import POOL_VISIT_OUTCOME, numbers, session_pools


@dataclass(frozen=True)
class PoolCoverage:
    """Visits a pool served since a time, and how many it could not give a number."""

    site: str
    pool: str
    size: int
    held_now: int
    visits: int
    not_tracked: int  # the pool was exhausted (or one client held too many numbers)

    @property
    def missed_share(self) -> float:
        return self.not_tracked / self.visits if self.visits else 0.0


async def pool_coverage(
    engine: AsyncEngine, settings: Settings, since: float, now: float
) -> Sequence[PoolCoverage]:
    async with engine.connect() as conn:
        visits = {
            (r.site, r.pool, r.outcome): r.n
            for r in await conn.execute(
                select(
                    session_pools.c.site,
                    session_pools.c.pool,
                    POOL_VISIT_OUTCOME,
                    func.count().label("n"),
                )
                .where(session_pools.c.started_at >= since)
                .group_by(session_pools.c.site, session_pools.c.pool, POOL_VISIT_OUTCOME)
            )
        }
        held = {
            (r.site, r.pool): r.n
            for r in await conn.execute(
                select(numbers.c.site, numbers.c.pool, func.count().label("n"))
                .where(numbers.c.held_until >= now)
                .group_by(numbers.c.site, numbers.c.pool)
            )
        }
    report = []
    for site in settings.sites:
        for pool in site.pools:
            counts = {t: visits.get((site.name, pool.name, t), 0) for t in Tracking}
            report.append(
                PoolCoverage(
                    site=site.name,
                    pool=pool.name,
                    size=len(pool.numbers),
                    held_now=held.get((site.name, pool.name), 0),
                    visits=sum(counts.values()),
                    not_tracked=counts[Tracking.EXHAUSTED] + counts[Tracking.IP_CAP],
                )
            )
    return report
