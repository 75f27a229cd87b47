"""The composer on the real app and SQLite (issue 14): for an outbox row it reads the call, its
visit, journey and sale and makes the request of the target's format: the json webhook with a
recording link that plays, the GA4 event for the visit's GA client id (skipped without one), a
Skip for a webhook that left the config."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from attribution.calls import CallReport
from integrations.compose import composer_for
from integrations.delivery import PendingEvent, Skip
from integrations.events import Event
from pbx.app import build_app
from pbx.keys import CALLS, ENGINE, OUTBOX, SETTINGS, VISITS
from pbx.storage.sales import Sale, SaleStore
from pbx.storage.tables import outbox, sessions
from pbx.storage.visits import VisitRequest
from tests.helpers import FakeClock, migrate, settings_for

Client = TestClient  # type: ignore[type-arg]
SECRET = "s" * 32
HOOKS = [
    {
        "name": "crm",
        "url": "http://127.0.0.1:9/crm",
        "secret": SECRET,
        "events": ["call.completed", "sale.created"],
    },
    {"name": "b24", "url": "http://127.0.0.1:9/rest/1/k", "secret": SECRET, "format": "bitrix24"},
]
GA4 = {"measurement_id": "G-TEST1234", "api_secret": "stream-secret", "endpoint": "http://ga.test"}
AUDIO = b"ID3" + bytes(2000)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(
    tmp_path: Path, clock: FakeClock, aiohttp_client: Callable[..., Awaitable[Client]]
) -> Client:
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "c1.mp3").write_bytes(AUDIO)
    settings = settings_for(
        tmp_path,
        recordings={"dir": "rec"},
        webhooks={"targets": HOOKS, "recording_link_ttl": "2d"},
        ga4=GA4,
        http={"public_url": "https://calls.example"},
        currency="RUB",
    )
    await migrate(settings)
    return await aiohttp_client(build_app(settings, clock=clock))


async def paid_call(client: Client, clock: FakeClock, ga: str | None) -> int:
    """A visit from google / cpc (with GA's client id `ga`), then a call to its number."""
    visits = client.app[VISITS]
    site = client.app[SETTINGS].sites[0]
    landing = "https://shop.test/?utm_source=google&utm_medium=cpc&utm_campaign=spring"
    visit = await visits.start_visit(VisitRequest(site, landing, None, None, None, "10.0.0.1"))
    await visits.flush()
    async with client.app[ENGINE].begin() as conn:
        await conn.execute(
            update(sessions).where(sessions.c.id == visit.session_id).values(ga_client_id=ga)
        )
    clock.advance(30)
    start = clock.now
    await client.app[CALLS].store(
        CallReport(
            "c1", "+79161234567", visit.number or "", start, start + 60, start + 5, "ANSWER",
            recording="c1.mp3",
        )
    )  # fmt: skip
    return 1


async def pending(client: Client, target: str, event: Event) -> PendingEvent:
    async with client.app[ENGINE].connect() as conn:
        row = (
            await conn.execute(
                select(outbox).where(outbox.c.target == target, outbox.c.event == str(event))
            )
        ).one()
    return PendingEvent(
        row.id, row.event_id, row.target, event, row.call_id, row.sale_reference,
        row.created_at, row.attempts,
    )  # fmt: skip


async def test_the_json_webhook_says_where_the_call_came_from(
    client: Client, clock: FakeClock
) -> None:
    call_id = await paid_call(client, clock, "111.222")
    event = await pending(client, "crm", Event.CALL_COMPLETED)
    outgoing = await composer_for(client.app).compose(event)
    assert outgoing.url == "http://127.0.0.1:9/crm" and outgoing.secret == SECRET
    body: dict[str, Any] = json.loads(outgoing.body)
    assert (body["event"], body["event_id"]) == ("call.completed", event.event_id)
    assert body["call"]["id"] == call_id and body["call"]["caller"] == "+79161234567"
    attribution = body["attribution"]
    assert (attribution["method"], attribution["source"], attribution["medium"]) == (
        "session",
        "google",
        "cpc",
    )
    assert attribution["campaign"] == "spring" and attribution["visit_number"] == 1
    assert body["journey"]["visits"] == 1 and body["journey"]["earlier_calls"] == 0
    link = body["recording_url"]
    expires = int(clock.now) + 2 * 86_400
    assert link.startswith(f"https://calls.example/recordings/{call_id}?expires={expires}&sig=")
    played = await client.get(link.removeprefix("https://calls.example"))
    assert played.status == 200 and await played.read() == AUDIO


async def test_a_sale_event_carries_the_sale(client: Client, clock: FakeClock) -> None:
    await paid_call(client, clock, None)
    clock.advance(3600)
    sales = SaleStore(client.app[ENGINE], "RU", 90, clock, client.app[OUTBOX])
    await sales.record(Sale("deal-1", "+79161234567", 150_050, None), "crm")
    body = json.loads(
        (await composer_for(client.app).compose(await pending(client, "crm", Event.SALE_CREATED)))
        .body
    )  # fmt: skip
    assert body["sale"] == {
        "reference": "deal-1",
        "amount": "1500.50",
        "currency": "RUB",
        "caller": "+79161234567",
        "at": "2027-01-15T09:00:30+00:00",
    }


async def test_ga4_gets_the_visit_client_id_or_is_skipped(client: Client, clock: FakeClock) -> None:
    await paid_call(client, clock, "111.222")
    outgoing = await composer_for(client.app).compose(
        await pending(client, "ga4", Event.CALL_COMPLETED)
    )
    assert outgoing.url == "http://ga.test?measurement_id=G-TEST1234&api_secret=stream-secret"
    body = json.loads(outgoing.body)
    assert body["client_id"] == "111.222"
    assert body["timestamp_micros"] == ((1_800_000_000 + 30) * 1_000_000)
    async with client.app[ENGINE].begin() as conn:
        await conn.execute(update(sessions).values(ga_client_id=None))
    with pytest.raises(Skip, match="no GA client id"):
        await composer_for(client.app).compose(await pending(client, "ga4", Event.CALL_COMPLETED))


async def test_bitrix24_gets_a_lead_and_a_removed_webhook_is_skipped(
    client: Client, clock: FakeClock
) -> None:
    await paid_call(client, clock, None)
    event = await pending(client, "b24", Event.CALL_COMPLETED)
    outgoing = await composer_for(client.app).compose(event)
    assert outgoing.url == "http://127.0.0.1:9/rest/1/k/crm.lead.add.json"
    assert json.loads(outgoing.body)["fields"]["UTM_CAMPAIGN"] == "spring"
    gone = PendingEvent(**{**event.__dict__, "target": "old-crm"})
    with pytest.raises(Skip, match="no webhook named 'old-crm'"):
        await composer_for(client.app).compose(gone)
