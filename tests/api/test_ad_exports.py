"""The ad platforms' exports on real SQLite: /admin/exports (roles, bad input, downloads) and
`calltrack export` on the same database."""

from __future__ import annotations

import asyncio
import csv
import gc
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from attribution.ad_clients import AdClientIds
from attribution.calls import CallReport
from integrations.conversions import ConversionCall
from pbx.app import build_app
from pbx.keys import CALLS, SETTINGS, VISITS
from pbx.staff_ui import exports
from pbx.storage.visits import VisitRequest
from tests.api.test_cli import calltrack
from tests.api.test_staff_ui import log_in
from tests.helpers import FakeClock, migrate, settings_for, staff_users
from tests.unit.test_ad_export_formats import CALL

Client = TestClient  # type: ignore[type-arg]
DAY = 86400.0
NOW = 1_800_000_000.0  # 2027-01-15 11:00:00 in Moscow
SHOP = "https://shop.test/"
OVERRIDES: dict[str, Any] = {
    "users": staff_users(),
    "currency": "RUB",
    "ui": {"timezone": "Europe/Moscow"},
    "google_ads": {"conversion_name": "Phone call", "calls": "answered", "value": "500"},
}


async def _call(client: Client, clock: FakeClock, url: str, ids: AdClientIds, **call: Any) -> str:
    """A visit from `url` and, 10 s later, a call to its number (answered after 12 s, 95 s
    of talk, unless `call` says otherwise); the number the visit was shown."""
    site = client.app[SETTINGS].sites[0]
    visit = await client.app[VISITS].start_visit(
        VisitRequest(site, url, None, None, None, "10.0.0.1", ad_ids=ids)
    )
    clock.advance(10)
    at = clock.now
    answered = call.get("answered", True)
    await client.app[CALLS].store(
        CallReport(
            f"call-{at}",
            call.get("caller", "+79161234567"),
            visit.number or "",
            at,
            at + 12 + (95 if answered else 0),
            at + 12 if answered else None,
            "ANSWER" if answered else "NOANSWER",
        )
    )
    clock.advance(3600)
    return visit.number or ""


@dataclass
class Shop:
    client: Client
    shown: list[str]  # the number each visit was shown, in order


@pytest.fixture
async def shop(tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]) -> Shop:
    """Three calls a day apart from NOW - 30 days: one older than Metrica's window; then a
    Google click with a Metrica ClientID, a Yandex click (missed), a direct visit."""
    settings = settings_for(tmp_path, **OVERRIDES)
    await migrate(settings)
    clock = FakeClock(NOW - 30 * DAY)
    client = await aiohttp_client(build_app(settings, clock=clock))
    old = SHOP + "?gclid=OLD&utm_medium=cpc"
    shown = [await _call(client, clock, old, AdClientIds(None, "111"), caller="+79160000001")]
    clock.now = NOW - 2 * DAY
    google = SHOP + "?gclid=CjwK-1&utm_medium=cpc"
    shown.append(await _call(client, clock, google, AdClientIds("5.6", "1700000000123")))
    yandex = SHOP + "?yclid=8842&utm_medium=cpc"
    shown.append(await _call(client, clock, yandex, AdClientIds(), answered=False))
    shown.append(await _call(client, clock, SHOP, AdClientIds(), caller="+79160000002"))
    clock.now = NOW
    return Shop(client, shown)


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


async def test_admin_downloads_the_google_ads_file(shop: Shop) -> None:
    await log_in(shop.client, "ada")
    response = await shop.client.get(
        "/admin/exports/google-ads.csv?since=2026-12-01&until=2027-01-15"
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="google-ads-calls-2026-12-01-2027-01-15.csv"'
    )
    # NOW - 2 days + 10 s = 2027-01-13 08:00:10 UTC, 11:00:10 in Moscow; no sale: the default
    assert rows(await response.text()) == [
        ["Parameters:TimeZone=Europe/Moscow"],
        [
            "Google Click ID",
            "GBRAID",
            "WBRAID",
            "Conversion Name",
            "Conversion Time",
            "Conversion Value",
            "Conversion Currency",
        ],
        ["OLD", "", "", "Phone call", "2026-12-16 11:00:10+0300", "500.00", "RUB"],
        ["CjwK-1", "", "", "Phone call", "2027-01-13 11:00:10+0300", "500.00", "RUB"],
    ]
    # the missed Yandex call does not count (calls: answered); the direct one has no click id
    assert response.headers["X-Calltrack-Left-Out"] == "2"


