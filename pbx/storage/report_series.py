"""Calls per local day and key, for the reports page's stacked chart: one grouped read of
call_credits (indexed by model and day) instead of a report per key.

Keys and filters are the channel report's own (report_queries), so a day's stack adds up to the
calls the report counts for that day under the same model, filters and include_probable.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from attribution.reports import GroupBy, ReportQuery, day_of, local_day
from pbx.storage.report_queries import credit_filter, credit_key
from pbx.storage.tables import call_credits


async def calls_per_day(
    engine: AsyncEngine, query: ReportQuery, key: GroupBy
) -> list[tuple[date, str, int]]:
    """(day, key, calls) for every day of the query's range that has calls, keyed by `key` (a
    grouping that is not a time one)."""
    assert not key.is_time, "a day's calls are split by a channel, not by time"
    k = call_credits.c
    credits = select(k.day, credit_key(replace(query, group_by=key)).label("key")).where(
        k.model == str(query.model),
        k.day >= local_day(query.since),
        k.day <= local_day(query.until),
    )
    for dimension, value in query.filters.items():
        credits = credits.where(credit_filter(dimension, value))
    rows = credits.subquery()  # grouped by the key's name: PostgreSQL would not match the CASE
    statement = select(rows.c.day, rows.c.key, func.count().label("calls")).group_by(
        rows.c.day, rows.c.key
    )
    async with engine.connect() as conn:
        result = await conn.execute(statement)
        return [(day_of(r.day), str(r.key), int(r.calls)) for r in result]
