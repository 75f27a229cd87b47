"""Each caller's latest call, kept on write: who to call back, and which visitor a caller is.

A caller's row moves only forward in time (a call reconciled late from the CDR does not hide a
newer one), and remembers the visitor of their latest call a session was credited with, so that
their next call to a static number, the fallback or a number nobody held is linked to it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pbx.storage.db import conflict_insert
from pbx.storage.tables import callers, calls


def is_known_number(caller: str) -> bool:
    """Only a real number identifies a caller ("anonymous" and empty ids are nobody)."""
    return caller.strip("+").isdigit()


async def known_visitor(conn: AsyncConnection, caller: str) -> tuple[str, int] | None:
    """The visitor of the caller's latest session-attributed call, and that call's id."""
    if not is_known_number(caller):
        return None
    row = (
        await conn.execute(
            select(callers.c.visitor_id, callers.c.visitor_call_id).where(
                callers.c.caller == caller, callers.c.visitor_id.is_not(None)
            )
        )
    ).one_or_none()
    return (row.visitor_id, row.visitor_call_id) if row else None


async def record_call(conn: AsyncConnection, call: dict[str, Any], *, from_session: bool) -> None:
    """Fold a newly stored call into its caller's row."""
    if not is_known_number(call["caller"]):
        return
    latest = {
        "last_call_id": call["id"],
        "last_started_at": call["started_at"],
        "last_status": call["status"],
    }
    postgres = conn.dialect.name == "postgresql"
    statement = conflict_insert(callers, postgres=postgres).values(caller=call["caller"], **latest)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=["caller"],
            set_=latest,
            where=callers.c.last_started_at <= statement.excluded.last_started_at,
        )
    )
    if from_session:
        # the visitor of the latest call: a call reconciled late does not replace a newer one
        await conn.execute(
            update(callers)
            .where(
                callers.c.caller == call["caller"],
                or_(callers.c.visitor_id.is_(None), callers.c.last_call_id == call["id"]),
            )
            .values(visitor_id=call["visitor_id"], visitor_call_id=call["id"])
        )


async def rebuild_callers(engine: AsyncEngine) -> None:
    """Fold every stored call into its caller's row again, oldest first."""
    async with engine.begin() as conn:
        await conn.execute(delete(callers))
        rows = await conn.execute(
            select(
                calls.c.id,
                calls.c.caller,
                calls.c.started_at,
                calls.c.status,
                calls.c.visitor_id,
                calls.c.attribution,
            ).order_by(calls.c.started_at, calls.c.id)
        )
        for row in rows.all():
            call = dict(row._mapping)
            await record_call(conn, call, from_session=call["attribution"] == "session")
