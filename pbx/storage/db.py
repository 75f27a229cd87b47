"""Opening the database, and the schema revision check that keeps `serve` off an old schema."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Dialect, Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.base import Executable
from sqlalchemy.util import await_, greenlet_spawn

from pbx.storage.errors import is_transient
from pbx.storage.health import WriteHealth

T = TypeVar("T")
BUSY_TIMEOUT_MS = 5000


def conflict_insert(table: Table, *, postgres: bool) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can say ON CONFLICT (an upsert, or insert-or-nothing): both backends
    spell it alike, each through its own dialect's construct."""
    return (postgresql.insert if postgres else sqlite.insert)(table)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def open_engine(url: str, *, read_only: bool = False) -> AsyncEngine:
    """An engine tuned for the backend: SQLite serialises writers in WAL mode, one connection.

    `read_only` (SQLite): for reports, which may read for a while: its transactions begin
    deferred and take no write lock, so leases and calls are written meanwhile (WAL readers
    see a snapshot and never block the writer)."""
    if not is_sqlite(url):
        # pool_recycle: a connection a NAT or firewall dropped without a word is not handed out
        # once it is that old (checked at checkout, free); a younger one fails its statement
        server = create_async_engine(url, pool_size=10, max_overflow=10, pool_recycle=300)
        event.listen(server.sync_engine, "checkout", _drop_closed_connection)
        return server
    # one connection: writers queue in the process instead of contending for SQLite's lock
    # (a reader: a few, so one long report does not keep every page waiting)
    pool = {"pool_size": 3 if read_only else 1, "max_overflow": 0}
    engine = create_async_engine(url, **({} if ":memory:" in url else pool))

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions are begun below
        cursor = dbapi_connection.cursor()
        for pragma in sqlite_pragmas(BUSY_TIMEOUT_MS):
            cursor.execute(pragma)
        if read_only:
            cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        # a writer takes the write lock up front: a read-then-write transaction cannot
        # deadlock another
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _drop_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled connection the server closed (PostgreSQL restarted) is replaced at checkout.

    In place of pool_pre_ping, whose round trip per checkout took 7-9 % of a daemon's py-spy
    samples under load (bench/soak.py): asyncpg sees the server's close on the idle socket, so
    the check costs nothing. The whole pool is dropped (a restart closed every connection) and
    the pool connects again. A connection cut without a word (a network gone, younger than
    pool_recycle) fails its first statement instead: asyncpg then marks it closed, and this
    check drops the pool at its next checkout (through SQLAlchemy, SQLAlchemy drops it at
    once); background writers retry, a new visit that hits it gets the site's own numbers."""
    if dbapi_connection.driver_connection.is_closed():
        raise InvalidatePoolError("the database server closed this connection")


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
    async with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # a batch migration copies a table, drops the old one and renames the copy: with
            # foreign keys on, the drop failed while other tables' rows referred to the old
            # one (0006's calls with a tag: `db upgrade` never got past it). Off outside the
            # transaction (SQLite's own procedure for such changes; inside one it is a no-op),
            # checked before the commit (migrations/env.py), on again after
            raw: Any = (await conn.get_raw_connection()).driver_connection  # aiosqlite's
            await raw.execute("PRAGMA foreign_keys=OFF")
        try:
            async with conn.begin():
                await conn.run_sync(_upgrade)
        finally:
            if sqlite:
                # a cancelled upgrade has its connection invalidated (closed, not pooled again):
                # the cancellation is what the caller must hear, not this
                with contextlib.suppress(ValueError, sqlite3.Error):
                    await raw.execute("PRAGMA foreign_keys=ON")


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


@contextlib.asynccontextmanager
async def current_engine(
    url: str, config_path: str, *, read_only: bool = False
) -> AsyncIterator[AsyncEngine]:
    """An engine on a database at the current migration, for a command's one job: it raises
    OutdatedSchema (naming what to run) before the job starts, and is disposed after it."""
    engine = open_engine(url, read_only=read_only)
    try:
        await require_current_schema(engine, config_path)
        yield engine
    finally:
        await engine.dispose()


# -- short transactions in one call ---------------------------------------------------------


