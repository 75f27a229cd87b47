"""The server's link keys: random, made by whichever daemon needs one first, kept in the database.

Every daemon on one database must sign recording links alike (a CRM's link may reach any of
them) and a restart must not break the links already sent, so a key is neither per process nor
in the config.

Anyone who reads the database (or a backup of it) can sign a link to every recording, so the
key can be replaced: `calltrack links rotate` (`rotate` here) makes a new one and keeps the old
as the previous key, which still opens the links signed before until they expire, or drops it
with `--revoke`, and then they stop at once. Each process reads the keys again at most
KEY_REFRESH seconds after it last did, so a rotation reaches every running daemon within that,
without a restart.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pbx.storage.db import conflict_insert
from pbx.storage.errors import is_transient
from pbx.storage.tables import link_keys

RECORDINGS = "recordings"
#: the row of a name's previous key: `recordings:previous`
PREVIOUS = ":previous"
#: seconds a process uses the keys it read before reading them again
KEY_REFRESH = 30.0


@dataclass(frozen=True)
class KeyRing:
    """A name's keys: the current one signs, both open what they signed."""

    current: bytes
    previous: bytes | None = None

    @property
    def accepted(self) -> tuple[bytes, ...]:
        return (self.current,) if self.previous is None else (self.current, self.previous)


class LinkKeys:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], float]) -> None:
        self._engine = engine
        self._clock = clock
        self._known: dict[str, tuple[float, KeyRing]] = {}

    async def key(self, name: str = RECORDINGS) -> bytes:
        """The key that signs links now."""
        return (await self.ring(name)).current

    async def ring(self, name: str = RECORDINGS) -> KeyRing:
        """The keys called `name`, read at most KEY_REFRESH seconds ago; the current one made
        now if no daemon made it before (the first insert wins a race; the loser reads the
        winner's). While the database cannot be read, the keys read last are used."""
        now = self._clock()
        known = self._known.get(name)
        if known is not None and now - known[0] < KEY_REFRESH:
            return known[1]
        try:
            ring = await self._read(name, now)
        except Exception as error:
            if known is None or not is_transient(error):
                raise
            return known[1]
        self._known[name] = (now, ring)
        return ring

    async def _read(self, name: str, now: float) -> KeyRing:
        async with self._engine.begin() as conn:
            await conn.execute(
                _insert(conn)
                .values(name=name, secret=secrets.token_hex(32), created_at=now)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            result = await conn.execute(
                select(link_keys.c.name, link_keys.c.secret).where(
                    link_keys.c.name.in_([name, name + PREVIOUS])
                )
            )
            rows = {row.name: row.secret for row in result}
        previous = rows.get(name + PREVIOUS)
        return KeyRing(
            bytes.fromhex(rows[name]), bytes.fromhex(previous) if previous is not None else None
        )


async def rotate(engine: AsyncEngine, now: float, *, revoke: bool, name: str = RECORDINGS) -> None:
    """Replace `name`'s key: the old one becomes the previous key (the links it signed open
    until they expire), or with `revoke` is dropped (they stop opening); an earlier previous
    key is dropped either way."""
    async with engine.begin() as conn:
        old = await conn.scalar(select(link_keys.c.secret).where(link_keys.c.name == name))
        await conn.execute(delete(link_keys).where(link_keys.c.name == name + PREVIOUS))
        if old is not None and not revoke:
            await conn.execute(
                link_keys.insert().values(name=name + PREVIOUS, secret=old, created_at=now)
            )
        statement = _insert(conn).values(name=name, secret=secrets.token_hex(32), created_at=now)
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["name"],
                set_={"secret": statement.excluded.secret, "created_at": now},
            )
        )


def _insert(conn: AsyncConnection) -> postgresql.Insert | sqlite.Insert:
    return conflict_insert(link_keys, postgres=conn.dialect.name == "postgresql")
