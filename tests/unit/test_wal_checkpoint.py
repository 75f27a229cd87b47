"""The SQLite WAL is checkpointed while no visitor comes: calls written meanwhile must not grow
it until the disk is full (automatic checkpoints are off; the write-behind flusher does them)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from pbx.storage import write_behind
from pbx.storage.db import open_engine
from pbx.storage.visits import VisitStore
from tests.helpers import migrate, settings_for


async def test_the_wal_is_reused_while_only_other_writers_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(write_behind, "CHECKPOINT_INTERVAL", 0.05)
    settings = settings_for(tmp_path)
    await migrate(settings)
    engine = open_engine(settings.database)
    flusher = asyncio.create_task(VisitStore(engine, settings, time.time).run_flusher())
    wal = tmp_path / "calltrack.db-wal"
    sizes = []
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE filler (x BLOB)"))
        for _ in range(6):  # as calls are stored: 20 kB each, nobody on the site
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO filler VALUES (zeroblob(20000))"))
            await asyncio.sleep(0.2)
            sizes.append(wal.stat().st_size)
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        await engine.dispose()
    assert sizes[-1] == sizes[1], sizes  # checkpointed and written over, not grown
