"""Reports handed to the store: which database failures are waited out, and a real SQLite that
is locked for a while (another process holding it) gets the call once it is free again."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

import pytest
from asyncpg.exceptions import (
    AdminShutdownError,
    CannotConnectNowError,
    DeadlockDetectedError,
    DiskFullError,
    UniqueViolationError,
)
from sqlalchemy import func, select
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from ami_bridge import ReportDelivery
from attribution.calls import CallReport
from pbx.metrics import Metrics
from pbx.pbx_link import call_recorder
from pbx.storage import db
from pbx.storage.calls import CallStore
from pbx.storage.errors import is_transient, log_failure, outage_reason
from pbx.storage.tables import calls
from pbx.storage.visits import VisitStore
from tests.helpers import FakeClock, db_error, migrate, settings_for


@pytest.mark.parametrize(
    "error",
    [
        db_error(OperationalError, "database is locked"),
        db_error(OperationalError, "attempt to write a readonly database"),
        db_error(InterfaceError, "connection is closed"),
        db_error(ProgrammingError, "server closed the connection", connection_invalidated=True),
        PoolTimeout("QueuePool limit of size 10 overflow 10 reached"),
        ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),
        TimeoutError(),
        # PostgreSQL restarting: asyncpg's errors, which SQLAlchemy wraps in a bare DBAPIError
        DBAPIError("BEGIN", {}, CannotConnectNowError("the database system is starting up")),
        DBAPIError("BEGIN", {}, CannotConnectNowError("the database system is shutting down")),
        DBAPIError("COMMIT", {}, AdminShutdownError("terminating connection")),
        DBAPIError("INSERT ...", {}, DiskFullError("could not extend file")),
        DBAPIError("UPDATE ...", {}, DeadlockDetectedError("deadlock detected")),
    ],
    ids=repr,
)
def test_outages_are_transient(error: Exception) -> None:
    assert is_transient(error)


def sqlite_full() -> sqlite3.OperationalError:
    """What SQLite raises when it cannot grow its file: a real one, from a capped database."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x BLOB)")
    conn.execute("PRAGMA max_page_count = 4")  # the page count the table already needs, or so
    try:
        while True:
            conn.execute("INSERT INTO t VALUES (zeroblob(4096))")
    except sqlite3.OperationalError as error:
        return error
    finally:
        conn.close()


def test_a_full_disk_met_by_the_short_transactions_is_transient_and_named() -> None:
    error = sqlite_full()  # db.Transactions run on bare sqlite3: nothing wraps it
    assert is_transient(error)
    assert outage_reason(error) == "full: database or disk is full (SQLITE_FULL)"
    wrapped = OperationalError("INSERT ...", {}, error)  # as SQLAlchemy raises it
    assert outage_reason(wrapped) == "full: database or disk is full (SQLITE_FULL)"


def test_an_unreachable_server_is_named_down_with_the_drivers_words() -> None:
    error = ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
    assert outage_reason(error) == (
        "down: ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 5432)"
    )
    assert outage_reason(TimeoutError()) == "down: TimeoutError"


@pytest.mark.parametrize(
    "error",
    [
        DBAPIError("INSERT ...", {}, UniqueViolationError("duplicate key value")),
        db_error(DataError, "value too long for type character varying(64)"),
        db_error(IntegrityError, 'null value in column "did" violates not-null constraint'),
        db_error(ProgrammingError, 'column "caller" does not exist'),
        StatementError("invalid input for Float", "INSERT ...", {}, ValueError("abc")),
        ValueError("a bug, not an outage"),
    ],
    ids=repr,
)
def test_refusals_and_bugs_are_not(error: Exception) -> None:
    assert not is_transient(error)


async def test_a_locked_sqlite_is_waited_out_and_the_call_stored_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 100)  # give up waiting for the lock quickly
    settings = settings_for(tmp_path)
    await migrate(settings)
    engine = db.open_engine(settings.database)
    clock = FakeClock(time.time())
    store = CallStore(engine, settings, VisitStore(engine, settings, clock), clock)
    attempts: list[float] = []
    retried = asyncio.Event()

    async def attempt(report: CallReport) -> bool:
        attempts.append(time.monotonic())
        if len(attempts) == 3:
            retried.set()
        return await store.store(report) is not None

    rejected: list[CallReport] = []
    deliver = ReportDelivery(attempt, is_transient, rejected.append, max_backoff=0.2)
    report = CallReport(
        "1.1", "+79161234567", "+74990000101", clock.now, clock.now + 9, None, "BUSY"
    )
    other = sqlite3.connect(tmp_path / "calltrack.db", isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")  # another writer holds the database
        delivering = asyncio.create_task(deliver(report))
        await asyncio.wait_for(retried.wait(), 10)
        assert not delivering.done()
        other.execute("ROLLBACK")
        assert await asyncio.wait_for(delivering, 10) is True
        assert await deliver(report) is False  # a second report of the call changes nothing
        async with engine.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(calls)) == 1
        assert rejected == []
    finally:
        other.close()
        await engine.dispose()


async def test_stored_calls_are_counted_by_their_attribution(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    await migrate(settings)
    engine = db.open_engine(settings.database)
    clock = FakeClock(time.time())
    metrics = Metrics()
    stored: list[None] = []
    record = call_recorder(
        CallStore(engine, settings, VisitStore(engine, settings, clock), clock),
        metrics,
        clock,
        lambda: stored.append(None),
    )
    try:
        for linkedid, did in (
            ("1.1", "+74990000101"),
            ("1.2", "+74990000099"),
            ("1.3", "+74990000101"),
        ):
            report = CallReport(
                linkedid, "+79161234567", did, clock.now, clock.now + 9, None, "BUSY"
            )
            assert await record(report) is True
        assert await record(report) is False  # the same call again: not counted twice
    finally:
        await engine.dispose()

    def count(attribution: str) -> float | None:
        labels = {"status": "busy", "attribution": attribution}
        return metrics.registry.get_sample_value("calltrack_calls_total", labels)

    assert (count("static"), count("fallback"), count("stored")) == (2.0, 1.0, None)
    assert len(stored) == 3


async def test_a_long_outage_is_retried_every_five_seconds_at_most(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """So a call is stored within 5 s of the database's return, however long it was away."""
    waits: list[float] = []

    async def waited(seconds: float) -> None:
        waits.append(seconds)

    async def down_ten_times(report: CallReport) -> bool:
        if len(waits) < 10:
            raise db_error(OperationalError, "database or disk is full")
        return True

    monkeypatch.setattr("ami_bridge.delivery.asyncio.sleep", waited)
    report = CallReport("1.1", "+79161234567", "+74990000101", 0.0, 9.0, None, "BUSY")
    assert await ReportDelivery(down_ten_times, is_transient)(report) is True
    assert waits == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0]


def test_a_failed_job_logs_an_outage_in_one_line_and_a_bug_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.job")
    log_failure(log, "sweep failed", ConnectionRefusedError(111, "Connect call failed"))
    log_failure(log, "sweep failed", ValueError("a bug"))
    outage, bug = caplog.records
    assert outage.levelname == "WARNING" and outage.exc_info is None
    assert outage.getMessage() == (
        "sweep failed: database down: ConnectionRefusedError: [Errno 111] Connect call failed"
    )
    assert bug.levelname == "ERROR" and bug.exc_info is not None
