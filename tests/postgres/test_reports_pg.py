"""The channel report on a real PostgreSQL: the same hand-built history, the same answers as on
SQLite (the rollups' upserts and the report's SQL differ by dialect)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.api.test_reports_api import Client, check_expected, history

pytestmark = pytest.mark.postgres


async def test_each_model_on_postgresql(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]], postgres_url: str
) -> None:
    client = await history(tmp_path, aiohttp_client, postgres_url)
    await check_expected(client)
