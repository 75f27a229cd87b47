"""The soak benchmark's short form on two `calltrack serve` daemons sharing one PostgreSQL, the
requests sent to them in turn (so a session's pings alternate between daemons): no error, every
visit and page view stored, no number held twice at once, memory that does not run away."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.soak import soak
from tests.postgres.test_two_daemons import lease_history
from tests.service.test_soak import SHORT, assert_clean

pytestmark = pytest.mark.postgres


async def counts(database: str) -> tuple[int, int]:
    engine = create_async_engine(database)
    try:
        async with engine.connect() as conn:
            sessions = await conn.scalar(text("SELECT count(*) FROM sessions"))
            page_views = await conn.scalar(text("SELECT count(*) FROM page_views"))
            return int(sessions or 0), int(page_views or 0)
    finally:
        await engine.dispose()


def test_a_short_soak_on_two_daemons_is_clean(postgres_url: str, tmp_path: Path) -> None:
    report = soak(SHORT, tmp_path, postgres_url, count=2)
    assert report.daemons == 2 and report.database == "postgresql"
    sessions, page_views = asyncio.run(counts(postgres_url))
    assert_clean(report, sessions, page_views, asyncio.run(lease_history(postgres_url)))
    assert all(c > 0 for minute in report.cpu_percent.values() for c in minute)  # both served
