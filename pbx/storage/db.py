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
    engine = create_async_engine(url, pool_reset_on_return=None, **one_connection)

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions are begun below, IMMEDIATE
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "busy_timeout=5000",
            "foreign_keys=ON",
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
    """Tx on the sqlite3 connection itself, inside the thread aiosqlite runs it in.

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


def _sqlite_transaction(driver: Any, dialect: Dialect, work: Callable[[Tx], T]) -> T:
    conn: sqlite3.Connection = driver._conn  # in aiosqlite's thread, where it may be used
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(_SqliteTx(conn, dialect))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


async def run_transaction(engine: AsyncEngine, work: Callable[[Tx], T]) -> T:
    """Run `work` in one transaction, all of it in one hop to SQLite's thread on SQLite.

    aiosqlite runs every call in its own thread and SQLAlchemy makes three or four such calls
    per statement (cursor, execute, fetch, close), each a thread switch and an event-loop
    wakeup: ~0.1 ms apiece here, so a lease of seven statements waited ~3 ms on handoffs while
    SQLite needed ~0.05 ms, holding the one connection all along. Here the whole transaction
    is one call into that thread (the way SQLAlchemy's own aiosqlite adapter sets isolation
    levels), and `work` must not await: it gets a `Tx` and runs its statements synchronously.
    Elsewhere the transaction is SQLAlchemy's, with `work` run by `run_sync`.
    """
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            return await conn.run_sync(lambda sync_conn: work(_AlchemyTx(sync_conn)))
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection  # the aiosqlite.Connection
        result: T = await driver._execute(_sqlite_transaction, driver, engine.dialect, work)  # type: ignore[union-attr]
        return result
