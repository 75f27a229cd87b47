"""Call records: one per call (keyed by Asterisk's Linkedid), attributed when stored."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, TypedDict, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from attribution.calls import CallReport, Route
from attribution.numbering import Numbering
from attribution.owner import Attribution, CallOwner, attribute, needs_holder
from attribution.phone import caller_forms, caller_number, caller_search
from attribution.probable import Candidate, candidates
from integrations.events import Event
from pbx.settings import Settings
from pbx.storage import lease_history
from pbx.storage.call_credits import CallCredits, refresh_facts
from pbx.storage.call_speech_read import keywords_of, transcripts_of
from pbx.storage.callers import is_known_number, known_visitor, record_call
from pbx.storage.db import conflict_insert
from pbx.storage.errors import is_transient, outage_reason
from pbx.storage.inline_sqlite import is_locked
from pbx.storage.outbox import Outbox
from pbx.storage.tables import AS_RECORDED_WHERE, call_candidates, call_keywords, call_tags, calls
from pbx.storage.visit_rollups import KEY_MAX
from pbx.storage.visits import VisitStore

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class CallFilter:
    since: float | None = None
    until: float | None = None
    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    static_source: str | None = None  # calls to the static number of this source
    answered: bool | None = None  # False: any status but answered (voicemail included)
    tag: str | None = None
    keyword: str | None = None  # a phrase the speech worker heard in the call
    caller: str | None = None  # digits anywhere in the caller's number
    after_id: int | None = None  # stored after the call with this id (live updates)
    #: (started_at, id) of the last call of the previous batch: the next ones in the list's
    #: order, whatever was stored meanwhile (an offset would shift by each new call)
    before: tuple[float, int] | None = None
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True)
class Review:
    """What staff made of a call."""

    tags: frozenset[str]
    score: int | None
    notes: str | None
    sale_cents: int | None


class ReviewChanges(TypedDict, total=False):
    """The parts of a review to change; a part left out stays as it is."""

    tags: frozenset[str]
    score: int | None
    notes: str | None
    sale_cents: int | None


# Built once (the hot path: a statement built per call cost more CPU in SQLAlchemy than SQLite
# took to run it)
_STORED = select(exists().where(calls.c.linkedid == bindparam("linkedid")))
_CALLED_BEFORE = select(
    exists().where(
        calls.c.caller.in_(bindparam("callers", expanding=True)),
        calls.c.started_at < bindparam("started_at"),
    )
)


class CallStore:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        visits: VisitStore,
        clock: Callable[[], float],
        outbox: Outbox | None = None,
        inline: AsyncEngine | None = None,
    ) -> None:
        self._engine = engine
        # SQLite: an engine whose statements run in the event loop (pbx.storage.inline_sqlite)
        # for routing a ringing call and storing an ended one, the daemon's hot path
        self._inline = inline or engine
        self._settings = settings
        self._visits = visits
        self._clock = clock
        self._outbox = outbox or Outbox(settings, clock)
        self._numbering = Numbering.from_settings(settings)
        self._credits = CallCredits(settings)
        #: the call's row unless its Linkedid is stored: its id, else nothing
        self._insert_new = (
            conflict_insert(calls, postgres=engine.dialect.name == "postgresql")
            .on_conflict_do_nothing(index_elements=["linkedid"])
            .returning(calls.c.id)
        )

    async def owner(
        self, did: str, at: float, engine: AsyncEngine | None = None, *, exact: bool = True
    ) -> CallOwner:
        """Who a call to `did` starting at `at` belongs to: a session, a static source, or none.

        `exact=False`: for routing a ringing call (its caller-ID name), which must not wait for
        a database that cannot take writes (a full disk still answers reads); the stored call
        is attributed exactly, once the pending writes have landed."""
        number = self._numbering.get(did)
        holder = None
        if needs_holder(number):
            # pings written behind may extend the holder's lease
            await (self._visits.flush() if exact else self._visits.flush_if_possible())
            holder = await lease_history.find_holder(engine or self._inline, did, at)
        return attribute(number, holder)

    async def route(self, did: str, caller: str) -> Route:
        """Where a ringing call goes, and the caller-ID name that tells staff its source.

        The real line is the one the dialplan falls back to for the number (one table for both,
        so the daemon and a daemon-less dialplan never send a call to different lines).
        """
        line = self._numbering.real_line(did)
        try:
            owner = await self.owner(did, self._clock(), exact=False)
        except Exception as error:
            if not is_transient(error):
                raise
            # the line comes from the config; only the source's name needed the database
            log.warning(
                "call to %s routed without its source: database %s", did, outage_reason(error)
            )
            return Route(line, None)
        return Route(line, owner.caller_name)

    async def store(self, report: CallReport) -> Attribution | None:
        """Store the call once and say how it was attributed; None (and no change) when its
        Linkedid was stored before. Its report credits and its caller's row are written in the
        same transaction."""
        return await self._in_loop(partial(self._store, report))

    async def _in_loop(self, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
        """`work` on the engine that runs in the event loop; again on the ordinary one, in a
        thread, when another connection holds SQLite's write lock."""
        if self._inline is not self._engine:
            try:
                return await work(self._inline)
            except OperationalError as error:
                if not is_locked(error):
                    raise
        return await work(self._engine)

    async def _store(self, report: CallReport, engine: AsyncEngine) -> Attribution | None:
        async with engine.connect() as conn:
            if await conn.scalar(_STORED, {"linkedid": report.linkedid}):
                return None
        owner = await self.owner(report.did, report.started_at, engine)
        likely = await self._probable(owner, report, engine)
        region = self._settings.region
        caller = caller_number(report.caller, region)
        async with engine.begin() as conn:
            repeat = is_known_number(caller) and bool(
                await conn.scalar(
                    _CALLED_BEFORE,
                    {"callers": caller_forms(caller, region), "started_at": report.started_at},
                )
            )
            values = {
                "linkedid": report.linkedid,
                "caller": caller,
                "did": report.did,
                "started_at": report.started_at,
                "answered_at": report.answered_at,
                "ended_at": report.ended_at,
                "status": report.status,
                "dial_status": report.dial_status,
                "ring_seconds": round(report.ring_seconds, 3),
                "talk_seconds": round(report.talk_seconds, 3),
                "recording": report.recording,
                "repeat_caller": repeat,
                "stored_at": self._clock(),
                "visitor_id": None,
                "session_id": None,
                "repeat_of": None,
                **_columns(owner),
            }
            if likely:
                values["attribution"] = str(Attribution.PROBABLE)
            if owner.holder is None and (known := await known_visitor(conn, caller)):
                values["visitor_id"], values["repeat_of"] = known
            call_id = await conn.scalar(self._insert_new, values)
            if call_id is None:
                return None
            call = values | {"id": call_id}
            if likely:
                await conn.execute(
                    insert(call_candidates),
                    [{"call_id": call_id, **asdict(candidate)} for candidate in likely],
                )
            await record_call(conn, call, from_session=owner.holder is not None)
            await self._credits.write(conn, call)
            queued = await self._outbox.add(
                conn, Event.CALL_COMPLETED, call_id, once_per=report.linkedid
            )
        if queued:
            self._outbox.wake()
        return Attribution(values["attribution"])

    async def _probable(
        self, owner: CallOwner, report: CallReport, engine: AsyncEngine
    ) -> list[Candidate]:
        """The sessions that probably made a call to a pool number nobody held."""
        if owner.attribution is not Attribution.UNKNOWN or not needs_holder(owner.number):
            return []
        window = self._settings.probable_window
        await self._visits.flush()
        spans = await lease_history.released_before(engine, report.did, report.started_at, window)
        return candidates(spans, report.started_at, window)

    def _filtered(self, query: Select[Any], where: CallFilter) -> Select[Any]:
        """The calls `where` asks for (source, medium and campaign as _stands_for reads them)."""
        c = calls.c
        for column, value in (
            (c.source, where.source),
            (c.medium, where.medium),
            (c.campaign, where.campaign),
        ):
            if value is not None:
                query = query.where(_stands_for(column, value))
        if where.since is not None:
            query = query.where(c.started_at >= where.since)
        if where.until is not None:
            query = query.where(c.started_at < where.until)
        if where.static_source is not None:
            query = query.where(
                c.attribution == Attribution.STATIC, c.source == where.static_source
            )
        if where.answered is not None:
            query = query.where((c.status == "answered") == where.answered)
        if where.tag is not None:
            query = query.where(
                exists().where(call_tags.c.call_id == c.id, call_tags.c.tag == where.tag)
            )
        if where.keyword is not None:
            query = query.where(
                exists().where(
                    call_keywords.c.phrase == where.keyword, call_keywords.c.call_id == c.id
                )
            )
        if where.caller:
            wanted = caller_search(where.caller, self._settings.region)
            query = query.where(c.caller.contains(wanted, autoescape=True))
        if where.after_id is not None:
            query = query.where(c.id > where.after_id)
        if where.before is not None:
            query = query.where(tuple_(c.started_at, c.id) < tuple_(*where.before))
        return query

    async def list(self, where: CallFilter) -> tuple[int, Sequence[dict[str, Any]]]:
        """One page of matching calls, newest first, each with its tags; and how many match."""
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
            heard = await _heard(conn, [row.id for row in rows])
        return total or 0, [_public(dict(r._mapping), heard) for r in rows]

    async def get(self, call_id: int) -> dict[str, Any] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(calls).where(calls.c.id == call_id))).one_or_none()
            heard = await _heard(conn, [call_id])
        return _public(dict(row._mapping), heard) if row else None

    async def choices(self, column: str, limit: int = 200) -> Sequence[str]:
        """The values a column holds (sources, media, campaigns), for the log's filter hints."""
        field = calls.c[column]
        async with self._engine.connect() as conn:
            values = await conn.scalars(
                select(field).where(field.is_not(None)).distinct().order_by(field).limit(limit)
            )
            return [str(v) for v in values]

    async def review(self, call_id: int, review: Review, by: str) -> bool:
        """Save staff's tags, score, notes and sale, all of them; False when there is no such
        call."""
        return await self.amend(
            call_id,
            ReviewChanges(
                tags=review.tags,
                score=review.score,
                notes=review.notes,
                sale_cents=review.sale_cents,
            ),
            by,
        )

    async def amend(self, call_id: int, changes: ReviewChanges, by: str) -> bool:
        """Change only the given parts of the review (the CRM's PATCH sets one field at a time;
        given tags replace the call's, and a kept tag a heard keyword added stays marked
        automatic); False when there is no such call."""
        columns = {name: value for name, value in changes.items() if name != "tags"}
        async with self._engine.begin() as conn:
            now = (
                await conn.execute(
                    select(calls.c.id, *(calls.c[name] for name in columns)).where(
                        calls.c.id == call_id
                    )
                )
            ).one_or_none()
            if now is None:
                return False
            if await _unchanged(conn, call_id, dict(now._mapping), columns, changes.get("tags")):
                # nothing to record, nor to tell: a CRM that writes back what its call.updated
                # said got another call.updated, and the two went on for ever
                return True
            await conn.execute(
                update(calls)
                .where(calls.c.id == call_id)
                .values(**columns, reviewed_by=by, reviewed_at=self._clock())
            )
            if "tags" in changes:
                automatic = set(
                    await conn.scalars(
                        select(call_tags.c.tag).where(
                            call_tags.c.call_id == call_id, call_tags.c.automatic
                        )
                    )
                )
                await conn.execute(delete(call_tags).where(call_tags.c.call_id == call_id))
                if changes["tags"]:
                    await conn.execute(
                        insert(call_tags),
                        [
                            {"call_id": call_id, "tag": t, "automatic": t in automatic}
                            for t in sorted(changes["tags"])
                        ],
                    )
            await refresh_facts(conn, call_id)
            queued = await self._outbox.add(conn, Event.CALL_UPDATED, call_id)
        if queued:
            self._outbox.wake()
        return True

    async def _recordings(self, where: Any, order: Any, limit: int) -> Sequence[tuple[int, str]]:
        """(call id, recording file) of calls matching `where`, in `order`. Each read has a
        partial index of its own (tables.py): it runs in the event loop."""
        async with self._inline.connect() as conn:  # a read: never waits in WAL mode
            rows = await conn.execute(
                select(calls.c.id, calls.c.recording)
                .where(calls.c.recording.is_not(None), where)
                .order_by(order)
                .limit(limit)
            )
            return [(row.id, row.recording) for row in rows]

    async def unconverted_recordings(
        self, after_id: int | None, limit: int
    ) -> Sequence[tuple[int, str]]:
        """Recordings still as Asterisk wrote them (WAV) of calls after `after_id`, in id order:
        the conversion queue reads only what is new since its last look."""
        where: ColumnElement[bool] = AS_RECORDED_WHERE
        if after_id is not None:
            where = where & (calls.c.id > after_id)
        return await self._recordings(where, calls.c.id, limit)

    async def recordings_before(self, before: float, limit: int) -> Sequence[tuple[int, str]]:
        """Recordings of calls that started before `before`: past the retention period."""
        return await self._recordings(calls.c.started_at < before, calls.c.started_at, limit)

    async def replace_recording(
        self,
        call_id: int,
        old: str,
        new: str | None,
        seconds: float | None = None,
        peaks: Sequence[int] | None = None,
    ) -> bool:
        """Point the call at its converted (or no longer kept) recording, if it still has `old`
        (or already `new`: a conversion run again after its COMMIT's answer was lost, whose
        source is then deleted all the same)."""
        return await self._in_loop(
            partial(self._replace_recording, call_id, old, new, seconds, peaks)
        )

    async def _replace_recording(
        self,
        call_id: int,
        old: str,
        new: str | None,
        seconds: float | None,
        peaks: Sequence[int] | None,
        engine: AsyncEngine,
    ) -> bool:
        async with engine.begin() as conn:
            result = await conn.execute(
                update(calls)
                .where(
                    calls.c.id == call_id,
                    calls.c.recording.in_([old, new]) if new else calls.c.recording == old,
                )
                .values(
                    recording=new,
                    recording_seconds=seconds,
                    recording_peaks=json.dumps(list(peaks)) if peaks is not None else None,
                )
            )
        return bool(result.rowcount)


