"""Seeded report data: visitors, sessions, calls (tags, probable candidates, CRM sales) and costs,
written as RAW rows in bulk, then the rollups built by the product's own rebuild.

The report benchmark needs a year of a busy site (1,000,000 visits, 100,000 calls) in minutes,
which the live write path (a transaction per visit and per call) cannot give; and the report tests
need a history whose every number they can work out themselves. Both come from here: the same
seed gives the same rows. Only raw rows are written (what the visitor API and CallStore.store
write); `visit_channels`, `visit_facets`, `callers` and `call_credits` come from
`rebuild_reports`, what `calltrack reports rebuild` (and `db upgrade` of an existing install) runs,
so what reports read is what the product would have kept, and its time is the rebuild's.

The shape is a real one, skewed: a few big sources (search, direct, paid search), a long tail of
referring hosts, search terms and landing pages; a third of visitors come back, often directly;
calls are mostly matched to the session that held the number, the rest are static numbers, the
fallback, numbers nobody held (some of them probable matches) and known callers calling again.
Leases are not written: neither reports nor the rebuild read them.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pbx.settings import Settings
from pbx.storage.report_rollups import Rebuilt, rebuild_reports
from pbx.storage.tables import (
    call_candidates,
    call_tags,
    calls,
    costs,
    sales,
    sessions,
    visitors,
)
from pbx.storage.visit_rollups import landing_and_referrer

ORIGINS = {"main": "https://shop.example", "clinic": "https://clinic.example"}

#: The sites and static numbers of the config the data belongs to (merge into a config dict).
SITES: list[dict[str, Any]] = [
    {
        "name": "main",
        "origins": [ORIGINS["main"]],
        "replace": ["+7 (495) 123-45-67"],
        "pools": [
            {
                "name": "paid",
                "when": {"utm_medium": ["cpc", "paid_social"]},
                "numbers": ["+74990000001", "+74990000002", "+74990000003"],
            },
            {"name": "all", "numbers": ["+74990000011", "+74990000012", "+74990000013"]},
        ],
        "fallback": "+74990000099",
    },
    {
        "name": "clinic",
        "origins": [ORIGINS["clinic"]],
        "replace": ["+7 (495) 765-43-21"],
        "pools": [{"name": "all", "numbers": ["+74950000011", "+74950000012"]}],
        "fallback": "+74950000099",
    },
]
STATIC: list[dict[str, Any]] = [
    {"number": "+74990000101", "source": "billboard", "medium": "offline", "campaign": "spring"},
    {"number": "+74990000102", "source": "radio", "medium": "offline"},
    {"number": "+74990000103", "source": "avito", "medium": "classifieds"},
]
POOL_NUMBERS = {
    (site["name"], pool["name"]): pool["numbers"] for site in SITES for pool in site["pools"]
}
FALLBACK = {site["name"]: site["fallback"] for site in SITES}
NOBODYS_NUMBER = "+74990000777"  # a number in no config: attribution unknown


def config(database: str, timezone: str) -> dict[str, Any]:
    """The parts of a calltrack config this data was made for."""
    return {"database": database, "sites": SITES, "static": STATIC, "ui": {"timezone": timezone}}


@dataclass(frozen=True)
class Shape:
    visits: int
    calls: int
    days: int  # the data covers the local days end-days+1 .. end
    end: date
    seed: int = 12


@dataclass
class Records:
    """Every row written, by table name (kept only for small data sets: tests read them)."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, table: str, batch: Sequence[dict[str, Any]]) -> None:
        self.rows.setdefault(table, []).extend(batch)


def _zipf(n: int, s: float = 1.1) -> list[float]:
    return list(itertools.accumulate(1 / (i + 1) ** s for i in range(n)))


