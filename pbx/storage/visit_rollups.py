"""Visits a day per channel and per landing facet, counted when a session starts.

Reports read these instead of counting a year of sessions per request. The counts are written in
the new session's transaction (a visit is never counted without its row, nor twice), and can be
rebuilt from the sessions still kept (`calltrack reports rebuild`); note that sessions past
`visits.keep_days` are gone, so a rebuild forgets their counts while live counting keeps them.

On PostgreSQL a count goes to one of SHARDS rows of its key, chosen by the session's id (see
pbx.storage.tables): concurrent visits of one channel then seldom wait on each other's row lock,
and a rebuild puts each session's count on the row live counting did.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, delete, exists, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import bindparam
from sqlalchemy.sql.dml import Insert

from attribution.reports import day_at
from attribution.traffic import TrafficSource, host_of, path_of
from pbx.settings import Settings
from pbx.storage.db import Tx, conflict_insert
from pbx.storage.tables import SESSION_TRAFFIC, sessions, visit_channels, visit_facets

FACETS = ("term", "content", "landing", "referrer")
KEY_MAX = 200
#: rows per rollup key on PostgreSQL (by a checksum of the session id: stable, so a rebuild
#: finds the same row, and any id, not only hex ones)
SHARDS = 16
INSERT_BATCH = 5000

# day, site, pool, source, medium, campaign, shard
ChannelKey = tuple[int, str, str, str, str, str, int]
# facet, day, site, source, medium, value, shard
FacetKey = tuple[str, int, str, str, str, str, int]


def _upsert(table: Table, postgres: bool) -> Insert:
    """INSERT of one count, adding to the row when its key is there already."""
    keys = [c.name for c in table.primary_key.columns]
    statement = conflict_insert(table, postgres=postgres).values(
        {**{k: bindparam(k) for k in keys}, "visits": bindparam("visits")}
    )
    return statement.on_conflict_do_update(
        index_elements=keys, set_={"visits": table.c.visits + statement.excluded.visits}
    )


def landing_and_referrer(landing_url: str, referrer: str | None) -> tuple[str, str]:
    """A session's landing page and referrer as reports key them: the URL's path and the
    referrer's host, "" for none, cut as the rollups' keys. A session's row keeps both, so
    that reports no rollup holds (a channel filtered by landing page) count them in SQL."""
    return key_text(path_of(landing_url)), key_text(host_of(referrer) if referrer else None)


def _facets(
    term: str | None, content: str | None, landing: str, referrer_host: str
) -> dict[str, str]:
    """A session's facet values; `landing` and `referrer_host` as landing_and_referrer has them."""
    return {
        "term": term or "",
        "content": content or "",
        "landing": landing,
        "referrer": referrer_host,
    }


