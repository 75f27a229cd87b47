"""Staff login sessions in the database, so a restart or a second daemon keeps people logged in.

A session ends when idle for `idle` seconds, `max_age` seconds after the login in any case, and
when the user's password changes (it keeps a fingerprint of the password hash it began with).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx.storage.tables import staff_sessions

TOUCH_EVERY = 60.0  # write last_seen at most once a minute per session, not on every request


def text_sha256(text: str) -> str:
    """sha256 of any text a client sent (a cookie, a token, a login name): aiohttp hands header
    bytes that are not UTF-8 over as lone surrogates, which a plain encode() refuses (a 500 on
    every page for a cookie of one byte 0xff); `surrogatepass` encodes them too."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class StaffSession:
    user: str
    csrf: str
    password_sha256: str  # see `opened_with`

    def opened_with(self, password_hash: str) -> bool:
        """Whether the session began with this password hash (a changed one ends it)."""
        return hmac.compare_digest(self.password_sha256, text_sha256(password_hash))


class StaffSessionStore:
    def __init__(
        self, engine: AsyncEngine, clock: Callable[[], float], idle: float, max_age: float
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._idle = idle
        self._max_age = max_age

    async def create(self, user: str, password_hash: str) -> str:
        """A new session for `user`, logged in with `password_hash`; returns the cookie token
        (256 random bits, never reused)."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        async with self._engine.begin() as conn:
            await conn.execute(
                delete(staff_sessions).where(
                    or_(
                        staff_sessions.c.last_seen < now - self._idle,
                        staff_sessions.c.created_at < now - self._max_age,
                    )
                )
            )
            await conn.execute(
                insert(staff_sessions).values(
                    id_sha256=text_sha256(token),
                    user=user,
                    csrf=secrets.token_urlsafe(32),
                    created_at=now,
                    last_seen=now,
                    password_sha256=text_sha256(password_hash),
                )
            )
        return token

    async def find(self, token: str) -> StaffSession | None:
        """The live session the token opens; an idle or too old one has ended."""
        now = self._clock()
        key = text_sha256(token)
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(staff_sessions).where(staff_sessions.c.id_sha256 == key))
            ).one_or_none()
        if row is None or row.last_seen < now - self._idle or row.created_at < now - self._max_age:
            return None
        if row.last_seen < now - TOUCH_EVERY:
            async with self._engine.begin() as conn:
                await conn.execute(
                    update(staff_sessions)
                    .where(staff_sessions.c.id_sha256 == key)
                    .values(last_seen=now)
                )
        return StaffSession(row.user, row.csrf, row.password_sha256)

    async def end(self, token: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                delete(staff_sessions).where(staff_sessions.c.id_sha256 == text_sha256(token))
            )
