"""On a real PostgreSQL, which (unlike SQLite) enforces column widths: an over-long caller ID
from the PBX is cut to its column at the boundary, and a report that gets past it anyway is
refused once, logged and skipped, while the calls after it are stored."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from ami_bridge import ReportDelivery
from ami_bridge.tracker import CallTracker, parse_stream
from attribution.calls import CALLER_MAX, CallReport
from pbx.metrics import Metrics
from pbx.pbx_link import call_recorder
from pbx.storage.calls import CallStore
from pbx.storage.db import open_engine, upgrade
from pbx.storage.errors import is_transient
from pbx.storage.tables import calls
from pbx.storage.visits import VisitStore
from tests.helpers import FakeClock, make_settings

pytestmark = pytest.mark.postgres

LAB_CALLS = Path(__file__).parents[1] / "fixtures" / "ami" / "lab_calls.ami"


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[CallStore]:
    settings = make_settings(postgres_url)
    engine = open_engine(postgres_url)
    await upgrade(engine)
    clock = FakeClock(time.time())
    try:
        yield CallStore(engine, settings, VisitStore(engine, settings, clock), clock)
    finally:
        await engine.dispose()


async def _callers(store: CallStore) -> dict[str, str]:
    async with store._engine.connect() as conn:
        rows = await conn.execute(select(calls.c.linkedid, calls.c.caller))
        return {row.linkedid: row.caller for row in rows}


async def test_a_long_caller_id_from_ami_is_cut_to_its_column(store: CallStore) -> None:
    events = parse_stream(LAB_CALLS.read_text())
    first = events[0]["Linkedid"]
    tracker = CallTracker()
    reports = [
        report
        for event in events
        for report in tracker.feed(
            {**event, "CallerIDNum": "7" * 300} if event["Linkedid"] == first else event, 0.0
        )
    ]
    rejected: list[CallReport] = []
    deliver = ReportDelivery(
        call_recorder(store, Metrics(), time.time, lambda: None), is_transient, rejected.append
    )
    assert [await deliver(report) for report in reports] == [True, True, True]
    assert rejected == []
    callers = await _callers(store)
    assert callers[first] == "7" * CALLER_MAX
    assert len(callers) == 3


async def test_a_refused_report_is_skipped_and_the_next_call_stored(store: CallStore) -> None:
    now = time.time()
    unfitted = CallReport("1.1", "7" * 300, "+74990000101", now, now + 5, None, "BUSY")
    fine = CallReport("1.2", "+79161234567", "+74990000101", now, now + 5, None, "BUSY")
    attempts: list[str] = []

    async def store_report(report: CallReport) -> bool:
        attempts.append(report.linkedid)
        return await store.store(report) is not None

    rejected: list[CallReport] = []
    deliver = ReportDelivery(store_report, is_transient, rejected.append, max_backoff=0.1)
    assert await deliver(unfitted) is False
    assert await deliver(fine) is True
    assert rejected == [unfitted] and attempts == ["1.1", "1.2"]
    assert await _callers(store) == {"1.2": "+79161234567"}
