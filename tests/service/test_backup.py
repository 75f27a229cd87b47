"""`calltrack backup`: a consistent copy of the SQLite database while the stores write to it, a
refusal to overwrite without --force, and pg_dump's command for PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sqlite3
import time
from pathlib import Path

import pytest

from attribution.calls import CallReport
from pbx.cli import main
from pbx.settings import Settings
from pbx.storage.calls import CallStore
from pbx.storage.db import open_engine
from pbx.storage.outbox import Outbox
from pbx.storage.visits import VisitRequest, VisitStore
from tests.helpers import config_dict, migrate, settings_for, write_config
from tests.service.test_packaging import head_revision


def counts(db: Path) -> tuple[int, int]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (visits,) = conn.execute("SELECT count(*) FROM sessions").fetchone()
        (calls,) = conn.execute("SELECT count(*) FROM calls").fetchone()
    return visits, calls


async def write_until(stop: asyncio.Event, settings: Settings, written: list[int]) -> None:
    """Visits and calls through the daemon's own stores, as fast as they go, until `stop`."""
    engine = open_engine(settings.database)
    visits = VisitStore(engine, settings, time.time)
    calls = CallStore(engine, settings, visits, time.time, Outbox(settings, time.time))
    try:
        await visits.sync_numbers()
        while not stop.is_set():
            n = written[0]
            await visits.start_visit(
                VisitRequest(
                    settings.sites[0],
                    f"http://shop.test/?utm_medium=cpc&n={n}",
                    None,
                    None,
                    None,
                    f"10.0.{n // 250}.{n % 250}",
                )
            )
            now = time.time()
            await calls.store(
                CallReport(
                    f"1700.{n}", "+79161234567", "+74990000101", now - 30, now, now - 25, "ANSWER"
                )
            )
            await visits.flush()
            written[0] += 1
            await asyncio.sleep(0)
    finally:
        visits.close()
        await engine.dispose()


async def test_a_backup_taken_while_the_stores_write_is_whole_and_current(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    await migrate(settings)
    db = tmp_path / "calltrack.db"
    config = tmp_path / "calltrack.yaml"
    backup = tmp_path / "backups" / "calltrack.db"
    backup.parent.mkdir()
    stop, written = asyncio.Event(), [0]
    writer = asyncio.create_task(write_until(stop, settings, written))
    try:
        while written[0] < 200:
            assert not writer.done()
            await asyncio.sleep(0.01)
        before = counts(db)
        status = await asyncio.to_thread(main, ["backup", "-c", str(config), str(backup)])
        during = written[0]
        while written[0] < during + 50:  # the daemon's writes went on meanwhile, and go on
            assert not writer.done()
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await writer
    after = counts(db)
    assert status == 0
    with contextlib.closing(sqlite3.connect(backup)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (head_revision(),)
        ]
    saved = counts(backup)
    # everything committed before the backup began is in it; what came after may be
    assert all(b <= s <= a for b, s, a in zip(before, saved, after, strict=True)), (
        before,
        saved,
        after,
    )
    assert after[1] >= before[1] + 50
    assert not list(backup.parent.glob(".*partial"))


async def test_an_existing_file_is_kept_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path)
    await migrate(settings)
    config = str(tmp_path / "calltrack.yaml")
    backup = tmp_path / "backup.db"
    backup.write_text("last week's backup")
    assert main(["backup", "-c", config, str(backup)]) == 2
    assert "exists: pass --force" in capsys.readouterr().err
    assert backup.read_text() == "last week's backup"
    assert main(["backup", "-c", config, str(backup), "--force"]) == 0
    with contextlib.closing(sqlite3.connect(backup)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_a_missing_database_is_an_error_and_no_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path / "calltrack.yaml", config_dict(f"sqlite+aiosqlite:///{tmp_path / 'none.db'}")
    )
    assert main(["backup", "-c", str(config), str(tmp_path / "backup.db")]) == 2
    assert "none.db: no such database file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calltrack.yaml"]


def test_postgresql_is_pointed_at_pg_dump(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path / "calltrack.yaml",
        config_dict("postgresql+asyncpg://calltrack:s3cret@db.example:5433/calltrack"),
    )
    assert main(["backup", "-c", str(config), "/backups/calltrack.dump"]) == 2
    err = capsys.readouterr().err
    assert (
        "pg_dump --format=custom --file=/backups/calltrack.dump"
        " postgresql://calltrack@db.example:5433/calltrack"
    ) in err
    assert "s3cret" not in err


