"""Calls that ended while the daemon was away, read back from the CDR into the real store: one the
database refuses for good is logged, counted and skipped, and the calls after it are stored."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DataError

from ami_bridge import ReportDelivery
from attribution.calls import CallReport
from pbx.pbx_link import reconcile_missed
from pbx.storage.calls import CallStore
from pbx.storage.db import open_engine, upgrade
from pbx.storage.errors import is_transient
from pbx.storage.tables import calls
from pbx.storage.visits import VisitStore
from tests.cdr_lines import busy_call
from tests.helpers import FakeClock, db_error, make_settings, refuse_opening

MASTER = Path(__file__).parents[1] / "fixtures" / "ami" / "Master.csv"  # three calls


async def test_a_refused_cdr_call_is_skipped_and_the_others_stored(tmp_path: Path) -> None:
    shutil.copy(MASTER, tmp_path / "Master.csv")
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        asterisk={"ami": {"secret": "x"}, "cdr_csv": str(tmp_path / "Master.csv")},
    )
    engine = open_engine(settings.database)
    await upgrade(engine)
    clock = FakeClock()
    store = CallStore(engine, settings, VisitStore(engine, settings, clock), clock)
    tried: list[str] = []

    async def refuses_the_first(report: CallReport) -> bool:
        tried.append(report.linkedid)
        if len(tried) == 1:  # as PostgreSQL refuses a value too long for its column
            raise db_error(DataError, "value too long for type character varying(64)")
        return await store.store(report) is not None

    rejected: list[CallReport] = []
    deliver = ReportDelivery(refuses_the_first, is_transient, rejected.append)
    try:
        assert await reconcile_missed(settings, engine, deliver, clock, lost_at=0.0) == 2
        assert [r.linkedid for r in rejected] == tried[:1]
        async with engine.connect() as conn:
            stored = set(await conn.scalars(select(calls.c.linkedid)))
            assert stored == set(tried[1:]) and len(tried) == 3
            assert await conn.scalar(select(func.count()).select_from(calls)) == 2
    finally:
        await engine.dispose()


def _daemon_parts(tmp_path: Path, clock: FakeClock) -> tuple[Any, Any, CallStore, ReportDelivery]:
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        asterisk={"ami": {"secret": "x"}, "cdr_csv": str(tmp_path / "Master.csv")},
    )
    engine = open_engine(settings.database)
    store = CallStore(engine, settings, VisitStore(engine, settings, clock), clock)

    async def deliver(report: CallReport) -> bool:
        return await store.store(report) is not None

    return settings, engine, store, ReportDelivery(deliver, is_transient)


async def test_rows_never_read_count_however_long_ago_their_calls_ended(tmp_path: Path) -> None:
    """A start reads from the kept position, but only calls that ended since the newest stored
    call (less an hour) were kept: after a day of failing passes (live calls still stored), every
    call AMI had missed that day was dropped unread."""
    at = 1_800_000_000.0
    clock = FakeClock(at + 60)
    settings, engine, store, deliver = _daemon_parts(tmp_path, clock)
    master = tmp_path / "Master.csv"
    try:
        await upgrade(engine)
        master.write_text(busy_call("7.0", at))
        assert await reconcile_missed(settings, engine, deliver, clock, lost_at=None) == 1
        with master.open("a") as f:  # missed over AMI in the morning, not read (passes failed)
            f.write(busy_call("7.1", at + 5 * 3600))
        live = CallReport(
            "L9", "+79161234567", "+74990000101", at + 86_400, at + 86_460, None, "BUSY"
        )
        assert await store.store(live) is not None  # the evening's live call
        clock.now = at + 86_500
        assert await reconcile_missed(settings, engine, deliver, clock, lost_at=None) == 1
        async with engine.connect() as conn:
            stored = set(await conn.scalars(select(calls.c.linkedid)))
        assert stored == {"7.0", "7.1", "L9"}
    finally:
        await engine.dispose()


async def test_a_recording_that_cannot_be_looked_at_stops_no_reconciliation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Path.is_file raises PermissionError (EACCES: the folder closed to the daemon) and NFS
    errors: the pass stopped at that call, kept no position, and failed the same way at every
    pass after. The call is now stored, its recording named (its conversion says the rest)."""
    shutil.copy(MASTER, tmp_path / "Master.csv")
    clock = FakeClock()
    settings, engine, _store, deliver = _daemon_parts(tmp_path, clock)
    is_file = Path.is_file

    def refused(path: Path) -> bool:
        if path.suffix == ".wav":
            raise PermissionError(13, "Permission denied", str(path))
        return is_file(path)

    monkeypatch.setattr(Path, "is_file", refused)
    try:
        await upgrade(engine)
        assert await reconcile_missed(settings, engine, deliver, clock, lost_at=0.0) == 3
        async with engine.connect() as conn:
            named = list(await conn.scalars(select(calls.c.recording)))
        assert any(name and name.endswith(".wav") for name in named), named
    finally:
        await engine.dispose()


async def test_a_file_it_could_not_read_keeps_the_look_back_of_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rotated at midnight with `create 640 root root` while the daemon was stopped: the
    morning's passes read the rotated tail and kept their position, now; the new file's rows,
    read once its mode was mended, counted back only to then, and the night's calls (missed
    over AMI) were dropped."""
    at = 1_800_000_000.0
    clock = FakeClock(at + 60)
    settings, engine, store, deliver = _daemon_parts(tmp_path, clock)
    master = tmp_path / "Master.csv"
    try:
        await upgrade(engine)
        master.write_text(busy_call("8.0", at))
        assert await reconcile_missed(settings, engine, deliver, clock, lost_at=None) == 1
        with master.open("a") as f:
            f.write(busy_call("8.1", at + 100))  # before the rotation, not read yet
        master.rename(tmp_path / "Master.csv.1")
        master.write_text(busy_call("8.2", at + 5 * 3600))  # the night's, AMI down
        opening = refuse_opening(monkeypatch, master)
        clock.now = at + 8 * 3600  # the daemon starts in the morning
        live = CallReport(
            "L8", "+79161234567", "+74990000101", clock.now, clock.now + 60, None, "BUSY"
        )
        assert await store.store(live) is not None
        assert await reconcile_missed(settings, engine, deliver, clock, lost_at=None) == 1  # 8.1
        monkeypatch.setattr(Path, "open", opening)  # its mode mended in the afternoon
        clock.now = at + 14 * 3600
        later = CallReport(
            "L9", "+79161234567", "+74990000101", clock.now - 60, clock.now, None, "BUSY"
        )
        assert await store.store(later) is not None
        assert await reconcile_missed(settings, engine, deliver, clock, lost_at=None) == 1  # 8.2
        async with engine.connect() as conn:
            stored = set(await conn.scalars(select(calls.c.linkedid)))
        assert stored == {"8.0", "8.1", "8.2", "L8", "L9"}
    finally:
        await engine.dispose()
