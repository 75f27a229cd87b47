"""The delivery worker on a real SQLite outbox and a local receiver (issue 14): a stored call is
POSTed right after its commit, signed, with its event id; 500s and timeouts are retried with
the same bytes and the same event id until delivered once; past the give-up time the row is
failed; "retry now" sends it again; a composer's Skip is recorded; the counts are in /metrics."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from attribution.calls import CallReport
from integrations.delivery import Destination, Lookup, Outgoing, PendingEvent, Skip
from integrations.signing import verify
from integrations.worker import GA4_TIMEOUT, LEASE_MARGIN, DeliveryWorker
from pbx.app import build_app
from pbx.keys import CALLS, DELIVERIES, ENGINE
from pbx.metrics import Metrics
from pbx.settings import Settings
from pbx.storage.calls import CallStore
from pbx.storage.db import open_engine
from pbx.storage.deliveries import Deliveries, recent
from pbx.storage.outbox import Outbox
from pbx.storage.tables import outbox
from pbx.storage.visits import VisitStore
from tests.helpers import FakeClock, migrate, settings_for
from tests.webhooks.receiver import PATH, Receiver, serve

SECRET = "whsec-delivery-tests-0123"
TIMEOUT = 0.5  # seconds an attempt may take in the harness
Client = TestClient  # type: ignore[type-arg]


def report(linkedid: str, at: float) -> CallReport:
    return CallReport(linkedid, "+79161234567", "+74990000101", at, at + 60, at + 5, "ANSWER")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, TestServer]]:
    got = Receiver()
    server = await serve(got)
    yield got, server
    await server.close()


def hook(server: TestServer, **extra: Any) -> dict[str, Any]:
    return {"name": "crm", "url": str(server.make_url(PATH)), "secret": SECRET, **extra}


async def test_a_stored_call_is_posted_signed_with_its_event_id(
    tmp_path: Path,
    receiver: tuple[Receiver, TestServer],
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    got, server = receiver
    settings = settings_for(tmp_path, webhooks=[hook(server)])
    await migrate(settings)
    client = await aiohttp_client(build_app(settings))  # the real clock: signatures are now
    assert await client.app[CALLS].store(report("L1", 1_800_000_000.0))
    await got.wait_for(1, within=2.0)  # woken by the commit, not by the 1 s poll alone
    request = got.got[0]
    async with client.app[ENGINE].connect() as conn:
        event_id = await conn.scalar(select(outbox.c.event_id))
    assert request.headers["X-Calltrack-Event-Id"] == event_id
    assert request.headers["X-Calltrack-Event"] == "call.completed"
    assert request.headers["User-Agent"] == "calltrack"
    assert request.headers["Content-Type"] == "application/json"
    header = request.headers["X-Calltrack-Signature"]
    t = header.split(",")[0].removeprefix("t=")
    mac = hmac.new(SECRET.encode(), f"{t}.".encode() + request.body, hashlib.sha256).hexdigest()
    assert header == f"t={t},v1={mac}"
    assert verify(SECRET, request.body, header, now=request.at)
    body = json.loads(request.body)
    assert body["event_id"] == event_id and body["call"]["caller"] == "+79161234567"
    for _ in range(50):  # the outcome is written just after the answer
        rows = await recent(client.app[ENGINE], 10)
        if rows[0]["state"] == "delivered":
            break
        await asyncio.sleep(0.05)
    assert rows[0]["state"] == "delivered" and rows[0]["attempts"] == 1
    assert rows[0]["last_status"] == 200 and rows[0]["next_try"] is None
    metrics = await (await client.get("/metrics")).text()
    assert 'calltrack_webhook_deliveries_total{outcome="delivered",target="crm"} 1.0' in metrics
    assert "calltrack_webhook_delivery_seconds_count 1.0" in metrics
    assert client.app[DELIVERIES] is not None


# -- the worker on its own, with a test composer and a settable clock --------------------------


class Composer:
    """Sends a body that changes each time it is composed: a retry that composed again would
    show at the receiver."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.composed = 0
        self.skip: str | None = None
        self.gone = False  # the target left the config

    async def compose(self, event: PendingEvent) -> Outgoing:
        if self.skip:
            raise Skip(self.skip)
        self.composed += 1
        body = json.dumps({"id": event.event_id, "composed": self.composed}).encode()
        return Outgoing(self.url, body, {"Content-Type": "application/x-test"}, secret=SECRET)

    def destination(self, target: str) -> Destination | None:
        return Destination(self.url, SECRET, TIMEOUT) if target == "crm" and not self.gone else None

    def lookup(self, event: PendingEvent) -> Lookup | None:
        return None  # a webhook: its receiver drops duplicates

    def targets(self) -> frozenset[str]:
        return frozenset({"crm"})