def test_pg_dumps_command_is_one_a_shell_can_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file name with a space stays one argument, and asyncpg's URL parameters become
    libpq's (pg_dump refuses a URL with one it does not know)."""
    config = write_config(
        tmp_path / "calltrack.yaml",
        config_dict(
            "postgresql+asyncpg://ct@db/calltrack?ssl=require&prepared_statement_cache_size=0"
        ),
    )
    assert main(["backup", "-c", str(config), "/backups/nightly dump.pgc"]) == 2
    err = capsys.readouterr().err
    dump = next(line for line in err.splitlines() if "pg_dump " in line)
    assert shlex.split(dump) == [
        "pg_dump",
        "--format=custom",
        "--file=/backups/nightly dump.pgc",
        "postgresql://ct@db/calltrack?sslmode=require",
    ]
    restore = next(line for line in err.splitlines() if "pg_restore " in line)
    assert shlex.split(restore)[-1] == "/backups/nightly dump.pgc"
    assert "left out of the URL, pg_dump does not know them: prepared_statement_cache_size" in err


def test_pg_dump_reaches_a_unix_socket_and_port_given_as_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLAlchemy's documented form for a socket; dropped, pg_dump and pg_restore --clean
    went to the default socket and port: maybe another cluster."""
    config = write_config(
        tmp_path / "calltrack.yaml",
        config_dict("postgresql+asyncpg://ct@/calltrack?host=/run/postgresql&port=5433"),
    )
    assert main(["backup", "-c", str(config), "/backups/ct.pgc"]) == 2
    dump = next(line for line in capsys.readouterr().err.splitlines() if "pg_dump " in line)
    assert shlex.split(dump)[-1] == "postgresql://ct@/calltrack?host=%2Frun%2Fpostgresql&port=5433"


@pytest.mark.parametrize(
    "name", ["calltrack.db", "calltrack.db-wal", "link.db", "./sub/../calltrack.db"]
)
def test_the_live_database_is_never_overwritten_even_forced(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Renamed over the database the daemon serves from, a backup left it writing to a file no
    longer there, beside the old WAL: reopened, the database held 1 row of 3,001 and failed its
    integrity check."""
    settings = settings_for(tmp_path)
    asyncio.run(migrate(settings))
    database = tmp_path / "calltrack.db"
    (tmp_path / "sub").mkdir()
    os.link(database, tmp_path / "link.db")
    with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as live:
        live.execute("PRAGMA journal_mode=WAL")
        live.execute("CREATE TABLE IF NOT EXISTS kept (n INTEGER)")
        live.execute("INSERT INTO kept VALUES (1)")  # a WAL beside the file
        inode = database.stat().st_ino
        wal = (tmp_path / "calltrack.db-wal").read_bytes()
        config = str(tmp_path / "calltrack.yaml")
        assert main(["backup", "-c", config, str(tmp_path / name), "--force"]) == 2
        assert "is the database itself: name another file" in capsys.readouterr().err
        assert database.stat().st_ino == inode
        assert (tmp_path / "calltrack.db-wal").read_bytes() == wal
        live.execute("INSERT INTO kept VALUES (2)")
    with contextlib.closing(sqlite3.connect(database)) as conn:
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (2,)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_another_runs_unfinished_copy_is_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two backups to one FILE at once (a cron run, a manual one) each write a copy of their
    own: neither deletes the other's, nor renames it into place unfinished."""
    asyncio.run(migrate(settings_for(tmp_path)))
    backup = tmp_path / "backup.db"
    theirs = tmp_path / ".backup.db.partial"  # the one name every run used to write to
    theirs.write_text("another run's copy, half-written")
    assert main(["backup", "-c", str(tmp_path / "calltrack.yaml"), str(backup)]) == 0
    assert theirs.read_text() == "another run's copy, half-written"
    with contextlib.closing(sqlite3.connect(backup)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert sorted(p.name for p in tmp_path.glob(".*")) == [theirs.name]


def test_a_folder_it_cannot_write_in_is_a_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(migrate(settings_for(tmp_path)))
    # a folder no one can create a file in, root included (tests run as root)
    assert main(["backup", "-c", str(tmp_path / "calltrack.yaml"), "/proc/backup.db"]) == 2
    assert "calltrack: /proc/backup.db: No such file or directory" in capsys.readouterr().err


def test_a_full_disk_names_the_backups_folder_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a full disk the error named the live database ("calltrack.db: database or disk is
    full"), and a `.FILE.XXXX.partial-journal` was left behind on every failed run."""
    from tests.faults.conftest import NoTmpfs, tmpfs

    settings = settings_for(tmp_path)
    asyncio.run(migrate(settings))
    with sqlite3.connect(tmp_path / "calltrack.db") as conn:  # ~2 MB: more than the tmpfs
        conn.execute("CREATE TABLE filler (x BLOB)")
        conn.executemany("INSERT INTO filler VALUES (?)", [(os.urandom(4000),)] * 500)
    try:
        with tmpfs("1m") as full:
            code = main(["backup", "-c", str(tmp_path / "calltrack.yaml"), str(full / "b.db")])
            left = sorted(p.name for p in full.iterdir())
    except NoTmpfs as exc:
        pytest.skip(str(exc))
    err = capsys.readouterr().err
    assert code == 2
    assert f"calltrack: {full}: no space left for the backup; nothing written" in err, err
    assert left == [], "no partial file, no journal"
