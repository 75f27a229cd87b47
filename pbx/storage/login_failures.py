"""Failed staff logins per user name, in the database so that every daemon counts them.

The limit per address stays in each daemon's memory (pbx.ratelimit); this is the ceiling per
user name across all of them: without it, N daemons would allow N times the guesses at one
account. A name is kept as its sha256 only, so that a password typed into the name field is not
stored. Each new failure deletes those older than two windows, so the table holds at most two
windows of failures: each daemon stamps and counts by its own clock, and one whose clock ran a
window ahead deleted the others' recent failures as it counted, the ceiling gone for all.
"""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx.storage.staff_sessions import text_sha256
from pbx.storage.tables import login_failures

KEPT_WINDOWS = 2


class LoginFailures:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, name: str, now: float, window: float) -> tuple[int, int]:
        """Count a failure of `name` at `now`; returns its id and how many failures of `name`
        the window holds with it.

        The row is committed before the count is read, so of two daemons counting at once each
        sees the other's row: together they never let more than the ceiling through."""
        async with self._engine.begin() as conn:
            # two windows: another daemon's clock may be behind this one's (see the module)
            await conn.execute(
                delete(login_failures).where(login_failures.c.at <= now - KEPT_WINDOWS * window)
            )
            failure_id: int = (
                await conn.execute(
                    insert(login_failures)
                    .values(name_sha256=text_sha256(name), at=now)
                    .returning(login_failures.c.id)
                )
            ).scalar_one()
        async with self._engine.connect() as conn:
            count = await conn.scalar(
                select(func.count()).where(
                    login_failures.c.name_sha256 == text_sha256(name),
                    login_failures.c.at > now - window,
                )
            )
        return failure_id, int(count or 0)

    async def oldest(self, name: str, now: float, window: float) -> float | None:
        """When the oldest failure of `name` within the window happened."""
        async with self._engine.connect() as conn:
            oldest: float | None = await conn.scalar(
                select(func.min(login_failures.c.at)).where(
                    login_failures.c.name_sha256 == text_sha256(name),
                    login_failures.c.at > now - window,
                )
            )
        return oldest

    async def remove(self, failure_id: int) -> None:
        """Take back one counted failure: the attempt was refused unchecked, or succeeded."""
        async with self._engine.begin() as conn:
            await conn.execute(delete(login_failures).where(login_failures.c.id == failure_id))