@dataclass
class Harness:
    store: CallStore
    deliveries: Deliveries
    composer: Composer
    clock: FakeClock
    metrics: Metrics
    engine: Any
    receiver: Receiver
    task: asyncio.Task[None]

    async def row(self) -> dict[str, Any]:
        return dict((await recent(self.engine, 1))[0])

    async def settled(self, attempts: int, within: float = 10.0) -> dict[str, Any]:
        """The row once `attempts` outcomes are written."""
        return await self.until(
            lambda row: row["attempts"] >= attempts and row["claimed_until"] is None, within
        )

    async def until(self, done: Callable[[dict[str, Any]], bool], within: float) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                row = await self.row()
                if done(row):
                    return row
                await asyncio.sleep(0.02)


@pytest.fixture
async def harness(
    tmp_path: Path, receiver: tuple[Receiver, TestServer], request: pytest.FixtureRequest
) -> AsyncIterator[Harness]:
    """A worker polling every 50 ms (tests move the FakeClock to make retries due), or as
    long as the test's indirect parameter says."""
    got, server = receiver
    settings: Settings = settings_for(
        tmp_path, webhooks=[hook(server, timeout=f"{TIMEOUT}s", retry_for="1h")]
    )
    await migrate(settings)
    engine = open_engine(settings.database)
    clock = FakeClock()
    box = Outbox(settings, clock)
    store = CallStore(engine, settings, VisitStore(engine, settings, clock), clock, box)
    deliveries = Deliveries(engine, clock)
    composer = Composer(str(server.make_url(PATH)))
    metrics = Metrics()
    worker = DeliveryWorker(
        deliveries,
        composer,
        settings,
        metrics,
        clock,
        rng=random.Random(7),
        poll=getattr(request, "param", 0.05),
    )
    box.on_added(worker.wake)
    task = asyncio.create_task(worker.run())
    yield Harness(store, deliveries, composer, clock, metrics, engine, got, task)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await engine.dispose()


async def test_500s_and_a_timeout_are_retried_with_the_same_bytes_until_delivered_once(
    harness: Harness,
) -> None:
    h = harness
    h.receiver.answers = [500, "hang", 503]
    assert await h.store.store(report("R1", h.clock.now))
    stored_at = h.clock.now
    row = await h.settled(1)
    assert row["state"] == "pending" and row["last_status"] == 500
    assert row["last_error"].startswith("HTTP 500")
    assert stored_at + 1 <= row["next_try"] <= stored_at + 10  # the first retry within 10 s
    await asyncio.sleep(0.3)
    assert len(h.receiver.got) == 1  # not due yet: the clock has not moved
    for attempts in (2, 3):
        h.clock.now = row["next_try"]
        row = await h.settled(attempts)
        assert row["state"] == "pending"
        assert row["next_try"] > h.clock.now
    assert row["last_status"] == 503
    h.clock.now = row["next_try"]
    row = await h.settled(4)
    assert row["state"] == "delivered" and row["last_status"] == 200
    assert row["delivered_at"] == h.clock.now
    bodies = {g.body for g in h.receiver.got}
    ids = h.receiver.by_event_id()
    assert len(h.receiver.got) == 4 and len(bodies) == 1 and h.composer.composed == 1
    assert list(ids.values()) == [4] and list(ids) == [row["event_id"]]
    assert {g.headers["Content-Type"] for g in h.receiver.got} == {"application/x-test"}
    last = h.receiver.got[-1]
    assert verify(SECRET, last.body, last.headers["X-Calltrack-Signature"], now=h.clock.now)
    await asyncio.sleep(0.3)
    assert len(h.receiver.got) == 4  # delivered: never again
    count = h.metrics.deliveries.labels("crm", "retried")._value.get()
    assert count == 3


