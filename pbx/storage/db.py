"""Opening the database, and the schema revision check that keeps `serve` off an old schema."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def open_engine(url: str) -> AsyncEngine:
    """An engine tuned for the backend: SQLite serialises writers in WAL mode, one connection."""
    if not is_sqlite(url):
        return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
    # one connection: writers queue in the process instead of contending for SQLite's lock
    one_connection = {} if ":memory:" in url else {"pool_size": 1, "max_overflow": 0}
    engine = create_async_engine(url, **one_connection)

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
