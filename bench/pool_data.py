"""Seeded pool traffic for the `calltrack pools --recommend` benchmark (issue 13), written as RAW
rows in bulk: `visitors`, `sessions`, `session_pools` and `calls` (with `call_candidates`), what
the visitor API and CallStore write, so that the command reads what an install would have kept.

A month of a busy site (560,000 visits) cannot come through the live write path in minutes, and
what the rows say must be decided without the code under test: which visits got a number is
worked out here by a direct simulation of the pool (a heap of held-until times, the longest-free
number taken first), with the daemon's rule that a number is held until the last activity plus
the freeze time. The pool is configured a little below the peak of an unlimited pool
(`Shape.pool_share`), so that afternoons run out and some visits get the fallback.

The traffic: each local day the same number of visits, arriving by a daily curve (quiet nights,
busy afternoons); visit lengths skewed (a quarter bounce within half a minute, the rest
log-normal around a few minutes, a long tail to hours); a fifth of visits by returning
visitors; a few visits refused for the per-client cap. About 3 % of visits call: some while
browsing, most within the freeze time after their last activity (attributed to the session), a
tail later (a probable match with one to three candidates, or unknown: the number's pool only),
and visitors who got the fallback call the fallback.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pbx.storage.tables import call_candidates, calls, session_pools, sessions, visitors

SITE, POOL = "shop", "all"
ORIGIN = "https://shop.example"
OWN_NUMBER = "+74951234567"  # the site's own number the pool's numbers replace
FALLBACK = "+74990009999"
TIMEZONE = "Europe/Moscow"
FREEZE = 900.0  # the settings' default freeze time, written into the config
#: visits per local hour 0..23, relative: quiet nights, busy afternoons
HOURLY = (2, 1, 1, 1, 1, 2, 4, 7, 10, 12, 13, 14, 14, 15, 16, 16, 15, 13, 11, 10, 9, 7, 5, 3)
CALL_SHARE = 0.03  # visits that call
IP_CAP_SHARE = 0.002  # visits refused a number for the per-client cap
RETURNING = 0.2  # visits by a visitor seen before
SOURCES = (("google", "organic"), ("(direct)", "(none)"), ("yandex", "organic"), ("google", "cpc"))


@dataclass(frozen=True)
class Shape:
    days: int = 28
    visits_per_day: int = 20_000
    end: date = date(2027, 3, 31)  # the last local day of the data
    seed: int = 13
    #: the configured pool as a share of the peak an unlimited pool held (below 1: some exhausted)
    pool_share: float = 0.9

    @property
    def visits(self) -> int:
        return self.days * self.visits_per_day

    @property
    def first(self) -> date:
        return self.end - timedelta(days=self.days - 1)

    def tag(self) -> str:
        """What names the cached database: every parameter the rows depend on."""
        return (
            f"{self.seed}-{self.days}x{self.visits_per_day}-{self.end}-{self.pool_share:g}"
            f"-{FREEZE:g}"
        )


@dataclass(frozen=True)
class Facts:
    """What the generator decided, for the benchmark to check the command's answer against."""

    visits: int
    #: the most numbers held at once with an unlimited pool (tracked and exhausted visits)
    peak: int
    #: the configured pool size, and how the visits fared with it
    size: int
    tracked: int
    exhausted: int
    ip_cap: int
    calls: int
    session_calls: int
    probable_calls: int
    unknown_calls: int
    fallback_calls: int

    def as_json(self) -> dict[str, int]:
        return dict(vars(self))


def numbers(size: int) -> list[str]:
    return [f"+7499{n:07d}" for n in range(1, size + 1)]


def config(database: str, size: int) -> dict[str, Any]:
    """The calltrack config the data belongs to (a pool of `size` numbers)."""
    return {
        "database": database,
        "forward_to": "PJSIP/realline",
        "freeze_time": FREEZE,
        "ui": {"timezone": TIMEZONE},
        "sites": [
            {
                "name": SITE,
                "origins": [ORIGIN],
                "replace": [OWN_NUMBER],
                "pools": [{"name": POOL, "numbers": numbers(size)}],
                "fallback": FALLBACK,
            }
        ],
    }


