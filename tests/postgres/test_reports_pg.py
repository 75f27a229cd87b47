"""The reports on a real PostgreSQL: the same hand-built history gives the same answers as on
SQLite (the rollups' upserts and the reports' SQL differ by dialect), and every page and API
reading the new tables answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import pbx.storage.report_queries as report_queries
from pbx.keys import CALLS
from pbx.storage.calls import CallFilter
from tests.api.test_report_months import check_kept_months
from tests.api.test_report_rows import (
    HISTORIES,
    KEEP,
    check_folded,
    folded_history,
)
from tests.api.test_reports_api import (
    AUTH,
    DAY,
    Client,
    check_expected,
    check_money,
    check_unsplit_costs,
    history,
    money_history,
    report,
)
from tests.api.test_staff_ui import log_in
from tests.helpers import staff_users
from tests.postgres.conftest import PostgresCluster

pytestmark = pytest.mark.postgres


async def test_each_model_and_every_report_page_on_postgresql(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]], postgres_url: str
) -> None:
    client = await money_history(tmp_path, aiohttp_client, postgres_url)
    await check_expected(client)
    await check_money(client)
    await check_unsplit_costs(client)
    _, calls = await client.app[CALLS].list(CallFilter())
    for call in calls:
        journey = await client.get(f"/api/v1/calls/{call['id']}/journey", headers=AUTH)
        assert journey.status == 200, await journey.text()
    await log_in(client, "sam")
    for path in (
        f"/reports?since={DAY}&until={DAY}",
        f"/reports?since={DAY}&until={DAY}&group_by=day&model=first",
        f"/reports?since={DAY}&until={DAY}&compare=1",
        f"/reports.csv?since={DAY}&until={DAY}&group_by=landing&source=google",
        "/calls/missed",
        "/",
        f"/calls/{calls[0]['id']}",
    ):
        response = await client.get(path)
        assert response.status == 200, (path, await response.text())


async def test_kept_months_on_postgresql(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]], postgres_url: str
) -> None:
    await check_kept_months(await history(tmp_path, aiohttp_client, postgres_url))


async def test_amounts_past_32_bits_are_kept_and_summed_on_postgresql(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]], postgres_url: str
) -> None:
    """The amounts were 32-bit integers on PostgreSQL: a sale over 21,474,836.47 (a flat sold
    in roubles), or two sales past it together, was a 500, and the CRM's retries met the same
    500. SQLite's integers are 64-bit."""
    client = await money_history(tmp_path, aiohttp_client, postgres_url)
    v2_call = (await client.app[CALLS].list(CallFilter(caller="79160000002")))[1][0]["id"]
    patched = await client.patch(
        f"/api/v1/calls/{v2_call}", json={"sale_amount": "25000000.00"}, headers=AUTH
    )
    assert patched.status == 200, await patched.text()
    for n in (2, 3):  # two more sales of the CRM to V1, past 32 bits together
        sale = {"caller": "8 916 000-00-01", "amount": "15000000.00", "reference": f"deal-{n}"}
        posted = await client.post("/api/v1/sales", json=sale, headers=AUTH)
        assert posted.status == 201, await posted.text()
    data = await report(client, group_by="source")
    revenue = {r["key"]: r["revenue"] for r in data["rows"]}
    assert revenue["google"] == "30001500.00"  # 1500.00 + 2 x 15,000,000.00
    assert revenue["(direct)"] == "25000000.00"
    assert data["totals"]["revenue"] == "55001500.00"


async def test_a_call_id_past_32_bits_is_no_such_call_on_postgresql(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]], postgres_url: str
) -> None:
    """PostgreSQL refused the query for an id its column cannot hold: a 500 and a traceback
    for a path any token holder or logged-in user can type."""
    client = await history(tmp_path, aiohttp_client, postgres_url, users=staff_users())
    big = "99999999999"
    for method, path in (
        ("GET", f"/api/v1/calls/{big}/journey"),
        ("GET", f"/api/v1/calls/{big}/recording"),
        ("PATCH", f"/api/v1/calls/{big}"),
        ("GET", f"/recordings/{big}?expires=1&sig=x"),
    ):
        response = await client.request(method, path, headers=AUTH, json={})
        assert response.status == 404, (path, response.status, await response.text())
    await log_in(client, "sam")
    page = await client.get(f"/calls/{big}")
    assert page.status == 404, await page.text()


@pytest.mark.parametrize("name", HISTORIES)
async def test_rows_with_only_visits_fold_on_postgresql(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    monkeypatch.setattr(report_queries, "MAX_VISIT_ROWS", KEEP)
    monkeypatch.setattr(report_queries, "KEPT_VISIT_ROWS", KEEP)
    history = HISTORIES[name]
    await check_folded(
        await folded_history(tmp_path, aiohttp_client, history, postgres_url), history
    )


async def test_ties_fold_in_code_point_order_in_a_database_collated_otherwise(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    postgres_cluster: PostgresCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows as visited as the last one shown are picked by name in code point order, as the
    months folded in Python are: a database collated en-US would put "a" before "B"."""
    monkeypatch.setattr(report_queries, "MAX_VISIT_ROWS", KEEP)
    monkeypatch.setattr(report_queries, "KEPT_VISIT_ROWS", KEEP)
    database = postgres_cluster.create_database(icu_locale="en-US")
    history = HISTORIES["ranked by the range"]
    await check_folded(await folded_history(tmp_path, aiohttp_client, history, database), history)
