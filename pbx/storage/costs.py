"""Imported ad spend: a cost file replaces what was stored for its days and its sources.

The replace rule: importing a file deletes, in the same transaction as the insert, every stored
cost row whose day lies in the file's range (its first to its last day, gaps included) and
whose source is one of the file's. Importing the same file twice leaves the same rows; a
narrower file replaces only its days; a Google Ads file never touches Yandex's costs.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, insert, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from attribution.costs import CostFile, MonthlyCost
from attribution.traffic import channel_name
from pbx.settings import Settings
from pbx.storage.report_months import bump, months_between
from pbx.storage.tables import costs

BATCH = 10_000
CostKey = tuple[int, str, str, str, int]  # day, source, medium, campaign, cost_cents


def _spellings(name: str) -> tuple[str, ...]:
    """A cost row's name, and how a file imported before 2026-12-03 stored it when it spells one
    of the report's own rows ("(other)", now utm:(other): attribution.traffic.channel_name), so
    that importing such a file again replaces its rows instead of adding to them."""
    before = name.removeprefix("utm:")
    return (name, before) if before != name and channel_name(before) == name else (name,)


async def replace_costs(engine: AsyncEngine, cost_file: CostFile, now: float) -> None:
    """Store a file's rows in place of what its days × channels (source and medium) held, in
    one transaction: a Google Ads cpc export leaves google/display from another file alone."""
    if not cost_file.rows:
        return
    channels = sorted(
        {
            (source, medium)
            for r in cost_file.rows
            for source in _spellings(r.source)
            for medium in _spellings(r.medium)
        }
    )
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # one import at a time (SQLite's write lock does that): at READ COMMITTED a second
            # import's delete did not see the first one's rows, and its inserts then met them
            # (a 500 on a double-clicked Import, the CLI and the page at once)
            await conn.execute(text("LOCK TABLE costs IN SHARE ROW EXCLUSIVE MODE"))
        await conn.execute(
            delete(costs).where(
                costs.c.day.between(cost_file.since_day, cost_file.until_day),
                tuple_(costs.c.source, costs.c.medium).in_(channels),
            )
        )
        rows = [
            {
                "day": r.day,
                "source": r.source,
                "medium": r.medium,
                "campaign": r.campaign,
                "cost_cents": r.cost_cents,
                "imported_at": now,
                "file": cost_file.file[-255:],
            }
            for r in cost_file.rows
        ]
        for start in range(0, len(rows), BATCH):
            await conn.execute(insert(costs), rows[start : start + BATCH])
        days = [row.day for row in cost_file.rows]
        await bump(conn, months_between(min(days), max(days)))  # every month it replaced


async def daily_costs(
    conn_or_engine: AsyncConnection | AsyncEngine, since_day: int, until_day: int
) -> list[CostKey]:
    """Imported costs of the days since_day..until_day (both included), by the primary key."""
    query = (
        select(costs.c.day, costs.c.source, costs.c.medium, costs.c.campaign, costs.c.cost_cents)
        .where(costs.c.day.between(since_day, until_day))
        .order_by(costs.c.day, costs.c.source, costs.c.medium, costs.c.campaign)
    )
    if isinstance(conn_or_engine, AsyncEngine):
        async with conn_or_engine.connect() as conn:
            result = await conn.execute(query)
    else:
        result = await conn_or_engine.execute(query)
    return [(r.day, r.source, r.medium, r.campaign, r.cost_cents) for r in result]


def static_monthly_costs(settings: Settings) -> list[MonthlyCost]:
    """The configured static numbers' monthly costs, under their source/medium/campaign."""
    return [
        MonthlyCost(s.source, s.medium, s.campaign or "", s.monthly_cost)
        for s in settings.static
        if s.monthly_cost
    ]


async def monthly_totals(engine: AsyncEngine, months: int = 24) -> Sequence[tuple[int, str, int]]:
    """(yyyymm, source, cents) of the imported costs in the `months` months up to the latest
    month that has any, newest first: the admin page's overview."""
    month = (costs.c.day // 100).label("month")
    async with engine.connect() as conn:
        latest = (await conn.execute(select(func.max(costs.c.day)))).scalar()
        if latest is None:
            return []
        year, month_number = divmod(latest // 100, 100)
        year, month_index = divmod(year * 12 + month_number - 1 - months, 12)
        first_day = year * 10000 + (month_index + 1) * 100 + 99  # the last day before them
        result = await conn.execute(
            select(month, costs.c.source, func.sum(costs.c.cost_cents).label("cents"))
            .where(costs.c.day > first_day)
            .group_by(month, costs.c.source)
            .order_by(month.desc(), costs.c.source)
        )
        return [(int(r.month), r.source, int(r.cents)) for r in result]
