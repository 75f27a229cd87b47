"""Closed months kept: a report over a month that is over reads it back from report_months, and
every write that changes the month (a review, a CRM sale, a late call, a cost import) makes the
next report compute it again. Expected numbers come from the same report without the kept months
(build_report with no keeper) and from hand-counted changes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import pbx.storage.report_months as report_months_module
from attribution.calls import CallReport
from attribution.costs import layout_for, read_costs
from attribution.reports import GroupBy, Model, ReportQuery
from pbx.keys import CALLS, CLOCK, ENGINE, SETTINGS
from pbx.storage.calls import CallFilter
from pbx.storage.costs import replace_costs
from pbx.storage.report_queries import build_report
from pbx.storage.tables import report_months
from tests.api.test_reports_api import AUTH, Client, history
from tests.helpers import FakeClock

JANUARY = {"since": "2027-01-01", "until": "2027-01-31"}
MARCH_5 = 1_804_240_000.0  # 2027-03-05: January is over (and so is the day after it)


async def january(client: Client, **params: str) -> dict[str, Any]:
    response = await client.get("/api/v1/reports", params={**JANUARY, **params}, headers=AUTH)
    assert response.status == 200, await response.text()
    data: dict[str, Any] = await response.json()
    return data


async def kept_rows(client: Client) -> int:
    async with client.app[ENGINE].connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(report_months)) or 0)


async def uncached(
    client: Client, group_by: str, model: str = "last", **filters: str
) -> dict[str, Any]:
    query = ReportQuery(
        since=date(2027, 1, 1),
        until=date(2027, 1, 31),
        group_by=GroupBy(group_by),
        model=Model(model),
        filters={GroupBy(k): v for k, v in filters.items()},
    )
    report = await build_report(client.app[ENGINE], client.app[SETTINGS], query)
    return report.as_json()


async def test_a_closed_month_is_kept_and_computed_again_after_each_change(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    await check_kept_months(await history(tmp_path, aiohttp_client))


async def check_kept_months(client: Client) -> None:
    clock: FakeClock = client.app[CLOCK]  # type: ignore[assignment]
    clock.now = MARCH_5
    first = await january(client, group_by="source")
    assert await kept_rows(client) == 1
    again = await january(client, group_by="source")
    assert again == first == await uncached(client, "source")
    for group_by, model in (("day", "first"), ("landing", "last_non_direct"), ("static", "last")):
        kept = await january(client, group_by=group_by, model=model)
        assert kept == await january(client, group_by=group_by, model=model)  # from the kept
        assert kept == await uncached(client, group_by, model)

    def google(data: dict[str, Any]) -> dict[str, Any]:
        return next(r for r in data["rows"] if r["key"] == "google")

    # a review of a January call: tagged sale, with a sale of 700.00
    _, calls = await client.app[CALLS].list(CallFilter(caller="79160000001"))
    patched = await client.patch(
        f"/api/v1/calls/{calls[0]['id']}",
        json={"tags": ["lead", "sale"], "sale_amount": "700"},
        headers=AUTH,
    )
    assert patched.status == 200
    assert google(await january(client, group_by="source"))["revenue"] == "700.00"
    # a CRM sale of 300.00 for it
    sale = {"caller": "+79160000001", "amount": 300, "reference": "r-1", "at": "2027-01-20"}
    assert (await client.post("/api/v1/sales", json=sale, headers=AUTH)).status == 201
    after_sale = google(await january(client, group_by="source"))
    assert (after_sale["revenue"], after_sale["sales"]) == ("1000.00", 2)
    # a January call reconciled late, from the billboard's number
    late = 1_800_100_000.0  # 2027-01-16
    report = CallReport(
        "late-1", "+79169999999", "+74990000101", late, late + 60, late + 5, "ANSWER"
    )
    assert await client.app[CALLS].store(report)
    billboard = next(
        r for r in (await january(client, group_by="source"))["rows"] if r["key"] == "billboard"
    )
    assert billboard["calls"] == 2
    # google's January costs imported
    costs = b"date,source,medium,campaign,cost\n2027-01-10,google,cpc,spring,42.00\n"
    await replace_costs(client.app[ENGINE], read_costs(costs, "c.csv", layout_for()), 0.0)
    final = await january(client, group_by="source")
    assert google(final)["cost"] == "42.00"
    assert final == await uncached(client, "source")
    # filtered reports keep their months apart, and are kept up to date the same way
    filtered = await january(client, group_by="campaign", source="google")
    assert filtered == await january(client, group_by="campaign", source="google")
    assert filtered == await uncached(client, "campaign", source="google")
    assert filtered != await january(client, group_by="campaign", source="yandex")


async def test_what_filters_can_make_the_server_keep_is_bounded(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(report_months_module, "MAX_KEPT", 3)
    client = await history(tmp_path, aiohttp_client)
    client.app[CLOCK].now = MARCH_5  # type: ignore[attr-defined]
    for n in range(6):
        await january(client, group_by="campaign", source=f"made-up-{n}")
    assert await kept_rows(client) == 3
