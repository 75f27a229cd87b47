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
stops following AMI before it may try again, and by the time another daemon may take the lock:
two consumers for a moment would still store each call once, and the new consumer's
reconciliation recovers the calls that ended meanwhile. The calls it had folded are still
stored (AmiBridge.close, ReportDelivery.hand_over). A consumer that cannot log in to AMI for
LOGIN_GRACE (its config's secret is old, Asterisk unreachable from its host) lets another daemon
try.
On SQLite there is one daemon by design, and no lock (see pbx.pbx_link).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from sqlalchemy import NullPool, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from ami_bridge import AmiBridge
from pbx.keys import PbxLink
from pbx.tasks import cancel_and_wait

log = logging.getLogger(__name__)

#: the advisory lock's key: one AMI consumer per database (one Asterisk per database)
LOCK_KEY = int.from_bytes(b"ctAMI", "big")
#: a holder not logged in to AMI this long lets another daemon try: longer than an Asterisk
#: restart with the bridge's reconnect backoff (up to 30 s between attempts), so a consumer
#: that can follow never steps down for one
LOGIN_GRACE = 120.0
#: then it stands by this long: the others try every second (AmiConsumerLock.retry_every)
LOGIN_STANDOFF = 3.0


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
        session from timing out); returns as soon as it may be gone: the caller stops
        following AMI, then `release`s it.

        The server ends a silent session idle_limit after it answered the last good check,
        and another daemon may take the lock then. So a check must answer before idle_limit
        less a margin (a quarter of idle_limit - retry_every) counted from when the last good
        one was sent, which is earlier than the server's answer: this daemon has stopped by
        the moment the lock can be freed, however late its own sleep woke up. (Each check
        used to get idle_limit - retry_every after its sleep: it gave up at the moment the lock
        was freed or after it, and two daemons could follow AMI at once.)"""
        margin = (self._timeout - self._retry_every) / 4
        good = time.monotonic()  # acquire's answer: the session was alive when it was asked
        while True:
            await asyncio.sleep(self._retry_every)
            sent = time.monotonic()
            within = good + self._timeout - margin - sent
            try:
                if within <= 0:
                    raise TimeoutError(f"no check answered for {sent - good:.1f} s")
                await self._query("SELECT 1", within=within)
            except Exception as exc:
                log.warning("AMI lock lost with its database connection: %s", exc or repr(exc))
                return
            good = sent

    async def release(self) -> None:
        """Gives the lock up (by closing its session), if held."""
        await self._drop()

    async def close(self) -> None:
        """Releases the lock (by closing its session) and the engine."""
        await self._drop()
        await self._engine.dispose()

    async def _query(self, sql: str, within: float | None = None, **params: int) -> object:
        async with asyncio.timeout(within or self._timeout):
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
    lock: AmiConsumerLock,
    new_bridge: Callable[[], AmiBridge],
    link: PbxLink,
    *,
    login_grace: float = LOGIN_GRACE,
    login_standoff: float = LOGIN_STANDOFF,
) -> None:
    """Follow AMI while holding `lock`, stand by otherwise; runs until cancelled.

    A holder whose bridge cannot log in to AMI for `login_grace` seconds (its config's secret
    is old, Asterisk unreachable from its host) gives the lock up and stands by for
    `login_standoff`, so another daemon takes it: held, the others waited for good and no
    daemon followed the calls or reconciled them. Alone, it takes the lock again."""
    try:
        while True:
            link.standby = True
            await lock.acquire()
            log.info("AMI: this daemon holds the consumer lock and follows the calls")
            bridge = link.ami = new_bridge()
            link.standby = False
            bridge.start()
            try:
                logged_out = await _held_while_logged_in(lock, bridge, login_grace)
            finally:
                link.ami = None
                link.standby = True
                await bridge.close()
                await lock.release()
            if logged_out:
                log.warning(
                    "AMI: no login for %gs; giving the consumer lock to another daemon", login_grace
                )
                await asyncio.sleep(login_standoff)
            else:
                log.warning("AMI: standing by until the consumer lock is free again")
    finally:
        await lock.close()


async def _held_while_logged_in(lock: AmiConsumerLock, bridge: AmiBridge, grace: float) -> bool:
    """Returns when the lock may be lost (False), or the bridge has not been logged in to AMI
    for `grace` seconds (True)."""
    held = asyncio.create_task(lock.hold(), name="ami-lock-hold")
    logged_out = asyncio.create_task(_logged_out_for(bridge, grace), name="ami-login-watch")
    try:
        done, _ = await asyncio.wait({held, logged_out}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(held, logged_out)
    return held not in done


async def _logged_out_for(bridge: AmiBridge, grace: float) -> None:
    down_since = time.monotonic()
    while time.monotonic() - down_since < grace:
        await asyncio.sleep(min(1.0, grace / 4))
        if bridge.connected:
            down_since = time.monotonic()
