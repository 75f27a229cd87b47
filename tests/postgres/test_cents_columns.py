"""On a real PostgreSQL: migration 0019 leaves every amount column 64-bit (one ALTER per table
since; a type or column lost in that rewrite would show here)."""

from __future__ import annotations

import importlib

import pytest
from sqlalchemy import text

from pbx.storage.db import open_engine, upgrade

pytestmark = pytest.mark.postgres

MIGRATION = importlib.import_module("pbx.migrations.versions.0019_cents_64_bit")


async def test_every_amount_column_is_bigint_after_the_upgrade(postgres_url: str) -> None:
    engine = open_engine(postgres_url)
    await upgrade(engine)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns"
                    " WHERE table_schema = current_schema()"
                )
            )
            types = {(r.table_name, r.column_name): r.data_type for r in rows}
        assert {types[column] for column in MIGRATION.COLUMNS} == {"bigint"}
    finally:
        await engine.dispose()
