"""GET /api/v1/reports on a hand-built history whose answer is known (issue 12).

Visits go through the visitor API's store and calls through CallStore.store, so the rollups the
report reads are the ones kept on write. Every expected number is written out by hand below.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from attribution.calls import CallReport
from attribution.costs import layout_for, read_costs
from pbx.app import build_app
from pbx.keys import CALLS, CLOCK, ENGINE, SETTINGS, VISITS
from pbx.storage.calls import CallFilter
from pbx.storage.costs import replace_costs
from pbx.storage.visits import VisitRequest
from tests.api.test_staff_ui import log_in
from tests.helpers import (
    ORIGIN,
    STAFF_TOKEN,
    FakeClock,
    make_settings,
    migrate,
    settings_for,
    staff_users,
)

Client = TestClient  # type: ignore[type-arg]
AUTH = {"Authorization": f"Bearer {STAFF_TOKEN}"}
DAY = "2027-01-15"  # FakeClock starts at 1_800_000_000 = 2027-01-15 08:00 UTC

SITE = {
    "name": "main",
    "origins": [ORIGIN],
    "replace": ["+7 (495) 123-45-67"],
    "pools": [
        {"name": "paid", "when": {"utm_medium": "cpc"}, "numbers": ["+74990000001"]},
        {"name": "all", "numbers": ["+74990000011", "+74990000012", "+74990000013"]},
    ],
    "fallback": "+74990000099",
}


class Scenario:
    def __init__(self, client: Client, clock: FakeClock) -> None:
        self.client, self.clock = client, clock
        self.site = client.app[SETTINGS].sites[0]
        self.calls = 0

    async def visit(
        self, query: str = "", visitor: str | None = None, referrer: str | None = None
    ) -> Any:
        url = f"{ORIGIN}/landing?{query}" if query else f"{ORIGIN}/"
        request = VisitRequest(self.site, url, referrer, visitor, None, "10.0.0.1")
        return await self.client.app[VISITS].start_visit(request)

    async def call(self, did: str, caller: str, talk: float | None = 40.0) -> None:
        self.calls += 1
        at = self.clock.now
        answered = at + 5 if talk is not None else None
        end = (answered or at) + (talk or 20)
        dial = "ANSWER" if talk is not None else "NOANSWER"
        report = CallReport(f"r{self.calls}", caller, did, at, end, answered, dial)
        assert await self.client.app[CALLS].store(report)


async def app_client(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]], clock: FakeClock
) -> Client:
    """The daemon's app on a fresh database with SITE and the staff users."""
    settings = settings_for(tmp_path, sites=[SITE], users=staff_users())
    await migrate(settings)
    return await aiohttp_client(build_app(settings, clock=clock))


async def report(client: Client, **params: str) -> dict[str, Any]:
    response = await client.get(
        "/api/v1/reports", params={"since": DAY, "until": DAY, **params}, headers=AUTH
    )
    assert response.status == 200, await response.text()
    data: dict[str, Any] = await response.json()
    return data


def rows(data: dict[str, Any], *fields: str) -> dict[str, tuple[Any, ...]]:
    return {r["key"]: tuple(r[f] for f in fields) for r in data["rows"]}


async def history(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    database: str | None = None,
    **config: Any,
) -> Client:
    """Three visitors and five calls:

    - V1: organic (yandex) visit, then 31 min later a google cpc visit; calls from it (talk 40 s).
    - V2: google cpc visit; 40 min later a direct visit, from which they call (talk 10 s: not a
      lead by talk; tagged lead afterwards).
    - V3: a direct visit; no call.
    - a static billboard call (missed), a fallback call (unattributed, answered 50 s)
    """
    clock = FakeClock()
    settings = (
        make_settings(database, sites=[SITE], **config)
        if database
        else settings_for(tmp_path, sites=[SITE], **config)
    )
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=clock))
    s = Scenario(client, clock)
    v1 = await s.visit("utm_source=yandex&utm_medium=organic")
    clock.advance(31 * 60)
    v1b = await s.visit("utm_source=google&utm_medium=cpc&utm_campaign=spring", v1.visitor_id)
    await s.call(v1b.number, "+79160000001")
    v2 = await s.visit("utm_source=google&utm_medium=cpc&utm_campaign=brand")
    clock.advance(40 * 60)
    v2b = await s.visit(visitor=v2.visitor_id)
    await s.call(v2b.number, "+79160000002", talk=10)
    await s.visit()
    await s.call("+74990000101", "+79160000003", talk=None)
    await s.call("+74990000099", "+79160000004", talk=50)
    return client


