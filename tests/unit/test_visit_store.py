"""The lease rules at their edges, on the real store (SQLite in memory) with a settable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from attribution.calls import CallReport, Route
from attribution.leasing import Tracking
from attribution.numbering import Numbering
from attribution.traffic import MAX_URL
from pbx.settings import Settings
from pbx.storage import write_behind
from pbx.storage.callers import rebuild_callers
from pbx.storage.calls import CallFilter, CallStore
from pbx.storage.db import open_engine, upgrade
from pbx.storage.pool_usage import pool_records
from pbx.storage.reports import pool_coverage
from pbx.storage.tables import callers, calls, page_views, session_pools
from pbx.storage.visits import Visit, VisitRequest, VisitStore
from tests.helpers import FakeClock, make_settings
from tests.session_read_back import two_pings_at_once

PAID_URL = "https://shop.test/?utm_source=google&utm_medium=cpc&utm_campaign=spring"


class Harness:
    engine: AsyncEngine
    settings: Settings

    def __init__(self, store: VisitStore, calls: CallStore, clock: FakeClock, site: Any) -> None:
        self.store, self.calls, self.clock, self.site = store, calls, clock, site

    async def visit(
        self,
        url: str = PAID_URL,
        visitor: str | None = None,
        session: str | None = None,
        ip: str = "10.0.0.1",
        referrer: str | None = None,
    ) -> Visit:
        return await self.store.start_visit(
            VisitRequest(self.site, url, referrer, visitor, session, ip)
        )


async def harness(**overrides: Any) -> AsyncIterator[Harness]:
    settings = make_settings("sqlite+aiosqlite:///:memory:", **overrides)
    engine = open_engine(settings.database)
    await upgrade(engine)
    clock = FakeClock()
    store = VisitStore(engine, settings, clock)
    await store.sync_numbers()
    h = Harness(store, CallStore(engine, settings, store, clock), clock, settings.sites[0])
    h.engine, h.settings = engine, settings
    yield h
    await engine.dispose()


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async for item in harness():
        yield item


async def test_number_is_held_to_the_freeze_edge_and_then_free(h: Harness) -> None:
    a = await h.visit()
    b = await h.visit()
    assert {a.number, b.number} == {"+74990000001", "+74990000002"}
    h.clock.advance(60.0)  # exactly freeze_time after a's last activity: still a's
    assert (await h.visit()).tracking is Tracking.EXHAUSTED
    h.clock.advance(0.001)
    c = await h.visit()
    assert c.number == a.number  # the one free the longest


async def test_the_longest_free_number_is_handed_out_first(h: Harness) -> None:
    a = await h.visit()
    b = await h.visit()
    h.clock.advance(30)
    await h.store.ping(a.session_id, a.visitor_id, None)  # a is released 30 s after b
    h.clock.advance(120)
    assert (await h.visit()).number == b.number


async def test_ping_keeps_the_number_past_the_first_freeze(h: Harness) -> None:
    a = await h.visit()
    for _ in range(5):
        h.clock.advance(50)
        pinged = await h.store.ping(a.session_id, a.visitor_id, None)
        assert pinged is not None and pinged.number == a.number
    await h.visit()  # the other number
    assert (await h.visit()).tracking is Tracking.EXHAUSTED


async def test_expired_session_gets_its_number_back_if_still_free(h: Harness) -> None:
    a = await h.visit()
    h.clock.advance(600)
    pinged = await h.store.ping(a.session_id, a.visitor_id, None)
    assert pinged is not None and pinged.number == a.number


async def test_two_pings_at_once_of_a_session_read_back_take_one_number(tmp_path: Path) -> None:
    """On a SQLite file, as the daemon runs (its reads do not yield: tests/postgres has the
    backend whose reads do)."""
    await two_pings_at_once(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")


async def test_a_long_url_is_cached_as_kept_and_is_one_page_view(h: Harness) -> None:
    """The cache kept a ping's whole URL (4,096 characters, 4 bytes each with one emoji) and
    the campaign's values as a tuple: ~30 KB a session at the client's choosing, 200,000
    sessions. And the URL kept was cut to 1,024, so the whole one never equalled it: every
    ping of the same long page was a new page view."""
    a = await h.visit()
    long_url = "https://shop.test/" + "\N{GRINNING FACE}" + "x" * 4000
    for _ in range(3):
        h.clock.advance(10)
        assert await h.store.ping(a.session_id, a.visitor_id, long_url) is not None
    cached = h.store._cache[a.session_id]
    assert cached.last_url == long_url[:MAX_URL] and len(cached.campaign) == 16
    await h.store.flush()
    async with h.engine.connect() as conn:
        views = await conn.scalar(
            select(func.count())
            .select_from(page_views)
            .where(page_views.c.session_id == a.session_id)
        )
    assert views == 2  # the landing page and the long one, once


async def test_views_waiting_for_the_database_stop_at_their_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the database is away every kept view waited in memory, with no cap but the
    per-network budget times however many networks a client has."""
    monkeypatch.setattr(write_behind, "MAX_PENDING_PAGE_VIEWS", 3)
    settings = make_settings("sqlite+aiosqlite:///:memory:")
    engine = open_engine(settings.database)
    try:
        await upgrade(engine)
        clock = FakeClock()
        why: list[str] = []
        store = VisitStore(engine, settings, clock, view_not_kept=why.append)
        await store.sync_numbers()
        a = await store.start_visit(
            VisitRequest(settings.sites[0], PAID_URL, None, None, None, "10.0.0.1")
        )
        for page in range(5):  # no flush: as while the database is away
            clock.advance(1)
            await store.ping(a.session_id, a.visitor_id, f"https://shop.test/{page}")
        assert why == ["backlog", "backlog"]
        await store.flush()
        async with engine.connect() as conn:
            kept = await conn.scalar(select(func.count()).select_from(page_views))
        assert kept == 1 + 3  # the landing page, and the three under the cap
        store.close()
    finally:
        await engine.dispose()