def _columns(owner: CallOwner) -> dict[str, Any]:
    """The call's attribution columns: who it belongs to and the source it was matched to."""
    columns: dict[str, Any] = {
        "attribution": str(owner.attribution),
        "site": owner.site,
        "pool": owner.pool,
    }
    if owner.static is not None:
        columns |= {
            "source": owner.static.source,
            "medium": owner.static.medium,
            "campaign": owner.static.campaign,
        }
    if owner.holder is not None:
        facts = owner.holder.facts
        columns |= {
            **asdict(facts),  # each fact has a column of its name
            "session_id": owner.holder.session_id,
            "visitor_id": owner.holder.visitor_id,
            "click_ids": json.dumps(facts.click_ids),
        }
    return columns


@dataclass(frozen=True)
class _Heard:
    """What the page of calls has beside its rows: tags (which of them a keyword added), the
    keywords heard and the transcripts."""

    tags: dict[int, list[str]]
    automatic: dict[int, list[str]]
    keywords: dict[int, list[dict[str, Any]]]
    transcripts: dict[int, str]


async def _heard(conn: AsyncConnection, call_ids: Sequence[int]) -> _Heard:
    tags: dict[int, list[str]] = {}
    automatic: dict[int, list[str]] = {}
    if call_ids:
        rows = await conn.execute(
            select(call_tags.c.call_id, call_tags.c.tag, call_tags.c.automatic)
            .where(call_tags.c.call_id.in_(call_ids))
            .order_by(call_tags.c.tag)
        )
        for row in rows:
            tags.setdefault(row.call_id, []).append(row.tag)
            if row.automatic:
                automatic.setdefault(row.call_id, []).append(row.tag)
    return _Heard(
        tags,
        automatic,
        await keywords_of(conn, call_ids),
        await transcripts_of(conn, call_ids),
    )


