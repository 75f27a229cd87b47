"""Reading leases back: who held a number when, what is held now, what a session viewed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from attribution.leasing import LeasePolicy, LeaseSpan, holder_at
from attribution.owner import Holder, SessionFacts
from pbx.storage.tables import leases, numbers, page_views, sessions, visitors

_FACTS = (
    sessions.c.visitor_id,
    sessions.c.site,
    sessions.c.source,
    sessions.c.medium,
    sessions.c.campaign,
    sessions.c.term,
    sessions.c.content,
    sessions.c.referrer,
    sessions.c.landing_url,
    sessions.c.visit_number,
    sessions.c.pages_viewed,
    sessions.c.click_ids,
    visitors.c.first_source,
    visitors.c.first_medium,
    visitors.c.first_campaign,
)


_SPAN_COLUMNS = (
    leases.c.id,
    leases.c.number,
    leases.c.session_id,
    leases.c.started_at,
    leases.c.held_until,
)
# Built once: a call looks its number's holder up twice (routing, storing), and a statement built
# per call cost more CPU in SQLAlchemy (construction, cache key) than SQLite took to run it.
_HELD_AT = select(*_SPAN_COLUMNS).where(
    leases.c.number == bindparam("number"),
    leases.c.started_at <= bindparam("at"),
    leases.c.held_until >= bindparam("at"),
)
_RELEASED_WITHIN = select(*_SPAN_COLUMNS).where(
    leases.c.number == bindparam("number"),
    leases.c.started_at <= bindparam("at"),
    leases.c.held_until >= bindparam("since"),
    leases.c.held_until < bindparam("at"),
)
_HOLDER_FACTS = (
    select(*_FACTS, numbers.c.pool)
    .join(visitors, visitors.c.id == sessions.c.visitor_id)
    .outerjoin(numbers, numbers.c.number == bindparam("number"))
    .where(sessions.c.id == bindparam("session_id"))
)


async def _spans(
    conn: AsyncConnection, statement: Select[Any], params: dict[str, Any]
) -> list[LeaseSpan]:
    rows = await conn.execute(statement, params)
    return [LeaseSpan(r.id, r.number, r.session_id, r.started_at, r.held_until) for r in rows]


async def released_before(
    engine: AsyncEngine, number: str, at: float, window: float
) -> list[LeaseSpan]:
    """Leases of `number` that ended within `window` before `at`: a probable match's candidates."""
    async with engine.connect() as conn:
        params = {"number": number, "at": at, "since": at - window}
        return await _spans(conn, _RELEASED_WITHIN, params)


async def find_holder(engine: AsyncEngine, number: str, at: float) -> Holder | None:
    """The session that held `number` at instant `at`, for attributing a call."""
    async with engine.connect() as conn:
        span = holder_at(await _spans(conn, _HELD_AT, {"number": number, "at": at}), at)
        if span is None:
            return None
        params = {"number": number, "session_id": span.session_id}
        row = (await conn.execute(_HOLDER_FACTS, params)).one()
    return Holder(
        span.session_id,
        row.visitor_id,
        row.site,
        row.pool,
        span.started_at,
        SessionFacts(
            source=row.source,
            medium=row.medium,
            campaign=row.campaign,
            term=row.term,
            content=row.content,
            referrer=row.referrer,
            landing_url=row.landing_url,
            visit_number=row.visit_number,
            pages_viewed=row.pages_viewed,
            first_source=row.first_source,
            first_medium=row.first_medium,
            first_campaign=row.first_campaign,
            click_ids=json.loads(row.click_ids) if row.click_ids else {},
        ),
    )


async def current_leases(
    engine: AsyncEngine, policy: LeasePolicy, now: float
) -> Sequence[dict[str, Any]]:
    """Numbers held now, with the session holding each (for staff and `calltrack pools`)."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    numbers.c.number,
                    numbers.c.site,
                    numbers.c.pool,
                    numbers.c.session_id,
                    numbers.c.held_until,
                    sessions.c.visitor_id,
                    sessions.c.source,
                    sessions.c.medium,
                    sessions.c.campaign,
                    sessions.c.term,
                    sessions.c.content,
                    sessions.c.landing_url,
                    sessions.c.started_at,
                )
                .outerjoin(sessions, sessions.c.id == numbers.c.session_id)
                .order_by(numbers.c.site, numbers.c.pool, numbers.c.number)
            )
        ).all()
    return [{**dict(r._mapping), "held": policy.is_held(r.held_until, now)} for r in rows]


async def session_page_views(
    engine: AsyncEngine, session_id: str, before: float | None, limit: int
) -> Sequence[dict[str, Any]]:
    """The pages a session viewed, in order; with `before`, only those viewed before then."""
    query = select(page_views.c.at, page_views.c.url).where(page_views.c.session_id == session_id)
    if before is not None:
        query = query.where(page_views.c.at <= before)
    async with engine.connect() as conn:
        rows = await conn.execute(query.order_by(page_views.c.at, page_views.c.id).limit(limit))
        return [dict(r._mapping) for r in rows]
