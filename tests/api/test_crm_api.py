"""The CRM's endpoints through the real app on SQLite: PATCH /api/v1/calls/{id} changes only the
review fields given, POST /api/v1/sales credits a deal to the caller's latest call once
(issue 12). Expected amounts are written out in cents here, not computed by the code under test."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from attribution.calls import NOTES_MAX
from pbx.app import build_app
from pbx.http import REVIEW_BODY_MAX
from pbx.keys import CALLS, ENGINE
from pbx.staff_api import TOKEN_GUESS_LIMIT, TOKEN_GUESS_WINDOW
from pbx.storage.tables import outbox, sales
from tests.api.test_staff_ui import log_in, page_csrf, store_call
from tests.helpers import STAFF_TOKEN, FakeClock, migrate, settings_for, staff_users

Client = TestClient  # type: ignore[type-arg]
AUTH = {"Authorization": f"Bearer {STAFF_TOKEN}"}
DAY = 86_400.0
NOW = 1_800_000_000.0  # FakeClock's start: 2027-01-15T08:00:00Z
CALLER = "+79161234567"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
async def client(
    tmp_path: Path, clock: FakeClock, aiohttp_client: Callable[..., Awaitable[Client]]
) -> Client:
    settings = settings_for(tmp_path, users=staff_users())  # region RU
    await migrate(settings)
    return await aiohttp_client(build_app(settings, clock=clock))


async def call_row(client: Client, call_id: int) -> dict[str, Any]:
    call = await client.app[CALLS].get(call_id)
    assert call is not None
    return call


async def crm(client: Client, call_id: int) -> tuple[int, int]:
    """(crm_sales, crm_sale_cents) as stored: what reports read."""
    call = await call_row(client, call_id)
    return call["crm_sales"], call["crm_sale_cents"]


async def sale_rows(client: Client) -> int:
    async with client.app[ENGINE].connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(sales)) or 0)


async def outbox_rows(client: Client, event: str) -> int:
    async with client.app[ENGINE].connect() as conn:
        query = select(func.count()).select_from(outbox).where(outbox.c.event == event)
        return int(await conn.scalar(query) or 0)


async def patch(client: Client, call_id: int | str, body: Any) -> ClientResponse:
    return await client.patch(f"/api/v1/calls/{call_id}", json=body, headers=AUTH)


async def post_sale(client: Client, **body: Any) -> ClientResponse:
    return await client.post("/api/v1/sales", json=body, headers=AUTH)


# --- PATCH /api/v1/calls/{id} ----------------------------------------------------------------


async def test_patch_changes_only_the_fields_given(client: Client, clock: FakeClock) -> None:
    call = await store_call(client, "p1")
    response = await patch(client, call, {"tags": ["lead", "sale"], "score": 4})
    assert response.status == 200
    answer = await response.json()
    assert (answer["id"], answer["tags"], answer["score"]) == (call, ["lead", "sale"], 4)
    assert answer["reviewed_by"] == "staff"  # the token's name
    assert answer["started_at"] == "2027-01-15T08:00:00+00:00"  # call_json's shape

    clock.advance(60)
    assert (await patch(client, call, {"notes": "  wants a quote "})).status == 200
    assert (await patch(client, call, {"sale_amount": "1500.50"})).status == 200
    stored = await call_row(client, call)
    assert (stored["tags"], stored["score"]) == (["lead", "sale"], 4)  # untouched
    assert (stored["notes"], stored["sale_cents"]) == ("wants a quote", 150050)
    assert stored["reviewed_at"] == NOW + 60

    answer = await (await patch(client, call, {"sale_amount": 1500, "tags": []})).json()
    assert (answer["sale_cents"], answer["tags"], answer["score"]) == (150000, [], 4)
    cleared = {"sale_amount": None, "score": None, "notes": None}
    answer = await (await patch(client, call, cleared)).json()
    assert (answer["sale_cents"], answer["score"], answer["notes"]) == (None, None, None)


async def test_a_patch_that_changes_nothing_tells_no_one(
    tmp_path: Path, clock: FakeClock, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """A CRM that wrote back what a call.updated said got another call.updated, and the two
    went on for ever; nor is the call reviewed again."""
    # a receiver that refuses: the events stay in the outbox to be counted
    hook = {"name": "crm", "url": "http://127.0.0.1:9/hook", "secret": "whsec-0123456789abcdef"}
    hook["events"] = ["call.updated"]
    settings = settings_for(tmp_path, users=staff_users(), webhooks=[hook])
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=clock))
    call = await store_call(client, "p2")
    assert (await patch(client, call, {"score": 4, "tags": ["lead"]})).status == 200
    updated = await outbox_rows(client, "call.updated")
    clock.advance(60)
    for same in ({"score": 4}, {"tags": ["lead"]}, {"score": 4, "tags": ["lead"], "notes": None}):
        response = await patch(client, call, same)
        assert response.status == 200
        assert (await response.json())["score"] == 4
    assert await outbox_rows(client, "call.updated") == updated
    assert (await call_row(client, call))["reviewed_at"] == NOW
    assert (await patch(client, call, {"score": 5})).status == 200
    assert await outbox_rows(client, "call.updated") == updated + 1
    # the CRM's notes in LF, saved unchanged from the page: a browser's textarea sends CRLF
    assert (await patch(client, call, {"notes": "line one\nline two"})).status == 200
    updated = await outbox_rows(client, "call.updated")
    await log_in(client, "sam")
    csrf = await page_csrf(client, f"/calls/{call}")
    form = {"csrf": csrf, "score": "5", "sale": "", "tag": "lead"}
    form["notes"] = "line one\r\nline two"
    saved = await client.post(f"/calls/{call}", data=form, allow_redirects=False)
    assert saved.status == 303
    assert await outbox_rows(client, "call.updated") == updated
    assert (await call_row(client, call))["notes"] == "line one\nline two"


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"tags": ["lead", "vip"]}, "'vip'"),
        ({"tags": "lead"}, "tags"),
        ({"tags": [1]}, "tags"),
        ({"score": 6}, "score"),
        ({"score": 0}, "score"),
        ({"score": "4"}, "score"),
        ({"score": True}, "score"),
        ({"score": 4.5}, "score"),
        ({"sale_amount": "abc"}, "sale_amount"),
        ({"sale_amount": -5}, "sale_amount"),
        ({"sale_amount": "1.234"}, "sale_amount"),
        ({"notes": "x" * 5001}, "notes"),
        ({"notes": 5}, "notes"),
        ({"score": 3, "colour": "red", "owner": 1}, "'colour', 'owner'"),
        ({}, "nothing to change"),
    ],
)
async def test_bad_patch_is_a_400_that_names_the_problem_and_changes_nothing(
    client: Client, body: dict[str, Any], named: str
) -> None:
    call = await store_call(client, "p1")
    assert (await patch(client, call, {"tags": ["lead"], "score": 2})).status == 200
    response = await patch(client, call, body)
    assert response.status == 400
    assert named in (await response.json())["error"]
    stored = await call_row(client, call)
    assert (stored["tags"], stored["score"], stored["sale_cents"]) == (["lead"], 2, None)


async def test_patch_body_that_is_not_a_json_object_or_too_large(client: Client) -> None:
    call = await store_call(client, "p1")
    url = f"/api/v1/calls/{call}"
    for body in (b"not json", b"[1, 2]", b'"lead"'):
        response = await client.patch(url, data=body, headers=AUTH)
        assert response.status == 400 and "error" in await response.json()
    huge = {"notes": "x" * (REVIEW_BODY_MAX + 1)}  # over what a review may need
    assert (await patch(client, call, huge)).status == 413


async def test_notes_up_to_notes_max_in_any_script_can_be_saved(client: Client) -> None:
    """http.max_body_bytes (16 KiB, sized for the visitor API) bound the staff form and the
    CRM too: 3,000 Cyrillic characters, 18 KB percent-encoded, were a 413 and the typed text
    was lost; 5,000 escaped as \\uXXXX in JSON (json.dumps' default) 30 KB."""
    call = await store_call(client, "p1")
    notes = "ж" * NOTES_MAX
    patched = await client.patch(
        f"/api/v1/calls/{call}", data=json.dumps({"notes": notes}), headers=AUTH
    )
    assert patched.status == 200, await patched.text()
    await log_in(client)
    csrf = await page_csrf(client, f"/calls/{call}")
    form = {"csrf": csrf, "score": "", "sale": "", "notes": "щ" * NOTES_MAX}
    saved = await client.post(f"/calls/{call}", data=form, allow_redirects=False)
    assert saved.status == 303
    assert (await call_row(client, call))["notes"] == "щ" * NOTES_MAX


async def test_patch_needs_a_valid_token_and_an_existing_call(client: Client) -> None:
    call = await store_call(client, "p1")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": STAFF_TOKEN}):
        response = await client.patch(f"/api/v1/calls/{call}", json={"score": 5}, headers=headers)
        assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await call_row(client, call))["score"] is None
    for missing in (str(call + 1), "abc", "-1", "1.0", "9" * 13):
        response = await patch(client, missing, {"score": 5})
        assert response.status == 404 and "no such call" in (await response.json())["error"]


