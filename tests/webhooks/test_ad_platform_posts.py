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
from pbx.app import build_app
from pbx.keys import CALLS, ENGINE, SETTINGS, VISITS
from pbx.storage.tables import outbox
from pbx.storage.visits import VisitRequest
from tests.helpers import ORIGIN, migrate, settings_for

Client = TestClient  # type: ignore[type-arg]
GA_CLIENT = "1234567890.1700000000"


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