async def test_same_session_same_number_on_every_page(h: Harness) -> None:
    a = await h.visit()
    again = await h.visit("https://shop.test/prices", a.visitor_id, a.session_id)
    assert (again.session_id, again.number) == (a.session_id, a.number)


async def test_returning_visitor_gets_a_new_visit_and_keeps_first_touch(h: Harness) -> None:
    first = await h.visit("https://shop.test/", referrer="https://www.google.com/")
    h.clock.advance(2 * 3600)
    second = await h.visit(PAID_URL, first.visitor_id, first.session_id)
    assert second.visitor_id == first.visitor_id
    assert second.session_id != first.session_id
    holder = await h.store.holder_at(second.number or "", h.clock.now)
    assert holder is not None
    assert holder.facts.visit_number == 2
    assert (holder.facts.first_source, holder.facts.first_medium) == ("google", "organic")
    assert (holder.facts.source, holder.facts.medium) == ("google", "cpc")


async def test_a_new_campaign_click_starts_a_new_session(h: Harness) -> None:
    a = await h.visit()
    b = await h.visit(PAID_URL.replace("spring", "autumn"), a.visitor_id, a.session_id)
    assert b.session_id != a.session_id and b.visitor_id == a.visitor_id


async def test_forged_or_foreign_session_ids_do_not_take_a_lease(h: Harness) -> None:
    a = await h.visit()
    assert await h.store.ping(a.session_id, "f" * 32, None) is None  # not a's visitor
    assert await h.store.ping("0" * 32, a.visitor_id, None) is None
    assert await h.store.ping("not-an-id", a.visitor_id, None) is None
    stranger = await h.visit(PAID_URL, None, a.session_id)
    assert stranger.session_id != a.session_id and stranger.number != a.number


async def test_no_matching_pool_is_still_a_visit_with_the_sites_number(h: Harness) -> None:
    visit = await h.visit("https://shop.test/")
    assert visit.number is None and visit.tracking is Tracking.NO_POOL
    assert await h.store.ping(visit.session_id, visit.visitor_id, None) is not None


async def test_exhausted_session_is_tracked_once_a_number_frees() -> None:
    async for h in harness():
        await h.visit()
        await h.visit()
        late = await h.visit()
        assert late.tracking is Tracking.EXHAUSTED
        h.clock.advance(61)
        pinged = await h.store.ping(late.session_id, late.visitor_id, None)
        assert pinged is not None and pinged.tracking is Tracking.TRACKED


async def test_a_visit_the_pool_refused_stays_lost_when_a_later_page_gets_a_number() -> None:
    """The pool's outcome for a session is its latest (read back as the session's state): a
    visit that saw the fallback number and got a number a minute later counted as tracked in
    the pool-size reports, which undercounted short bursts of exhaustion (migration 0023)."""
    async for h in harness():
        since = h.clock.now
        await h.visit()
        await h.visit()
        late = await h.visit()
        h.clock.advance(61)
        pinged = await h.store.ping(late.session_id, late.visitor_id, None)
        assert pinged is not None and pinged.tracking is Tracking.TRACKED
        pinged = await h.store.ping(late.session_id, late.visitor_id, None)  # nothing undone
        await h.store.flush()
        report = await pool_coverage(h.engine, h.settings, since, h.clock.now)
        paid = next(p for p in report if p.pool == "paid")
        assert (paid.visits, paid.not_tracked) == (3, 1)
        records = await pool_records(h.engine, h.settings, since, h.clock.now + 1)
        paid_visits = [v for r in records if r.pool == "paid" for v in r.visits]
        assert [v.lost for v in paid_visits] == [None, None, Tracking.EXHAUSTED]
        assert {v.tracking for v in paid_visits} == {Tracking.TRACKED}  # all three replayed
        async with h.engine.connect() as conn:
            rows = (await conn.execute(select(session_pools.c.tracking))).scalars().all()
        assert sorted(rows) == ["tracked"] * 3  # the session's state: it holds a number now


