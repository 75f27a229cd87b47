"""What a delivery says beyond the call's own row: the visit's GA client id, the sale."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx.storage.tables import sales, sessions


async def ga_client_id(engine: AsyncEngine, session_id: str | None) -> str | None:
    """The GA client id the widget read on the call's visit, if it found one."""
    if session_id is None:
        return None
    async with engine.connect() as conn:
        found = await conn.scalar(
            select(sessions.c.ga_client_id).where(sessions.c.id == session_id)
        )
    return str(found) if found else None


async def sale_row(engine: AsyncEngine, reference: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(sales).where(sales.c.reference == reference))
        ).one_or_none()
    return dict(row._mapping) if row else None