async def test_admin_downloads_the_metrica_files(shop: Shop) -> None:
    """One by ClientID, one by yclid: an upload names its visitors one way."""
    await log_in(shop.client, "ada")
    query = "since=2026-12-01&until=2027-01-15"
    by_client = await shop.client.get(f"/admin/exports/metrica.csv?{query}")
    assert by_client.status == 200
    first = int(NOW - 2 * DAY + 10)
    second = first + 3600 + 10
    assert rows(await by_client.text())[1:] == [
        [
            "1700000000123",
            str(first),
            "0",
            "",
            "",
            shop.shown[1],
            "95",
            "12",
            "0",
            "",
            "1",
            SHOP + "?gclid=CjwK-1&utm_medium=cpc",
            "",  # no http.public_url: no link to the call's page
        ],
    ]
    assert by_client.headers["X-Calltrack-Left-Out"] == "3"  # 30 days old; yclid only; no id
    by_click = await shop.client.get(f"/admin/exports/metrica-yclid.csv?{query}")
    assert by_click.status == 200
    assert rows(await by_click.text()) == [
        [
            "Yclid",
            "DateTime",
            "StaticCall",
            "Price",
            "Currency",
            "PhoneNumber",
            "TalkDuration",
            "HoldDuration",
            "CallMissed",
            "Tag",
            "FirstTimeCaller",
            "URL",
            "CallTrackerURL",
        ],
        [
            "8842",
            str(second),
            "0",
            "",
            "",
            shop.shown[2],
            "0",
            "12",
            "1",
            "",
            "0",  # the same caller's second call
            SHOP + "?yclid=8842&utm_medium=cpc",
            "",
        ],
    ]


async def test_the_page_says_what_was_left_out_and_why(shop: Shop) -> None:
    await log_in(shop.client, "ada")
    response = await shop.client.get("/admin/exports?since=2026-12-01&until=2027-01-15")
    assert response.status == 200
    page = await response.text()
    assert "4 calls from 2026-12-01 to 2027-01-15" in page
    assert "1 call older than Metrica&#39;s 21-day upload window" in page
    assert "2 calls without a Metrica ClientID" in page and "3 calls without a yclid" in page
    assert "1 call not counted (google_ads.calls: answered)" in page
    assert "1 call without a Google click id (gclid, gbraid, wbraid)" in page
    assert 'href="/admin/exports/metrica.csv?since=2026-12-01&amp;until=2027-01-15"' in page
    admin = await (await shop.client.get("/admin")).text()
    assert 'href="/admin/exports"' in admin


@pytest.mark.parametrize("path", ["/admin/exports", "/admin/exports/metrica.csv"])
async def test_only_admins(shop: Shop, path: str) -> None:
    anonymous = await shop.client.get(path, allow_redirects=False)
    assert anonymous.status == 303 and anonymous.headers["Location"].startswith("/login")
    await log_in(shop.client, "sam")
    assert (await shop.client.get(path)).status == 403


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("since=2027-13-01", "since: expected a date like 2026-11-30"),
        ("since=x&until=2027-01-15", "since: expected a date like 2026-11-30"),
        ("since=2027-01-15&until=2027-01-01", "until: expected a date on or after since"),
        ("since=2026-01-01&until=2027-01-15", "since..until: at most 92 days in one file"),
        ("until=99999-01-01", "until: expected a date like 2026-11-30"),
    ],
)
async def test_bad_ranges_are_400_with_the_reason(shop: Shop, query: str, reason: str) -> None:
    await log_in(shop.client, "ada")
    for path in ("/admin/exports", "/admin/exports/google-ads.csv"):
        response = await shop.client.get(f"{path}?{query}")
        assert response.status == 400, path
        assert reason in await response.text(), path


async def test_google_ads_needs_its_config(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    settings = settings_for(tmp_path, users=staff_users())
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=FakeClock()))
    await log_in(client, "ada")
    response = await client.get("/admin/exports/google-ads.csv")
    assert response.status == 400
    assert "google_ads is not configured" in await response.text()
    page = await (await client.get("/admin/exports")).text()
    assert "google_ads is not configured" in page and "/admin/exports/metrica.csv" in page
    assert (await client.get("/admin/exports/other.csv")).status == 404


