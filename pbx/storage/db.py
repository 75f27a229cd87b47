"""Opening the database, and the schema revision check that keeps `serve` off an old schema."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Dialect, event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.sql.base import Executable

T = TypeVar("T")
BUSY_TIMEOUT_MS = 5000


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def open_engine(url: str) -> AsyncEngine:
    """An engine tuned for the backend: SQLite serialises writers in WAL mode, one connection."""
    if not is_sqlite(url):
        return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    # one connection: writers queue in the process instead of contending for SQLite's lock
    one_connection = {} if ":memory:" in url else {"pool_size": 1, "max_overflow": 0}
    # No rollback when a connection goes back to the pool: a Connection that ends with a
    # transaction open rolls it back itself, and run_transaction always commits or rolls back,
    # so the pool's rollback only cost one more trip to aiosqlite's thread per transaction.
    engine = create_async_engine(
        url,
        pool_reset_on_return=None,
        # run_transaction uses the connection from the event loop's thread
        connect_args={"check_same_thread": False},
        **one_connection,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions are begun below, IMMEDIATE
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            f"busy_timeout={BUSY_TIMEOUT_MS}",
            "foreign_keys=ON",
            # checkpoints fsync: run_transaction commits in the event loop, so they are left
            # to checkpoint(), in aiosqlite's thread
            "wal_autocheckpoint=0",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_immediate(conn: Connection) -> None:
        # take the write lock up front: a read-then-write transaction cannot deadlock another
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "pbx:migrations")
    return config


def _upgrade(connection: Connection) -> None:
    config = _alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _revisions(connection: Connection) -> tuple[str | None, str | None]:
    current = MigrationContext.configure(connection).get_current_revision()
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    return current, head


async def upgrade(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)


async def schema_revisions(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """(the database's revision, the code's head revision)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_revisions)


class OutdatedSchema(RuntimeError):
    pass


async def require_current_schema(engine: AsyncEngine, config_path: str = "CONFIG") -> None:
    current, head = await schema_revisions(engine)
    if current != head:
        state = "has no calltrack schema" if current is None else f"is at revision {current}"
        raise OutdatedSchema(
            f"the database {state}, this calltrack needs {head}:"
            f" run `calltrack db upgrade -c {config_path}` first"
        )


# -- short transactions in one call ---------------------------------------------------------