async def test_an_exhausted_session_asks_the_database_once_per_half_ping_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each ping of a session whose pool gave no number ran a renewal transaction (the cap's
    count and up to eight takes): a client past its own cap could make every ping cost one."""
    async for h in harness():
        await h.visit()
        await h.visit()
        late = await h.visit()
        assert late.tracking is Tracking.EXHAUSTED
        runs = 0
        run = h.store.transactions.run

        async def counted(work: Any, run: Any = run) -> Any:
            nonlocal runs
            runs += 1
            return await run(work)

        monkeypatch.setattr(h.store.transactions, "run", counted)
        for _ in range(10):  # 10 pings over 9 s: two tabs and a reload or two
            await h.store.ping(late.session_id, late.visitor_id, None)
            h.clock.advance(1)
        assert runs == 1
        h.clock.advance(15 - 9)  # half the 30 s ping interval after the first look
        await h.store.ping(late.session_id, late.visitor_id, None)
        assert runs == 2


async def test_a_transaction_locks_its_client_before_any_number(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the client's lock (NumberClaims.lock_client) must come before any
    extension in a transaction: a renewal that extended a number (its row locked) and then
    waited for the client's lock deadlocked with one that held the lock and wanted that row."""
    order: list[str] = []
    claims = h.store._claims
    for name in ("lock_client", "extend", "take"):
        original = getattr(claims, name)

        def recorded(*args: Any, _name: str = name, _original: Any = original) -> Any:
            order.append(_name)
            return _original(*args)

        monkeypatch.setattr(claims, name, recorded)
    a = await h.visit()
    assert order == ["lock_client", "take"]
    order.clear()
    h.clock.advance(600)  # its lease ran out: the renewal extends or takes again
    assert await h.store.ping(a.session_id, a.visitor_id, None) is not None
    assert order[0] == "lock_client" and len(order) > 1, order


async def test_one_client_address_cannot_drain_a_pool() -> None:
    async for h in harness(http={"max_leases_per_ip": 1}):
        assert (await h.visit(ip="203.0.113.9")).tracking is Tracking.TRACKED
        assert (await h.visit(ip="203.0.113.9")).tracking is Tracking.IP_CAP
        assert (await h.visit(ip="203.0.113.10")).tracking is Tracking.TRACKED


def report(did: str, at: float, linkedid: str = "1.1", caller: str = "+79161234567") -> CallReport:
    return CallReport(linkedid, caller, did, at, at + 40, at + 10, "ANSWER", f"{linkedid}.wav")


async def test_call_is_attributed_to_the_session_holding_the_number_at_its_start(
    h: Harness,
) -> None:
    a = await h.visit()
    h.clock.advance(120)  # c1 started 30 s after the last activity, c2 60 s after the freeze
    assert await h.calls.store(report(a.number or "", h.clock.now - 90, "c1"))
    assert await h.calls.store(report(a.number or "", h.clock.now, "c2"))
    _, rows = await h.calls.list(CallFilter())
    by_id = {r["linkedid"]: r for r in rows}
    assert by_id["c1"]["attribution"] == "session"
    assert by_id["c1"]["session_id"] == a.session_id
    assert (by_id["c1"]["source"], by_id["c1"]["campaign"]) == ("google", "spring")
    # past the freeze: not the old session's call, only probably (it ended a minute before)
    assert by_id["c2"]["attribution"] == "probable" and by_id["c2"]["session_id"] is None
    # ... and its caller is known: the call is linked to the visitor of their earlier call
    assert by_id["c2"]["visitor_id"] == by_id["c1"]["visitor_id"]
    assert by_id["c2"]["repeat_of"] == by_id["c1"]["id"]
    assert by_id["c2"]["repeat_caller"] and not by_id["c1"]["repeat_caller"]


