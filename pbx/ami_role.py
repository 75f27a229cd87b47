"""Which daemon follows AMI when several share one PostgreSQL: one at a time, the others wait.

Every daemon serves HTTP and FastAGI, but folding Asterisk's events in each of them would report
every call N times (kept once, the store is idempotent on Linkedid, but N times the work and N
AMI sessions). A PostgreSQL session-level advisory lock names the consumer: it is held on a
connection of its own for as long as that daemon follows AMI, and the others try to take it every
`retry_every` seconds. A daemon that dies closes its connection, which releases the lock at once;
a daemon that hangs (stopped, or its event loop stuck) stops checking its connection, and the
server ends that session after `idle_limit` seconds of silence (`idle_session_timeout`), which
releases the lock too. So another daemon takes over within idle_limit + retry_every.

A consumer that loses its connection (the database restarted, the server ended the session)
stops following AMI before it may try again: two consumers for a moment would still store each
call once, and the new consumer's reconciliation recovers the calls that ended meanwhile.
On SQLite there is one daemon by design, and no lock (see pbx.pbx_link).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sqlalchemy import NullPool, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from ami_bridge import AmiBridge
from pbx.keys import PbxLink

log = logging.getLogger(__name__)

#: the advisory lock's key: one AMI consumer per database (one Asterisk per database)
LOCK_KEY = int.from_bytes(b"ctAMI", "big")


class AmiConsumerLock:
    """The advisory lock on a dedicated connection; only PostgreSQL has these."""

    def __init__(self, url: str, *, retry_every: float = 1.0, idle_limit: float = 3.0) -> None:
        if idle_limit <= retry_every:
            raise ValueError("idle_limit must exceed retry_every, or the holder's own session ends")
        self._retry_every = retry_every
        self._timeout = idle_limit
        # NullPool: closing the connection closes the session, and with it the lock (a pool
        # would keep the session, lock included, for whoever borrows the connection next)
        self._engine = create_async_engine(
            url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",  # idle between checks, never idle in a transaction
            connect_args={
                "server_settings": {
                    "idle_session_timeout": str(round(idle_limit * 1000)),
                    "application_name": "calltrack ami lock",
                }
            },
        )
        self._conn: AsyncConnection | None = None

    async def acquire(self) -> None:
        """Returns once this daemon holds the lock; tries every `retry_every` seconds.

        Why it cannot is logged once per reason, as a warning: no daemon follows AMI meanwhile
        (nor reconciles), and a reason that lasts is the admin's to fix (a PostgreSQL before 14
        or a PgBouncer refuses `idle_session_timeout`), not only the database restarting."""
        said = ""
        while True:
            try:
                if await self._query("SELECT pg_try_advisory_lock(:key)", key=LOCK_KEY):
                    return
            except Exception as exc:
                reason = str(exc) or repr(exc)
                if reason != said:
                    log.warning(
                        "AMI lock: cannot take it, trying every %gs: %s", self._retry_every, reason
                    )
                    said = reason
                await self._drop()
            await asyncio.sleep(self._retry_every)

    async def hold(self) -> None:
        """Checks the lock's connection every `retry_every` seconds (which also keeps the
        session from timing out); returns when it is gone, and the lock with it."""
        while True:
            await asyncio.sleep(self._retry_every)
            try:
                await self._query("SELECT 1")
            except Exception as exc:
                log.warning("AMI lock lost with its database connection: %s", exc or repr(exc))
                await self._drop()
                return

    async def close(self) -> None:
        """Releases the lock (by closing its session) and the engine."""
        await self._drop()
        await self._engine.dispose()

    async def _query(self, sql: str, **params: int) -> object:
        async with asyncio.timeout(self._timeout):
            if self._conn is None:
                self._conn = await self._engine.connect()
            return await self._conn.scalar(text(sql), params)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeout):
                    await conn.close()


async def consume_when_elected(
    lock: AmiConsumerLock, new_bridge: Callable[[], AmiBridge], link: PbxLink
) -> None:
    """Follow AMI while holding `lock`, stand by otherwise; runs until cancelled."""
    try:
        while True:
            link.standby = True
            await lock.acquire()
            log.info("AMI: this daemon holds the consumer lock and follows the calls")
            bridge = link.ami = new_bridge()
            link.standby = False
            bridge.start()
            try:
                await lock.hold()
            finally:
                link.ami = None
                link.standby = True
                await bridge.close()
            log.warning("AMI: standing by until the consumer lock is free again")
    finally:
        await lock.close()