# source, medium, share of visits, referrer host (None: no referrer), campaigns, has terms
CHANNELS: list[tuple[str, str, float, str | None, int, bool]] = [
    ("google", "organic", 22, "www.google.com", 0, False),
    ("(direct)", "(none)", 20, None, 0, False),
    ("yandex", "organic", 17, "yandex.ru", 0, False),
    ("google", "cpc", 12, "www.google.com", 12, True),
    ("yandex", "cpc", 10, "yandex.ru", 15, True),
    ("(referral)", "referral", 7, "", 0, False),  # source: the referring host (long tail)
    ("facebook", "paid_social", 4, "m.facebook.com", 5, False),
    ("newsletter", "email", 3, None, 8, False),
    ("vk", "social", 2, "vk.com", 0, False),
    ("bing", "organic", 1.5, "www.bing.com", 0, False),
    ("duckduckgo", "organic", 0.5, "duckduckgo.com", 0, False),
]
_CHANNEL_CUM = list(itertools.accumulate(c[2] for c in CHANNELS))
PAID = [c for c in CHANNELS if c[4]]
REFERRERS = [f"blog{i}.example.org" if i % 3 else f"www.forum{i}.example.net" for i in range(600)]
TERMS = [f"term {i}" for i in range(4000)]
PATHS = ["/"] + [f"/p/{i}" for i in range(1, 300)]
STATUSES = [("answered", "ANSWER", 70), ("missed", "NOANSWER", 15), ("busy", "BUSY", 5)]
STATUSES += [("abandoned", "CANCEL", 7), ("failed", "CHANUNAVAIL", 3)]
_STATUS_CUM = list(itertools.accumulate(s[2] for s in STATUSES))


def campaign_name(source: str, medium: str, i: int) -> str:
    return f"{source}-{medium}-{i}"


