"""The report numbers on a real PostgreSQL: the generated history of tests/api/test_report_numbers
read through build_report, against the same independent expectation (PostgreSQL refuses SQL
that SQLite lets through, e.g. GROUP BY NULL)."""

from __future__ import annotations

import pytest

from attribution.reports import GroupBy, Model, ReportQuery
from bench import report_data
from pbx.storage.db import open_engine, upgrade
from pbx.storage.report_queries import build_report
from tests.api.test_report_numbers import LEADS, SHAPE, ZONE, Expected, cases, table
from tests.helpers import make_settings

pytestmark = pytest.mark.postgres


async def test_reports_match_numbers_worked_out_from_the_generated_rows(postgres_url: str) -> None:
    settings = make_settings(
        postgres_url,
        sites=report_data.SITES,
        static=report_data.STATIC,
        ui={"timezone": ZONE},
        leads=LEADS,
    )
    engine = open_engine(postgres_url)
    try:
        await upgrade(engine)
        records = await report_data.write(engine, settings, SHAPE, keep=True)
        assert records is not None
        await report_data.build_rollups(engine, settings)
        expected = Expected(records.rows)
        differences = []
        for (since, until), group, model, filters in cases():
            query = ReportQuery(
                since,
                until,
                GroupBy(group),
                Model(model),
                {GroupBy(k): v for k, v in filters.items()},
            )
            got = table((await build_report(engine, settings, query)).as_json())
            if got != expected.report(since, until, group, model, filters):
                differences.append(f"{since}..{until} {group} {model} {filters}")
        assert not differences, differences[:10]
    finally:
        await engine.dispose()