def _id(kind: int, n: int) -> str:
    """A 32-hex-digit id like the daemon's, unique per kind of row."""
    return f"{kind:08x}{n:024x}"


@dataclass
class _Visits:
    """The visits in arrival order, as parallel lists (560,000 dicts would not fit comfortably)."""

    arrival: list[float]
    last_seen: list[float]
    visitor: list[int]
    visit_number: list[int]
    source: list[int]
    ip_cap: list[bool]


def _visits(shape: Shape, rng: random.Random) -> tuple[_Visits, list[tuple[float, int, int]]]:
    """Arrivals by the daily curve, skewed lengths, returning visitors; and per visitor its
    first arrival, its number of visits and its first source (the `visitors` row)."""
    zone = ZoneInfo(TIMEZONE)
    hours = list(range(24))
    cumulative = list(itertools.accumulate(HOURLY))
    arrivals: list[tuple[float, float]] = []
    for day in range(shape.days):
        start = datetime.combine(shape.first + timedelta(days=day), time(), zone).timestamp()
        for hour in rng.choices(hours, cum_weights=cumulative, k=shape.visits_per_day):
            at = start + hour * 3600 + rng.random() * 3600
            if rng.random() < 0.25:
                length = rng.random() * 30  # a bounce
            else:
                length = min(rng.lognormvariate(math.log(240), 1.1), 4 * 3600)
            arrivals.append((at, length))
    arrivals.sort()
    visits = _Visits([], [], [], [], [], [])
    people: list[list[Any]] = []  # [created_at, visits, first source]
    for at, length in arrivals:
        source = rng.randrange(len(SOURCES))
        if people and rng.random() < RETURNING:
            # someone from the last ~10,000 visitors comes back
            visitor = rng.randrange(max(0, len(people) - 10_000), len(people))
        else:
            visitor = len(people)
            people.append([at, 0, source])
        people[visitor][1] += 1
        visits.arrival.append(at)
        visits.last_seen.append(at + length)
        visits.visitor.append(visitor)
        visits.visit_number.append(people[visitor][1])
        visits.source.append(source)
        visits.ip_cap.append(rng.random() < IP_CAP_SHARE)
    return visits, [(at, count, source) for at, count, source in people]


def unlimited_peak(visits: _Visits) -> int:
    """The most numbers held at once if every visit that asked got one (ip-capped ones never
    asked the pool): a heap of held-until times, a number free once its time has passed."""
    held: list[float] = []
    peak = 0
    for at, last, capped in zip(visits.arrival, visits.last_seen, visits.ip_cap, strict=True):
        if capped:
            continue
        while held and held[0] < at:
            heapq.heappop(held)
        heapq.heappush(held, last + FREEZE)
        peak = max(peak, len(held))
    return peak


def with_pool(visits: _Visits, size: int) -> list[int | None]:
    """The number (1..size) each visit got from a pool of `size`, None when it got the fallback:
    the pool's free numbers in the order they were let go, the longest free taken first."""
    free = deque(range(1, size + 1))
    held: list[tuple[float, int]] = []
    got: list[int | None] = []
    for at, last, capped in zip(visits.arrival, visits.last_seen, visits.ip_cap, strict=True):
        while held and held[0][0] < at:
            free.append(heapq.heappop(held)[1])
        if capped or not free:
            got.append(None)
            continue
        number = free.popleft()
        heapq.heappush(held, (last + FREEZE, number))
        got.append(number)
    return got


#: tables in the order their rows may be inserted (each after what it refers to)
ORDER = (visitors, sessions, session_pools, calls, call_candidates)


