"""The server's link keys: random, made by whichever daemon needs one first, kept in the database.

Every daemon on one database must sign recording links alike (a CRM's link may reach any of
them) and a restart must not break the links already sent, so a key is neither per process nor
in the config.

Anyone who reads the database (or a backup of it) can sign a link to every recording, so the
key can be replaced: `calltrack links rotate` (`rotate` here) makes a new one and keeps the old
as the previous key, or drops it with `--revoke`. The previous key opens only links that expire
within the link lifetime (webhooks.recording_link_ttl) of the rotation, which is every link it
signed before: one forged with a later expiry by whoever holds the old key does not open.

Each process reads the keys again KEY_REFRESH seconds after it last did, so a rotation reaches
every running daemon within that, without a restart; a link none of the keys it holds opens
makes it read them again at once (at most every REREAD_AFTER seconds), so a link signed by a
daemon that read the new key first opens on the others too. A read is bounded (READ_TIMEOUT);
while the keys cannot be read, those read last are used, and a read that failed is not tried
again within REREAD_AFTER (a first one that failed answers KeysUnavailable meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pbx.storage.db import conflict_insert
from pbx.storage.errors import log_failure
from pbx.storage.tables import link_keys

log = logging.getLogger(__name__)

RECORDINGS = "recordings"
#: the row of a name's previous key, `recordings:previous`; its created_at is the rotation's time
PREVIOUS = ":previous"
#: seconds a process uses the keys it read before reading them again
KEY_REFRESH = 30.0
#: a link no key opens reads the keys again, but not more often than this
REREAD_AFTER = 1.0
#: seconds a read of the keys may take before the keys read last are used
READ_TIMEOUT = 5.0
#: how much later than the rotation a daemon may still sign with the previous key: its keys
#: are up to KEY_REFRESH old, and the clocks of the daemons and of `links rotate` may differ
ROTATION_MARGIN = KEY_REFRESH + 270.0


class KeysUnavailable(Exception):
    """The keys could not be read, and no daemon's keys were read before in this process."""


@dataclass(frozen=True)
class KeyRing:
    """A name's keys: the current one signs; the previous one opens what it signed before the
    rotation, links that expire by `previous_until`."""

    current: bytes
    previous: bytes | None = None
    previous_until: float = 0.0

    def opening(self, expires: int) -> tuple[bytes, ...]:
        """The keys a link that expires at `expires` may be signed with."""
        if self.previous is None or expires > self.previous_until:
            return (self.current,)
        return (self.current, self.previous)


class LinkKeys:
    def __init__(
        self,
        engine: AsyncEngine,
        clock: Callable[[], float],
        link_lifetime: float,
        reader: AsyncEngine | None = None,
    ) -> None:
        """`reader`: an engine whose reads take no write lock (SQLite's read-only one)."""
        self._engine = engine
        self._reader = reader or engine
        self._clock = clock
        self._lifetime = link_lifetime
        self._known: dict[str, tuple[float, KeyRing]] = {}
        self._failed: dict[str, float] = {}
        self._reading = asyncio.Lock()

    async def key(self, name: str = RECORDINGS) -> bytes:
        """The key that signs links now."""
        return (await self.ring(name)).current

    async def ring(self, name: str = RECORDINGS, *, reread: bool = False) -> KeyRing:
        """The keys called `name`, read less than KEY_REFRESH seconds ago (with `reread`, less
        than REREAD_AFTER); the current one made now if no daemon made it before. While the
        database cannot be read, the keys read last are used."""
        fresh_for = REREAD_AFTER if reread else KEY_REFRESH
        if (ring := self._fresh(name, fresh_for)) is not None:
            return ring  # without waiting for a read under way
        async with self._reading:  # one read at a time: the requests waiting take its keys
            if (ring := self._fresh(name, fresh_for)) is not None:
                return ring
            known = self._known.get(name)
            if 0 <= self._clock() - self._failed.get(name, -math.inf) < REREAD_AFTER:
                # a read failed a moment ago: not another for each request that waited for it
                if known is None:
                    raise KeysUnavailable(f"the {name} link keys could not be read a moment ago")
                return known[1]
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    ring = await self._read(name)
            except Exception as error:
                failed_at = self._clock()  # when it ended: a read that timed out took 5 s
                self._failed[name] = failed_at
                if known is None:
                    log_failure(log, "reading the link keys", error)
                    raise KeysUnavailable(f"the {name} link keys cannot be read") from error
                log_failure(log, "reading the link keys (the keys read before serve)", error)
                self._known[name] = (failed_at, known[1])  # not read again for every request
                return known[1]
            self._known[name] = (self._clock(), ring)
            return ring

    def _fresh(self, name: str, fresh_for: float) -> KeyRing | None:
        known = self._known.get(name)
        if known is not None and 0 <= self._clock() - known[0] < fresh_for:  # set back: read
            return known[1]
        return None

    async def _read(self, name: str) -> KeyRing:
        async with self._reader.connect() as conn:
            rows = await _keys(conn, name)
        if name not in rows:
            # the first daemon to need it makes it, once: every later read is a plain SELECT
            async with self._engine.begin() as conn:
                await _make(conn, name, self._clock())
                rows = await _keys(conn, name)
        current, _ = rows[name]
        previous = rows.get(name + PREVIOUS)
        if previous is None:
            return KeyRing(bytes.fromhex(current))
        secret, rotated_at = previous
        until = rotated_at + self._lifetime + ROTATION_MARGIN
        return KeyRing(bytes.fromhex(current), bytes.fromhex(secret), until)


async def rotate(engine: AsyncEngine, now: float, *, revoke: bool, name: str = RECORDINGS) -> None:
    """Replace `name`'s key: the old one becomes the previous key (the links it signed open
    until they expire), or with `revoke` is dropped (they stop opening); an earlier previous
    key is dropped either way. Rotations, and a first daemon making the key, follow each
    other: the current row is locked (PostgreSQL) or the database is (SQLite)."""
    async with engine.begin() as conn:
        await _make(conn, name, now)  # waits for a daemon making it now, and keeps what it made
        old = await conn.scalar(
            select(link_keys.c.secret).where(link_keys.c.name == name).with_for_update()
        )
        assert old is not None  # made above, or by another daemon before
        if revoke:
            await conn.execute(link_keys.delete().where(link_keys.c.name == name + PREVIOUS))
        else:
            await _put(conn, name + PREVIOUS, old, now)
        await _put(conn, name, secrets.token_hex(32), now)


async def _keys(conn: AsyncConnection, name: str) -> dict[str, tuple[str, float]]:
    """name -> (secret, created_at) of `name`'s current and previous rows."""
    result = await conn.execute(
        select(link_keys.c.name, link_keys.c.secret, link_keys.c.created_at).where(
            link_keys.c.name.in_([name, name + PREVIOUS])
        )
    )
    return {row.name: (row.secret, row.created_at) for row in result}


async def _make(conn: AsyncConnection, name: str, now: float) -> None:
    """The key called `name`, unless a daemon made it already (the first insert wins a race)."""
    statement = _insert(conn).values(name=name, secret=secrets.token_hex(32), created_at=now)
    await conn.execute(statement.on_conflict_do_nothing(index_elements=["name"]))


async def _put(conn: AsyncConnection, name: str, secret: str, now: float) -> None:
    statement = _insert(conn).values(name=name, secret=secret, created_at=now)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=["name"], set_={"secret": secret, "created_at": now}
        )
    )


def _insert(conn: AsyncConnection) -> postgresql.Insert | sqlite.Insert:
    return conflict_insert(link_keys, postgres=conn.dialect.name == "postgresql")
