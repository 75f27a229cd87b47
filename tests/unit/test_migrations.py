"""The schema is made by migrations; they must build exactly what pbx.storage.tables describes."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx.storage.db import open_engine, require_current_schema, schema_revisions, upgrade
from pbx.storage.tables import metadata


def _differences(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


async def test_migrations_build_the_described_schema() -> None:
    engine = open_engine("sqlite+aiosqlite:///:memory:")
    try:
        await upgrade(engine)
        await require_current_schema(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await engine.dispose()


def _downgrade_one(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", "pbx:migrations")
    config.attributes["connection"] = connection
    command.downgrade(config, "-1")


#: a visit and its page view: a migration that copies `sessions` to alter it must keep them
#: (the foreign keys refuse to drop a table rows refer to)
_A_VISIT = (
    "INSERT INTO visitors (id, created_at, visits, first_source, first_medium)"
    " VALUES ('v1', 0, 1, 'google', 'cpc')",
    "INSERT INTO sessions (id, visitor_id, site, visit_number, started_at, last_seen,"
    " landing_url, source, medium, click_ids, tracking, pages_viewed, last_url)"
    " VALUES ('s1', 'v1', 'main', 1, 0, 0, 'https://shop.test/', 'google', 'cpc', '{}',"
    " 'tracked', 1, 'https://shop.test/')",
    "INSERT INTO page_views (session_id, at, url) VALUES ('s1', 0, 'https://shop.test/')",
)


@contextlib.asynccontextmanager
async def _a_visit_one_migration_back(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A SQLite database at the newest migration with _A_VISIT stored, then the newest undone."""
    engine = open_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    try:
        await upgrade(engine)
        async with engine.begin() as conn:
            for statement in _A_VISIT:
                await conn.exec_driver_sql(statement)
            await conn.run_sync(_downgrade_one)
        yield engine
    finally:
        await engine.dispose()


async def test_the_newest_migration_can_be_undone_and_redone(tmp_path: Path) -> None:
    async with _a_visit_one_migration_back(tmp_path) as engine:
        current, head = await schema_revisions(engine)
        assert current is not None and head is not None and int(current) == int(head) - 1
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
            assert await conn.scalar(text("SELECT count(*) FROM page_views")) == 1


async def test_the_rollups_pass_sqlites_integrity_check(tmp_path: Path) -> None:
    """SQLite 3.40's integrity_check misreads a WITHOUT ROWID table whose key column comes after
    a non-key one ("NULL value in visit_channels.visits"): 0015 puts `shard` before `visits`."""
    path = tmp_path / "db.sqlite"
    engine = open_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "INSERT INTO visit_channels (day, site, pool, source, medium, campaign, shard, visits)"
            " VALUES (20261201, 's', 'p', 'google', 'cpc', 'c', 3, 7)"
        )
        conn.execute(
            "INSERT INTO visit_facets (facet, day, site, source, medium, value, shard, visits)"
            " VALUES ('term', 20261201, 's', 'google', 'cpc', 'shoes', 0, 2)"
        )
        conn.commit()
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


async def test_0023_keeps_the_refusals_stored_before_as_the_pools_lost_visits(
    tmp_path: Path,
) -> None:
    """Rows stored before 0023 have only their latest outcome: that is what they were counted
    by, and stays so (a refusal a later page undid is not in them to recover)."""
    async with _a_visit_one_migration_back(tmp_path) as engine:
        async with engine.begin() as conn:
            for pool, tracking in (("paid", "exhausted"), ("all", "ip_cap"), ("x", "tracked")):
                await conn.exec_driver_sql(
                    "INSERT INTO session_pools (session_id, pool, site, replaces, tracking,"
                    f" started_at) VALUES ('s1', '{pool}', 'main', '', '{tracking}', 0)"
                )
        await upgrade(engine)
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT pool, refused FROM session_pools"))
            assert dict(rows.all()) == {"paid": "exhausted", "all": "ip_cap", "x": None}