async def test_the_staff_review_form_still_replaces_every_field(client: Client) -> None:
    call = await store_call(client, "p1")
    await patch(client, call, {"tags": ["lead"], "score": 5, "sale_amount": 10, "notes": "crm"})
    await log_in(client)
    csrf = await page_csrf(client, f"/calls/{call}")
    form = {"csrf": csrf, "tag": "spam", "score": "", "sale": "", "notes": ""}
    assert (await client.post(f"/calls/{call}", data=form, allow_redirects=False)).status == 303
    stored = await call_row(client, call)
    assert (stored["tags"], stored["score"], stored["sale_cents"], stored["notes"]) == (
        ["spam"],
        None,
        None,
        None,
    )
    assert stored["reviewed_by"] == "ada"


# --- POST /api/v1/sales: matching ------------------------------------------------------------


@pytest.mark.parametrize("stored_as", ["+79161234567", "79161234567", "89161234567"])
@pytest.mark.parametrize(
    "posted_as",
    ["+79161234567", "79161234567", "89161234567", "+7 916 123-45-67", "8 (916) 123-45-67"],
)
async def test_the_caller_matches_in_any_form(
    client: Client, stored_as: str, posted_as: str
) -> None:
    call = await store_call(client, "s1", caller=stored_as, at=NOW - DAY)
    await store_call(client, "other", caller="+79035550101", at=NOW - 60)  # someone else, later
    response = await post_sale(client, caller=posted_as, amount="1500.00", reference="D-1")
    assert response.status == 201
    answer = await response.json()
    # however the trunk sent it, the call keeps the caller in E.164
    assert (answer["call_id"], answer["call"]["id"], answer["call"]["caller"]) == (
        call,
        call,
        "+79161234567",
    )
    assert (answer["reference"], answer["amount"], answer["created"]) == ("D-1", "1500.00", True)
    assert answer["call"]["crm_sales"] == 1 and answer["call"]["crm_sale_cents"] == 150000
    assert await crm(client, call) == (1, 150000)