class Tx(Protocol):
    """The statements of one transaction, run synchronously by `Transactions.run` (or by
    `run_in`, inside an async transaction already open).

    Statements are built once (module or instance constants, with bindparams): they are
    compiled once per statement object."""

    @property
    def postgres(self) -> bool:
        """On PostgreSQL (an upsert is spelled by each dialect's own construct)."""
        ...

    def first(self, statement: Executable, params: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The first row by column name, or None."""
        ...

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

    @property
    def postgres(self) -> bool:
        return self._conn.dialect.name == "postgresql"

    def first(self, statement: Executable, params: Mapping[str, Any]) -> Mapping[str, Any] | None:
        row = self._conn.execute(statement, dict(params)).mappings().first()
        return None if row is None else {str(k): v for k, v in row.items()}

    def run(self, statement: Executable, params: Mapping[str, Any]) -> int:
        return self._conn.execute(statement, dict(params)).rowcount

    def scalar(self, statement: Executable, params: Mapping[str, Any]) -> Any:
        return self._conn.execute(statement, dict(params)).scalar()

    def scalars(self, statement: Executable, params: Mapping[str, Any]) -> list[Any]:
        return list(self._conn.execute(statement, dict(params)).scalars())

    def run_many(self, statement: Executable, rows: Sequence[Mapping[str, Any]]) -> None:
        self._conn.execute(statement, [dict(row) for row in rows])


async def run_in(conn: AsyncConnection, work: Callable[[Tx], T]) -> T:
    """`work` inside the async transaction `conn` has open: statements written once for `Tx`
    serve both the in-loop group commit (Transactions) and the writers that hold a
    SQLAlchemy transaction of their own."""
    return await conn.run_sync(lambda sync_conn: work(_AlchemyTx(sync_conn)))


#: (statement, dialect and driver, insert column keys) -> (SQL, bind names in order, defaults)
_Compiled = tuple[str, tuple[str, ...], dict[str, Any]]
_compiled: dict[tuple[int, str, str, tuple[str, ...]], tuple[Executable, _Compiled]] = {}


def _compile(statement: Executable, dialect: Dialect, params: Mapping[str, Any]) -> _Compiled:
    # an INSERT's columns are those given, in the order given (one code path gives one order:
    # sorting them per call cost more than the lookup)
    keys = tuple(params) if getattr(statement, "is_insert", False) else ()
    key = (id(statement), dialect.name, dialect.driver, keys)
    hit = _compiled.get(key)
    if hit is not None and hit[0] is statement:
        return hit[1]
    compiled = statement.compile(dialect=dialect, column_keys=list(keys) or None)  # type: ignore[attr-defined]
    result = (compiled.string, tuple(compiled.positiontup or ()), dict(compiled.params))
    _compiled[key] = (statement, result)
    return result


def _bound(
    statement: Executable, dialect: Dialect, params: Mapping[str, Any]
) -> tuple[str, list[Any]]:
    """The statement's SQL for `dialect` and its parameters in the order the SQL binds them."""
    sql, names, defaults = _compile(statement, dialect, params)
    return sql, _in_order(names, defaults, params)


def _bound_many(
    statement: Executable, dialect: Dialect, rows: Sequence[Mapping[str, Any]]
) -> tuple[str, list[list[Any]]]:
    """As _bound, for an executemany: the SQL of the first row's columns, every row's values."""
    sql, names, defaults = _compile(statement, dialect, rows[0])
    return sql, [_in_order(names, defaults, row) for row in rows]


def _in_order(
    names: Sequence[str], defaults: Mapping[str, Any], params: Mapping[str, Any]
) -> list[Any]:
    return [params[n] if n in params else defaults[n] for n in names]


class _SqliteTx:
    """Tx on the sqlite3 connection itself (in the event loop, or in aiosqlite's thread).

    The statements are SQLAlchemy Core ones, compiled once for SQLite ("?" parameters), with
    no type conversion on the way in or out: a Boolean column reads back as 0 or 1 here (as
    bool through SQLAlchemy), so callers test it for truth, never compare it with True.
    """

    def __init__(self, conn: sqlite3.Connection, dialect: Dialect) -> None:
        self._conn = conn
        self._dialect = dialect

    def _execute(self, statement: Executable, params: Mapping[str, Any]) -> sqlite3.Cursor:
        return self._conn.execute(*_bound(statement, self._dialect, params))

    postgres = False

    def first(self, statement: Executable, params: Mapping[str, Any]) -> Mapping[str, Any] | None:
        cursor = self._execute(statement, params)
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cursor.description], row, strict=True))

    def run(self, statement: Executable, params: Mapping[str, Any]) -> int:
        return self._execute(statement, params).rowcount

    def scalar(self, statement: Executable, params: Mapping[str, Any]) -> Any:
        row = self._execute(statement, params).fetchone()
        return None if row is None else row[0]

    def scalars(self, statement: Executable, params: Mapping[str, Any]) -> list[Any]:
        return [row[0] for row in self._execute(statement, params).fetchall()]

    def run_many(self, statement: Executable, rows: Sequence[Mapping[str, Any]]) -> None:
        self._conn.executemany(*_bound_many(statement, self._dialect, rows))