FIELDS = ("visits", "calls", "answered", "missed", "leads")
#: the history's report under each model, worked out by hand: (params, fields, rows)
EXPECTED: list[tuple[dict[str, str], tuple[str, ...], dict[str, tuple[int, ...]]]] = [
    (
        {"group_by": "source"},
        FIELDS,
        {
            "google": (2, 1, 1, 0, 1),
            "yandex": (1, 0, 0, 0, 0),
            "(direct)": (2, 1, 1, 0, 0),
            "billboard": (0, 1, 0, 1, 0),
            "(unattributed)": (0, 1, 1, 0, 1),
        },
    ),
    (
        {"group_by": "source", "model": "first"},
        ("calls",),
        {
            "yandex": (1,),  # V1's first visit
            "google": (1,),  # V2's first visit
            "(direct)": (0,),
            "billboard": (1,),
            "(unattributed)": (1,),
        },
    ),
    (
        {"group_by": "campaign", "model": "last_non_direct"},
        ("calls",),
        {
            "spring": (1,),
            "brand": (1,),  # V2 called from a direct visit: credited to its cpc visit before
            "(not set)": (1,),  # the billboard has no campaign
            "(unattributed)": (1,),
        },
    ),
    # no rollup holds these: the database counts the sessions
    (
        {"group_by": "source", "landing": "/landing"},
        ("visits", "calls"),
        {"google": (2, 1), "yandex": (1, 0)},
    ),
    ({"group_by": "day", "landing": "/"}, ("visits", "calls"), {DAY: (2, 1)}),
    ({"group_by": "landing", "pool": "paid"}, ("visits", "calls"), {"/landing": (2, 1)}),
]


async def check_expected(client: Client) -> None:
    for params, fields, expected in EXPECTED:
        assert rows(await report(client, **params), *fields) == expected, params