async def test_the_latest_call_before_the_sale_is_credited(client: Client) -> None:
    older = await store_call(client, "c1", at=NOW - 10 * DAY)
    latest = await store_call(client, "c2", caller="89161234567", at=NOW - 5 * DAY)
    after = await store_call(client, "c3", at=NOW + DAY)  # about a deal already made
    answer = await (
        await post_sale(client, caller=CALLER, amount=700, at=NOW, reference="D")
    ).json()
    assert answer["call_id"] == latest
    assert [await crm(client, c) for c in (older, latest, after)] == [(0, 0), (1, 70000), (0, 0)]


async def test_a_call_exactly_match_days_before_is_credited(client: Client) -> None:
    edge = await store_call(client, "c1", at=NOW - 90 * DAY)
    response = await post_sale(client, caller=CALLER, amount=1, at=NOW, reference="D")
    assert response.status == 201 and (await response.json())["call_id"] == edge
    assert await crm(client, edge) == (1, 100)


async def test_a_sale_without_a_call_to_credit_is_a_404_that_says_why(client: Client) -> None:
    old = await store_call(client, "c1", at=NOW - 90 * DAY - 1)
    await store_call(client, "c2", caller="+79035550101", at=NOW + 60)
    cases = [
        (CALLER, "too_old", "older than 90 days"),
        ("+79035550101", "only_later", "after the sale"),
        ("+79990001122", "no_calls", "no calls from +79990001122"),
    ]
    for caller, reason, message in cases:
        response = await post_sale(client, caller=caller, amount=1, at=NOW, reference=caller)
        assert response.status == 404
        answer = await response.json()
        assert answer["reason"] == reason and message in answer["error"]
    assert await crm(client, old) == (0, 0)
    assert await sale_rows(client) == 0


