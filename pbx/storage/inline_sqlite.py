"""An AsyncEngine whose SQLite statements run at once in the event loop, for storing calls.

A stored call is ~15 short statements (its attribution reads, the row, its caller, its report
credits). Through aiosqlite each costs three or four hops to its thread and back, and at 50
calls/s those hops, not SQLite, took most of the daemon's CPU (a call cost ~20 ms; the
statements themselves ~1 ms). Here the same SQLAlchemy code runs on a sqlite3 connection in the
loop's thread, like the lease transactions (pbx.storage.db.Transactions), with the same rule:
never wait for SQLite's lock in the loop. Its connection has busy_timeout 0 and begins deferred,
so a write that finds the lock taken fails at once with `Locked` and the caller does it again on
the ordinary engine, in a thread. Reads never wait in WAL mode.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy import Connection, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from pbx.storage.db import sqlite_pragmas


class _InlineConnection(aiosqlite.Connection):
    """aiosqlite's connection with every operation run in the calling thread: no worker thread."""

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._connection is None:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    async def _connect(self) -> _InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    def __await__(self) -> Any:
        return self._connect().__await__()

    def stop(self) -> None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def is_locked(error: BaseException) -> bool:
    """SQLite's lock was taken by another connection (busy_timeout 0: no wait)."""
    return isinstance(error, OperationalError) and any(
        word in str(error.orig) for word in ("locked", "busy")
    )


def open_inline_engine(path: str) -> AsyncEngine:
    """One connection to the SQLite file `path`, its statements run in the event loop."""
    # isolation_level None: transactions are begun below (not through aiosqlite's queue)
    connect = partial(sqlite3.connect, path, isolation_level=None, check_same_thread=False)
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{path}",
        async_creator=lambda: _InlineConnection(connect, 64),
        pool_size=1,
        max_overflow=0,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in sqlite_pragmas(busy_timeout_ms=0):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")  # deferred: a read takes no lock, a write fails at once

    return engine