class Tx(Protocol):
    """The statements of one transaction, run synchronously by `run_transaction`."""

    def run(self, statement: Executable, params: Mapping[str, Any]) -> int:
        """Execute; the number of rows changed."""
        ...

    def scalar(self, statement: Executable, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None."""
        ...

    def scalars(self, statement: Executable, params: Mapping[str, Any]) -> list[Any]:
        """The first column of every row."""
        ...

    def run_many(self, statement: Executable, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute once per row (executemany)."""
        ...


class _AlchemyTx:
    """Tx on a SQLAlchemy connection (PostgreSQL: each statement is one round trip anyway)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def run(self, statement: Executable, params: Mapping[str, Any]) -> int:
        return self._conn.execute(statement, dict(params)).rowcount

    def scalar(self, statement: Executable, params: Mapping[str, Any]) -> Any:
        return self._conn.execute(statement, dict(params)).scalar()

    def scalars(self, statement: Executable, params: Mapping[str, Any]) -> list[Any]:
        return list(self._conn.execute(statement, dict(params)).scalars())

    def run_many(self, statement: Executable, rows: Sequence[Mapping[str, Any]]) -> None:
        self._conn.execute(statement, [dict(row) for row in rows])


#: (statement, insert column keys) -> (SQL, bind names in order, default bind values)
_Compiled = tuple[str, tuple[str, ...], dict[str, Any]]
_compiled: dict[tuple[int, tuple[str, ...]], tuple[Executable, _Compiled]] = {}


def _compile(statement: Executable, dialect: Dialect, params: Mapping[str, Any]) -> _Compiled:
    keys = tuple(sorted(params)) if getattr(statement, "is_insert", False) else ()
    key = (id(statement), keys)
    hit = _compiled.get(key)
    if hit is not None and hit[0] is statement:
        return hit[1]
    compiled = statement.compile(dialect=dialect, column_keys=list(keys) or None)  # type: ignore[attr-defined]
    result = (compiled.string, tuple(compiled.positiontup or ()), dict(compiled.params))
    _compiled[key] = (statement, result)
    return result


class _SqliteTx:
    """Tx on the sqlite3 connection itself (in the event loop, or in aiosqlite's thread).

    The statements are SQLAlchemy Core ones, compiled once for SQLite ("?" parameters); they
    use plain column types (text, integer, real) that need no conversion on the way in or out.
    """

    def __init__(self, conn: sqlite3.Connection, dialect: Dialect) -> None:
        self._conn = conn
        self._dialect = dialect

    def _execute(self, statement: Executable, params: Mapping[str, Any]) -> sqlite3.Cursor:
        sql, names, defaults = _compile(statement, self._dialect, params)
        return self._conn.execute(sql, [params[n] if n in params else defaults[n] for n in names])

    def run(self, statement: Executable, params: Mapping[str, Any]) -> int:
        return self._execute(statement, params).rowcount

    def scalar(self, statement: Executable, params: Mapping[str, Any]) -> Any:
        row = self._execute(statement, params).fetchone()
        return None if row is None else row[0]

    def scalars(self, statement: Executable, params: Mapping[str, Any]) -> list[Any]:
        return [row[0] for row in self._execute(statement, params).fetchall()]

    def run_many(self, statement: Executable, rows: Sequence[Mapping[str, Any]]) -> None:
        sql, names, defaults = _compile(statement, self._dialect, rows[0])
        self._conn.executemany(
            sql, [[row[n] if n in row else defaults[n] for n in names] for row in rows]
        )


class _Busy(Exception):
    """Another process holds SQLite's write lock: wait for it in aiosqlite's thread instead."""


def _sqlite_transaction(
    driver: Any, dialect: Dialect, work: Callable[[Tx], T], *, wait: bool = True
) -> T:
    conn: sqlite3.Connection = driver._conn
    if wait:
        conn.execute("BEGIN IMMEDIATE")
    else:
        conn.execute("PRAGMA busy_timeout=0")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise _Busy from exc
            raise
        finally:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    try:
        result = work(_SqliteTx(conn, dialect))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _in_loop(engine: AsyncEngine) -> bool:
    """A file database has one pooled connection, which run_transaction holds while it runs;
    ":memory:" shares one among all (StaticPool), so it stays with aiosqlite's queue."""
    return (engine.url.database or ":memory:") != ":memory:"


async def checkpoint(engine: AsyncEngine) -> None:
    """Copy the WAL into the database file (PASSIVE: readers and writers are not blocked),
    in aiosqlite's thread: its fsync must not stall the event loop. No-op off SQLite."""
    if engine.dialect.name != "sqlite":
        return
    conn = await engine.connect()
    try:
        await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        await conn.close()


async def run_transaction(engine: AsyncEngine, work: Callable[[Tx], T]) -> T:
    """Run `work` in one transaction; on SQLite synchronously, in the event loop.

    aiosqlite runs every call in its own thread and SQLAlchemy makes three or four such calls
    per statement (cursor, execute, fetch, close), each a thread switch and an event-loop
    wakeup; under load each wakeup waits a whole loop iteration, so a lease of seven
    statements held the one connection for tens of milliseconds while SQLite needed ~0.3 ms,
    and leases queued for it. Here `work` (which must not await: it gets a `Tx` and runs its
    statements synchronously) runs in the loop on the sqlite3 connection itself, checked out
    of the pool so nothing else uses it meanwhile. It never waits for SQLite's lock there:
    if another process holds it, the transaction goes to aiosqlite's thread, which may wait
    (busy_timeout). Elsewhere the transaction is SQLAlchemy's, `work` run by `run_sync`.
    """
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            return await conn.run_sync(lambda sync_conn: work(_AlchemyTx(sync_conn)))
    # not `async with`: its exit closes in a shielded task, a loop iteration later, and the
    # one connection stayed checked out that long (leases queued ~200 ms for it under load)
    conn = await engine.connect()
    try:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection  # the aiosqlite.Connection
        if _in_loop(engine):
            try:
                return _sqlite_transaction(driver, engine.dialect, work, wait=False)
            except _Busy:
                pass
        result: T = await driver._execute(_sqlite_transaction, driver, engine.dialect, work)  # type: ignore[union-attr]
        return result
    finally:
        await conn.close()
