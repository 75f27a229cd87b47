"""Rebuilding every report rollup from the raw rows: after ui.timezone changes (days are local),
after the upgrade that introduced them, or to check them. Idempotent: running it twice gives the
same rows, and the same rows as live writing."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx.settings import Settings
from pbx.storage.call_credits import CallCredits
from pbx.storage.callers import rebuild_callers
from pbx.storage.report_months import forget_all
from pbx.storage.tables import call_credits, calls, sessions, visit_channels
from pbx.storage.visit_rollups import VisitRollups


@dataclass(frozen=True)
class Rebuilt:
    visits: int
    calls: int


async def rebuild_reports(engine: AsyncEngine, settings: Settings, now: float) -> Rebuilt:
    postgres = engine.dialect.name == "postgresql"
    visits = await VisitRollups(settings, postgres).rebuild(engine, now)
    await rebuild_callers(engine, settings.region)
    calls_done = await CallCredits(settings).rebuild(engine)
    async with engine.begin() as conn:
        await forget_all(conn)  # every kept month was computed from the rollups replaced
    return Rebuilt(visits, calls_done)


async def rollups_missing(engine: AsyncEngine) -> bool:
    """Visits or calls stored before the rollups existed (a database upgraded to them)."""
    async with engine.connect() as conn:
        for raw, rollup in (
            (calls.c.id, call_credits.c.call_id),
            (sessions.c.id, visit_channels.c.day),
        ):
            if await conn.scalar(select(exists().where(raw.is_not(None)))) and not (
                await conn.scalar(select(exists().where(rollup.is_not(None))))
            ):
                return True
    return False