async def test_each_model_on_a_history_with_a_known_answer(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client = await history(tmp_path, aiohttp_client)
    await check_expected(client)
    data = await report(client, group_by="source")
    assert data["totals"]["calls"] == 4 and data["totals"]["visits"] == 5
    assert data["model"] == "last" and data["currency"] == "USD"


async def test_reports_need_a_token_and_sane_parameters(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client = await history(tmp_path, aiohttp_client)
    assert (await client.get("/api/v1/reports")).status == 401
    for params in (
        {"source": "google", "group_by": "landing", "campaign": "spring", "since": "2026-01-01"},
        {"group_by": "nope"},
        {"model": "linear"},
        {"since": "2027-13-01"},
        {"since": "2027-01-02", "until": "2027-01-01"},
        {"since": "2000-01-01", "until": "2027-01-01"},
        {"include_probable": "maybe"},
        {"source": "x" * 600},
        {"format": "xml"},
        {"grup_by": "source"},  # a typo is not ignored
        {"day": "2027-01-15"},  # a day is a range: since/until
        {"since": "9999-12-01", "until": "9999-12-31", "group_by": "month"},
        {"since": "1969-12-31"},
    ):
        response = await client.get("/api/v1/reports", params=params, headers=AUTH)
        assert response.status == 400, params
        assert "error" in await response.json()


async def test_a_known_caller_on_the_billboard_is_credited_to_their_first_visit_under_first(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client = await history(tmp_path, aiohttp_client, users=staff_users())
    s = Scenario(client, client.app[CLOCK])  # type: ignore[arg-type]
    s.calls = 10
    await s.call("+74990000101", "+79160000001")  # V1 again, on the billboard's number
    _, [again, first_call] = await client.app[CALLS].list(CallFilter(caller="79160000001"))
    assert again["repeat_of"] == first_call["id"] and again["attribution"] == "static"
    await log_in(client, "sam")
    page = await (await client.get(f"/calls/{again['id']}")).text()
    assert f'repeat of <a href="/calls/{first_call["id"]}">' in page
    last = await report(client, group_by="source")
    first = await report(client, group_by="source", model="first")
    assert rows(last, "calls")["billboard"] == (2,)
    assert rows(first, "calls")["billboard"] == (1,)  # the other billboard caller is unknown
    assert rows(first, "calls")["yandex"] == (2,)  # V1's first visit: both of V1's calls


async def test_probable_calls_are_a_row_of_their_own_unless_asked_to_include_them(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    clock = FakeClock()
    client = await app_client(tmp_path, aiohttp_client, clock)  # the probable window: 60 s
    s = Scenario(client, clock)
    visit = await s.visit("utm_source=google&utm_medium=cpc&utm_campaign=spring")
    clock.advance(90)  # the lease ended 30 s ago
    await s.call(visit.number, "+79160000009")
    assert rows(await report(client), "calls") == {"(probable)": (1,), "google": (0,)}
    included = await report(client, include_probable="true", group_by="campaign")
    assert rows(included, "calls") == {"spring": (1,)}
    # the call's journey and page name the probable visit, with its likelihood: 1 - 30/60
    [call] = (await client.app[CALLS].list(CallFilter()))[1]
    journey = await (await client.get(f"/api/v1/calls/{call['id']}/journey", headers=AUTH)).json()
    [probable] = journey["probable"]
    assert (probable["session_id"], probable["likelihood"]) == (visit.session_id, 0.5)
    assert probable["source"] == "google"
    await log_in(client, "sam")
    page = await client.get(f"/calls/{call['id']}")
    assert page.status == 200
    text = await page.text()
    assert "Probable visits" in text and "likelihood 50%" in text
    clock.advance(120)  # past the window: nobody
    await s.call(visit.number, "+79160000010")
    assert rows(await report(client), "calls")["(unattributed)"] == (1,)
    assert (await client.get("/calls")).status == 200  # the log lists both kinds


COSTS_CSV = b"""date,source,medium,campaign,cost
2027-01-14,google,cpc,spring,999.00
2027-01-15,google,cpc,spring,50.00
2027-01-15,google,cpc,brand,30.00
"""
MONEY = ("calls", "leads", "sales", "revenue", "cost", "cost_per_call", "cost_per_lead", "roi")


async def money_history(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]], database: str | None = None
) -> Client:
    """The history, with costs imported for google (80.00 on the day), a billboard rent of
    3100.00 a month (January: 100.00 a day), a CRM sale of 1500.00 to V1 and a sale of 200.00
    entered on V2's call."""
    static = [
        {
            "number": "+74990000101",
            "source": "billboard",
            "medium": "offline",
            "monthly_cost": "3100.00",
        }
    ]
    client = await history(
        tmp_path, aiohttp_client, database, static=static, currency="RUB", users=staff_users()
    )
    await replace_costs(client.app[ENGINE], read_costs(COSTS_CSV, "costs.csv", layout_for()), 0.0)
    sale = {"caller": "8 916 000-00-01", "amount": "1500.00", "reference": "deal-1"}
    response = await client.post("/api/v1/sales", json=sale, headers=AUTH)
    assert response.status == 201, await response.text()
    v2_call = (await client.app[CALLS].list(CallFilter(caller="79160000002")))[1][0]["id"]
    response = await client.patch(
        f"/api/v1/calls/{v2_call}", json={"sale_amount": 200}, headers=AUTH
    )
    assert response.status == 200, await response.text()
    return client


async def test_cost_revenue_and_roi_per_channel(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    await check_money(await money_history(tmp_path, aiohttp_client))


async def check_money(client: Client) -> None:
    data = await report(client, group_by="source")
    assert data["currency"] == "RUB"
    assert rows(data, *MONEY) == {
        # 1 call, a lead; the CRM's 1500.00; 50.00 + 30.00 of ads: ROI (1500 - 80) / 80
        "google": (1, 1, 1, "1500.00", "80.00", "80.00", "80.00", 17.75),
        "yandex": (0, 0, 0, "0.00", "0.00", None, None, None),
        "(direct)": (1, 0, 1, "200.00", "0.00", "0.00", None, None),  # free, and no cost: no ROI
        "billboard": (1, 0, 0, "0.00", "100.00", "100.00", None, -1.0),
        "(unattributed)": (1, 1, 0, "0.00", "0.00", "0.00", "0.00", None),
    }
    totals = data["totals"]
    assert (totals["cost"], totals["revenue"], totals["sales"]) == ("180.00", "1700.00", 2)
    assert totals["roi"] == round((1700 - 180) / 180, 4)
    # under last non-direct V2's sale goes to the cpc visit before their direct one
    lnd = await report(client, group_by="campaign", model="last_non_direct")
    assert rows(lnd, "revenue", "cost")["brand"] == ("200.00", "30.00")


async def test_a_static_numbers_rent_is_spread_over_the_days_gone_not_the_days_to_come(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """Asked to the end of the month on its 15th, the report booked January's whole rent
    (3100.00) against 15 days of calls: cost per call three times too high mid-month."""
    client = await money_history(tmp_path, aiohttp_client)  # today: 2027-01-15
    response = await client.get(
        "/api/v1/reports",
        params={"since": "2027-01-01", "until": "2027-01-31", "group_by": "source"},
        headers=AUTH,
    )
    assert response.status == 200, await response.text()
    data = await response.json()
    # 100.00 a day (3100.00 over January's 31 days), for the 1st to the 15th
    assert rows(data, "cost")["billboard"] == ("1500.00",)
    future = await client.get(
        "/api/v1/reports",
        params={"since": "2027-02-01", "until": "2027-02-28", "group_by": "source"},
        headers=AUTH,
    )
    assert "billboard" not in rows(await future.json(), "cost")  # no rent booked ahead


async def test_costs_a_grouping_cannot_split_are_a_row_of_their_own(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    await check_unsplit_costs(await money_history(tmp_path, aiohttp_client))


async def check_unsplit_costs(client: Client) -> None:
    data = await report(client, group_by="landing")
    assert rows(data, "cost")["(costs)"] == ("180.00",)
    assert data["totals"]["cost"] == "180.00" and data["notes"]
    static = await report(client, group_by="static")
    assert rows(static, "cost", "calls") == {
        "(web)": ("80.00", 2),
        "billboard": ("100.00", 1),
        "(unattributed)": ("0.00", 1),
    }
    filtered = await report(client, group_by="source", term="anything")
    assert filtered["totals"]["cost"] == "0.00" and "term" in filtered["notes"][0]
    month = await report(client, group_by="month", since="2027-01-01", until="2027-01-31")
    # the rent of the month's days gone (15 of 31 on the 15th: 1500.00 of 3100.00), and
    # google's costs of both days (1079.00)
    assert rows(month, "cost") == {"2027-01": ("2579.00",)}


async def test_a_cost_files_rows_named_like_the_reports_own_are_rows_of_their_own(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """GA4 and Looker exports fold small campaigns into "(other)": such a row's cost was added
    to the report's row of folded visits (with a note saying visits were folded), a "(total)"
    campaign made a second totals row before the real one, and a source "(unattributed)" put
    money on the row of calls nobody is credited with."""
    client = await history(tmp_path, aiohttp_client)
    exported = (
        b"date,source,medium,campaign,cost\n"
        b"2027-01-15,google,cpc,(other),12.00\n"
        b"2027-01-15,google,cpc,(total),3.00\n"
        b"2027-01-15,(unattributed),cpc,x,4.00\n"
    )
    await replace_costs(client.app[ENGINE], read_costs(exported, "ga4.csv", layout_for()), 0.0)
    data = await report(client, group_by="campaign")
    costs = {key: cost for key, (cost,) in rows(data, "cost").items() if cost != "0.00"}
    assert costs == {"utm:(other)": "12.00", "utm:(total)": "3.00", "x": "4.00"}
    assert not data["notes"] and data["totals"]["cost"] == "19.00"
    by_source = rows(await report(client, group_by="source"), "cost")
    assert by_source["utm:(unattributed)"] == ("4.00",)
    assert by_source["(unattributed)"] == ("0.00",)


async def test_a_call_is_reported_under_the_pool_of_the_number_dialled(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """A site showing two own numbers (sales, service) leases one number of each pool to a
    visit. A call to the service number was reported under the visit's first pool (sales) while
    the call log said service, and `pool=service` showed no call at all."""
    site = {
        "name": "main",
        "origins": [ORIGIN],
        "replace": ["+7 (495) 123-45-67", "+7 (495) 555-00-11"],
        "pools": [
            {"name": "sales", "replaces": ["+74951234567"], "numbers": ["+74990000001"]},
            {"name": "service", "replaces": ["+74955550011"], "numbers": ["+74990000021"]},
        ],
    }
    settings = settings_for(tmp_path, sites=[site], users=staff_users())
    await migrate(settings)
    clock = FakeClock()
    client = await aiohttp_client(build_app(settings, clock=clock))
    s = Scenario(client, clock)
    visit = await s.visit("utm_source=google&utm_medium=cpc")
    assert dict(visit.shown) == {"+74951234567": "+74990000001", "+74955550011": "+74990000021"}
    await s.call("+74990000021", "+79160000001")
    [call] = (await client.app[CALLS].list(CallFilter()))[1]
    assert call["pool"] == "service"
    for model in ("last", "first", "last_non_direct"):
        data = await report(client, group_by="pool", model=model)
        assert rows(data, "calls", "visits") == {"sales": (0, 1), "service": (1, 0)}, model
        assert rows(await report(client, pool="service", model=model), "calls") == {"google": (1,)}


async def test_a_withheld_number_is_neither_a_first_time_caller_nor_a_repeat_call(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """repeat_calls was calls less first-time callers: a withheld number (never first-time,
    nobody can tell) was a repeat call, as the demo's first call from SIPp's `sipp` was."""
    clock = FakeClock()
    client = await app_client(tmp_path, aiohttp_client, clock)
    s = Scenario(client, clock)
    for caller in ("anonymous", "+79160000077", "89160000077"):
        s.clock.advance(60)
        await s.call("+74990000101", caller)
    data = await report(client, group_by="static")
    assert rows(data, "calls", "first_time_callers", "repeat_calls")["billboard"] == (3, 1, 1)
