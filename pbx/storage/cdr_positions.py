"""Where reconciliation stopped reading Asterisk's CDR file, kept in the database.

Kept across restarts so that a daemon start reads only what the file gained meanwhile, not the
whole file; in the database (not a state file) so that every daemon on it goes on from the same
place.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from ami_bridge.cdr_follow import Position
from pbx.storage.db import conflict_insert
from pbx.storage.tables import cdr_positions


class CdrPositions:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], float]) -> None:
        self._engine = engine
        self._clock = clock

    async def load(self, path: str) -> tuple[Position, float] | None:
        """Where the last pass stopped, and when it was kept."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(cdr_positions).where(cdr_positions.c.path == path))
            ).first()
        if row is None:
            return None
        return Position(int(row.inode), int(row.device), row.offset, row.mark), row.updated_at

    async def save(self, path: str, position: Position, kept_at: float | None = None) -> None:
        """Keep `position`, as kept at `kept_at` (default now): a pass that could not read a
        file keeps the earlier time, which bounds how far back the unread rows are looked at."""
        values = {
            "inode": str(position.inode),
            "device": str(position.device),
            "offset": position.offset,
            "mark": position.mark,
            "updated_at": self._clock() if kept_at is None else kept_at,
        }
        insert = conflict_insert(cdr_positions, postgres=self._engine.dialect.name == "postgresql")
        async with self._engine.begin() as conn:
            await conn.execute(
                insert.values(path=path, **values).on_conflict_do_update(
                    index_elements=["path"], set_=values
                )
            )