async def test_match_days_comes_from_the_config(
    tmp_path: Path, clock: FakeClock, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    settings = settings_for(tmp_path, sales={"match_days": 7})
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=clock))
    await store_call(client, "c1", at=NOW - 8 * DAY)
    response = await post_sale(client, caller=CALLER, amount=1, at=NOW, reference="D")
    assert response.status == 404 and "older than 7 days" in (await response.json())["error"]


# --- POST /api/v1/sales: one sale per reference ---------------------------------------------


async def test_posting_the_same_reference_again_counts_the_sale_once(
    client: Client, clock: FakeClock
) -> None:
    call = await store_call(client, "c1", at=NOW - DAY)
    body = {"caller": CALLER, "amount": "1500.00", "at": NOW, "reference": "D-1"}
    first = await post_sale(client, **body)
    later = await store_call(client, "c2", at=NOW - 60)  # stored after the first post
    again = await post_sale(client, **body)
    assert (first.status, again.status) == (201, 200)
    answer = await again.json()
    assert (answer["call_id"], answer["created"], answer["amount"]) == (call, False, "1500.00")
    assert await crm(client, call) == (1, 150000) and await crm(client, later) == (0, 0)
    assert await sale_rows(client) == 1
    # a retry without `at` is the same sale, not one moved to the retry's time
    clock.advance(3600)
    retry = await post_sale(client, caller=CALLER, amount=1500, reference="D-1")
    assert retry.status == 200 and (await retry.json())["call_id"] == call
    assert await crm(client, call) == (1, 150000)


async def test_two_identical_posts_at_once_count_once(client: Client) -> None:
    call = await store_call(client, "c1", at=NOW - DAY)
    body = {"caller": CALLER, "amount": "99.90", "at": NOW, "reference": "D-1"}
    responses = await asyncio.gather(*(post_sale(client, **body) for _ in range(4)))
    assert sorted(r.status for r in responses) == [200, 200, 200, 201]
    assert {(await r.json())["call_id"] for r in responses} == {call}
    assert await crm(client, call) == (1, 9990)
    assert await sale_rows(client) == 1


async def test_a_corrected_deal_updates_the_sale_and_moves_its_credit(client: Client) -> None:
    first = await store_call(client, "c1", at=NOW - 10 * DAY)
    second = await store_call(client, "c2", at=NOW - DAY)
    await post_sale(client, caller=CALLER, amount=100, at=NOW - 5 * DAY, reference="D-1")
    assert await crm(client, first) == (1, 10000)

    amount = await post_sale(client, caller=CALLER, amount=250, at=NOW - 5 * DAY, reference="D-1")
    assert amount.status == 200 and (await amount.json())["created"] is False
    assert await crm(client, first) == (1, 25000)

    moved = await post_sale(client, caller=CALLER, amount=250, at=NOW, reference="D-1")
    assert moved.status == 200 and (await moved.json())["call_id"] == second
    assert await crm(client, first) == (0, 0) and await crm(client, second) == (1, 25000)

    # a correction no call can have brought is refused, and the sale stays where it was
    refused = await post_sale(client, caller=CALLER, amount=250, at=NOW - 30 * DAY, reference="D-1")
    assert refused.status == 404 and (await refused.json())["reason"] == "only_later"
    assert await crm(client, second) == (1, 25000)
    assert await sale_rows(client) == 1


