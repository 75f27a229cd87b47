"""Each caller's latest call, kept on write: who to call back, and which visitor a caller is.

A caller's row moves only forward in time (a call reconciled late from the CDR does not hide a
newer one), and remembers the visitor of their latest call a session was credited with, so that
their next call to a static number, the fallback or a number nobody held is linked to it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Insert, bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from attribution.phone import caller_number
from pbx.storage.db import conflict_insert
from pbx.storage.tables import callers, calls

# Built once: every stored call runs them
_KNOWN_VISITOR = select(callers.c.visitor_id, callers.c.visitor_call_id).where(
    callers.c.caller == bindparam("caller"), callers.c.visitor_id.is_not(None)
)
_VISITOR_OF_LATEST = (
    update(callers)
    .where(
        callers.c.caller == bindparam("of_caller"),
        or_(callers.c.visitor_id.is_(None), callers.c.last_call_id == bindparam("call_id")),
    )
    .values(visitor_id=bindparam("new_visitor"), visitor_call_id=bindparam("call_id"))
)


def _latest_call(postgres: bool) -> Insert:
    """The caller's row, moved to this call unless it holds a later one."""
    statement = conflict_insert(callers, postgres=postgres)
    latest = ("last_call_id", "last_started_at", "last_status")
    return statement.on_conflict_do_update(
        index_elements=["caller"],
        set_={name: statement.excluded[name] for name in latest},
        where=callers.c.last_started_at <= statement.excluded.last_started_at,
    )


_LATEST_CALL = {postgres: _latest_call(postgres) for postgres in (False, True)}


def is_known_number(caller: str) -> bool:
    """Only a real number identifies a caller ("anonymous" and empty ids are nobody)."""
    return caller.strip("+").isdigit()


async def known_visitor(conn: AsyncConnection, caller: str) -> tuple[str, int] | None:
    """The visitor of the caller's latest session-attributed call, and that call's id."""
    if not is_known_number(caller):
        return None
    row = (await conn.execute(_KNOWN_VISITOR, {"caller": caller})).one_or_none()
    return (row.visitor_id, row.visitor_call_id) if row else None


async def record_call(conn: AsyncConnection, call: dict[str, Any], *, from_session: bool) -> None:
    """Fold a newly stored call into its caller's row."""
    if not is_known_number(call["caller"]):
        return
    latest = {
        "caller": call["caller"],
        "last_call_id": call["id"],
        "last_started_at": call["started_at"],
        "last_status": call["status"],
    }
    await conn.execute(_LATEST_CALL[conn.dialect.name == "postgresql"], latest)
    if from_session:
        # the visitor of the latest call: a call reconciled late does not replace a newer one
        await conn.execute(
            _VISITOR_OF_LATEST,
            {"of_caller": call["caller"], "call_id": call["id"], "new_visitor": call["visitor_id"]},
        )


async def rebuild_callers(engine: AsyncEngine, region: str | None) -> None:
    """Fold every stored call into its caller's row again, oldest first; a call stored
    before callers were kept in E.164 under its number's E.164 (attribution.phone)."""
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
            call["caller"] = caller_number(call["caller"], region)
            await record_call(conn, call, from_session=call["attribution"] == "session")
