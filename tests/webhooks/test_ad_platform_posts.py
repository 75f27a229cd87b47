"""A call from a tagged visit reaches GA4 and Bitrix24 through the real daemon's outbox and
worker (issue 14): a local receiver stands in for both (the GA4 endpoint is the config's
override; the Bitrix24 incoming-webhook URL points at it), and checks what each one got."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from attribution.ad_clients import AdClientIds
from attribution.calls import CallReport
from integrations.worker import GA4_TIMEOUT, LEASE_MARGIN, LOOKUP_SETTLE
from pbx.app import build_app
from pbx.keys import CALLS, DELIVERIES, ENGINE, SETTINGS, VISITS
from pbx.storage.deliveries import recent
from pbx.storage.tables import outbox
from pbx.storage.visits import VisitRequest
from tests.helpers import ORIGIN, FakeClock, migrate, settings_for

Client = TestClient  # type: ignore[type-arg]
GA_CLIENT = "1234567890.1700000000"
LEASE = max(GA4_TIMEOUT, 1.0) + LEASE_MARGIN  # the worker's claims with bitrix_daemon's config


@dataclass
class Platforms:
    """Takes any POST; keeps (path, query, body)."""

    got: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((request.path, dict(request.query), json.loads(await request.read())))
        self.arrived.set()
        return web.json_response({"result": 1})  # Bitrix24 answers the new lead's id

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.got) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def platforms() -> AsyncIterator[tuple[Platforms, TestServer]]:
    got = Platforms()
    app = web.Application()
    app.router.add_post("/{tail:.*}", got.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield got, server
    await server.close()


async def test_a_tagged_call_reaches_ga4_and_becomes_a_bitrix24_lead(
    tmp_path: Path,
    platforms: tuple[Platforms, TestServer],
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    got, server = platforms
    settings = settings_for(
        tmp_path,
        ga4={
            "measurement_id": "G-TEST1234",
            "api_secret": "stream-secret-1",
            "endpoint": str(server.make_url("/mp/collect")),
        },
        webhooks=[
            {
                "name": "bitrix",
                "url": str(server.make_url("/rest/1/k3y/")),
                "secret": "bitrix-signing-secret-01",
                "format": "bitrix24",
            }
        ],
    )
    await migrate(settings)
    client = await aiohttp_client(build_app(settings))  # the real clock: GA4 takes 72 h
    site = client.app[SETTINGS].sites[0]
    landing = f"{ORIGIN}/sofas?utm_source=google&utm_medium=cpc&utm_campaign=spring"
    visit = await client.app[VISITS].start_visit(
        VisitRequest(site, landing, None, None, None, "10.0.0.7", ad_ids=AdClientIds(GA_CLIENT))
    )
    assert visit.number is not None
    now = time.time()
    report = CallReport("ad-1", "+79161234567", visit.number, now, now + 95, now + 5, "ANSWER")
    assert await client.app[CALLS].store(report)
    await got.wait_for(2)
    by_path = {path: (query, body) for path, query, body in got.got}
    query, event = by_path["/mp/collect"]
    assert query == {"measurement_id": "G-TEST1234", "api_secret": "stream-secret-1"}
    assert event["client_id"] == GA_CLIENT
    assert abs(event["timestamp_micros"] - now * 1_000_000) <= 1
    (phone_call,) = event["events"]
    assert phone_call["name"] == "phone_call"
    assert {k: phone_call["params"][k] for k in ("source", "medium", "campaign")} == {
        "source": "google",
        "medium": "cpc",
        "campaign": "spring",
    }
    _, lead = by_path["/rest/1/k3y/crm.lead.add.json"]
    fields = lead["fields"]
    assert fields["PHONE"] == [{"VALUE": "+79161234567", "VALUE_TYPE": "WORK"}]
    assert (fields["UTM_SOURCE"], fields["UTM_MEDIUM"], fields["UTM_CAMPAIGN"]) == (
        "google",
        "cpc",
        "spring",
    )
    assert "google / cpc" in fields["TITLE"]
    # what is kept for retries names neither GA4's API secret nor Bitrix24's key (in its URL)
    async with client.app[ENGINE].connect() as conn:
        kept = " ".join(await conn.scalars(select(outbox.c.body)))
    assert "stream-secret-1" not in kept and "k3y" not in kept and "phone_call" in kept


@dataclass
class Bitrix24:
    """crm.lead.add and crm.lead.list of a portal's incoming webhook, with leads kept: an add
    can make its lead and lose the answer (`lose`), make it only after its client gave up
    (`late`), or fail before making it (`refuse`); a list can answer junk (`junk_lists`) or
    ignore its filter (`ignore_filter`, as Bitrix24 does with a key it does not know)."""

    leads: dict[int, dict[str, Any]] = field(default_factory=dict)
    lose: int = 0
    late: float = 0.0
    refuse: int = 0
    junk_lists: int = 0
    ignore_filter: bool = False
    lookups: int = 0

    async def add(self, request: web.Request) -> web.Response:
        fields = (await request.json())["fields"]
        if self.refuse:
            self.refuse -= 1
            return web.json_response({"error": "QUERY_LIMIT_EXCEEDED"}, status=503)
        if self.late:  # made after the client gave up (PHP goes on when the client goes)
            made = asyncio.ensure_future(self._make_later(fields))
            return web.json_response({"result": await asyncio.shield(made)})
        lead = len(self.leads) + 1
        self.leads[lead] = fields
        if self.lose:
            self.lose -= 1
            await asyncio.sleep(3600)  # made, but the answer never comes
        return web.json_response({"result": lead})

    async def _make_later(self, fields: dict[str, Any]) -> int:
        await asyncio.sleep(self.late)
        lead = len(self.leads) + 1
        self.leads[lead] = fields
        return lead

    async def list(self, request: web.Request) -> web.Response:
        self.lookups += 1
        if self.junk_lists:
            self.junk_lists -= 1
            return web.Response(text="<html>maintenance</html>")
        asked = await request.json()
        wanted = {} if self.ignore_filter else asked["filter"]
        found = [
            {"ID": str(lead), **{k: fields.get(k) for k in asked["select"] if k != "ID"}}
            for lead, fields in self.leads.items()
            if all(fields.get(k) == v for k, v in wanted.items())
        ]
        return web.json_response({"result": found, "total": len(found)})


async def bitrix_daemon(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]], portal: Bitrix24
) -> tuple[Client, FakeClock, TestServer]:
    app = web.Application()
    app.router.add_post("/rest/1/k3y/crm.lead.add.json", portal.add)
    app.router.add_post("/rest/1/k3y/crm.lead.list.json", portal.list)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    hook = {"name": "bitrix", "url": str(server.make_url("/rest/1/k3y/")), "format": "bitrix24"}
    settings = settings_for(tmp_path, webhooks=[{**hook, "timeout": "1s"}])
    await migrate(settings)
    clock = FakeClock(time.time())  # moved on to make retries due
    client = await aiohttp_client(build_app(settings, clock=clock))
    at = clock.now
    report = CallReport("bx-1", "+79161234567", "+74990000101", at, at + 60, at + 5, "ANSWER")
    assert await client.app[CALLS].store(report)
    return client, clock, server


async def delivery_row(client: Client, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            [row] = await recent(client.app[ENGINE], 5)
            if done(dict(row)):
                return dict(row)
            await asyncio.sleep(0.05)


def retried(row: dict[str, Any]) -> bool:
    return row["state"] == "pending" and row["attempts"] >= 1 and row["claimed_until"] is None


async def test_a_retry_after_a_lost_answer_finds_the_lead_instead_of_making_a_second(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    portal = Bitrix24(lose=1)
    client, clock, server = await bitrix_daemon(tmp_path, aiohttp_client, portal)
    row = await delivery_row(client, retried)
    assert "no answer within 1 s" in row["last_error"] and len(portal.leads) == 1
    clock.advance(3600)  # the retry is due
    row = await delivery_row(client, lambda row: row["state"] == "delivered")
    assert (row["attempts"], row["last_status"]) == (2, None)
    assert row["last_error"].startswith("lead 1 made by an earlier attempt")
    assert len(portal.leads) == 1 and portal.lookups == 1
    [lead] = portal.leads.values()
    assert (lead["ORIGINATOR_ID"], lead["ORIGIN_ID"]) == ("calltrack", row["event_id"])
    await server.close()


async def test_a_retry_after_a_refusal_looks_up_then_makes_the_one_lead(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    portal = Bitrix24(refuse=1, junk_lists=1, ignore_filter=True)
    portal.leads[1] = {"TITLE": "from the shop's form", "ORIGINATOR_ID": "1c", "ORIGIN_ID": "7"}
    client, clock, server = await bitrix_daemon(tmp_path, aiohttp_client, portal)
    row = await delivery_row(client, retried)
    assert row["last_status"] == 503 and len(portal.leads) == 1 and portal.lookups == 0
    # the lookup's answer is not crm.lead.list's: nothing is sent on it, tried again later
    clock.advance(3600)
    row = await delivery_row(client, lambda row: retried(row) and row["attempts"] == 2)
    assert (
        "looking up an earlier attempt" in row["last_error"] and "maintenance" in row["last_error"]
    )
    assert len(portal.leads) == 1 and portal.lookups == 1
    clock.advance(3600)
    # the portal ignores the filter and lists the form's lead: not this event's, so it is made
    row = await delivery_row(client, lambda row: row["state"] == "delivered")
    assert (row["attempts"], row["last_status"]) == (3, 200) and portal.lookups == 2
    assert [lead["ORIGINATOR_ID"] for lead in portal.leads.values()] == ["1c", "calltrack"]
    await server.close()


async def test_a_lead_made_after_its_client_gave_up_is_found_not_made_again(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """Bitrix24 goes on with a request whose client timed out: a lookup right after the
    timeout would find nothing and make a second lead. The retry waits LOOKUP_SETTLE after the
    attempt, however soon it is due (here: "retry now" on the admin page)."""
    portal = Bitrix24(late=2.0)
    client, clock, server = await bitrix_daemon(tmp_path, aiohttp_client, portal)
    row = await delivery_row(client, retried)
    assert not portal.leads  # still being made
    assert await client.app[DELIVERIES].retry_now(row["id"], {"bitrix"})
    row = await delivery_row(
        client, lambda r: r["next_try"] == row["last_attempt_at"] + LOOKUP_SETTLE
    )
    assert (row["state"], row["attempts"], portal.lookups) == ("pending", 1, 0)
    await asyncio.sleep(2.5)  # the portal makes the lead meanwhile
    assert len(portal.leads) == 1
    clock.advance(LOOKUP_SETTLE)
    row = await delivery_row(client, lambda row: row["state"] == "delivered")
    assert row["last_error"].startswith("lead 1 made by an earlier attempt")
    assert len(portal.leads) == 1 and portal.lookups == 1 and row["attempts"] == 2
    await server.close()


async def test_a_retry_after_an_unwritten_outcome_waits_for_the_request_it_may_have_sent(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """The database was away when the attempt's outcome was to be written: the claim runs out
    with nothing recorded (no last attempt time), and the request may still be making its lead.
    The retry after the lapsed lease waits LOOKUP_SETTLE from when that lease began."""
    portal = Bitrix24(late=4.0)

    async def away(*args: Any, **kwargs: Any) -> None:
        raise OSError("database is away")

    client, clock, server = await bitrix_daemon(tmp_path, aiohttp_client, portal)
    deliveries = client.app[DELIVERIES]
    real_retry = deliveries.retry
    deliveries.retry = away  # type: ignore[method-assign]
    row = await delivery_row(client, lambda row: row["claimed_until"] is not None)
    lease_end = row["claimed_until"]
    await asyncio.sleep(1.5)  # the attempt timed out (1 s) and its outcome was not written
    deliveries.retry = real_retry  # type: ignore[method-assign]
    row = await delivery_row(client, lambda row: True)
    assert (row["attempts"], row["state"], portal.lookups) == (0, "pending", 0)
    clock.advance(LEASE + 1)  # the lease has run out: the row is claimed again, and waits
    row = await delivery_row(client, lambda row: row["next_try"] == lease_end + LOOKUP_SETTLE)
    assert row["attempts"] == 0 and portal.lookups == 0 and not portal.leads
    # "retry now" is postponed again: the lapsed lease is kept with the postponed row
    assert await client.app[DELIVERIES].retry_now(row["id"], {"bitrix"})
    row = await delivery_row(
        client,
        lambda r: r["next_try"] == lease_end + LOOKUP_SETTLE and r["claimed_until"] == lease_end,
    )
    assert row["attempts"] == 0 and portal.lookups == 0
    await asyncio.sleep(3.0)  # the portal makes the lead of the unrecorded attempt
    assert len(portal.leads) == 1
    clock.advance(LOOKUP_SETTLE)
    row = await delivery_row(client, lambda row: row["state"] == "delivered")
    assert row["last_error"].startswith("lead 1 made by an earlier attempt")
    assert len(portal.leads) == 1 and portal.lookups == 1
    await server.close()


async def test_a_ga4_event_retried_past_the_72_hours_is_skipped_not_sent(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """The body kept for retries was sent again whenever the retry came: GA4 answers 2xx to an
    event older than 72 h and drops it, so a retry after a days-long outage (or "Retry now" on a
    failed row) was "delivered" and lost. Past the window the row is skipped, with the reason."""
    answers = [503]
    got: list[bytes] = []

    async def collect(request: web.Request) -> web.Response:
        got.append(await request.read())
        return web.Response(status=answers.pop(0) if answers else 204)

    app = web.Application()
    app.router.add_post("/mp/collect", collect)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    ga4 = {
        "measurement_id": "G-TEST1234",
        "api_secret": "stream-secret-1",
        "endpoint": str(server.make_url("/mp/collect")),
    }
    settings = settings_for(tmp_path, ga4=ga4)
    await migrate(settings)
    clock = FakeClock(time.time())
    client = await aiohttp_client(build_app(settings, clock=clock))
    site = client.app[SETTINGS].sites[0]
    visit = await client.app[VISITS].start_visit(
        VisitRequest(
            site,
            f"{ORIGIN}/?utm_source=google&utm_medium=cpc",
            None,
            None,
            None,
            "10.0.0.7",
            ad_ids=AdClientIds(GA_CLIENT),
        )
    )
    assert visit.number is not None
    at = clock.now
    report = CallReport("old-1", "+79161234567", visit.number, at, at + 60, at + 5, "ANSWER")
    assert await client.app[CALLS].store(report)
    row = await delivery_row(client, retried)
    assert row["last_status"] == 503 and len(got) == 1
    clock.advance(72 * 3600 - 5)  # due again, but GA4 would take it too late
    row = await delivery_row(client, lambda row: row["state"] == "skipped")
    assert row["last_error"] == "the call is older than the 72 h GA4 takes"
    assert len(got) == 1, "not sent again"
    await server.close()
