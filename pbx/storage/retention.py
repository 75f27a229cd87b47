"""Forgetting old web traffic: visits past `visits.keep_days`, except what calls still refer to.

Anyone can start visits, so without this the database grows for ever. A visit is old when its
last activity is (a live session is never deleted under its visitor's feet, however long ago it
started). A stored call keeps its session (with its page views and leases: the call page shows
the journey) and its visitor; a number's row keeps the session that last held it. Candidates are
read first and deleted in small batches, each its own short transaction, so that leases are
never kept waiting on SQLite's one writer for long.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy import ColumnElement, Table, delete, exists, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pbx.storage.errors import log_failure
from pbx.storage.tables import (
    call_candidates,
    call_credits,
    calls,
    leases,
    numbers,
    page_views,
    session_pools,
    sessions,
    visitors,
    write_behind_progress,
)

log = logging.getLogger(__name__)

BATCH = 500
INTERVAL = 3600.0
FIRST_RUN_AFTER = 60.0  # not in the rush of a start (nor in a test's short-lived daemon)


def _forgettable(before: float) -> tuple[ColumnElement[bool], ...]:
    """A session inactive since before `before` that no call and no number's row refers to."""
    return (
        sessions.c.last_seen < before,
        ~exists().where(calls.c.session_id == sessions.c.id),
        # a visit a call is credited to (first touch) or probably came from
        ~exists().where(call_credits.c.session_id == sessions.c.id),
        ~exists().where(call_candidates.c.session_id == sessions.c.id),
        # a list read once, not a search per session: numbers.session_id has no index, and
        # a scan of the numbers per stale session held SQLite's write lock for minutes (606 s
        # for 475,000 stale sessions at 20,000 numbers)
        sessions.c.id.not_in(select(numbers.c.session_id).where(numbers.c.session_id.is_not(None))),
    )


async def forget_visits_before(engine: AsyncEngine, before: float, batch: int = BATCH) -> int:
    """Delete sessions last active before `before` that nothing refers to; returns how many."""
    async with engine.connect() as conn:
        stale = list(await conn.scalars(select(sessions.c.id).where(*_forgettable(before))))
        lone_visitors = list(
            await conn.scalars(
                select(visitors.c.id).where(
                    visitors.c.created_at < before,
                    ~exists().where(
                        sessions.c.visitor_id == visitors.c.id, sessions.c.last_seen >= before
                    ),
                    ~exists().where(calls.c.visitor_id == visitors.c.id),
                )
            )
        )
    deleted = 0
    for start in range(0, len(stale), batch):
        ids = stale[start : start + batch]
        async with engine.begin() as conn:
            # checked again inside the write: a call may have been stored since the read
            ids = list(
                await conn.scalars(
                    select(sessions.c.id).where(sessions.c.id.in_(ids), *_forgettable(before))
                )
            )
            await _delete_rows_of(conn, (page_views, session_pools, leases), ids)
            await conn.execute(delete(sessions).where(sessions.c.id.in_(ids)))
        deleted += len(ids)
    for start in range(0, len(lone_visitors), batch):
        ids = lone_visitors[start : start + batch]
        async with engine.begin() as conn:
            await conn.execute(
                delete(visitors).where(
                    visitors.c.id.in_(ids),
                    ~exists().where(sessions.c.visitor_id == visitors.c.id),
                    ~exists().where(calls.c.visitor_id == visitors.c.id),
                )
            )
    return deleted


async def _delete_rows_of(
    conn: AsyncConnection, tables: Sequence[Table], session_ids: list[str]
) -> None:
    for table in tables:
        await conn.execute(delete(table).where(table.c.session_id.in_(session_ids)))


async def every_hour(forget: Callable[[], Awaitable[int]], what: str) -> None:
    """Run a retention job a minute after the start and then every hour, for ever; `forget`
    returns how many `what` it deleted. A failure is logged and tried again the next time."""
    await asyncio.sleep(FIRST_RUN_AFTER)
    while True:
        try:
            deleted = await forget()
            if deleted:
                log.info("deleted %d %s", deleted, what)
        except Exception as error:
            log_failure(log, f"could not delete old {what}; will try again", error)
        await asyncio.sleep(INTERVAL)


async def run_visit_retention(
    engine: AsyncEngine, keep_days: int, clock: Callable[[], float]
) -> None:
    """Forget visits past `visits.keep_days`, hourly."""
    await every_hour(
        lambda: forget_visits_before(engine, clock() - keep_days * 86400.0),
        f"visits inactive for over {keep_days} days",
    )


#: how long a daemon's last write-behind part number is kept after its last write
WRITE_PROGRESS_KEPT = 7 * 86400.0


async def forget_write_progress_before(engine: AsyncEngine, before: float) -> int:
    """Delete the write-behind part numbers (write_behind_progress) of daemons that wrote
    nothing since `before`: one row is left by each daemon process that ever ran."""
    async with engine.begin() as conn:
        gone = write_behind_progress.c.written_at < before
        return (await conn.execute(delete(write_behind_progress).where(gone))).rowcount


async def run_write_progress_retention(engine: AsyncEngine, clock: Callable[[], float]) -> None:
    await every_hour(
        lambda: forget_write_progress_before(engine, clock() - WRITE_PROGRESS_KEPT),
        "write-behind progress rows of daemons gone for a week",
    )
