"""Writes that may wait a moment: lease extensions far from expiry, last-seen times, page views.

Extending a lease that is far from expiring needs no round trip: it is acknowledged from the
process's cache and written here, in batches, because no other session can take the number
before the delayed write lands (see LeasePolicy.sync_margin). Flushes are serialised: two
batches in flight at once could land in either order and write an older `held_until` last.

On PostgreSQL a part whose COMMIT lost its connection may have landed or not; written again
blindly, its page views would be doubled. So each part records its number as its writer's last
(write_behind_progress), and such a part is written again only if that number is not there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Float, String, Text, bindparam, exists, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx.storage.db import Transactions, Tx, checkpoint, conflict_insert
from pbx.storage.errors import is_transient
from pbx.storage.number_claims import HeldNumber, new_id
from pbx.storage.tables import leases, numbers, page_views, sessions, write_behind_progress

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.2
CHECKPOINT_INTERVAL = 1.0  # SQLite: WAL into the database file (see db.checkpoint)
#: activity within this many seconds of what the database already has is held back (deferred)
#: for up to this long: a session pinged by several tabs, or many times a second, costs one
#: write per few seconds instead of one per ping. The deferred write always lands, and a lease
#: end's before the database's end comes near (see WriteBehind.extend); so the database lags
#: by at most this much, and only while the process runs (a crash loses what was deferred).
WRITE_STEP = 5.0
#: rows per transaction of a flush; the loop gets a turn between them, so that a flush of a
#: busy second's pings never holds it for more than a few milliseconds
ROWS_PER_TRANSACTION = 256
#: page views kept in memory for the database at most: while it is away they wait here, and
#: beyond this they are counted in their sessions, not kept (a URL is up to 1,024 characters:
#: this bounds the backlog near 200 MB at worst, 30 minutes of a busy site's views)
MAX_PENDING_PAGE_VIEWS = 50_000
#: how far apart the clocks of daemons sharing a database may be (NTP keeps them within
#: milliseconds): an extension is written behind only while its lease has this much time left
CLOCK_MARGIN = 1.0

#: a page view of a session that is gone (deleted by retention meanwhile) is dropped, not an error
_INSERT_PAGE_VIEW = insert(page_views).from_select(
    ["session_id", "at", "url"],
    select(
        bindparam("session_id", type_=String),
        bindparam("at", type_=Float),
        bindparam("u", type_=Text),
    ).where(exists().where(sessions.c.id == bindparam("session_id"))),
)
# Extensions only ever move a lease's end forward: a batch that lands after a newer synchronous
# extension (a ping near expiry, see VisitStore._renew) must not shorten the lease again.
_FLUSH_NUMBERS = (
    update(numbers)
    .where(
        numbers.c.number == bindparam("n"),
        numbers.c.lease_id == bindparam("l"),
        numbers.c.held_until < bindparam("h"),
    )
    .values(held_until=bindparam("h"))
)
# ... and only a lease whose number is still its own: the history must never show two leases of
# one number at once (see WriteBehind.flush for how an extension could outlive its lease)
_FLUSH_LEASES = (
    update(leases)
    .where(
        leases.c.id == bindparam("l"),
        leases.c.held_until < bindparam("h"),
        exists().where(
            numbers.c.number == bindparam("n"),
            numbers.c.lease_id == bindparam("l"),
            numbers.c.held_until >= bindparam("h"),
        ),
    )
    .values(last_activity=bindparam("a"), held_until=bindparam("h"))
)
_FLUSH_LAST_SEEN = (
    update(sessions).where(sessions.c.id == bindparam("s")).values(last_seen=bindparam("t"))
)
_RECORD_PART = (
    conflict_insert(write_behind_progress, postgres=True)
    .values(writer=bindparam("w"), part=bindparam("p"), written_at=bindparam("t"))
    .on_conflict_do_update(
        index_elements=[write_behind_progress.c.writer],
        set_={"part": bindparam("p"), "written_at": bindparam("t")},
    )
)
_LAST_PART = select(write_behind_progress.c.part).where(
    write_behind_progress.c.writer == bindparam("w")
)
_FLUSH_VIEWED = (
    update(sessions)
    .where(sessions.c.id == bindparam("s"))
    .values(pages_viewed=sessions.c.pages_viewed + bindparam("c"), last_url=bindparam("u"))
)


@dataclass
class _Pending:
    #: lease id -> (the cached lease, its number, activity time, new held_until)
    extensions: dict[str, tuple[HeldNumber, str, float, float]] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)
    page_views: list[tuple[str, float, str]] = field(default_factory=list)
    #: session id -> (pages viewed, the last one's URL); also pages past the kept ones
    viewed: dict[str, tuple[int, str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.extensions or self.last_seen or self.viewed)

    def parts(self, rows: int) -> Iterator[_Pending]:
        """The batch in parts of at most `rows` rows of each kind, extensions first: each part
        is one transaction, so what landed stays landed when a later part fails."""
        extensions = list(self.extensions.items())
        last_seen = list(self.last_seen.items())
        viewed = list(self.viewed.items())
        longest = max(len(extensions), len(last_seen), len(self.page_views), len(viewed))
        for start in range(0, longest, rows):
            end = start + rows
            yield _Pending(
                dict(extensions[start:end]),
                dict(last_seen[start:end]),
                self.page_views[start:end],
                dict(viewed[start:end]),
            )

    def drop_lapsed(self, until: float) -> None:
        """Drop the extensions of leases the database holds no longer than `until`.

        An extension is handed over while its lease has time left (LeasePolicy.sync_margin),
        and written within a fraction of a second; but while the database is away it waits,
        put back after each failed flush, and the lease may run out meanwhile: another session
        may have taken the number by the time it lands. Neither written nor confirmed, it
        leaves the lease as the database has it, and the session's next ping goes to the
        database (VisitStore._renew), which extends it or leases again."""
        for lease_id, (held, *_write) in list(self.extensions.items()):
            if held.confirmed_until < until:
                del self.extensions[lease_id]

    def merge_older(self, older: _Pending) -> None:
        """Put back a batch that could not be written, under what came since."""
        for key, value in older.extensions.items():
            self.extensions.setdefault(key, value)
        for key, at in older.last_seen.items():
            self.last_seen.setdefault(key, at)
        self.page_views[:0] = older.page_views
        for key, (count, url) in older.viewed.items():
            newer = self.viewed.get(key)
            self.viewed[key] = (count + newer[0], newer[1]) if newer else (count, url)


class WriteBehind:
    def __init__(
        self, engine: AsyncEngine, transactions: Transactions, clock: Callable[[], float]
    ) -> None:
        self._engine = engine
        self._transactions = transactions
        self._clock = clock
        self._pending = _Pending()
        #: held back until their time comes (see WRITE_STEP): key -> (when due, the write), in
        #: the order they fall due (each is due WRITE_STEP after it was first held back)
        self._deferred_extensions: OrderedDict[
            str, tuple[float, tuple[HeldNumber, str, float, float]]
        ] = OrderedDict()
        self._deferred_seen: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = asyncio.Lock()
        self._postgres = engine.dialect.name == "postgresql"
        self._writer_id = new_id()  # this process's parts, numbered (PostgreSQL)
        self._parts = 0
        #: a part whose transaction failed on PostgreSQL, and its number: it may have committed
        self._unsure: tuple[int, _Pending] | None = None
        #: flushes under way, kept here: the event loop keeps only a weak reference to a task
        self._flushing: set[asyncio.Future[None]] = set()
        self._wakeup = asyncio.Event()
        self.last_ok = clock()

    def extend(self, held: HeldNumber, now: float, held_until: float) -> None:
        """Move a lease's end forward. When the database's end is within WRITE_STEP of the
        new one, the write is deferred for WRITE_STEP; not when the database's end is less than
        two steps away (the deferred write must land while the number is still held)."""
        lease_id = held.lease_id
        assert lease_id is not None and held.number is not None
        write = (held, held.number, now, held_until)
        if (
            lease_id in self._pending.extensions
            or held_until >= held.confirmed_until + WRITE_STEP
            or held.confirmed_until < now + 2 * WRITE_STEP
        ):
            self._pending.extensions[lease_id] = write
            self._deferred_extensions.pop(lease_id, None)
            self._wakeup.set()
            return
        earlier = self._deferred_extensions.get(lease_id)
        self._deferred_extensions[lease_id] = (earlier[0] if earlier else now + WRITE_STEP, write)

    def seen(self, session_id: str, now: float, written: float) -> bool:
        """The session's latest activity; `written` is the last one handed over. True when
        handed over now; within WRITE_STEP of it, it is deferred until WRITE_STEP after it."""
        if session_id not in self._pending.last_seen and now < written + WRITE_STEP:
            earlier = self._deferred_seen.get(session_id)
            self._deferred_seen[session_id] = (earlier[0] if earlier else now + WRITE_STEP, now)
            return False
        self._pending.last_seen[session_id] = now
        self._deferred_seen.pop(session_id, None)
        self._wakeup.set()
        return True

    def _take_deferred(self, everything: bool) -> None:
        """Move the deferred writes whose time has come (all of them: `everything`) into
        the pending batch."""
        now = self._clock()
        extensions, seen = self._deferred_extensions, self._deferred_seen
        while extensions and (everything or extensions[next(iter(extensions))][0] <= now):
            key, (_due, extension) = extensions.popitem(last=False)
            self._pending.extensions.setdefault(key, extension)
        while seen and (everything or seen[next(iter(seen))][0] <= now):
            key, (_due, at) = seen.popitem(last=False)
            self._pending.last_seen.setdefault(key, at)

    def views_backlog_full(self) -> bool:
        """Whether MAX_PENDING_PAGE_VIEWS page views wait for the database already."""
        return len(self._pending.page_views) >= MAX_PENDING_PAGE_VIEWS

    def viewed(self, session_id: str, now: float, url: str, *, keep: bool) -> None:
        """A page view: counted always, its row kept only while the session is under its cap."""
        if keep:
            self._pending.page_views.append((session_id, now, url))
        count, _url = self._pending.viewed.get(session_id, (0, url))
        self._pending.viewed[session_id] = (count + 1, url)
        self._wakeup.set()

    async def run(self) -> None:
        """Write the batches, forever.

        On SQLite also checkpoint the WAL every CHECKPOINT_INTERVAL: transactions commit in the
        event loop with automatic checkpoints off, so that their fsync happens in aiosqlite's
        thread. Also while no visitor comes: calls are written meanwhile, and a WAL that is
        never checkpointed grows until the disk is full.
        """
        checkpointed = time.monotonic()
        while True:
            # at least every CHECKPOINT_INTERVAL, for the checkpoint and the deferred writes
            # asyncio.timeout, not wait_for: on Python 3.11 a wait_for whose event is set as the
            # flusher is cancelled (pings set it all the time) drops the cancellation, and the
            # daemon stopping waited for the flusher forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CHECKPOINT_INTERVAL):
                    await self._wakeup.wait()
            if self._wakeup.is_set() or self._deferred_extensions or self._deferred_seen:
                await asyncio.sleep(FLUSH_INTERVAL)
                self._wakeup.clear()
                try:
                    await self.flush(everything=False)
                except Exception as error:  # transient: flush() drops what is refused for good
                    # the database's state is logged once by its health (storage.health)
                    log.debug("lease extensions not written (%s); retrying", error)
                    await asyncio.sleep(1.0)
                    self._wakeup.set()
                    continue
            if time.monotonic() - checkpointed >= CHECKPOINT_INTERVAL:
                checkpointed = time.monotonic()
                try:
                    await checkpoint(self._engine)
                except Exception as error:
                    if not is_transient(error):
                        log.exception("could not checkpoint the database; will try again")
                    else:  # full or away: its writers' failures say so (storage.health)
                        log.debug("checkpoint not done (%s); will try again", error)

    async def flush(self, *, everything: bool = True) -> None:
        """Write what is pending, and what was deferred (only what is due: not `everything`);
        one flush at a time, in the order they were asked for.

        Finished even when its caller is cancelled (the daemon stopping, a wait_for around a
        call's routing, which flushes before it reads the lease history): a flush takes its
        batch out of the pending one, so stopped halfway it lost the parts it had not written,
        lease extensions among them. The daemon's last flush waits for it (the lock).
        """
        flushing = asyncio.ensure_future(self._flush(everything))
        self._flushing.add(flushing)
        flushing.add_done_callback(self._flushing.discard)
        # its outcome is read here, or, when this is cancelled, by nobody: say it was seen
        flushing.add_done_callback(_outcome_seen)
        await asyncio.shield(flushing)

    async def _flush(self, everything: bool) -> None:
        """See flush.

        The batch is written in parts (see _Pending.parts). What the database cannot take just
        now is put back and the error raised (the caller retries); a part it refuses for good
        is logged and dropped, so that it cannot block every later write, and call attribution
        with them. Dropping is safe for the leases: a lease
        whose extension was not written is confirmed no further, so its next ping near expiry
        goes to the database.
        """
        async with self._lock:
            await self._settle_unsure()
            self._take_deferred(everything)
            pending, self._pending = self._pending, _Pending()
            pending.drop_lapsed(self._clock() + CLOCK_MARGIN)
            parts = list(pending.parts(ROWS_PER_TRANSACTION))
            for done, part in enumerate(parts):
                if done:
                    await asyncio.sleep(0)  # requests that came meanwhile go first
                self._parts += 1
                progress = (
                    {"w": self._writer_id, "p": self._parts, "t": self._clock()}
                    if self._postgres
                    else None
                )
                try:
                    await self._transactions.run(_writer(part, progress))
                except Exception as error:
                    if is_transient(error):
                        # SQLite's outcome is known (rolled back); PostgreSQL's may not be
                        unwritten = _Pending()
                        for rest in reversed(parts[done + 1 if self._postgres else done :]):
                            unwritten.merge_older(rest)
                        self._pending.merge_older(unwritten)
                        if self._postgres:
                            self._unsure = (self._parts, part)
                        raise
                    log.exception(
                        "dropped a write-behind part the database refuses: %d lease"
                        " extensions, %d last-seen times, %d page views",
                        len(part.extensions),
                        len(part.last_seen),
                        len(part.page_views),
                    )
                    continue
                _confirm(part)
            self.last_ok = self._clock()

    async def _settle_unsure(self) -> None:
        """A part whose transaction failed on PostgreSQL landed if its number is its writer's
        last; if not, it is put back under what came since (nothing was written after it)."""
        if self._unsure is None:
            return
        number, part = self._unsure
        last = await self._transactions.run(
            lambda tx: tx.scalar(_LAST_PART, {"w": self._writer_id})
        )
        self._unsure = None
        if last == number:
            log.info("a write-behind part whose commit was not acknowledged had landed")
            _confirm(part)
        else:
            self._pending.merge_older(part)


def _confirm(part: _Pending) -> None:
    """The part's lease extensions are in the database: pings within them need not wait."""
    for lease_id, (held, _number, _at, held_until) in part.extensions.items():
        if held.lease_id == lease_id:
            held.confirmed_until = max(held.confirmed_until, held_until)


def _outcome_seen(task: asyncio.Future[None]) -> None:
    """A flush raises only what passes by itself (it logs and drops what the database refuses
    for good), after putting the batch back: nothing is left to report."""
    if not task.cancelled():
        task.exception()


def _writer(pending: _Pending, progress: dict[str, Any] | None) -> Callable[[Tx], None]:
    extensions = [
        {"l": lease_id, "n": number, "a": at, "h": held_until}
        for lease_id, (_held, number, at, held_until) in pending.extensions.items()
    ]
    last_seen = [{"s": s, "t": t} for s, t in pending.last_seen.items()]
    views = [{"session_id": s, "at": at, "u": u} for s, at, u in pending.page_views]
    viewed = [{"s": s, "c": c, "u": u} for s, (c, u) in pending.viewed.items()]

    def write(tx: Tx) -> None:
        for statement, rows in (
            (_FLUSH_NUMBERS, extensions),
            (_FLUSH_LEASES, extensions),
            (_FLUSH_LAST_SEEN, last_seen),
            (_INSERT_PAGE_VIEW, views),
            (_FLUSH_VIEWED, viewed),
        ):
            if rows:
                tx.run_many(statement, rows)
        if progress is not None:
            tx.run(_RECORD_PART, progress)

    return write