async def test_a_retry_after_is_waited_for_in_seconds_or_as_a_date(harness: Harness) -> None:
    """A receiver's rate limit (429) or maintenance (503) says when to come back: the backoff
    alone would be back within 10 s and again and again, each refused."""
    h = harness
    h.receiver.answers = [429, 503]
    h.receiver.refusal_headers = {"Retry-After": "600"}
    assert await h.store.store(report("RA1", h.clock.now))
    refused_at = h.clock.now
    row = await h.settled(1)
    assert row["state"] == "pending" and row["last_status"] == 429
    # the wait asked, then the backoff's jitter (1-5 s): not the same second for every event
    assert refused_at + 601 <= row["next_try"] <= refused_at + 605
    assert row["last_error"].endswith("(asked to wait 600 s: Retry-After)")
    h.clock.now = refused_at + 300  # sooner than asked: nothing is sent
    await asyncio.sleep(0.3)
    assert len(h.receiver.got) == 1
    h.clock.now = row["next_try"]
    back = h.clock.now + 1200  # an HTTP-date, 20 minutes on (the backoff: 10 s at most)
    h.receiver.refusal_headers = {"Retry-After": formatdate(back, usegmt=True)}
    row = await h.settled(2)
    assert row["last_status"] == 503
    assert int(back) + 1 <= row["next_try"] <= int(back) + 10  # a date has whole seconds
    h.clock.now = row["next_try"]
    row = await h.settled(3)
    assert row["state"] == "delivered" and len(h.receiver.got) == 3


async def test_a_retry_after_past_the_give_up_time_fails_the_delivery_at_once(
    harness: Harness,
) -> None:
    """A last try at the give-up time would come while the receiver still refuses."""
    h = harness  # retry_for 1 h
    h.receiver.answers = [429]
    h.receiver.refusal_headers = {"Retry-After": "86400"}
    assert await h.store.store(report("RA2", h.clock.now))
    row = await h.settled(1)
    assert row["state"] == "failed" and len(h.receiver.got) == 1
    assert row["last_error"].endswith(
        "(asked to wait 86400 s: Retry-After past the end of retry_for)"
    )
    # the target's other events wait an hour at most (the backoff's cap), not the day asked
    assert await h.store.store(report("RA2b", h.clock.now))
    await asyncio.sleep(0.3)
    assert len(h.receiver.got) == 1
    h.clock.now += 3601
    await h.receiver.wait_for(2, within=5.0)


async def test_a_receiver_that_asked_to_wait_gets_no_other_event_meanwhile(
    harness: Harness,
) -> None:
    """Its rate limit is the receiver's, not the event's: another event sent during the wait
    would be refused too, and cost that event an attempt."""
    h = harness
    h.receiver.answers = [429]
    h.receiver.refusal_headers = {"Retry-After": "120"}
    assert await h.store.store(report("P1", h.clock.now))
    first = await h.settled(1)
    assert first["last_status"] == 429
    assert await h.store.store(report("P2", h.clock.now))  # wakes the worker
    await asyncio.sleep(0.5)
    assert len(h.receiver.got) == 1  # the second event waits with the first
    h.clock.now += 121  # the wait is over: the new event goes, the refused one when due
    await h.receiver.wait_for(2, within=5.0)
    h.clock.now = first["next_try"]
    await h.receiver.wait_for(3, within=5.0)
    assert sorted(h.receiver.by_event_id().values()) == [1, 2]


async def test_an_unreadable_retry_after_leaves_the_backoff_alone(harness: Harness) -> None:
    h = harness
    h.receiver.answers = [503]
    h.receiver.refusal_headers = {"Retry-After": "soon-ish"}
    assert await h.store.store(report("RA3", h.clock.now))
    stored_at = h.clock.now
    row = await h.settled(1)
    assert stored_at + 1 <= row["next_try"] <= stored_at + 10
    assert "Retry-After" not in row["last_error"]


@pytest.mark.parametrize("harness", [3600.0], indirect=True)
async def test_a_refusal_in_binary_is_kept_as_text_the_database_takes(harness: Harness) -> None:
    """A receiver's error page can be any bytes; PostgreSQL refuses a NUL in text, and an
    attempt it could not record was sent again at every lease's end, uncounted."""
    harness.receiver.answers = [500]
    harness.receiver.refusal = b"\x00\x01PK\x03\x04 broken \x00"
    assert await harness.store.store(report("B1", harness.clock.now))
    row = await harness.settled(1)
    assert row["last_error"].startswith("HTTP 500: ") and "broken" in row["last_error"]
    assert not any(ch < " " for ch in row["last_error"]), row["last_error"]


async def test_the_commit_wakes_the_worker_without_waiting_for_a_poll(harness: Harness) -> None:
    h = harness
    await asyncio.sleep(0.1)  # the worker looked once at startup, and sleeps for an hour now
    assert await h.store.store(report("W1", h.clock.now))
    await h.receiver.wait_for(1, within=1.0)
    row = await h.settled(1)
    assert row["state"] == "delivered"