def _public(row: dict[str, Any], heard: _Heard) -> dict[str, Any]:
    call_id = row["id"]
    row["click_ids"] = json.loads(row["click_ids"]) if row.get("click_ids") else {}
    row["recording_peaks"] = json.loads(row["recording_peaks"]) if row["recording_peaks"] else []
    row["tags"] = heard.tags.get(call_id, [])
    row["automatic_tags"] = heard.automatic.get(call_id, [])
    row["keywords"] = heard.keywords.get(call_id, [])
    row["transcript"] = heard.transcripts.get(call_id)
    return row


async def _unchanged(
    conn: AsyncConnection,
    call_id: int,
    now: Mapping[str, Any],
    columns: Mapping[str, Any],
    tags: Collection[str] | None,
) -> bool:
    """Whether the call already has every value `columns` and `tags` (None: not given) set."""
    if any(now[name] != value for name, value in columns.items()):
        return False
    if tags is None:
        return True
    held = await conn.scalars(select(call_tags.c.tag).where(call_tags.c.call_id == call_id))
    return set(held) == set(tags)


def _stands_for(column: ColumnElement[Any], value: str) -> ColumnElement[bool]:
    """The calls a source, medium or campaign filter finds: the value itself, or, for a value
    as long as a report's key (KEY_MAX characters: reports cut longer values there), every
    value it begins, so that a report row's link to the call log finds the row's calls."""
    if len(value) == KEY_MAX:
        return func.substr(column, 1, KEY_MAX) == value  # not LIKE: SQLite's ignores case
    return column == value
