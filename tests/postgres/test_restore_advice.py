"""On a real PostgreSQL: the backup and restore commands `calltrack backup` prints, run as
printed, bring back a dump of an older calltrack into a database a later one has upgraded.
The advice before (`pg_restore --clean --if-exists` into the live database) left the later
tables in place, could not drop the tables they refer to, and loaded old rows beside new ones."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text

from pbx.backup_cli import pg_dump_advice
from pbx.storage import db
from pbx.storage.db import open_engine, schema_revisions, upgrade
from tests.postgres.conftest import SERVER_USER, PostgresCluster

pytestmark = pytest.mark.postgres

OLDER = "0013"  # before call_speech (0014), whose foreign key to calls blocked --clean


def _shell(line: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A printed command line, run as an admin would paste it."""
    return subprocess.run(line, shell=True, env=env, capture_output=True, text=True)


def _to(conn: Any, revision: str) -> None:
    alembic = db._alembic_config()
    alembic.attributes["connection"] = conn
    command.upgrade(alembic, revision)


async def test_the_printed_restore_brings_back_an_older_dump(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = postgres_cluster.create_database()
    engine = open_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_to, OLDER)
            await conn.execute(
                text(
                    "INSERT INTO visitors (id, created_at, visits, first_source, first_medium)"
                    " VALUES ('v1', 1, 1, 'google', 'cpc')"
                )
            )
        commands = [
            line.strip()
            for line in pg_dump_advice(url, str(tmp_path / "nightly dump.pgc")).splitlines()
            if line.startswith("  ")
        ]
        assert [c.split()[0] for c in commands] == ["pg_dump", "dropdb", "pg_restore"]
        shell = {
            **os.environ,
            "PATH": f"{postgres_cluster.bindir}:{os.environ['PATH']}",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(postgres_cluster.port),
            "PGUSER": SERVER_USER,
        }
        dumped = await asyncio.to_thread(_shell, commands[0], shell)
        assert dumped.returncode == 0, dumped.stderr
        await upgrade(engine)  # the later calltrack, and a row of its own
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM visitors"))
        await engine.dispose()
        for line in commands[1:]:
            done = await asyncio.to_thread(_shell, line, shell)
            assert done.returncode == 0, done.stderr
        await upgrade(engine)
        current, head = await schema_revisions(engine)
        assert current == head
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT id FROM visitors"))).all() == [("v1",)]
    finally:
        await engine.dispose()
