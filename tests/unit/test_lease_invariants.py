"""Property tests of the lease rules, run against the real store on SQLite.

A model keeps what every answer promised (which session shows which number until when); after
each random step the store's answers and its lease history must agree with it.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from attribution.leasing import Tracking
from pbx.settings import Settings
from pbx.storage.db import open_engine, upgrade
from pbx.storage.tables import leases
from pbx.storage.visits import Visit, VisitRequest, VisitStore
from tests.helpers import FakeClock, make_settings

FREEZE = 60.0
PAID = ["+74990000001", "+74990000002"]
FALLBACK = "+74990000099"  # the site's fallback in tests.helpers' config
STEPS = [0.0, 0.001, 1.0, 4.0, 7.0, 30.0, FREEZE - 0.001, FREEZE, FREEZE + 0.001, 2 * FREEZE]


@dataclass
class ModelSession:
    visitor_id: str
    number: str | None
    last_activity: float

    def holds(self, now: float) -> bool:
        return self.number is not None and now <= self.last_activity + FREEZE


@dataclass
class Span:
    number: str
    session_id: str
    start: float
    end: float


@dataclass
class Model:
    sessions: dict[str, ModelSession] = field(default_factory=dict)
    spans: list[Span] = field(default_factory=list)

    def holder(self, number: str, now: float) -> str | None:
        holders = [s for s, m in self.sessions.items() if m.number == number and m.holds(now)]
        assert len(holders) <= 1, f"model: {number} held by {holders}"
        return holders[0] if holders else None


class LeaseMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.model = Model()

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    @initialize()
    def open_store(self) -> None:
        settings: Settings = make_settings("sqlite+aiosqlite:///:memory:", freeze_time=FREEZE)
        self.settings = settings
        self.site = settings.sites[0]
        self.engine = open_engine(settings.database)
        self.run(upgrade(self.engine))
        self.store = VisitStore(self.engine, settings, self.clock)
        self.run(self.store.sync_numbers())

    def teardown(self) -> None:
        if hasattr(self, "engine"):
            self.run(self.engine.dispose())
        self.loop.close()

    def _record(self, session_id: str, visitor_id: str, number: str | None) -> None:
        now = self.clock.now
        previous = self.model.sessions.get(session_id)
        if number is not None:
            holder = self.model.holder(number, now)
            assert holder in (None, session_id), f"{number} given to {session_id} held by {holder}"
            span = next(
                (
                    s
                    for s in reversed(self.model.spans)
                    if s.session_id == session_id and s.number == number
                ),
                None,
            )
            if previous and previous.number == number and previous.holds(now) and span:
                span.end = now + FREEZE
            else:
                self.model.spans.append(Span(number, session_id, now, now + FREEZE))
        self.model.sessions[session_id] = ModelSession(visitor_id, number, now)

    @rule(paid=st.booleans())
    def new_visit(self, paid: bool) -> None:
        url = "https://shop.test/?utm_medium=cpc" if paid else "https://shop.test/"
        visit = self.run(
            self.store.start_visit(VisitRequest(self.site, url, None, None, None, "10.0.0.1"))
        )
        if not paid:
            assert visit.tracking is Tracking.NO_POOL and visit.number is None
            return
        if visit.tracking is not Tracking.TRACKED:
            # the fallback only when every number is really held by someone
            assert visit.tracking is Tracking.EXHAUSTED and visit.number == FALLBACK
            assert all(self.model.holder(n, self.clock.now) for n in PAID)
        else:
            assert visit.number in PAID
        self._record(visit.session_id, visit.visitor_id, leased(visit))

    @rule(data=st.data())
    def ping(self, data: st.DataObject) -> None:
        # in creation order, not by id: ids are random, and a replay must pick the same session
        live = [
            s for s, m in self.model.sessions.items() if self.clock.now - m.last_activity <= 30 * 60
        ]
        if not live:
            return
        session_id = data.draw(st.sampled_from(live))
        before = self.model.sessions[session_id]
        visit = self.run(self.store.ping(session_id, before.visitor_id, None))
        assert visit is not None
        if before.holds(self.clock.now):
            assert leased(visit) == before.number, "a held number must stay with its session"
        if visit.tracking is Tracking.EXHAUSTED:
            assert visit.number == FALLBACK, "a paid visit with no number sees the fallback"
        self._record(session_id, before.visitor_id, leased(visit))

    @rule(seconds=st.sampled_from(STEPS))
    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(data=st.data())
    def who_held(self, data: st.DataObject) -> None:
        if not self.model.spans:
            return
        span = data.draw(st.sampled_from(self.model.spans))
        at = data.draw(st.sampled_from([span.start, span.end, (span.start + span.end) / 2]))
        holder = self.run(self.store.holder_at(span.number, at))
        assert holder is not None and holder.session_id == span.session_id

    @rule(data=st.data())
    def nobody_after_the_freeze(self, data: st.DataObject) -> None:
        if not self.model.spans:
            return
        span = data.draw(st.sampled_from(self.model.spans))
        after = span.end + 0.001
        if any(s.number == span.number and s.start <= after <= s.end for s in self.model.spans):
            return
        assert self.run(self.store.holder_at(span.number, after)) is None

    @invariant()
    def history_never_overlaps(self) -> None:
        if not hasattr(self, "store"):
            return
        self.run(self.store.flush())

        async def spans() -> list[tuple[str, float, float]]:
            async with self.engine.connect() as conn:
                rows = await conn.execute(
                    leases.select().order_by(leases.c.number, leases.c.started_at)
                )
                return [(r.number, r.started_at, r.held_until) for r in rows]

        rows = self.run(spans())
        for (n1, _s1, e1), (n2, s2, _e2) in itertools.pairwise(rows):
            if n1 == n2:
                assert s2 > e1, f"{n1}: a lease started at {s2} before the last ended at {e1}"
        assert len(rows) == len(self.model.spans)


def leased(visit: Visit) -> str | None:
    """The number the visit holds (it is shown the fallback when it holds none)."""
    return visit.number if visit.tracking is Tracking.TRACKED else None


LeaseMachine.TestCase.settings = hypothesis_settings(stateful_step_count=40)
TestLeaseInvariants = LeaseMachine.TestCase