class VisitRollups:
    def __init__(self, settings: Settings, postgres: bool) -> None:
        self._settings = settings
        self._zone = ZoneInfo(settings.ui.timezone)
        self._postgres = postgres
        self._channels = _upsert(visit_channels, postgres)
        self._facet_counts = _upsert(visit_facets, postgres)

    def day(self, at: float) -> int:
        return day_at(at, self._zone)

    def shard(self, session_id: str) -> int:
        """Which of its key's rows counts the session (0 on SQLite: one writer, no waiting)."""
        return zlib.crc32(session_id.encode()) % SHARDS if self._postgres else 0

    def count(
        self,
        tx: Tx,
        session_id: str,
        site: str,
        pool: str | None,
        source: TrafficSource,
        at: float,
        places: tuple[str, str],
    ) -> None:
        """Count a new session (inside its transaction); `places`: its landing page and
        referrer as landing_and_referrer has them, worked out once for its row and here."""
        day, shard = self.day(at), self.shard(session_id)
        key = _channel_key(day, site, pool, source.source, source.medium, source.campaign, shard)
        tx.run(self._channels, _row(visit_channels, key, 1))
        tx.run_many(
            self._facet_counts,
            [
                _row(
                    visit_facets,
                    _facet_key(facet, day, site, source.source, source.medium, value, shard),
                    1,
                )
                for facet, value in _facets(source.term, source.content, *places).items()
            ],
        )

    async def rebuild(self, engine: AsyncEngine, now: float) -> int:
        """Count the kept sessions again, in one transaction; returns how many visits the
        rollups hold. Meant for daemons stopped (README, Several daemons): on SQLite the
        transaction keeps their writes out, on PostgreSQL their counting would meet its rows.
        Days up to retention's horizon (`visits.keep_days` before `now`), and before the
        oldest kept session, keep their counts: their sessions are gone, the counts are all
        that is left of them. Not the oldest kept session alone: retention keeps for ever a
        session a call refers to, so the oldest kept is the first visit that led to a call,
        and every day after it would be counted again from the few sessions left."""
        channels: Counter[ChannelKey] = Counter()
        facets: Counter[FacetKey] = Counter()
        async with engine.begin() as conn:
            oldest = await conn.scalar(select(func.min(sessions.c.started_at)))
            if oldest is None:
                return 0
            # those days may have lost some sessions already
            horizon = now - self._settings.visits.keep_days * 86400.0
            kept_until = max(self.day(oldest), self.day(horizon))
            if not await conn.scalar(select(exists().where(visit_channels.c.day <= kept_until))):
                kept_until = 0  # nothing counted that far back (a first build): count it all
            result = await conn.stream(
                select(sessions.c.id, *SESSION_TRAFFIC).execution_options(yield_per=INSERT_BATCH)
            )
            # a batch per await: iterating the stream row by row costs a greenlet switch a row,
            # half of the rebuild's time
            async for part in result.partitions():
                for r in part:
                    day = self.day(r.started_at)
                    if day <= kept_until:
                        continue
                    shard = self.shard(r.id)
                    channel = (r.site, r.pool, r.source, r.medium, r.campaign, shard)
                    channels[_channel_key(day, *channel)] += 1
                    places = landing_and_referrer(r.landing_url, r.referrer)
                    facts = _facets(r.term, r.content, *places)
                    for facet, value in facts.items():
                        key = _facet_key(facet, day, r.site, r.source, r.medium, value, shard)
                        facets[key] += 1
            await conn.execute(delete(visit_channels).where(visit_channels.c.day > kept_until))
            await conn.execute(delete(visit_facets).where(visit_facets.c.day > kept_until))
            for batch in _batches(_row(visit_channels, k, n) for k, n in channels.items()):
                await conn.execute(insert(visit_channels), batch)
            for batch in _batches(_row(visit_facets, k, n) for k, n in facets.items()):
                await conn.execute(insert(visit_facets), batch)
            return int(await conn.scalar(select(func.sum(visit_channels.c.visits))) or 0)


def key_text(value: str | None) -> str:
    """A rollup's key column: "" for none, cut to KEY_MAX characters (PostgreSQL's index
    entries are limited; a visitor's 500-character utm_term must not make a visit fail)."""
    return (value or "")[:KEY_MAX]


def _channel_key(
    day: int,
    site: str,
    pool: str | None,
    source: str,
    medium: str,
    campaign: str | None,
    shard: int,
) -> ChannelKey:
    return (
        day,
        site,
        key_text(pool),
        key_text(source),
        key_text(medium),
        key_text(campaign),
        shard,
    )


def _facet_key(
    facet: str, day: int, site: str, source: str, medium: str, value: str, shard: int
) -> FacetKey:
    return (facet, day, site, key_text(source), key_text(medium), key_text(value), shard)


def _row(table: Table, key: tuple[object, ...], visits: int) -> dict[str, Any]:
    """A rollup row from its key, which lists the table's key columns in their order."""
    return dict(zip(_KEY_NAMES[table.name], key, strict=True)) | {"visits": visits}


_KEY_NAMES = {
    t.name: [c.name for c in t.primary_key.columns] for t in (visit_channels, visit_facets)
}


def _batches(rows: Iterable[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == INSERT_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
