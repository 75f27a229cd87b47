"""The reads behind a call's journey: the visitor's visits and pages up to the call, and the
earlier calls of that visitor or caller. Each read is capped, so one request cannot make the
server walk a visitor with years of history; what was left out is reported as truncated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from attribution.journey import (
    Journey,
    JourneyCall,
    JourneyVisit,
    PageView,
    ProbableVisit,
    assemble,
)
from attribution.phone import caller_forms
from pbx.storage.callers import is_known_number
from pbx.storage.tables import call_candidates, call_tags, calls, page_views, sessions

MAX_VISITS = 200  # the latest visits listed; the first visit's time is read apart
MAX_PAGES = 100  # pages listed per visit
MAX_CALLS = 100  # the latest earlier calls listed


async def load_journey(engine: AsyncEngine, call_id: int, region: str | None) -> Journey | None:
    """The journey up to the start of call `call_id`; None when there is no such call.
    `region`: the install's, to find the caller's earlier calls in the forms they were kept in
    before callers were kept in E.164."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(calls).where(calls.c.id == call_id))).one_or_none()
        if row is None:
            return None
        call = dict(row._mapping)
        visits, total, first_at, visits_cut, pages_cut = await _visits(conn, call)
        earlier, calls_cut = await _earlier_calls(conn, call, region)
        probable = await _probable(conn, call_id)
    return assemble(
        _journey_call(call),
        visits,
        earlier,
        first_visit_at=first_at,
        visits_total=total,
        truncated={"visits": visits_cut, "pages": pages_cut, "earlier_calls": calls_cut},
        probable=probable,
    )


async def _probable(conn: AsyncConnection, call_id: int) -> list[ProbableVisit]:
    """The sessions a probable match came from (at most attribution.probable.MAX_CANDIDATES)."""
    rows = await conn.execute(
        select(
            call_candidates.c.session_id,
            call_candidates.c.released_at,
            call_candidates.c.likelihood,
            sessions.c.source,
            sessions.c.medium,
            sessions.c.campaign,
        )
        .join(sessions, sessions.c.id == call_candidates.c.session_id)
        .where(call_candidates.c.call_id == call_id)
    )
    return [ProbableVisit(*row) for row in rows]


def _journey_call(row: dict[str, Any], tags: Sequence[str] = ()) -> JourneyCall:
    return JourneyCall(
        id=row["id"],
        started_at=row["started_at"],
        caller=row["caller"],
        status=row["status"],
        attribution=row["attribution"],
        source=row["source"],
        medium=row["medium"],
        campaign=row["campaign"],
        tags=tags,
    )


async def _visits(
    conn: AsyncConnection, call: dict[str, Any]
) -> tuple[list[JourneyVisit], int, float | None, bool, bool]:
    """The latest visits before the call with their pages; how many there were in all; when
    the first was; whether visits or pages were left out."""
    visitor, before = call["visitor_id"], call["started_at"]
    if visitor is None:
        return [], 0, None, False, False
    s = sessions.c
    mine = and_(s.visitor_id == visitor, s.started_at <= before)
    total, first_at = (
        await conn.execute(select(func.count(), func.min(s.started_at)).where(mine))
    ).one()
    rows = (
        await conn.execute(
            select(sessions).where(mine).order_by(s.started_at.desc()).limit(MAX_VISITS)
        )
    ).all()
    pages, pages_cut = await _pages(conn, [r.id for r in rows], before)
    visits = [
        JourneyVisit(
            session_id=r.id,
            started_at=r.started_at,
            site=r.site,
            source=r.source,
            medium=r.medium,
            campaign=r.campaign,
            term=r.term,
            landing_url=r.landing_url,
            referrer=r.referrer,
            pages=pages.get(r.id, [])[:MAX_PAGES],
            pages_truncated=r.id in pages_cut,
        )
        for r in rows
    ]
    return visits, int(total), first_at, total > len(rows), bool(pages_cut)


async def _pages(
    conn: AsyncConnection, session_ids: Sequence[str], before: float
) -> tuple[dict[str, list[PageView]], set[str]]:
    """Up to MAX_PAGES pages of each session viewed by `before`, in one read; and the sessions
    that viewed more."""
    if not session_ids:
        return {}, set()
    p = page_views.c
    numbered = (
        select(
            p.session_id,
            p.at,
            p.url,
            func.row_number().over(partition_by=p.session_id, order_by=(p.at, p.id)).label("n"),
        )
        .where(p.session_id.in_(session_ids), p.at <= before)
        .subquery()
    )
    rows = await conn.execute(
        select(numbered.c.session_id, numbered.c.at, numbered.c.url, numbered.c.n)
        .where(numbered.c.n <= MAX_PAGES + 1)
        .order_by(numbered.c.session_id, numbered.c.n)
    )
    pages: dict[str, list[PageView]] = defaultdict(list)
    cut: set[str] = set()
    for r in rows:
        if r.n > MAX_PAGES:
            cut.add(r.session_id)
        else:
            pages[r.session_id].append(PageView(r.at, r.url))
    return pages, cut


async def _earlier_calls(
    conn: AsyncConnection, call: dict[str, Any], region: str | None
) -> tuple[list[JourneyCall], bool]:
    """The latest calls before this one from the same visitor or the same caller's number."""
    c = calls.c
    same: list[ColumnElement[bool]] = []
    if is_known_number(call["caller"]):
        same.append(c.caller.in_(caller_forms(call["caller"], region)))
    if call["visitor_id"] is not None:
        same.append(c.visitor_id == call["visitor_id"])
    before = or_(
        c.started_at < call["started_at"],
        and_(c.started_at == call["started_at"], c.id < call["id"]),
    )
    rows = (
        await conn.execute(
            select(calls)
            .where(or_(false(), *same), before)
            .order_by(c.started_at.desc(), c.id.desc())
            .limit(MAX_CALLS + 1)
        )
    ).all()
    listed = rows[:MAX_CALLS]
    tags: dict[int, list[str]] = defaultdict(list)
    if listed:
        for t in await conn.execute(
            select(call_tags.c.call_id, call_tags.c.tag)
            .where(call_tags.c.call_id.in_([r.id for r in listed]))
            .order_by(call_tags.c.tag)
        ):
            tags[t.call_id].append(t.tag)
    return [_journey_call(dict(r._mapping), tags[r.id]) for r in listed], len(rows) > MAX_CALLS
