"""The server's link key: random, made by whichever daemon needs it first, kept in the database.

Every daemon on one database must sign recording links alike (a CRM's link may reach any of
them) and a restart must not break the links already sent, so the key is neither per process
nor in the config. It never changes once made, so each process reads it once.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx.storage.db import conflict_insert
from pbx.storage.tables import link_keys

RECORDINGS = "recordings"


class LinkKeys:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], float]) -> None:
        self._engine = engine
        self._clock = clock
        self._known: dict[str, bytes] = {}

    async def key(self, name: str = RECORDINGS) -> bytes:
        """The key called `name`, made now if no daemon made it before (the first insert wins
        a race; the loser reads the winner's)."""
        if name in self._known:
            return self._known[name]
        insert = conflict_insert(link_keys, postgres=self._engine.dialect.name == "postgresql")
        async with self._engine.begin() as conn:
            await conn.execute(
                insert.values(
                    name=name, secret=secrets.token_hex(32), created_at=self._clock()
                ).on_conflict_do_nothing(index_elements=["name"])
            )
            secret = await conn.scalar(select(link_keys.c.secret).where(link_keys.c.name == name))
        self._known[name] = bytes.fromhex(str(secret))
        return self._known[name]
