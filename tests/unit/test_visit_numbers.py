"""Which numbers a visit sees and keeps, on the real store (SQLite) with a settable clock:
the fallback number, the per-client cap on every path, one number per own number, serialised
write-behind, the page-view cap and retention (issue 11)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from attribution.calls import CallReport, Route
from attribution.leasing import Tracking
from attribution.traffic import MAX_URL
from pbx.storage.calls import CallFilter
from pbx.storage.db import Tx
from pbx.storage.retention import _forgettable, forget_visits_before
from pbx.storage.tables import leases, numbers, page_views, session_pools, sessions, visitors
from pbx.storage.visits import VisitStore
from tests.helpers import make_settings
from tests.session_read_back import read_back, two_pool_site
from tests.unit.test_visit_store import PAID_URL, Harness, harness

FALLBACK = "+74990000099"
SALES, SERVICE = "+74951234567", "+74955550011"


async def count(h: Harness, query: Any) -> int:
    async with h.engine.connect() as conn:
        return int(await conn.scalar(query) or 0)


async def test_an_exhausted_pool_shows_the_fallback_number() -> None:
    async for h in harness():
        await h.visit()
        await h.visit()
        late = await h.visit()
        assert late.tracking is Tracking.EXHAUSTED
        assert dict(late.shown) == {SALES: FALLBACK}
        pinged = await h.store.ping(late.session_id, late.visitor_id, None)
        assert pinged is not None and pinged.number == FALLBACK


async def test_a_client_at_its_cap_sees_the_fallback_number() -> None:
    async for h in harness(http={"max_leases_per_ip": 1}):
        await h.visit(ip="203.0.113.9")
        capped = await h.visit(ip="203.0.113.9")
        assert (capped.tracking, capped.number) == (Tracking.IP_CAP, FALLBACK)


async def test_a_visit_no_pool_matches_keeps_the_sites_own_number() -> None:
    async for h in harness():
        visit = await h.visit("https://shop.test/")
        assert visit.tracking is Tracking.NO_POOL and dict(visit.shown) == {}


async def test_a_site_without_fallback_keeps_its_own_number_when_exhausted() -> None:
    site = make_settings("sqlite+aiosqlite:///:memory:").sites[0].model_dump(mode="json")
    site["fallback"] = None
    async for h in harness(sites=[site]):
        await h.visit()
        await h.visit()
        late = await h.visit()
        assert late.tracking is Tracking.EXHAUSTED and dict(late.shown) == {}


def big_pool_site(size: int) -> dict[str, Any]:
    site = make_settings("sqlite+aiosqlite:///:memory:").sites[0].model_dump(mode="json")
    site["pools"][0]["numbers"] = [f"+7499000{n:04d}" for n in range(1000, 1000 + size)]
    return site


async def held(h: Harness) -> int:
    return await count(
        h, select(func.count()).select_from(numbers).where(numbers.c.held_until >= h.clock.now)
    )


async def held_by(h: Harness, ip: str) -> int:
    return await count(
        h,
        select(func.count())
        .select_from(numbers)
        .where(numbers.c.client_ip == ip, numbers.c.held_until >= h.clock.now),
    )


async def test_the_per_client_cap_holds_on_pings_too() -> None:
    """Reproduces the bypass: refused sessions re-leased on their next ping with no address."""
    async for h in harness(sites=[big_pool_site(30)], http={"max_leases_per_ip": 2}):
        visits = [await h.visit(ip="198.51.100.7") for _ in range(22)]
        assert sum(v.tracking is Tracking.TRACKED for v in visits) == 2
        for v in visits:
            await h.store.ping(v.session_id, v.visitor_id, None)
        assert await held(h) == 2
        assert await held_by(h, "198.51.100.7") == 2


async def test_an_ipv6_client_cannot_rotate_addresses_past_the_cap() -> None:
    async for h in harness(sites=[big_pool_site(10)], http={"max_leases_per_ip": 2}):
        visits = [await h.visit(ip=f"2001:db8:0:1::{i:x}") for i in range(6)]
        assert [v.tracking for v in visits].count(Tracking.TRACKED) == 2
        assert (await h.visit(ip="2001:db8:0:2::1")).tracking is Tracking.TRACKED  # next /64


async def test_the_per_client_cap_holds_for_a_session_reloaded_after_a_restart() -> None:
    async for h in harness(sites=[big_pool_site(10)], http={"max_leases_per_ip": 1}):
        first = await h.visit(ip="198.51.100.7")
        second = await h.visit(ip="198.51.100.7")
        assert second.tracking is Tracking.IP_CAP
        h.store._cache.clear()  # as after a restart: the session comes from the database
        await h.store.ping(second.session_id, second.visitor_id, None)
        assert await held(h) == 1
        assert first.tracking is Tracking.TRACKED


async def test_a_lease_that_ran_out_is_taken_again_under_the_cap() -> None:
    async for h in harness(sites=[big_pool_site(10)], http={"max_leases_per_ip": 1}):
        a = await h.visit(ip="198.51.100.7")
        h.clock.advance(61)  # a's lease ran out; another session of the address takes one
        await h.visit(ip="198.51.100.7")
        again = await h.store.ping(a.session_id, a.visitor_id, None)
        assert again is not None and again.tracking is Tracking.IP_CAP
        assert await held(h) == 1


def two_lines_site() -> dict[str, Any]:
    site = make_settings("sqlite+aiosqlite:///:memory:").sites[0].model_dump(mode="json")
    site["replace"] = ["+7 (495) 123-45-67", "+7 (495) 555-00-11"]
    site["pools"] = [
        {
            "name": "paid-sales",
            "when": {"utm_medium": "cpc"},
            "replaces": ["+7 (495) 123-45-67"],
            "numbers": ["+74990000001", "+74990000002"],
            "forward_to": "PJSIP/sales",
        },
        {
            "name": "paid-service",
            "when": {"utm_medium": "cpc"},
            "replaces": ["+7 495 555-00-11"],
            "numbers": ["+74990000021", "+74990000022"],
            "forward_to": "PJSIP/service",
        },
        {"name": "organic", "replaces": ["+74951234567"], "numbers": ["+74990000011"]},
    ]
    site["forward_to"] = "PJSIP/sales"
    return site


async def test_each_own_number_gets_its_own_tracking_number_and_line() -> None:
    async for h in harness(sites=[two_lines_site()]):
        paid = await h.visit()
        assert set(paid.shown) == {SALES, SERVICE}
        sales, service = paid.shown[SALES], paid.shown[SERVICE]
        assert sales in ("+74990000001", "+74990000002")
        assert service in ("+74990000021", "+74990000022")
        routes = {n: await h.calls.route(n, "+79161234567") for n in (sales, service)}
        assert routes[sales] == Route("PJSIP/sales", "[cpc] google")
        assert routes[service] == Route("PJSIP/service", "[cpc] google")
        # both stay with the session on pings, and a call to each is attributed to it
        h.clock.advance(50)
        pinged = await h.store.ping(paid.session_id, paid.visitor_id, None)
        assert pinged is not None and dict(pinged.shown) == dict(paid.shown)
        for i, number in enumerate((sales, service)):
            await h.calls.store(
                CallReport(f"c{i}", "+79161234567", number, h.clock.now, h.clock.now + 9, None, "")
            )
        _, rows = await h.calls.list(CallFilter())
        assert {r["session_id"] for r in rows} == {paid.session_id}
        assert {r["pool"] for r in rows} == {"paid-sales", "paid-service"}


async def test_an_own_number_no_matching_pool_replaces_stays() -> None:
    async for h in harness(sites=[two_lines_site()]):
        organic = await h.visit("https://shop.test/?utm_medium=organic")
        assert set(organic.shown) == {SALES}  # the service line stays the site's own


async def test_the_fallback_never_stands_in_for_another_line() -> None:
    async for h in harness(sites=[two_lines_site()]):  # the fallback rings PJSIP/sales
        for _ in range(2):
            await h.visit()
        late = await h.visit()
        assert dict(late.shown) == {SALES: FALLBACK}  # service stays as it is


async def test_a_reloaded_session_keeps_both_numbers() -> None:
    async for h in harness(sites=[two_lines_site()]):
        paid = await h.visit()
        h.store._cache.clear()
        again = await h.visit("https://shop.test/next", paid.visitor_id, paid.session_id)
        assert again.session_id == paid.session_id and dict(again.shown) == dict(paid.shown)


async def test_a_session_read_back_holds_each_pools_current_lease() -> None:
    """Another store on the database (another daemon, or a restart) reads the session back
    as the store that served it holds it (tests/session_read_back.py)."""
    site = make_settings("sqlite+aiosqlite:///:memory:").sites[0].model_dump(mode="json")
    async for h in harness(sites=[two_pool_site(site)]):
        other = VisitStore(h.engine, h.settings, h.clock)
        await read_back(h.store, other, h.site, h.clock)


async def test_flushes_never_run_at_once() -> None:
    """Two batches in flight at once could land in either order (an older held_until last)."""
    async for h in harness():
        a = await h.visit()
        writes = h.store._writes
        real_run = writes._transactions.run
        in_flight = most = 0

        async def slow(work: Callable[[Tx], Any], real_run: Any = real_run) -> Any:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0.05)  # a batch slow to reach the database
            try:
                return await real_run(work)
            finally:
                in_flight -= 1

        h.clock.advance(10)
        await h.store.flush()  # the flusher is healthy: pings are written behind
        writes._transactions.run = slow  # type: ignore[method-assign]
        await h.store.ping(a.session_id, a.visitor_id, None)
        first = asyncio.create_task(h.store.flush())
        await asyncio.sleep(0.01)
        h.clock.advance(1)
        await h.store.ping(a.session_id, a.visitor_id, None)
        await asyncio.gather(first, h.store.flush())
        assert most == 1
        assert await held_until(h, a.number) == h.clock.now + 60


async def test_two_tabs_pinging_an_exhausted_session_take_one_number() -> None:
    async for h in harness():
        await h.visit()
        await h.visit()
        late = await h.visit()
        h.clock.advance(61)  # both numbers free again
        writes = h.store._writes
        real_run = writes._transactions.run

        async def slow(work: Callable[[Tx], Any], real_run: Any = real_run) -> Any:
            await asyncio.sleep(0.02)  # as on PostgreSQL: the loop runs while it waits
            return await real_run(work)

        writes._transactions.run = slow  # type: ignore[method-assign]
        a, b = await asyncio.gather(
            h.store.ping(late.session_id, late.visitor_id, None),
            h.store.ping(late.session_id, late.visitor_id, None),
        )
        assert a is not None and b is not None and a.number == b.number
        leases_of_late = await count(
            h,
            select(func.count()).select_from(leases).where(leases.c.session_id == late.session_id),
        )
        assert leases_of_late == 1


async def held_until(h: Harness, number: str | None) -> float:
    async with h.engine.connect() as conn:
        value = await conn.scalar(select(numbers.c.held_until).where(numbers.c.number == number))
    return float(value)


async def test_a_late_batch_never_shortens_a_lease_extended_since() -> None:
    async for h in harness():
        a = await h.visit()
        h.clock.advance(10)
        await h.store.flush()
        h.clock.advance(1)
        await h.store.ping(a.session_id, a.visitor_id, None)  # written behind: until +71
        h.clock.advance(3)  # the flusher looks stuck: this ping extends in the database, +74
        await h.store.ping(a.session_id, a.visitor_id, None)
        assert await held_until(h, a.number) == h.clock.now + 60
        await h.store.flush()  # the older batch lands last
        assert await held_until(h, a.number) == h.clock.now + 60


async def test_a_batch_the_database_refuses_is_dropped_not_retried_for_ever() -> None:
    async for h in harness():
        a = await h.visit()
        h.clock.advance(1)
        await h.store.flush()  # healthy: the next ping is written behind
        async with h.engine.begin() as conn:  # as if the session were deleted meanwhile
            await conn.execute(page_views.delete())
            await conn.execute(leases.delete())
            await conn.execute(session_pools.delete())
            await conn.execute(update(numbers).values(session_id=None, lease_id=None))
            await conn.execute(sessions.delete())
        await h.store.ping(a.session_id, a.visitor_id, "https://shop.test/late")
        await h.store.flush()  # the page view of a session that is gone is dropped
        writes = h.store._writes

        async def refused(work: Callable[[Tx], Any]) -> Any:
            raise IntegrityError("INSERT", {}, Exception("value too long"))

        real_run = writes._transactions.run
        writes._transactions.run = refused  # type: ignore[method-assign]
        assert writes.seen(a.session_id, h.clock.now, written=0.0)
        await h.store.flush()  # logged and dropped
        writes._transactions.run = real_run  # type: ignore[method-assign]
        assert not writes._pending
        assert await h.store.holder_at("+74990000001", h.clock.now) is None  # calls go on


async def test_page_views_past_the_cap_are_counted_not_kept() -> None:
    async for h in harness(visits={"max_page_views": 3}):
        a = await h.visit(PAID_URL + "&x=" + "y" * 3000, referrer="https://ref.test/" + "z" * 3000)
        for i in range(10):
            await h.store.ping(a.session_id, a.visitor_id, f"https://shop.test/p{i}?" + "x" * 3000)
        await h.store.flush()
        kept = await count(h, select(func.count()).select_from(page_views))
        longest = await count(h, select(func.max(func.length(page_views.c.url))))
        viewed = await count(h, select(sessions.c.pages_viewed))
        assert (kept, viewed) == (3, 11)
        assert longest == MAX_URL
        landing = await count(h, select(func.length(sessions.c.landing_url)))
        referrer = await count(h, select(func.length(sessions.c.referrer)))
        assert landing == referrer == MAX_URL


async def test_retention_forgets_old_visits_but_not_what_calls_refer_to() -> None:
    async for h in harness(sites=[big_pool_site(10)]):
        called = await h.visit()
        await h.calls.store(
            CallReport(
                "c1", "+79161234567", called.number or "", h.clock.now, h.clock.now, None, ""
            )
        )
        forgotten = [await h.visit() for _ in range(3)]
        await h.visit("https://shop.test/")
        live = await h.visit("https://shop.test/", ip="10.9.9.9")
        await h.store.flush()
        h.clock.advance(400 * 86400)
        async with h.engine.begin() as conn:  # started long ago, active until now (pinged)
            await conn.execute(
                update(sessions)
                .where(sessions.c.id == live.session_id)
                .values(last_seen=h.clock.now - 60)
            )
        recent = await h.visit()
        # the numbers' rows still name their last holders: hand every number on first
        for _ in range(9):
            await h.visit()
        deleted = await forget_visits_before(h.engine, h.clock.now - 86400, batch=2)
        assert deleted == 4  # three paid visits and the organic one
        remaining = set(await _ids(h, sessions.c.id))
        assert {called.session_id, recent.session_id, live.session_id} <= remaining
        assert not remaining & {v.session_id for v in forgotten}
        assert await count(h, select(func.count()).select_from(leases)) == 11
        assert {called.visitor_id, live.visitor_id} <= set(await _ids(h, visitors.c.id))
        assert not {v.visitor_id for v in forgotten} & set(await _ids(h, visitors.c.id))


async def test_retention_reads_the_numbers_once_not_once_per_stale_session() -> None:
    """numbers.session_id has no index: SQLite searched the numbers by a scan per stale
    session, holding the write lock for minutes on a backlog (606 s for 475,000 stale sessions
    at 20,000 numbers), while leases waited and failed."""
    async for h in harness():
        query = select(sessions.c.id).where(*_forgettable(h.clock.now))
        sql = str(query.compile(h.engine.sync_engine, compile_kwargs={"literal_binds": True}))
        async with h.engine.connect() as conn:
            plan = [row[-1] for row in await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
        scans = [n for n, step in enumerate(plan) if step == "SCAN numbers"]
        assert len(scans) == 1 and plan[scans[0] - 1].startswith("LIST SUBQUERY"), plan


async def _ids(h: Harness, column: Any) -> list[str]:
    async with h.engine.connect() as conn:
        return list(await conn.scalars(select(column)))


async def test_one_client_holds_at_most_its_share_of_a_pool_and_the_others_keep_the_rest() -> None:
    """A scraper running the widget from one address took every number of a small pool (the cap
    over all pools, 200, is more than most pools have): a quarter of 8 is 2, and with its two
    numbers held its next visits see the fallback while another address still gets numbers
    (public addresses: a private one is the site's own proxy, see test_lease_policy.py)."""
    async for h in harness(sites=[big_pool_site(8)], http={"max_pool_share_per_ip": 0.25}):
        scraper = [await h.visit(ip="93.184.216.34") for _ in range(6)]
        assert [v.tracking for v in scraper].count(Tracking.TRACKED) == 2
        assert {v.number for v in scraper[2:]} == {FALLBACK}
        for v in scraper:  # pings do not get round it either
            await h.store.ping(v.session_id, v.visitor_id, None)
        assert await held_by(h, "93.184.216.34") == 2
        others = [await h.visit(ip=f"93.184.217.{n}") for n in range(6)]
        assert all(v.tracking is Tracking.TRACKED for v in others)
        h.clock.advance(61)  # the scraper's leases ran out: its share is free again
        assert (await h.visit(ip="93.184.216.34")).tracking is Tracking.TRACKED
