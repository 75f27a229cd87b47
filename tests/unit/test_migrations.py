"""The schema is made by migrations; they must build exactly what pbx.storage.tables describes."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from pbx.storage.db import open_engine, require_current_schema, upgrade
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