class _AsyncpgTx:
    """Tx on the asyncpg connection itself, inside a transaction begun on it (PostgreSQL).

    The statements are compiled once for PostgreSQL, as for SQLite above, and run by asyncpg
    (its prepared statements, no type conversion on our side): SQLAlchemy's execution layer
    (an execution context, its parameter processing and result objects per statement) cost a
    visit more CPU than its round trips (bench/README.md). `work` runs in a greenlet, as under
    SQLAlchemy's run_sync, so each statement waits for its answer without blocking the loop.
    """

    postgres = True

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self._conn = conn  # asyncpg.Connection
        self._dialect = dialect

    def first(self, statement: Executable, params: Mapping[str, Any]) -> Mapping[str, Any] | None:
        sql, args = _bound(statement, self._dialect, params)
        row = await_(self._conn.fetchrow(sql, *args))
        return None if row is None else dict(row.items())

    def run(self, statement: Executable, params: Mapping[str, Any]) -> int:
        sql, args = _bound(statement, self._dialect, params)
        status: str = await_(self._conn.execute(sql, *args))  # "UPDATE 1", "INSERT 0 1"
        return int(status.rpartition(" ")[2])

    def scalar(self, statement: Executable, params: Mapping[str, Any]) -> Any:
        sql, args = _bound(statement, self._dialect, params)
        return await_(self._conn.fetchval(sql, *args))

    def scalars(self, statement: Executable, params: Mapping[str, Any]) -> list[Any]:
        sql, args = _bound(statement, self._dialect, params)
        return [row[0] for row in await_(self._conn.fetch(sql, *args))]

    def run_many(self, statement: Executable, rows: Sequence[Mapping[str, Any]]) -> None:
        await_(self._conn.executemany(*_bound_many(statement, self._dialect, rows)))


class _Busy(Exception):
    """Another connection holds SQLite's write lock: wait for it in a thread instead."""


def sqlite_pragmas(busy_timeout_ms: int) -> list[str]:
    """How every connection to the SQLite file is set up."""
    return [
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        f"PRAGMA busy_timeout={busy_timeout_ms}",
        "PRAGMA foreign_keys=ON",
        # checkpoints fsync: transactions commit in the event loop, so they are left to
        # checkpoint(), in a thread
        "PRAGMA wal_autocheckpoint=0",
        "PRAGMA cache_size=-32768",  # 32 MiB of pages: a year of report rollups stays in memory
        "PRAGMA mmap_size=268435456",
    ]


def _checkpoint_file(path: str) -> None:
    with contextlib.closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)) as conn:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


async def checkpoint(engine: AsyncEngine) -> None:
    """Copy the WAL into the database file (PASSIVE: readers and writers are not blocked),
    in a thread and on a connection of its own: its fsync must neither stall the event loop
    nor keep a connection from the leases meanwhile. No-op off a SQLite file."""
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:":
        return
    await asyncio.to_thread(_checkpoint_file, path)


