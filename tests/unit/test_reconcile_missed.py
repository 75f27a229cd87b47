"""Calls that ended while the daemon was away, read back from the CDR into the real store: one the
database refuses for good is logged, counted and skipped, and the calls after it are stored."""

from __future__ import annotations

import shutil
from pathlib import Path

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
from tests.helpers import FakeClock, db_error, make_settings

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