async def test_sales_of_one_call_add_up(client: Client) -> None:
    call = await store_call(client, "c1", at=NOW - DAY)
    for reference, amount in (("A", "1500.5"), ("B", 20), ("C", "0.01")):
        response = await post_sale(client, caller=CALLER, amount=amount, reference=reference)
        assert response.status == 201
    assert await crm(client, call) == (3, 150050 + 2000 + 1)
    # the call log's CSV carries them beside staff's sale_amount: reports count both
    await log_in(client, "sam")
    exported = await (await client.get("/calls.csv")).read()
    [row] = list(csv.DictReader(io.StringIO(exported.decode("utf-8-sig"))))
    assert (row["crm_sales"], row["crm_sale_amount"], row["sale_amount"]) == ("3", "1520.51", "")


# --- POST /api/v1/sales: reading amount, at and the rest -------------------------------------


@pytest.mark.parametrize(
    ("amount", "cents", "text"),
    [("1500.00", 150000, "1500.00"), (1500, 150000, "1500.00"), ("1500.5", 150050, "1500.50")],
)
async def test_amount_forms(client: Client, amount: Any, cents: int, text: str) -> None:
    call = await store_call(client, "c1", at=NOW - DAY)
    response = await post_sale(client, caller=CALLER, amount=amount, reference="D")
    assert response.status == 201 and (await response.json())["amount"] == text
    assert await crm(client, call) == (1, cents)


ISO_AT = datetime(2027, 2, 1, 9, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    "at",
    [
        "2027-02-01T12:00:00+03:00",
        "2027-02-01T09:00:00",
        "2027-02-01T09:00:00Z",
        ISO_AT,
        "1801472400",
    ],
)
async def test_at_forms(client: Client, at: Any) -> None:
    """Each form means 09:00 UTC: the call a second later is not credited, the one before is."""
    before = await store_call(client, "c1", at=ISO_AT - 100)
    await store_call(client, "c2", at=ISO_AT + 1)
    response = await post_sale(client, caller=CALLER, amount=1, at=at, reference="D")
    answer = await response.json()
    assert response.status == 201 and answer["call_id"] == before
    assert answer["at"] == "2027-02-01T09:00:00+00:00"


async def test_without_at_the_sale_is_now(client: Client, clock: FakeClock) -> None:
    before = await store_call(client, "c1", at=NOW - 1)
    await store_call(client, "c2", at=NOW + 1)
    answer = await (await post_sale(client, caller=CALLER, amount=1, reference="D")).json()
    assert answer["call_id"] == before and answer["at"] == "2027-01-15T08:00:00+00:00"


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"amount": "abc"}, "amount"),
        ({"amount": -1}, "amount"),
        ({"amount": "-1.00"}, "amount"),
        ({"amount": None}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": "1.001"}, "amount"),
        ({"at": "yesterday"}, "at"),
        ({"at": True}, "at"),
        ({"at": [1]}, "at"),
        ({"at": -5}, "at"),
        ({"at": "1e400"}, "at"),
        ({"at": "9999-12-31"}, "at"),  # its end of day overflowed: a 500 with a traceback
        ({"at": "0001-01-01"}, "at"),  # a date alone skipped the 1970..9999 check
        ({"caller": "hello"}, "caller"),
        ({"caller": "+7916"}, "caller"),
        ({"caller": 79161234567}, "caller"),
        ({"reference": ""}, "reference"),
        ({"reference": "x" * 129}, "reference"),
        ({"reference": 5}, "reference"),
        ({"note": "x"}, "'note'"),
    ],
)
async def test_bad_sale_is_a_400_that_names_the_field(
    client: Client, body: dict[str, Any], named: str
) -> None:
    call = await store_call(client, "c1", at=NOW - DAY)
    good = {"caller": CALLER, "amount": 1, "at": NOW, "reference": "D"}
    response = await post_sale(client, **(good | body))
    assert response.status == 400 and named in (await response.json())["error"]
    assert await crm(client, call) == (0, 0)
    assert await sale_rows(client) == 0