async def test_the_hanging_attempt_recorded_its_timeout(harness: Harness) -> None:
    h = harness
    h.receiver.answers = ["hang"]
    assert await h.store.store(report("T1", h.clock.now))
    row = await h.settled(1, within=5.0)
    assert row["last_status"] is None and row["last_error"] == "no answer within 0.5 s"


async def test_past_give_up_at_the_row_fails_and_retry_now_sends_it_again(
    harness: Harness,
) -> None:
    h = harness
    h.receiver.answers = [500] * 100
    assert await h.store.store(report("F1", h.clock.now))
    give_up_at = h.clock.now + 3600  # retry_for: 1h
    row = await h.settled(1)
    attempts = 1
    while row["state"] == "pending":
        assert row["next_try"] <= give_up_at
        h.clock.now = row["next_try"]
        attempts += 1
        row = await h.settled(attempts)
    assert row["state"] == "failed" and row["last_attempt_at"] == give_up_at
    assert row["next_try"] is None
    sent = len(h.receiver.got)
    h.clock.advance(3600)
    await asyncio.sleep(0.3)
    assert len(h.receiver.got) == sent  # failed: left alone
    h.receiver.answers = []
    assert await h.deliveries.retry_now(row["id"], {"crm"})
    row = await h.settled(attempts + 1)
    assert row["state"] == "delivered" and len(h.receiver.got) == sent + 1
    assert not await h.deliveries.retry_now(row["id"], {"crm"})  # delivered: nothing to retry
    assert not await h.deliveries.retry_now(10_000, {"crm"})


async def test_retry_now_makes_a_waiting_row_due_at_once(harness: Harness) -> None:
    h = harness
    h.receiver.answers = [500]
    assert await h.store.store(report("N1", h.clock.now))
    row = await h.settled(1)
    assert row["next_try"] > h.clock.now
    assert await h.deliveries.retry_now(row["id"], {"crm"})
    row = await h.settled(2)
    assert row["state"] == "delivered" and len(h.receiver.got) == 2


async def test_a_skip_is_recorded_with_its_reason_and_nothing_is_sent(harness: Harness) -> None:
    h = harness
    h.composer.skip = "no GA client id"
    assert await h.store.store(report("S1", h.clock.now))
    row = await h.until(lambda row: row["state"] != "pending", within=5.0)
    assert row["state"] == "skipped" and row["last_error"] == "no GA client id"
    assert h.receiver.got == []