async def test_the_cli_writes_the_same_file_and_says_what_it_left_out(
    shop: Shop, tmp_path: Path
) -> None:
    await log_in(shop.client, "ada")
    query = "since=2026-12-01&until=2027-01-15"
    served = await (await shop.client.get(f"/admin/exports/google-ads.csv?{query}")).text()
    config = str(tmp_path / "calltrack.yaml")
    out = tmp_path / "google.csv"
    result = calltrack(
        "export", "google-ads", "-c", config, "--since", "2026-12-01", "--until", "2027-01-15",
        "-o", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().decode() == served
    assert result.stderr == (
        "google-ads 2026-12-01..2027-01-15: 2 rows; left out:"
        " 1 call not counted (google_ads.calls: answered),"
        " 1 call without a Google click id (gclid, gbraid, wbraid)\n"
    )
    metrica = calltrack(
        "export", "metrica", "-c", config, "--since", "2027-01-13", "--until", "2027-01-13"
    )
    assert metrica.returncode == 0, metrica.stderr
    assert [r[0] for r in rows(metrica.stdout)[1:]] == ["1700000000123"]
    by_click = calltrack(
        "export", "metrica-yclid", "-c", config, "--since", "2027-01-13", "--until", "2027-01-13"
    )
    assert [r[0] for r in rows(by_click.stdout)[1:]] == ["8842"]
    bad = calltrack("export", "metrica", "-c", config, "--since", "2027-01-13", "--until", "x")
    assert bad.returncode == 2
    assert bad.stderr == "calltrack export: --until: expected a date like 2026-11-30\n"


async def test_a_large_export_leaves_the_event_loop_its_turns(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy quarter's export built and rendered its files in the event loop: seconds of CPU
    during which FastAGI answers waited, and past 3 s the loop watchdog stopped the daemon."""
    many = [
        replace(
            CALL,
            id=n,
            started_at=NOW - DAY + n,
            click_ids={"gclid": f"CjwK-{n}", "yclid": str(n)},
            ym_client_id=f"17000000{n:05d}",
        )
        for n in range(40_000)
    ]

    async def read_many(*_args: object) -> list[ConversionCall]:
        return many

    monkeypatch.setattr(exports, "read_calls", read_many)
    await log_in(shop.client, "ada")
    gaps: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            began = loop.time()
            await asyncio.sleep(0.01)
            gaps.append(loop.time() - began - 0.01)

    gc.collect()
    gc.freeze()  # as `calltrack serve` does after startup: a full pass walks only what is new
    beating = asyncio.create_task(heartbeat())
    started = asyncio.get_running_loop().time()
    try:
        query = "since=2027-01-13&until=2027-01-15"
        for path in (f"/admin/exports?{query}", f"/admin/exports/metrica.csv?{query}"):
            response = await shop.client.get(path, allow_redirects=False)
            assert response.status == 200, await response.text()
            await response.read()
    finally:
        stop.set()
        await beating
        gc.unfreeze()
    took = asyncio.get_running_loop().time() - started
    assert took > 0.5, "enough work that the loop would have waited for it"
    assert max(gaps) < 0.5, (max(gaps), took)  # was 1.0-2.4 s in the loop


async def test_an_anonymous_caller_is_not_a_first_time_caller_for_metrica(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """Reports count an anonymous caller as not first-time (they may have called before);
    Metrica's FirstTimeCaller said 1 for them, and the two disagreed."""
    settings = settings_for(tmp_path, **OVERRIDES)
    await migrate(settings)
    clock = FakeClock(NOW - 2 * DAY)
    client = await aiohttp_client(build_app(settings, clock=clock))
    yandex = SHOP + "?yclid=9001&utm_medium=cpc"
    await _call(client, clock, yandex, AdClientIds(), caller="anonymous")
    await _call(
        client, clock, SHOP + "?yclid=9002&utm_medium=cpc", AdClientIds(), caller="+79160000009"
    )
    clock.now = NOW
    await log_in(client, "ada")
    response = await client.get(
        "/admin/exports/metrica-yclid.csv?since=2026-12-01&until=2027-01-15"
    )
    assert response.status == 200
    table = rows(await response.text())
    first_time = {row[0]: row[table[0].index("FirstTimeCaller")] for row in table[1:]}
    assert first_time == {"9001": "0", "9002": "1"}
