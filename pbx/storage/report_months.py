"""Closed months of the report, kept: a year's report reads twelve kept rows per key and
computes only the days around them.

A kept month is valid while its version is the one it was computed at. Every write that can
change a month's figures bumps that month's version in its own transaction: a call stored late
(CallCredits.write), a review or a sale (refresh_facts), a cost import. New visits need none: they
are counted on the day they happen, never in a closed month. The version is read before the
figures, so a month computed while a write committed is kept with the older version and computed
again next time, never kept stale. A rebuild forgets them all.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields

from sqlalchemy import Insert, bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from attribution.reports import MAX_VISIT_ROWS, ReportQuery, Tally
from pbx.settings import Settings
from pbx.storage.db import Tx, conflict_insert, run_in
from pbx.storage.tables import month_versions, report_months

MAX_KEPT = 20_000  # kept months (all groupings, models and filters together)
#: rows with nothing but visits a month is computed and kept with (the most visited; the rest
#: in OTHER): ten times what a report shows, so that a range of months that each kept all of
#: theirs is summed and folded exactly in Python, and only a month past this (a flood of
#: tags) makes its report count the range's visits again
KEPT_VISIT_ROWS = 10 * MAX_VISIT_ROWS


def fingerprint(settings: Settings) -> str:
    """What a month's figures depend on besides the data: the lead rule, the fixed costs, the
    time zone days are counted in, how many rows of visits alone a month keeps (months
    kept before the fold kept every row: read back, a month of 100,000 took seconds), and a
    row's fields (a month kept with other fields would be added up field by field wrongly)."""
    facts = {
        "fields": [f.name for f in fields(Tally)],
        "leads": settings.leads.model_dump(mode="json"),
        "static": [s.model_dump(mode="json") for s in settings.static],
        "timezone": settings.ui.timezone,
        "visit_rows": KEPT_VISIT_ROWS,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def _bump_statement(postgres: bool) -> Insert:
    statement = conflict_insert(month_versions, postgres=postgres).values(
        month=bindparam("changed_month"), version=1
    )
    return statement.on_conflict_do_update(
        index_elements=["month"], set_={"version": month_versions.c.version + 1}
    )


_BUMP = {postgres: _bump_statement(postgres) for postgres in (False, True)}


def bump_in(tx: Tx, months: Iterable[int]) -> None:
    """A write changed these months' figures (yyyymm): their kept reports are outdated."""
    for month in sorted(set(months)):
        tx.run(_BUMP[tx.postgres], {"changed_month": month})


async def bump(conn: AsyncConnection, months: Iterable[int]) -> None:
    """bump_in, in the async transaction `conn`."""
    await run_in(conn, lambda tx: bump_in(tx, months))


def filters_key(query: ReportQuery) -> str:
    """The filters a kept month was computed with: "" for none, else a digest of them."""
    if not query.filters:
        return ""
    text = json.dumps({str(k): v for k, v in query.filters.items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def months_between(since_day: int, until_day: int) -> list[int]:
    """The yyyymm of every month from the one of since_day to the one of until_day."""
    months, month = [], since_day // 100
    while month <= until_day // 100:
        months.append(month)
        month = month + 1 if month % 100 < 12 else (month // 100 + 1) * 100 + 1
    return months


@dataclass(frozen=True)
class Kept:
    versions: dict[int, int]  # month -> its version now (read first)
    tallies: dict[int, dict[str, list[float]]]  # month -> kept rows still valid (Tally fields)


async def read_kept(
    conn: AsyncConnection, settings: Settings, query: ReportQuery, months: Sequence[int]
) -> Kept:
    if not months:
        return Kept({}, {})
    versions = {
        r.month: r.version
        for r in await conn.execute(
            select(month_versions).where(month_versions.c.month.in_(months))
        )
    }
    m = report_months.c
    rows = await conn.execute(
        select(m.month, m.version, m.tallies).where(
            m.model == str(query.model),
            m.group_by == str(query.group_by),
            m.probable == query.include_probable,
            m.fingerprint == fingerprint(settings),
            m.filters == filters_key(query),
            m.month.in_(months),
        )
    )
    valid = {r.month: json.loads(r.tallies) for r in rows if r.version == versions.get(r.month, 0)}
    return Kept(versions, valid)


async def keep(
    engine: AsyncEngine,
    settings: Settings,
    query: ReportQuery,
    computed: Mapping[int, Mapping[str, Tally]],
    versions: Mapping[int, int],
) -> None:
    """Keep months just computed, each with the version read before its figures."""
    if not computed:
        return
    current = fingerprint(settings)
    async with engine.begin() as conn:
        postgres = conn.dialect.name == "postgresql"
        for month, tallies in computed.items():
            values = {
                "model": str(query.model),
                "group_by": str(query.group_by),
                "probable": query.include_probable,
                "fingerprint": current,
                "filters": filters_key(query),
                "month": month,
                "kept_at": time.time(),
                "version": versions.get(month, 0),
                "tallies": json.dumps({k: t.values() for k, t in tallies.items()}),
            }
            statement = conflict_insert(report_months, postgres=postgres).values(**values)
            await conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[
                        "model",
                        "group_by",
                        "probable",
                        "fingerprint",
                        "filters",
                        "month",
                    ],
                    set_={
                        "version": values["version"],
                        "tallies": values["tallies"],
                        "kept_at": values["kept_at"],
                    },
                )
            )
        # what clients' filters can make us keep is bounded: the oldest go
        newest = await conn.scalar(
            select(report_months.c.kept_at)
            .order_by(report_months.c.kept_at.desc())
            .offset(MAX_KEPT)
            .limit(1)
        )
        if newest is not None:
            await conn.execute(delete(report_months).where(report_months.c.kept_at <= newest))


async def forget_all(conn: AsyncConnection) -> None:
    await conn.execute(delete(report_months))