async def test_a_database_outage_does_not_stop_the_worker(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    real = Deliveries.claim
    failures = 0

    async def down(self: Deliveries, *args: Any) -> Any:
        nonlocal failures
        failures += 1
        if failures <= 2:
            raise OSError("database is down")
        return await real(self, *args)

    monkeypatch.setattr(Deliveries, "claim", down)
    assert await h.store.store(report("D1", h.clock.now))
    row = await h.settled(1, within=10.0)
    assert row["state"] == "delivered" and failures > 2 and not h.task.done()


async def test_a_retry_goes_where_the_config_says_now(
    harness: Harness, receiver: tuple[Receiver, TestServer]
) -> None:
    """The URL (and secret) are not kept with the request: a target moved off a host gets its
    pending retries at the new one."""
    h = harness
    moved = Receiver()
    server = await serve(moved)
    h.receiver.answers = [500]
    assert await h.store.store(report("M1", h.clock.now))
    row = await h.settled(1)
    h.composer.url = str(server.make_url(PATH))
    h.clock.now = row["next_try"]
    row = await h.settled(2)
    assert row["state"] == "delivered"
    assert len(h.receiver.got) == 1 and len(moved.got) == 1
    assert moved.got[0].body == h.receiver.got[0].body  # the same bytes, at the new place
    async with h.engine.connect() as conn:
        kept = json.loads(await conn.scalar(select(outbox.c.body)))
    assert set(kept) == {"headers", "body"}  # neither the URL nor the secret is stored
    await server.close()


async def test_a_target_gone_from_the_config_is_skipped_not_sent(harness: Harness) -> None:
    h = harness
    h.receiver.answers = [500]
    assert await h.store.store(report("G1", h.clock.now))
    row = await h.settled(1)
    h.composer.gone = True
    h.clock.now = row["next_try"]
    row = await h.until(lambda r: r["state"] != "pending", 5.0)
    assert row["state"] == "skipped" and row["last_error"] == "no target named 'crm' now"
    assert len(h.receiver.got) == 1


class TwoTargets:
    """ "slow" and "fast", each to its own receiver."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls = urls

    async def compose(self, event: PendingEvent) -> Outgoing:
        body = json.dumps({"id": event.event_id}).encode()
        return Outgoing(self.urls[event.target], body, secret=SECRET)

    def destination(self, target: str) -> Destination | None:
        return Destination(self.urls[target], SECRET, 3.0) if target in self.urls else None

    def lookup(self, event: PendingEvent) -> Lookup | None:
        return None

    def targets(self) -> frozenset[str]:
        return frozenset(self.urls)


async def test_a_hanging_receiver_does_not_hold_up_another_target(tmp_path: Path) -> None:
    slow, fast = Receiver(answers=["hang"] * 50), Receiver()
    slow_server, fast_server = await serve(slow), await serve(fast)
    urls = {"slow": str(slow_server.make_url(PATH)), "fast": str(fast_server.make_url(PATH))}
    hooks = [{"name": name, "url": url, "secret": SECRET} for name, url in urls.items()]
    settings = settings_for(tmp_path, webhooks=hooks)
    await migrate(settings)
    engine = open_engine(settings.database)
    clock = FakeClock()
    box = Outbox(settings, clock)
    store = CallStore(engine, settings, VisitStore(engine, settings, clock), clock, box)
    worker = DeliveryWorker(Deliveries(engine, clock), TwoTargets(urls), settings, Metrics(), clock)
    box.on_added(worker.wake)
    task = asyncio.create_task(worker.run())
    for n in range(8):  # 16 events, slow's and fast's in turn, oldest first
        assert await store.store(report(f"H{n}", clock.now))
    await fast.wait_for(8, within=2.0)  # well before slow's 3 s timeouts free a slot
    assert len(slow.got) <= 3  # its share of the worker's slots
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await engine.dispose()
    await slow_server.close()
    await fast_server.close()


async def test_a_claim_lost_while_composing_is_not_sent_twice(harness: Harness) -> None:
    """Composing (and keeping the request) is outside the lease that covers the POST: when it
    took longer (a pool of connections waited on, a stalled loop), the worker claimed the row
    again and both attempts posted: two leads in Bitrix24, two conversions in GA4."""
    h = harness
    real = h.composer.compose
    slow_once = True

    async def slow(event: PendingEvent) -> Outgoing:
        nonlocal slow_once
        if slow_once:
            slow_once = False
            h.clock.advance(max(TIMEOUT, GA4_TIMEOUT) + LEASE_MARGIN + 1)  # past the lease
            await asyncio.sleep(0.3)  # the worker polls meanwhile and claims it again
        return await real(event)

    h.composer.compose = slow  # type: ignore[method-assign]
    assert await h.store.store(report("R1", h.clock.now))
    row = await h.until(lambda row: row["state"] == "delivered", 10.0)
    await asyncio.sleep(0.5)
    assert len(h.receiver.got) == 1
    assert row["attempts"] == 1


async def test_retry_now_is_refused_for_a_target_gone_from_the_config(harness: Harness) -> None:
    """It said yes and sent nothing: no worker claims a target its config does not have, and
    the failed row was given a fresh window to sit pending in."""
    h = harness
    h.receiver.answers = [500]
    assert await h.store.store(report("R1", h.clock.now))
    row = await h.settled(1)
    assert not await h.deliveries.retry_now(row["id"], {"another"})
    assert await h.deliveries.retry_now(row["id"], {"crm"})


async def test_a_released_claim_keeps_the_lapsed_lease_it_was_claimed_with(
    tmp_path: Path, receiver: tuple[Receiver, TestServer]
) -> None:
    """A row claimed after an earlier claim ran out (that claim may have sent its request) and
    then released (its target had no free slot) must still say so to the next claim: the
    Bitrix24 lookup waits from that lapsed lease. Release used to erase it."""
    _got, server = receiver
    settings = settings_for(tmp_path, webhooks=[hook(server, timeout=f"{TIMEOUT}s")])
    await migrate(settings)
    engine = open_engine(settings.database)
    try:
        clock = FakeClock()
        box = Outbox(settings, clock)
        store = CallStore(engine, settings, VisitStore(engine, settings, clock), clock, box)
        assert await store.store(report("R1", clock.now))
        deliveries = Deliveries(engine, clock)
        [first] = await deliveries.claim(10, 30.0, {"crm"})
        assert first.lapsed_lease is None
        clock.advance(31)  # the claim runs out with nothing written: its daemon stopped
        [second] = await deliveries.claim(10, 30.0, {"crm"})
        assert second.lapsed_lease == first.lease
        await deliveries.release(second)
        [third] = await deliveries.claim(10, 30.0, {"crm"})  # claimable at once, as it was
        assert third.lapsed_lease == first.lease and third.event.id == first.event.id
    finally:
        await engine.dispose()