async def test_a_sale_needs_every_required_field_and_a_token(client: Client) -> None:
    call = await store_call(client, "c1", at=NOW - DAY)
    good = {"caller": CALLER, "amount": 1, "reference": "D"}
    for missing in good:
        body = {k: v for k, v in good.items() if k != missing}
        response = await post_sale(client, **body)
        assert response.status == 400 and missing in (await response.json())["error"]
    response = await client.post("/api/v1/sales", json=good)
    assert response.status == 401
    response = await client.post("/api/v1/sales", data=b"{", headers=AUTH)
    assert response.status == 400
    assert await crm(client, call) == (0, 0)


async def test_a_date_alone_is_the_end_of_that_day_in_the_ui_time_zone(
    tmp_path: Path, clock: FakeClock, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """A CRM's close date (Bitrix24's CLOSEDATE) was midnight UTC: before that day's calls, so
    the sale went to an older call, or to none."""
    settings = settings_for(tmp_path, users=staff_users(), ui={"timezone": "Europe/Moscow"})
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=clock))
    older = await store_call(client, "c0", at=ISO_AT - 3 * DAY)
    that_day = await store_call(client, "c1", at=ISO_AT + 11 * 3600)  # 23:00 in Moscow
    await store_call(client, "c2", at=ISO_AT + 12 * 3600)  # 00:00 the next day there
    response = await post_sale(client, caller=CALLER, amount=1, at="2027-02-01", reference="D")
    answer = await response.json()
    assert response.status == 201 and answer["call_id"] == that_day != older


async def test_a_date_alone_takes_in_a_repeated_last_hour(
    tmp_path: Path, clock: FakeClock, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """Chile falls back at 24:00 (2025-04-05): 23:00-23:59 comes twice, and the end of the day
    read as 23:59:59.999999 was the first of them, an hour before the day's last call."""
    settings = settings_for(tmp_path, users=staff_users(), ui={"timezone": "America/Santiago"})
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=clock))
    second_2330 = datetime(2025, 4, 6, 3, 30, tzinfo=UTC).timestamp()  # 23:30 at UTC-4
    call = await store_call(client, "c1", at=second_2330)
    response = await post_sale(client, caller=CALLER, amount=1, at="2025-04-05", reference="D")
    assert response.status == 201 and (await response.json())["call_id"] == call


async def test_wrong_bearer_tokens_from_one_network_are_refused_then_unchecked(
    tmp_path: Path, clock: FakeClock, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """A token the admin chose could be guessed at the network's speed: no limit, no log line,
    and the 401s were not even counted in /metrics. After TOKEN_GUESS_LIMIT wrong tokens in
    the window, a public network's requests are refused unchecked (the right token too, as a
    locked login); other networks are not, and the window's end lets the network in again. A
    private peer (the site's proxy, trusted_proxies not set) is never locked out: every
    integration is behind it."""
    settings = settings_for(tmp_path, http={"trusted_proxies": ["127.0.0.1"]})
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=clock))

    async def calls_from(address: str, token: str) -> ClientResponse:
        headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": address}
        return await client.get("/api/v1/calls", headers=headers)

    for guess in range(TOKEN_GUESS_LIMIT):
        assert (await calls_from("93.184.216.34", f"guess-{guess}")).status == 401
    refused = await calls_from("93.184.216.34", STAFF_TOKEN)
    assert refused.status == 429 and int(refused.headers["Retry-After"]) > 0
    assert (await calls_from("151.101.1.69", STAFF_TOKEN)).status == 200
    # no token at all is no guess: a browser's request does not lock its network out
    for _ in range(TOKEN_GUESS_LIMIT):
        assert (
            await client.get("/api/v1/calls", headers={"X-Forwarded-For": "104.16.132.229"})
        ).status == 401
    assert (await calls_from("104.16.132.229", STAFF_TOKEN)).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert f'calltrack_http_errors_total{{status="401"}} {TOKEN_GUESS_LIMIT}.0' in metrics
    clock.advance(TOKEN_GUESS_WINDOW)
    assert (await calls_from("93.184.216.34", STAFF_TOKEN)).status == 200
    for guess in range(2 * TOKEN_GUESS_LIMIT):
        assert (await calls_from("10.1.2.3", f"guess-{guess}")).status == 401
    assert (await calls_from("10.1.2.3", STAFF_TOKEN)).status == 200