class _Out:
    """Rows buffered per table and inserted through the driver in big executemany batches
    (SQLAlchemy's per-row work would double the time); whenever one buffer is full all are
    flushed in ORDER, so that every row's foreign keys are already there."""

    def __init__(self, conn: AsyncConnection, batch: int = 20_000) -> None:
        self.conn = conn
        self.batch = batch
        self.rows: dict[str, list[dict[str, Any]]] = {table.name: [] for table in ORDER}

    async def row(self, table: Table, row: dict[str, Any]) -> None:
        buffer = self.rows[table.name]
        buffer.append(row)
        if len(buffer) >= self.batch:
            await self.flush()

    async def flush(self) -> None:
        raw: Any = (await self.conn.get_raw_connection()).driver_connection
        for table in ORDER:
            rows, self.rows[table.name] = self.rows[table.name], []
            if rows:
                names = list(rows[0])
                marks = ", ".join("?" * len(names))
                await raw.executemany(
                    f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})",
                    [tuple(r[n] for n in names) for r in rows],
                )


def _session(visits: _Visits, i: int, tracking: str) -> dict[str, Any]:
    source, medium = SOURCES[visits.source[i]]
    query = "?utm_source=google&utm_medium=cpc" if medium == "cpc" else ""
    pages = 1 + int((visits.last_seen[i] - visits.arrival[i]) // 60)
    return {
        "id": _id(2, i),
        "visitor_id": _id(1, visits.visitor[i]),
        "site": SITE,
        "visit_number": visits.visit_number[i],
        "started_at": visits.arrival[i],
        "last_seen": visits.last_seen[i],
        "client_ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
        "landing_url": f"{ORIGIN}/{query}",
        "referrer": None,
        "landing_path": "/",
        "referrer_host": "",
        "source": source,
        "medium": medium,
        "campaign": None,
        "term": None,
        "content": None,
        "click_ids": "{}",
        "pool": POOL,
        "tracking": tracking,
        "pages_viewed": pages,
        "last_url": f"{ORIGIN}/p/{pages}",
    }


class _Calls:
    """Call rows numbered from 1, all with the same columns."""

    def __init__(self, rng: random.Random, stop: float) -> None:
        self.rng = rng
        self.stop = stop
        self.count = 0
        self.kinds: dict[str, int] = {}

    def row(self, at: float, did: str, attribution: str, **linked: Any) -> dict[str, Any] | None:
        if at >= self.stop:  # after the data's last day: not in the range asked
            return None
        self.count += 1
        self.kinds[attribution] = self.kinds.get(attribution, 0) + 1
        answered = self.rng.random() < 0.75
        talk = float(int(self.rng.lognormvariate(4.0, 1.0))) if answered else 0.0
        return {
            "id": self.count,
            "linkedid": f"{int(at)}.{self.count}",
            "caller": f"+7916{self.count:07d}",
            "did": did,
            "started_at": at,
            "answered_at": at + 5 if answered else None,
            "ended_at": at + 5 + talk,
            "status": "answered" if answered else "missed",
            "dial_status": "ANSWER" if answered else "NOANSWER",
            "ring_seconds": 5.0,
            "talk_seconds": talk,
            "repeat_caller": False,
            "stored_at": at + 5 + talk + 0.01,
            "attribution": attribution,
            "site": SITE,
            "pool": linked.get("pool"),
            "session_id": linked.get("session_id"),
            "visitor_id": linked.get("visitor_id"),
            "source": linked.get("source"),
            "medium": linked.get("medium"),
        }


def _late(rng: random.Random, i: int, recent: Sequence[int]) -> list[tuple[int, float]]:
    """A probable match's candidates: the visit itself, likeliest, and up to two others whose
    numbers were let go around then (lower likelihoods)."""
    others = [o for o in rng.sample(list(recent), min(len(recent), 2)) if o != i]
    picked = others[: rng.randrange(3)]
    return [(i, 0.8), *((o, 0.2 / (n + 1)) for n, o in enumerate(picked))]


async def write(engine: AsyncEngine, shape: Shape) -> Facts:
    """Write the rows of `shape` into an empty, migrated database, in one transaction."""
    rng = random.Random(shape.seed)
    visits, people = _visits(shape, rng)
    peak = unlimited_peak(visits)
    size = max(1, round(peak * shape.pool_share))
    got = with_pool(visits, size)
    zone = ZoneInfo(TIMEZONE)
    stop = datetime.combine(shape.end + timedelta(days=1), time(), zone).timestamp()
    pool_numbers = numbers(size)
    made = _Calls(rng, stop)
    recent: deque[int] = deque(maxlen=30)  # visits that held a number lately
    tracking = {"tracked": 0, "exhausted": 0, "ip_cap": 0}
    async with engine.begin() as conn:
        out = _Out(conn)
        for v, (at, count, source) in enumerate(people):
            first_source, first_medium = SOURCES[source]
            await out.row(
                visitors,
                {
                    "id": _id(1, v),
                    "created_at": at,
                    "visits": count,
                    "first_source": first_source,
                    "first_medium": first_medium,
                    "first_campaign": None,
                },
            )
        for i, number in enumerate(got):
            kind = "ip_cap" if visits.ip_cap[i] else "exhausted" if number is None else "tracked"
            tracking[kind] += 1
            session = _session(visits, i, kind)
            await out.row(sessions, session)
            await out.row(
                session_pools,
                {
                    "session_id": session["id"],
                    "pool": POOL,
                    "site": SITE,
                    "replaces": OWN_NUMBER,
                    "tracking": kind,
                    "refused": None if kind == "tracked" else kind,  # as the daemon writes it
                    "started_at": session["started_at"],
                },
            )
            if number is not None:
                recent.append(i)
            if rng.random() < CALL_SHARE:
                await _call(out, made, visits, i, number, pool_numbers, recent)
        await out.flush()
    return Facts(
        visits=len(got),
        peak=peak,
        size=size,
        tracked=tracking["tracked"],
        exhausted=tracking["exhausted"],
        ip_cap=tracking["ip_cap"],
        calls=made.count,
        session_calls=made.kinds.get("session", 0),
        probable_calls=made.kinds.get("probable", 0),
        unknown_calls=made.kinds.get("unknown", 0),
        fallback_calls=made.kinds.get("fallback", 0),
    )


async def _call(
    out: _Out,
    made: _Calls,
    visits: _Visits,
    i: int,
    number: int | None,
    pool_numbers: Sequence[str],
    recent: Sequence[int],
) -> None:
    """One call of visit `i`: to the fallback when it had no number; else while browsing or
    within the freeze time (the session's), or later (probable or unknown)."""
    rng = made.rng
    arrival, last_seen = visits.arrival[i], visits.last_seen[i]
    if number is None:
        row = made.row(arrival + rng.uniform(0, last_seen - arrival + 300), FALLBACK, "fallback")
        if row:
            await out.row(calls, row)
        return
    did = pool_numbers[number - 1]
    chance = rng.random()
    if chance < 0.25:  # while browsing
        at = rng.uniform(arrival, last_seen)
    elif chance < 0.9:  # after leaving, most within minutes
        at = last_seen + min(rng.expovariate(1 / 180), FREEZE)
    else:  # the tail: the number was let go meanwhile
        at = last_seen + FREEZE + rng.expovariate(1 / 1200) + 1
    if at <= last_seen + FREEZE:
        source, medium = SOURCES[visits.source[i]]
        session = {"session_id": _id(2, i), "visitor_id": _id(1, visits.visitor[i])}
        row = made.row(at, did, "session", pool=POOL, source=source, medium=medium, **session)
        if row:
            await out.row(calls, row)
    elif rng.random() < 0.7:
        row = made.row(at, did, "probable", pool=POOL)
        if row:
            await out.row(calls, row)
            for candidate, likelihood in _late(rng, i, recent):
                released = visits.last_seen[candidate] + FREEZE
                await out.row(
                    call_candidates,
                    {
                        "call_id": row["id"],
                        "session_id": _id(2, candidate),
                        "released_at": released,
                        "likelihood": likelihood,
                    },
                )
    else:
        row = made.row(at, did, "unknown", pool=POOL)
        if row:
            await out.row(calls, row)