def _settle(
    group: Sequence[tuple[object, asyncio.Future[Any]]], outcomes: Sequence[tuple[bool, Any]]
) -> None:
    """Hand each waiting caller its work's result or exception (unless it gave up waiting)."""
    for (_work, future), (ok, value) in zip(group, outcomes, strict=True):
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class Transactions:
    """Short write transactions (leases, their extensions, speech results): `work` gets a `Tx`
    and runs its statements synchronously, without awaiting.

    On a SQLite file they run in the event loop, on a sqlite3 connection of their own:
    SQLAlchemy's aiosqlite adapter needs three or four thread hops per statement, so a lease of
    seven statements took tens of milliseconds where SQLite needs ~0.3 ms. The works asked for
    in one turn of the loop are committed together, each in a savepoint of one transaction
    (group commit): most of a lease's cost was its commit (a dozen B-tree pages written to the
    WAL), and the leases of one moment share most of their pages (the rollup rows of the day,
    the index pages of recent sessions), so a group of k costs much less than k commits, and a
    work that fails rolls back alone. They never wait for SQLite's lock in the loop: when
    another connection holds it, the group waits in a thread instead (and later ones queue
    behind it). On PostgreSQL each work is a transaction of its own on the asyncpg connection
    (_AsyncpgTx: several daemons' transactions run at once there, a group would only make them
    wait for each other); on in-memory SQLite (tests) each is SQLAlchemy's.

    Each outcome is told to `health`: a database that cannot take writes (full, down) shows in
    /healthz and the log.
    """

    def __init__(self, engine: AsyncEngine, health: WriteHealth) -> None:
        self._engine = engine
        self._health = health
        path = engine.url.database
        self._path = path if engine.dialect.name == "sqlite" and path != ":memory:" else None
        self._conn: sqlite3.Connection | None = None
        self._waiting = asyncio.Lock()
        self._group: list[tuple[Callable[[Tx], Any], asyncio.Future[Any]]] = []
        self._waiting_groups: set[asyncio.Task[None]] = set()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            assert self._path is not None
            self._conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            for pragma in sqlite_pragmas(busy_timeout_ms=0):
                self._conn.execute(pragma)
        return self._conn

    def _run_group(
        self, works: Sequence[Callable[[Tx], Any]], *, wait: bool
    ) -> list[tuple[bool, Any]]:
        """Run the works in one transaction; per work (True, its result) or (False, the
        exception it raised, its statements rolled back). A failed commit raises."""
        conn = self._connection()
        if wait:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not wait and ("locked" in str(exc) or "busy" in str(exc)):
                raise _Busy from exc
            raise
        finally:
            if wait:
                conn.execute("PRAGMA busy_timeout=0")
        tx = _SqliteTx(conn, self._engine.dialect)
        alone = len(works) == 1  # no savepoint needed: its failure rolls back the transaction
        outcomes: list[tuple[bool, Any]] = []
        try:
            for work in works:
                if alone:
                    outcomes.append((True, work(tx)))
                    continue
                conn.execute("SAVEPOINT work")
                try:
                    outcomes.append((True, work(tx)))
                except Exception as exc:
                    if not conn.in_transaction:
                        # SQLite rolled the whole transaction back (a full disk, an I/O error):
                        # its error is every work's, there is no savepoint left to go back to
                        raise
                    conn.execute("ROLLBACK TO work")
                    outcomes.append((False, exc))
                conn.execute("RELEASE work")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    # a connection stuck in a transaction would refuse every later BEGIN: the
                    # next group opens a new one
                    self._conn = None
                    conn.close()
            raise
        return outcomes

    async def run(self, work: Callable[[Tx], T]) -> T:
        try:
            result = await self._attempt(work)
        except Exception as error:
            if is_transient(error):
                self._health.failed(error)
            raise
        self._health.ok()
        return result

    async def _attempt(self, work: Callable[[Tx], T]) -> T:
        if self._engine.dialect.driver == "asyncpg":
            async with self._engine.connect() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
                assert driver is not None  # a checked-out connection
                try:
                    async with driver.transaction():
                        return await greenlet_spawn(work, _AsyncpgTx(driver, self._engine.dialect))
                finally:
                    if driver.is_in_transaction():
                        # cancelled in its BEGIN or ROLLBACK: the pool must not get it back
                        # inside a transaction (holding row locks); closed, the checkout drops it
                        driver.terminate()
        if self._path is None:
            async with self._engine.begin() as conn:
                return await run_in(conn, work)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._group.append((work, future))
        if len(self._group) == 1:
            loop.call_soon(self._commit_group)
        return await future

    def _commit_group(self) -> None:
        group, self._group = self._group, []
        if not self._waiting.locked():
            try:
                _settle(group, self._run_group([w for w, _f in group], wait=False))
                return
            except _Busy:
                pass
            except Exception as exc:
                _settle(group, [(False, exc)] * len(group))
                return
        task = asyncio.get_running_loop().create_task(self._commit_waiting(group))
        self._waiting_groups.add(task)
        task.add_done_callback(self._waiting_groups.discard)

    async def _commit_waiting(
        self, group: list[tuple[Callable[[Tx], Any], asyncio.Future[Any]]]
    ) -> None:
        """Another connection holds the lock: wait for it in a thread, groups in order."""
        try:
            async with self._waiting:
                outcomes = await asyncio.to_thread(
                    self._run_group, [w for w, _f in group], wait=True
                )
        except Exception as exc:
            outcomes = [(False, exc)] * len(group)
        except BaseException:  # cancelled (the app stopping): so are its callers
            for _work, future in group:
                future.cancel()
            raise
        _settle(group, outcomes)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
