"""Forgetting old web traffic: visits past `visits.keep_days`, except what calls still refer to.

Anyone can start visits, so without this the database grows for ever. A stored call keeps its
session (with its page views and leases: the call page shows the journey) and its visitor; a
number's row keeps the session that last held it. Deletion runs in small batches so that it
never holds the database for long.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx.storage.tables import calls, leases, numbers, page_views, session_pools, sessions, visitors

log = logging.getLogger(__name__)

BATCH = 500
INTERVAL = 3600.0


async def forget_visits_before(engine: AsyncEngine, before: float, batch: int = BATCH) -> int:
    """Delete sessions started before `before` that nothing refers to; returns how many."""
    deleted = 0
    while True:
        async with engine.begin() as conn:
            ids = list(
                await conn.scalars(
                    select(sessions.c.id)
                    .where(
                        sessions.c.started_at < before,
                        ~exists().where(calls.c.session_id == sessions.c.id),
                        ~exists().where(numbers.c.session_id == sessions.c.id),
                    )
                    .limit(batch)
                )
            )
            if not ids:
                break
            for table in (page_views, session_pools, leases):
                await conn.execute(delete(table).where(table.c.session_id.in_(ids)))
            await conn.execute(delete(sessions).where(sessions.c.id.in_(ids)))
        deleted += len(ids)
    async with engine.begin() as conn:
        await conn.execute(
            delete(visitors).where(
                visitors.c.created_at < before,
                ~exists().where(sessions.c.visitor_id == visitors.c.id),
                ~exists().where(calls.c.visitor_id == visitors.c.id),
            )
        )
    return deleted


async def run_visit_retention(
    engine: AsyncEngine, keep_days: int, clock: Callable[[], float]
) -> None:
    """Apply retention now and then every hour, for ever; a failure is logged and retried."""
    while True:
        try:
            deleted = await forget_visits_before(engine, clock() - keep_days * 86400.0)
            if deleted:
                log.info("deleted %d visits older than %d days", deleted, keep_days)
        except Exception:
            log.exception("could not delete old visits; will try again")
        await asyncio.sleep(INTERVAL)
