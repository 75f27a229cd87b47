"""Missed callers to call back: callers whose latest call (the `callers` row kept on write) was
missed, busy, abandoned, failed or voicemail and that no one has marked "called back" yet.

A caller's latest call is by definition later than any answered one, so "no answered call after
it" holds by construction; a caller who calls again gets a new latest call, which needs its own
call-back when it is missed too.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from attribution.calls import UNANSWERED
from pbx.storage.db import conflict_insert
from pbx.storage.tables import callbacks, callers, calls

PAGE = 200  # callers listed at once


@dataclass(frozen=True)
class MissedCaller:
    caller: str
    call_id: int  # their latest call, the one to call back
    started_at: float
    status: str
    attribution: str
    source: str | None
    medium: str | None
    campaign: str | None
    attempts: int  # calls since their last answered call (all of them if none was answered)


@dataclass(frozen=True)
class CallBack:
    caller: str
    call_id: int
    by: str
    at: float


def _waiting() -> ColumnElement[bool]:
    """Callers whose latest call was missed and not called back (callers.last_status is
    indexed; the call-back is looked up by its key)."""
    called_back = select(callbacks.c.call_id).where(callbacks.c.call_id == callers.c.last_call_id)
    return callers.c.last_status.in_(UNANSWERED) & ~called_back.exists()


async def missed_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            await conn.scalar(select(func.count()).select_from(callers).where(_waiting())) or 0
        )


async def missed_callers(engine: AsyncEngine, limit: int = PAGE) -> list[MissedCaller]:
    """The callers to call back, who has waited longest first."""
    c = calls.c
    answered, earlier = calls.alias("answered"), calls.alias("earlier")
    last_answered = (
        select(func.max(answered.c.started_at))
        .where(answered.c.caller == callers.c.caller, answered.c.status == "answered")
        .correlate(callers)
        .scalar_subquery()
    )
    attempts = (
        select(func.count())
        .select_from(earlier)
        .where(
            earlier.c.caller == callers.c.caller,
            earlier.c.started_at > func.coalesce(last_answered, -1.0),
        )
        .correlate(callers)
        .scalar_subquery()
    )
    statement = (
        select(
            callers.c.caller,
            callers.c.last_call_id,
            callers.c.last_started_at,
            callers.c.last_status,
            c.attribution,
            c.source,
            c.medium,
            c.campaign,
            attempts.label("attempts"),
        )
        .join(calls, c.id == callers.c.last_call_id)
        .where(_waiting())
        .order_by(callers.c.last_started_at, callers.c.caller)
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = await conn.execute(statement)
        return [
            MissedCaller(
                caller=r.caller,
                call_id=r.last_call_id,
                started_at=r.last_started_at,
                status=r.last_status,
                attribution=r.attribution,
                source=r.source,
                medium=r.medium,
                campaign=r.campaign,
                attempts=int(r.attempts),
            )
            for r in rows
        ]


async def mark_called_back(engine: AsyncEngine, call_id: int, by: str, at: float) -> bool:
    """Mark a missed caller done; False when `call_id` is no caller's latest missed call (it
    was answered or they called again since: the page was stale). Marking twice is once."""
    postgres = engine.dialect.name == "postgresql"
    async with engine.begin() as conn:
        # by the call alone: a call is one caller's latest, whose row may be keyed in E.164
        # while the call keeps the form the trunk sent (stored before 2026-12-03)
        latest = await conn.scalar(
            select(callers.c.caller).where(
                callers.c.last_call_id == call_id,
                callers.c.last_status.in_(UNANSWERED),
            )
        )
        if latest is None:
            return False
        await conn.execute(
            conflict_insert(callbacks, postgres=postgres)
            .values(call_id=call_id, by=by, at=at)
            .on_conflict_do_nothing(index_elements=["call_id"])
        )
    return True


async def recent_callbacks(engine: AsyncEngine, limit: int = 20) -> list[CallBack]:
    """The latest call-backs, newest first: who called whom back, and when."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(calls.c.caller, callbacks.c.call_id, callbacks.c.by, callbacks.c.at)
            .join(calls, calls.c.id == callbacks.c.call_id)
            .order_by(callbacks.c.at.desc())
            .limit(limit)
        )
        return [CallBack(r.caller, r.call_id, r.by, r.at) for r in rows]
