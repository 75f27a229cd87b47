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
from pbx.storage.tables import call_credits, calls
from pbx.storage.visit_rollups import VisitRollups


@dataclass(frozen=True)
class Rebuilt:
    visits: int
    calls: int


async def rebuild_reports(engine: AsyncEngine, settings: Settings) -> Rebuilt:
    visits = await VisitRollups(settings, engine.dialect.name == "postgresql").rebuild(engine)
    await rebuild_callers(engine)
    return Rebuilt(visits, await CallCredits(settings).rebuild(engine))


async def rollups_missing(engine: AsyncEngine) -> bool:
    """Calls stored before the rollups existed (a database upgraded to them)."""
    async with engine.connect() as conn:
        return bool(
            await conn.scalar(select(exists().where(calls.c.id.is_not(None))))
        ) and not await conn.scalar(select(exists().where(call_credits.c.call_id.is_not(None))))
