"""One scenario for every backend: a session read back by a store that has not cached it (the
other daemon its next ping reached, or this one after a restart) holds what the store that
served it holds: per pool the lease it has now (not an older one of the pool), its first pool
first (whose outcome is the session's), the pages it kept; a pool that gave no number, and a
session no pool was for.

The expected state is the serving store's own cache, built by the live path (visits, pings,
renewals), never by the read-back under test.
"""

from __future__ import annotations

import asyncio
from typing import Any

from attribution.leasing import Tracking
from pbx.settings import Site
from pbx.storage.visits import VisitRequest, VisitStore
from tests.helpers import FakeClock, visit_store

SALES, SERVICE = "+74951234567", "+74955550011"
PAID = "https://shop.test/?utm_source=google&utm_medium=cpc"


def two_pool_site(site: dict[str, Any]) -> dict[str, Any]:
    """`site` (a config's site) with a pool per own number. The first own number's pool sorts
    last by name, so reading pools back in name order would put it second."""
    return site | {
        "replace": ["+7 (495) 123-45-67", "+7 (495) 555-00-11"],
        "pools": [
            {
                "name": "z-sales",
                "when": {"utm_medium": "cpc"},
                "replaces": [SALES],
                "numbers": ["+74990000001", "+74990000002"],
            },
            {
                "name": "a-service",
                "when": {"utm_medium": "cpc"},
                "replaces": [SERVICE],
                "numbers": ["+74990000021", "+74990000022"],
            },
        ],
    }


def _held(store: VisitStore, session_id: str) -> list[tuple[str, tuple[str, ...], Tracking, Any]]:
    cached = store._cache[session_id]
    return [(h.pool, h.replaces, h.tracking, (h.number, h.lease_id)) for h in cached.held]


async def read_back(serving: VisitStore, other: VisitStore, site: Site, clock: FakeClock) -> None:
    def visit(ip: str, url: str = PAID) -> VisitRequest:
        return VisitRequest(site, url, None, None, None, ip)

    first = await serving.start_visit(visit("10.9.0.1"))
    await serving.start_visit(visit("10.9.0.2"))  # holds each pool's other number
    for page in ("a", "b"):
        await serving.ping(first.session_id, first.visitor_id, f"https://shop.test/{page}")
    clock.advance(61)  # every lease ran out
    # a newcomer takes the first session's numbers (free the longest, then by number) ...
    await serving.start_visit(visit("10.9.0.3"))
    # ... so the first session leases again from each pool, the numbers the second one left
    renewed = await serving.ping(first.session_id, first.visitor_id, None)
    assert renewed is not None and set(renewed.shown) == {SALES, SERVICE}
    assert renewed.shown != first.shown  # a second lease in each pool, on another number
    # every number is held now: a pool that gave no number; and a visit no pool is for
    full = await serving.start_visit(visit("10.9.0.4"))
    assert full.tracking is Tracking.EXHAUSTED
    direct = await serving.start_visit(visit("10.9.0.5", "https://shop.test/"))
    assert direct.tracking is Tracking.NO_POOL
    await serving.flush()

    again = await other.ping(first.session_id, first.visitor_id, None)
    assert again is not None
    assert dict(again.shown) == dict(renewed.shown)
    assert again.tracking is renewed.tracking is Tracking.TRACKED
    assert _held(other, first.session_id) == _held(serving, first.session_id)
    assert [h[0] for h in _held(other, first.session_id)] == ["z-sales", "a-service"]
    assert other._cache[first.session_id].pages_kept == 3
    assert other._cache[first.session_id].last_url == "https://shop.test/b"
    for served in (full, direct):
        read = await other.ping(served.session_id, served.visitor_id, None)
        assert read is not None and read.tracking is served.tracking
        assert dict(read.shown) == dict(served.shown)
        assert _held(other, served.session_id) == _held(serving, served.session_id)
    assert [h[2:] for h in _held(other, full.session_id)] == [
        (Tracking.EXHAUSTED, (None, None))
    ] * 2
    assert _held(other, direct.session_id) == []
    unknown = "0" * 32
    assert await other.ping(unknown, first.visitor_id, None) is None


async def two_pings_at_once(database: str) -> None:
    """Two tabs ping a session the store no longer has (idle, or a restart) while its lease
    has run out: each request read it back into a copy of its own, with a renewal lock of its
    own, and each renewed, so the session held two numbers of the pool. One copy, one number.
    On the database at the URL `database`."""
    async with visit_store(database) as db:
        await _two_pings(db.store, db.settings.sites[0], db.clock)


async def _two_pings(store: VisitStore, site: Site, clock: FakeClock) -> None:
    visit = await store.start_visit(VisitRequest(site, PAID, None, None, None, "10.0.0.1"))
    clock.advance(600)  # its lease ran out
    store._cache.clear()  # forgotten as idle
    first, second = await asyncio.gather(
        store.ping(visit.session_id, visit.visitor_id, None),
        store.ping(visit.session_id, visit.visitor_id, None),
    )
    assert first is not None and second is not None
    assert first.number == second.number == visit.number
    other = await store.start_visit(VisitRequest(site, PAID, None, None, None, "10.0.0.2"))
    assert other.tracking is Tracking.TRACKED and other.number != visit.number