class _Generator:
    def __init__(self, shape: Shape, zone: ZoneInfo) -> None:
        self.shape = shape
        self.rng = random.Random(shape.seed)
        first = shape.end - timedelta(days=shape.days - 1)
        self.start = datetime.combine(first, time(), zone).timestamp()
        self.stop = datetime.combine(shape.end + timedelta(days=1), time(), zone).timestamp()
        self.campaign_cum = {n: _zipf(n, 0.9) for n in {c[4] for c in CHANNELS if c[4]}}
        self.referrer_cum = _zipf(len(REFERRERS))
        self.term_cum = _zipf(len(TERMS))
        self.path_cum = _zipf(len(PATHS), 1.0)
        # calls per visit, split: matched to a session / probable / static / fallback / unknown
        rate = shape.calls / shape.visits
        self.p_session, self.p_probable = 0.62 * rate, 0.06 * rate
        self.p_static, self.p_fallback, self.p_unknown = 0.12 * rate, 0.06 * rate, 0.04 * rate
        self.p_again = 0.25  # a visitor who called calls again later through another number
        self.visits = self.calls = 0
        self.call_id = 0
        self.callers = itertools.count(1)
        self.recent: list[dict[str, Any]] = []  # recent pool sessions: other probable candidates

    def hex(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    # -- visits --------------------------------------------------------------------------------

    def channel(self, returning: bool) -> dict[str, Any]:
        rng = self.rng
        if returning and rng.random() < 0.35:
            source, medium, _, host, campaigns, terms = CHANNELS[1]
        else:
            source, medium, _, host, campaigns, terms = rng.choices(
                CHANNELS, cum_weights=_CHANNEL_CUM
            )[0]
        fact: dict[str, Any] = {"source": source, "medium": medium, "campaign": None}
        fact |= {"term": None, "content": None, "referrer": None}
        if source == "(referral)":
            host = rng.choices(REFERRERS, cum_weights=self.referrer_cum)[0]
            fact["source"] = host.removeprefix("www.")
        if campaigns:
            i = rng.choices(range(campaigns), cum_weights=self.campaign_cum[campaigns])[0]
            fact["campaign"] = campaign_name(source, medium, i)
        if terms and rng.random() < 0.9:
            fact["term"] = rng.choices(TERMS, cum_weights=self.term_cum)[0]
            if rng.random() < 0.5:
                fact["content"] = f"ad-{rng.randrange(6)}"
        if host is not None:
            fact["referrer"] = f"https://{host}/" + ("search?q=x" if terms else "")
        return fact

    def session(self, visitor: dict[str, Any], at: float, number: int, site: str) -> dict[str, Any]:
        rng = self.rng
        fact = self.channel(number > 1)
        path = rng.choices(PATHS, cum_weights=self.path_cum)[0]
        origin = ORIGINS[site]
        query = ""
        if fact["medium"] not in ("organic", "(none)", "referral", "social"):
            query = f"?utm_source={fact['source']}&utm_medium={fact['medium']}"
            if fact["campaign"]:
                query += f"&utm_campaign={fact['campaign']}"
        if fact["source"] == "(direct)" and rng.random() < 0.1:
            fact["referrer"] = f"{origin}/p/{rng.randrange(9)}"  # internal: still direct
        if site == "main":
            pool: str | None = "paid" if fact["medium"] in ("cpc", "paid_social") else "all"
        else:
            pool = "all"
        tracking = "tracked"
        if rng.random() < 0.05:
            pool, tracking = None, "privacy"
        pages = min(1 + int(rng.expovariate(0.4)), 40)
        landing_path, referrer_host = landing_and_referrer(origin + path + query, fact["referrer"])
        return {
            "id": self.hex(),
            "visitor_id": visitor["id"],
            "site": site,
            "visit_number": number,
            "started_at": at,
            "last_seen": at + 40.0 * pages,
            "client_ip": None,
            "landing_url": origin + path + query,
            "referrer": fact["referrer"],
            "landing_path": landing_path,
            "referrer_host": referrer_host,
            "source": fact["source"],
            "medium": fact["medium"],
            "campaign": fact["campaign"],
            "term": fact["term"],
            "content": fact["content"],
            "click_ids": "{}",
            "pool": pool,
            "tracking": tracking,
            "pages_viewed": pages,
            "last_url": origin + path,
        }

    def visitor(self, out: _Out) -> None:
        rng = self.rng
        left = self.shape.visits - self.visits
        count = 1 if rng.random() < 0.65 else min(2 + int(rng.expovariate(0.5)), 12)
        count = min(count, left)
        at = rng.uniform(self.start, self.stop - 60)
        site = "main" if rng.random() < 0.8 else "clinic"
        visitor: dict[str, Any] = {"id": self.hex(), "created_at": at}
        own: list[dict[str, Any]] = []
        for number in range(1, count + 1):
            own.append(self.session(visitor, at, number, site))
            at += 1800 + rng.expovariate(1 / (6 * 86400.0))  # a call ends before the next
            if at >= self.stop - 60:
                break
        first = own[0]
        visitor |= {"visits": len(own), "first_source": first["source"]}
        visitor |= {"first_medium": first["medium"], "first_campaign": first["campaign"]}
        out.row(visitors, visitor)
        for s in own:
            out.row(sessions, s)
        self.visits += len(own)
        self.visitor_calls(out, own)

    # -- calls ---------------------------------------------------------------------------------

    def call(
        self,
        out: _Out,
        at: float,
        caller: str,
        did: str,
        repeat: bool,
        columns: dict[str, Any],
    ) -> dict[str, Any] | None:
        """One call's row with its tags and CRM sales; None once the shape's calls are made."""
        if self.calls >= self.shape.calls or at >= self.stop - 600:
            return None
        rng = self.rng
        self.calls += 1
        self.call_id += 1
        status, dial, _ = rng.choices(STATUSES, cum_weights=_STATUS_CUM)[0]
        ring = float(rng.randint(2, 30))
        answered = status == "answered"
        talk = float(min(int(rng.lognormvariate(4.0, 1.1)), 3600)) if answered else 0.0
        row: dict[str, Any] = {
            "id": self.call_id,
            "linkedid": f"{int(at)}.{self.call_id}",
            "caller": caller,
            "did": did,
            "started_at": at,
            "answered_at": at + ring if answered else None,
            "ended_at": at + ring + talk,
            "status": status,
            "dial_status": dial,
            "ring_seconds": ring,
            "talk_seconds": talk,
            "recording": None,
            "repeat_caller": repeat,
            "stored_at": at + ring + talk + 0.01,
            "site": None,
            "pool": None,
            "session_id": None,
            "visitor_id": None,
            "repeat_of": None,
            "score": None,
            "sale_cents": None,
            "crm_sales": 0,
            "crm_sale_cents": 0,
            **{c: None for c in ("source", "medium", "campaign", "term", "content")},
            **{c: None for c in ("referrer", "landing_url", "click_ids", "visit_number")},
            **columns,
        }
        tags: list[str] = []
        if answered and rng.random() < 0.25:
            tags.append("lead")
        if answered and rng.random() < 0.08:
            tags.append("sale")
            if rng.random() < 0.8:
                row["sale_cents"] = rng.randrange(50, 5000) * 100 + rng.choice((0, 50))
        if rng.random() < 0.03:
            tags.append("spam")
        if rng.random() < 0.3:
            row["score"] = rng.randint(1, 5)
        if answered and rng.random() < 0.05:
            for n in range(1 + (rng.random() < 0.3)):
                amount = rng.randrange(1000, 900000)
                row["crm_sales"] += 1
                row["crm_sale_cents"] += amount
                out.row(
                    sales,
                    {
                        "reference": f"crm-{self.call_id}-{n}",
                        "call_id": self.call_id,
                        "caller": caller,
                        "amount_cents": amount,
                        "at": at + 86400 * (1 + n),
                        "created_at": at + 86400 * (1 + n),
                        "created_by": "crm",
                    },
                )
        out.row(calls, row)
        for tag in tags:
            out.row(call_tags, {"call_id": self.call_id, "tag": tag, "automatic": False})
        return row

    def new_caller(self) -> str:
        return f"+7916{next(self.callers):07d}"

    def visitor_calls(self, out: _Out, own: list[dict[str, Any]]) -> None:
        """Calls of one visitor: from its sessions, probably from them, and later as a known
        caller through a static number, the fallback or a number nobody held."""
        rng = self.rng
        caller: str | None = None
        last_matched: dict[str, Any] | None = None
        made: list[dict[str, Any]] = []
        for s in own:
            if s["pool"] is not None and rng.random() < self.p_session * 1.05:
                caller = caller or self.new_caller()
                at = s["started_at"] + rng.uniform(20, 40.0 * s["pages_viewed"])
                number = rng.choice(POOL_NUMBERS[(s["site"], s["pool"])])
                facts = {k: s[k] for k in ("source", "medium", "campaign", "term", "content")}
                row = self.call(
                    out,
                    at,
                    caller,
                    number,
                    bool(made),
                    {
                        "attribution": "session",
                        "site": s["site"],
                        "pool": s["pool"],
                        "session_id": s["id"],
                        "visitor_id": s["visitor_id"],
                        "referrer": s["referrer"],
                        "landing_url": s["landing_url"],
                        "click_ids": "{}",
                        "visit_number": s["visit_number"],
                        **facts,
                    },
                )
                if row:
                    made.append(row)
                    last_matched = row
            elif s["pool"] is not None and rng.random() < self.p_probable:
                self.probable(out, s)
            if s["pool"] is not None:
                self.recent = [*self.recent[-50:], s]
        if last_matched and caller and rng.random() < self.p_again:
            at = last_matched["started_at"] + rng.expovariate(1 / (20 * 86400.0))
            kind = rng.choice(("static", "fallback", "unknown"))
            linked = {"visitor_id": own[0]["visitor_id"], "repeat_of": last_matched["id"]}
            self.other(out, kind, at, caller, True, own[0]["site"], linked)
        for kind, p in (
            ("static", self.p_static),
            ("fallback", self.p_fallback),
            ("unknown", self.p_unknown),
        ):
            if rng.random() < p * len(own):
                self.strangers(out, kind, own[0]["started_at"], own[0]["site"])

    def probable(self, out: _Out, s: dict[str, Any]) -> None:
        """A call to the number the session held, just after its lease ended."""
        rng = self.rng
        released = s["last_seen"] + 60
        at = released + rng.uniform(5, 50)
        others = [o for o in self.recent if o["pool"] == s["pool"] and o["site"] == s["site"]]
        row = self.call(
            out,
            at,
            self.new_caller(),
            POOL_NUMBERS[(s["site"], s["pool"])][0],
            False,
            {"attribution": "probable", "site": s["site"], "pool": s["pool"]},
        )
        if row is None:
            return
        likelihood = 0.6 if others and rng.random() < 0.3 else 0.8
        candidates = [{"session_id": s["id"], "released_at": released, "likelihood": likelihood}]
        if others:
            other = rng.choice(others)
            if other["id"] != s["id"]:  # equal likelihoods: the latest release wins
                same = likelihood == 0.6 and rng.random() < 0.5
                candidates.append(
                    {
                        "session_id": other["id"],
                        "released_at": released - rng.uniform(1, 30),
                        "likelihood": likelihood if same else 0.2,
                    }
                )
        for c in candidates:
            out.row(call_candidates, {"call_id": row["id"], **c})

    def other(
        self,
        out: _Out,
        kind: str,
        at: float,
        caller: str,
        repeat: bool,
        site: str,
        linked: dict[str, Any] | None = None,
    ) -> None:
        """A call no session held: a static number, the site's fallback, or nobody's number;
        `linked` names the visitor of a known caller (as CallStore.store links them)."""
        columns: dict[str, Any] = {"attribution": kind, **(linked or {})}
        if kind == "static":
            static = self.rng.choice(STATIC)
            columns |= {"source": static["source"], "medium": static["medium"]}
            columns |= {"campaign": static.get("campaign")}
            did = static["number"]
        elif kind == "fallback":
            columns["site"], did = site, FALLBACK[site]
        else:
            did = NOBODYS_NUMBER
        self.call(out, at, caller, did, repeat, columns)

    def strangers(self, out: _Out, kind: str, near: float, site: str) -> None:
        """One to three calls of a caller who never visited (some anonymous)."""
        rng = self.rng
        anonymous = rng.random() < 0.05
        caller = "anonymous" if anonymous else f"+7903{next(self.callers):07d}"
        at = near + rng.uniform(0, 3 * 86400)
        for n in range(1 if rng.random() < 0.8 else rng.randint(2, 3)):
            self.other(out, kind, at, caller, n > 0 and not anonymous, site)
            at += rng.expovariate(1 / (5 * 86400.0))

    # -- costs ---------------------------------------------------------------------------------

    def costs(self, out: _Out) -> None:
        """Ad spend a day for every paid campaign (and one campaign that brought nobody)."""
        rng = self.rng
        day = self.shape.end - timedelta(days=self.shape.days - 1)
        while day <= self.shape.end:
            key = day.year * 10000 + day.month * 100 + day.day
            for source, medium, share, _, campaigns, _ in PAID:
                for i in range(campaigns):
                    if rng.random() < 0.9:
                        cents = int(share * rng.uniform(200, 2000) * 100 / (i + 1))
                        out.row(
                            costs,
                            _cost(key, source, medium, campaign_name(source, medium, i), cents),
                        )
            out.row(costs, _cost(key, "google", "cpc", "", rng.randrange(100, 5000)))
            out.row(costs, _cost(key, "tiktok", "cpc", "tiktok-test", rng.randrange(100, 5000)))
            day += timedelta(days=1)


def _cost(day: int, source: str, medium: str, campaign: str, cents: int) -> dict[str, Any]:
    return {
        "day": day,
        "source": source,
        "medium": medium,
        "campaign": campaign,
        "cost_cents": cents,
        "imported_at": 0.0,
        "file": "generated.csv",
    }


#: Tables in the order their rows may be inserted (each after what it refers to).
ORDER: tuple[Table, ...] = (visitors, sessions, calls, call_tags, call_candidates, sales, costs)


class _Out:
    """Rows buffered per table, flushed in ORDER as big executemany batches."""

    def __init__(self, batch: int, keep: Records | None) -> None:
        self.batch = batch
        self.keep = keep
        self.buffers: dict[str, list[dict[str, Any]]] = {t.name: [] for t in ORDER}
        self.full = False

    def row(self, table: Table, row: dict[str, Any]) -> None:
        buffer = self.buffers[table.name]
        buffer.append(row)
        if len(buffer) >= self.batch:
            self.full = True

    def take(self) -> Iterator[tuple[Table, list[dict[str, Any]]]]:
        for table in ORDER:
            rows = self.buffers[table.name]
            if rows:
                if self.keep is not None:
                    self.keep.add(table.name, rows)
                self.buffers[table.name] = []
                yield table, rows
        self.full = False


async def _flush(conn: AsyncConnection, out: _Out) -> None:
    """Insert the buffered rows through the driver itself (SQLAlchemy's per-row work would
    double the time): executemany on SQLite, COPY on PostgreSQL, in the open transaction."""
    raw: Any = (await conn.get_raw_connection()).driver_connection
    for table, rows in out.take():
        # the columns the generator fills; the others keep their server defaults
        names = [c.name for c in table.columns if c.server_default is None or c.name in rows[0]]
        records = [tuple(row.get(n) for n in names) for row in rows]
        if conn.dialect.name == "postgresql":
            await raw.copy_records_to_table(table.name, records=records, columns=names)
        else:
            marks = ", ".join("?" * len(names))
            await raw.executemany(
                f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})", records
            )


async def write(
    engine: AsyncEngine, settings: Settings, shape: Shape, keep: bool = False, batch: int = 20000
) -> Records | None:
    """Write the raw rows of `shape` into an empty, migrated database (one transaction); return
    them when `keep`. Calls are numbered from 1."""
    records = Records() if keep else None
    out = _Out(batch, records)
    generator = _Generator(shape, ZoneInfo(settings.ui.timezone))
    async with engine.begin() as conn:
        # generate a visitor at a time, writing whenever a buffer is full
        while generator.visits < shape.visits:
            generator.visitor(out)
            if out.full:
                await _flush(conn, out)
        generator.costs(out)
        await _flush(conn, out)
        if engine.dialect.name == "postgresql":  # ids were given: move the sequence past them
            await conn.execute(
                text("SELECT setval(pg_get_serial_sequence('calls', 'id'), max(id)) FROM calls")
            )
    return records


async def build_rollups(engine: AsyncEngine, settings: Settings) -> Rebuilt:
    """The rollups reports read (and the callers), by what `calltrack reports rebuild` and
    `calltrack db upgrade` of an existing install run: (visits counted, calls credited)."""
    return await rebuild_reports(engine, settings, datetime.now().timestamp())