async def test_one_persons_number_in_any_form_is_one_caller(h: Harness) -> None:
    """The trunk sends +7916..., the CDR has the form the dialplan rewrote it to (8916...):
    kept as they came, the same person's calls were two first-time callers, the second was not
    linked to the visitor of the first, and the missed list kept both numbers."""
    a = await h.visit()
    assert await h.calls.store(report(a.number or "", h.clock.now, "c1", "8 916 123-45-67"))
    h.clock.advance(3600)
    assert await h.calls.store(report("+74990000101", h.clock.now, "c2", "79161234567"))
    assert await h.calls.store(report("+74990000101", h.clock.now, "c3", "anonymous"))
    # a call stored before callers were kept in E.164, as its trunk sent it
    async with h.engine.begin() as conn:
        await conn.execute(
            update(calls).where(calls.c.linkedid == "c3").values(caller="89160000000")
        )
    assert await h.calls.store(report("+74990000101", h.clock.now + 1, "c4", "+79160000000"))
    _, rows = await h.calls.list(CallFilter())
    by_id = {r["linkedid"]: r for r in rows}
    assert by_id["c1"]["caller"] == by_id["c2"]["caller"] == "+79161234567"
    assert by_id["c2"]["repeat_caller"] and not by_id["c1"]["repeat_caller"]
    assert by_id["c2"]["visitor_id"] == by_id["c1"]["visitor_id"] == a.visitor_id
    assert by_id["c4"]["repeat_caller"]
    # staff search the caller as they write it: every form finds the E.164 one, and the form
    # a call stored before kept
    for typed in ("89161234567", "+79161234567"):
        _, found = await h.calls.list(CallFilter(caller=typed.lstrip("+")))
        assert sorted(r["linkedid"] for r in found) == ["c1", "c2"]
    _, found = await h.calls.list(CallFilter(caller="79160000000"))
    assert sorted(r["linkedid"] for r in found) == ["c3", "c4"]
    async with h.engine.connect() as conn:
        kept = sorted((await conn.execute(select(callers.c.caller))).scalars())
    assert kept == ["+79160000000", "+79161234567"]  # not "anonymous": nobody
    await rebuild_callers(h.engine, h.settings.region)
    async with h.engine.connect() as conn:
        assert sorted((await conn.execute(select(callers.c.caller))).scalars()) == kept


async def test_call_is_stored_once_per_linkedid(h: Harness) -> None:
    assert await h.calls.store(report("+74990000101", h.clock.now)) == "static"
    assert await h.calls.store(report("+74990000101", h.clock.now)) is None
    total, rows = await h.calls.list(CallFilter())
    assert total == 1 and rows[0]["attribution"] == "static" and rows[0]["source"] == "billboard"


async def test_fallback_number_call_is_marked_unattributable(h: Harness) -> None:
    await h.calls.store(report("+74990000099", h.clock.now))
    _, rows = await h.calls.list(CallFilter())
    assert rows[0]["attribution"] == "fallback" and rows[0]["session_id"] is None


async def test_pool_coverage_counts_visits_that_got_no_number() -> None:
    async for h in harness():
        for _ in range(3):
            await h.visit()
        await h.visit("https://shop.test/")  # no pool: not counted against any pool
        report = await pool_coverage(h.engine, h.settings, h.clock.now - 60, h.clock.now)
        paid = next(p for p in report if p.pool == "paid")
        assert (paid.size, paid.held_now, paid.visits, paid.not_tracked) == (2, 2, 3, 1)
        assert round(paid.missed_share, 2) == 0.33
        organic = next(p for p in report if p.pool == "organic")
        assert (organic.visits, organic.held_now) == (0, 0)


async def test_route_sends_each_number_where_the_dialplan_fallback_would() -> None:
    site = make_settings("sqlite+aiosqlite:///:memory:").sites[0].model_dump(mode="json")
    site["forward_to"] = "PJSIP/office"
    site["pools"][0]["forward_to"] = "PJSIP/sales"
    static = [
        {"number": "+74990000101", "source": "billboard", "forward_to": "PJSIP/reception"},
        {"number": "+74990000102", "source": "cards"},
    ]
    async for h in harness(sites=[site], static=static):
        paid = await h.visit()
        routes = {
            did: await h.calls.route(did, "+79161234567")
            for did in (
                paid.number or "",
                "+74990000011",
                "+74990000099",
                "+74990000101",
                "+74990000102",
                "+74990000777",
            )
        }
        assert routes[paid.number or ""] == Route("PJSIP/sales", "[cpc] google")
        assert routes["+74990000011"] == Route("PJSIP/office", None)  # organic pool, free
        assert routes["+74990000099"] == Route("PJSIP/office", None)  # the site's fallback
        assert routes["+74990000101"] == Route("PJSIP/reception", "[billboard]")
        assert routes["+74990000102"] == Route("PJSIP/realline", "[cards]")
        assert routes["+74990000777"] == Route("PJSIP/realline", None)  # not ours
        dialplan = {t.e164: t.real_line for t in Numbering.from_settings(h.settings)}
        for did, route in routes.items():
            assert route.destination == dialplan.get(did, "PJSIP/realline")
