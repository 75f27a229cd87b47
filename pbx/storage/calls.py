"""Call records: one per call (keyed by Asterisk's Linkedid), attributed when stored."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from attribution.calls import CallReport, Route
from pbx.settings import Settings
from pbx.storage.tables import calls
from pbx.storage.visits import VisitStore

SESSION_FIELDS = (
    "source",
    "medium",
    "campaign",
    "term",
    "content",
    "referrer",
    "landing_url",
    "visit_number",
    "pages_viewed",
    "first_source",
    "first_medium",
    "first_campaign",
)


@dataclass(frozen=True)
class CallFilter:
    since: float | None = None
    until: float | None = None
    source: str | None = None
    limit: int = 100
    offset: int = 0


class CallStore:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        visits: VisitStore,
        clock: Callable[[], float],
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._visits = visits
        self._clock = clock
        self._static = {s.number: s for s in settings.static}
        self._fallbacks = {site.fallback: site for site in settings.sites if site.fallback}
        self._pools = {
            number: (site, pool)
            for site in settings.sites
            for pool in site.pools
            for number in pool.numbers
        }
        insert_for = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._insert = insert_for(calls)

    async def attribution(self, did: str, at: float) -> dict[str, Any]:
        """Who a call to `did` starting at `at` belongs to: a session, a static source, or none."""
        if (static := self._static.get(did)) is not None:
            return {
                "attribution": "static",
                "source": static.source,
                "medium": static.medium,
                "campaign": static.campaign,
            }
        if (site := self._fallbacks.get(did)) is not None:
            return {"attribution": "fallback", "site": site.name}
        if did not in self._pools:
            return {"attribution": "unknown"}
        site, pool = self._pools[did]
        holder = await self._visits.holder_at(did, at)
        if holder is None:
            return {"attribution": "unknown", "site": site.name, "pool": pool.name}
        return {
            "attribution": "session",
            "site": holder.site,
            "pool": holder.pool,
            "session_id": holder.session_id,
            "visitor_id": holder.visitor_id,
            "click_ids": holder.row["click_ids"],
            **{key: holder.row[key] for key in SESSION_FIELDS},
        }

    async def route(self, did: str, caller: str) -> Route:
        """Where a ringing call goes, and the caller-ID name that tells staff its source."""
        destination = self._settings.forward_to
        if (static := self._static.get(did)) is not None:
            return Route(static.forward_to or destination, f"[{static.source}]")
        if (site := self._fallbacks.get(did)) is not None:
            return Route(site.forward_to or destination, None)
        if did not in self._pools:
            return Route(destination, None)
        site, pool = self._pools[did]
        destination = pool.forward_to or site.forward_to or destination
        holder = await self._visits.holder_at(did, self._clock())
        if holder is None:
            return Route(destination, None)
        return Route(destination, f"[{holder.row['medium']}] {holder.row['source']}")

    async def store(self, report: CallReport) -> bool:
        """Store the call once; a second report of the same Linkedid changes nothing."""
        async with self._engine.connect() as conn:
            if await conn.scalar(select(exists().where(calls.c.linkedid == report.linkedid))):
                return False
        found = await self.attribution(report.did, report.started_at)
        async with self._engine.begin() as conn:
            repeat = bool(report.caller.strip("+").isdigit()) and bool(
                await conn.scalar(
                    select(
                        exists().where(
                            calls.c.caller == report.caller,
                            calls.c.started_at < report.started_at,
                        )
                    )
                )
            )
            result = await conn.execute(
                self._insert.values(
                    linkedid=report.linkedid,
                    caller=report.caller,
                    did=report.did,
                    started_at=report.started_at,
                    answered_at=report.answered_at,
                    ended_at=report.ended_at,
                    status=report.status,
                    dial_status=report.dial_status,
                    ring_seconds=round(report.ring_seconds, 3),
                    talk_seconds=round(report.talk_seconds, 3),
                    recording=report.recording,
                    repeat_caller=repeat,
                    stored_at=self._clock(),
                    **found,
                ).on_conflict_do_nothing(index_elements=["linkedid"])
            )
        return bool(result.rowcount)

    def _filtered(self, query: Select[Any], where: CallFilter) -> Select[Any]:
        if where.since is not None:
            query = query.where(calls.c.started_at >= where.since)
        if where.until is not None:
            query = query.where(calls.c.started_at < where.until)
        if where.source is not None:
            query = query.where(calls.c.source == where.source)
        return query

    async def list(self, where: CallFilter) -> tuple[int, Sequence[dict[str, Any]]]:
        async with self._engine.connect() as conn:
            total = await conn.scalar(
                self._filtered(select(func.count()).select_from(calls), where)
            )
            rows = (
                await conn.execute(
                    self._filtered(select(calls), where)
                    .order_by(calls.c.started_at.desc(), calls.c.id.desc())
                    .limit(where.limit)
                    .offset(where.offset)
                )
            ).all()
        return total or 0, [_public(dict(r._mapping)) for r in rows]

    async def get(self, call_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(calls).where(calls.c.id == call_id))).one_or_none()
        return _public(dict(row._mapping)) if row else None


def _public(row: dict[str, Any]) -> dict[str, Any]:
    row["click_ids"] = json.loads(row["click_ids"]) if row.get("click_ids") else {}
    return row
