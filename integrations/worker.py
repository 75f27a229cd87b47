"""The delivery worker: claims due outbox rows, composes (once), signs, POSTs, retries.

Woken by the outbox right after an event's commit, so a receiver that is up gets a call within
moments of its storing; it also polls every POLL seconds, for rows another daemon wrote and
retries that came due. A few deliveries run at once on one HTTP session, each bounded by its
target's timeout, which is shorter than the claim's lease: a row is never sent by two workers
at once. Neither a receiver's outage nor the database's stops the loop: it logs, backs off and
goes on; an attempt whose outcome could not be written is tried again when its lease ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, NamedTuple

import aiohttp
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from integrations.compose import composer_for, configured_targets
from integrations.delivery import Composer, Destination, Lookup, PendingEvent, Skip
from integrations.events import GA4_TARGET
from integrations.ga4 import GA4_TIMEOUT, past_its_window
from integrations.retry import DEFAULT, asked_wait, next_try
from integrations.signing import HEADER, sign
from pbx.keys import CLOCK, DELIVERIES, ENGINE, METRICS, OUTBOX, SETTINGS
from pbx.metrics import Metrics
from pbx.settings import Settings
from pbx.storage.deliveries import (
    Claimed,
    Deliveries,
    Kept,
    forget_settled_before,
    skip_targets_gone,
)
from pbx.storage.errors import log_failure
from pbx.storage.retention import every_hour
from pbx.tasks import cancel_and_wait

log = logging.getLogger(__name__)

POLL = 1.0  # seconds between looks for rows nobody woke us for
CONCURRENCY = 8  # deliveries in flight at once
#: deliveries in flight to one target: a receiver that hangs holds at most these slots, and the
#: other targets' events go on (a backlog for a dead CRM must not delay GA4 or another hook)
PER_TARGET = 3
LEASE_MARGIN = 15.0  # a claim outlives its request's timeout by this much
#: the longest a receiver's Retry-After keeps its target's other events back (in this daemon)
PAUSE_CAP = DEFAULT.cap
DB_BACKOFF_MAX = 30.0  # seconds between claims while the database is down
SHUTDOWN_GRACE = 5.0
MAX_LOOKUP_ANSWER = 1 << 20  # bytes of a lookup's answer read: a few leads' ids, with room
#: seconds after an attempt before a lookup may say it made nothing: a receiver (Bitrix24's PHP)
#: goes on with a request its client gave up on, and makes the lead after the answer was lost
LOOKUP_SETTLE = 120.0
RETENTION_FIRST_RUN, RETENTION_INTERVAL = (
    60.0,
    3600.0,
)  # in-flight deliveries may finish when the daemon stops


class DeliveryWorker:
    def __init__(
        self,
        deliveries: Deliveries,
        composer: Composer,
        settings: Settings,
        metrics: Metrics,
        clock: Callable[[], float],
        *,
        rng: random.Random | None = None,
        concurrency: int = CONCURRENCY,
        poll: float = POLL,
    ) -> None:
        self._deliveries = deliveries
        self._composer = composer
        self._metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()
        self._limit = concurrency
        self._poll = poll
        timeouts = [GA4_TIMEOUT, *(hook.timeout for hook in settings.webhooks.targets)]
        self._lease = max(timeouts) + LEASE_MARGIN
        self._in_flight: Counter[str] = Counter()
        #: target -> when its Retry-After ends: none of its events is claimed before (each
        #: would be refused the same, and cost an attempt)
        self._paused: dict[str, float] = {}
        self._wakeup = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """Events were committed: look for them now rather than at the next poll."""
        self._wakeup.set()

    async def run(self) -> None:
        db_failures = 0
        async with aiohttp.ClientSession(headers={"User-Agent": "calltrack"}) as http:
            try:
                while True:
                    self._wakeup.clear()
                    free = self._limit - len(self._running)
                    if free > 0:
                        try:
                            busy = self._busy_targets()
                            claimed = await self._deliveries.claim(
                                free, self._lease, self._composer.targets(), busy
                            )
                            db_failures = 0
                        except Exception as error:
                            db_failures += 1
                            pause = min(DB_BACKOFF_MAX, self._poll * 2**db_failures)
                            log_failure(log, "outbox: cannot claim deliveries", error)
                            await asyncio.sleep(pause)
                            continue
                        for row in self._within_share(claimed):
                            self._start(http, row)
                        if len(claimed) == free:
                            continue  # more may be due
                    # not wait_for, which can drop a cancellation (pbx.storage.write_behind.run)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._poll):
                            await self._wakeup.wait()
            finally:
                if self._running:
                    await asyncio.wait(self._running, timeout=SHUTDOWN_GRACE)
                for task in self._running:
                    task.cancel()

    def _busy_targets(self) -> set[str]:
        """The targets not to claim for now: those with their share of the slots in flight,
        and those whose receiver asked to wait (Retry-After) until later."""
        now = self._clock()
        self._paused = {t: until for t, until in self._paused.items() if until > now}
        full = {t for t, n in self._in_flight.items() if n >= PER_TARGET}
        return full | set(self._paused)

    def _within_share(self, claimed: list[Claimed]) -> list[Claimed]:
        """The claimed rows a target's share of the slots allows; the rest are let go at once
        (their claims are released: another pass, or another daemon, takes them)."""
        taken, over = [], []
        counts = Counter(self._in_flight)
        for row in claimed:
            if counts[row.event.target] < PER_TARGET:
                counts[row.event.target] += 1
                taken.append(row)
            else:
                over.append(row)
        for row in over:
            self._start_task(self._deliveries.release(row), row)
        return taken

    def _start(self, http: aiohttp.ClientSession, row: Claimed) -> None:
        self._in_flight[row.event.target] += 1
        task = self._start_task(self._deliver(http, row), row)
        task.add_done_callback(lambda _: self._in_flight.subtract([row.event.target]))

    def _start_task(self, work: Coroutine[Any, Any, None], row: Claimed) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=f"deliver-{row.event.id}")
        self._running.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wakeup.set()  # a slot is free
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("delivery not recorded (tried again after its lease)", exc_info=error)

    async def _deliver(self, http: aiohttp.ClientSession, row: Claimed) -> None:
        event = row.event
        where = self._composer.destination(event.target)
        if where is None:  # the target left the config since the event was written
            await self._deliveries.skipped(row, f"no target named {event.target!r} now")
            self._count(event, "skipped")
            return
        kept = row.kept
        if (
            kept is not None
            and event.target == GA4_TARGET
            and past_its_window(kept.body, self._clock())
        ):
            await self._deliveries.skipped(row, "the call is older than the 72 h GA4 takes")
            self._count(event, "skipped")
            return
        if kept is None:
            try:
                outgoing = await self._composer.compose(event)
            except Skip as skip:
                await self._deliveries.skipped(row, str(skip))
                self._count(event, "skipped")
                return
            except Exception as exc:
                log.exception("composing %s for %s", event.event_id, event.target)
                await self._failed_attempt(row, None, f"compose: {failure_text(exc)}")
                return
            kept = Kept(outgoing.body, outgoing.headers)
        first = kept if row.kept is None else None  # kept with the claim: retries send it
        # an earlier claim kept the request before sending it: it may have arrived
        lookup = self._composer.lookup(event) if first is None else None
        if lookup is not None and (sent := self._last_sent(row)) is not None:
            settled = sent + LOOKUP_SETTLE
            if self._clock() < settled:  # the receiver may still be working on that request
                await self._deliveries.postpone(row, settled)
                return
        renewed = await self._renewed(row, first)
        if renewed is None:
            return
        row = renewed
        if lookup is not None:
            made, error, wait = await self._look_up(http, where, lookup)
            if error is not None:
                text = f"looking up an earlier attempt: {error}"
                await self._failed_attempt(row, None, text, wait)
                return
            if made is not None:
                note = f"{made} made by an earlier attempt (its answer was lost), not sent again"
                log.info("%s for %s: %s", event.event_id, event.target, note)
                await self._delivered(row, None, note)
                return
            renewed = await self._renewed(row, None)  # the POST gets a whole lease too
            if renewed is None:
                return
            row = renewed
        answer = await self._post(http, event, where, kept)
        if answer.error is None and answer.status is not None:
            await self._delivered(row, answer.status, None)
        else:
            await self._failed_attempt(row, answer.status, answer.error or "", answer.retry_after)

    async def _delivered(self, row: Claimed, status: int | None, note: str | None) -> None:
        now = self._clock()
        await self._deliveries.delivered(row, now, status, note)
        self._count(row.event, "delivered")
        self._metrics.delivery_latency.observe(max(0.0, now - row.event.created_at))

    @staticmethod
    def _last_sent(row: Claimed) -> float | None:
        """Until when an earlier attempt's request may have been on its way: when its outcome
        was written, or, if its claim ran out first, when that claim's lease ended (its length
        was the daemon's then, so not subtracted)."""
        times = [t for t in (row.last_attempt_at, row.lapsed_lease) if t is not None]
        return max(times, default=None)

    async def _renewed(self, row: Claimed, first: Kept | None) -> Claimed | None:
        """The claim extended for one request (keeping `first`, the request composed now);
        None when its lease ran out meanwhile: another worker may be sending it."""
        renewed = await self._deliveries.renew(row, self._clock() + self._lease, first)
        if renewed is None:
            log.warning(
                "%s for %s: claim lost before sending, left to its new holder",
                row.event.event_id,
                row.event.target,
            )
        return renewed

    async def _post(
        self, http: aiohttp.ClientSession, event: PendingEvent, where: Destination, kept: Kept
    ) -> _Answer:
        """The receiver's answer: its error None when it took the event (2xx)."""
        headers = {
            "Content-Type": "application/json",
            **kept.headers,
            "X-Calltrack-Event-Id": event.event_id,
            "X-Calltrack-Event": str(event.event),
        }
        if where.secret is not None:
            headers[HEADER] = sign(where.secret, kept.body, int(self._clock()))
        return await _exchange(http, where, where.url, kept.body, headers, 0)

    async def _look_up(
        self, http: aiohttp.ClientSession, where: Destination, lookup: Lookup
    ) -> tuple[str | None, str | None, str | None]:
        """(what an earlier attempt made, error, the refusal's Retry-After): the first two None
        when it made nothing."""
        headers = {"Content-Type": "application/json"}
        answer = await _exchange(http, where, lookup.url, lookup.body, headers, MAX_LOOKUP_ANSWER)
        if answer.error is not None:
            return None, answer.error, answer.retry_after
        try:
            return lookup.made(answer.body), None, None
        except ValueError as exc:
            return None, failure_text(exc), None

    async def _failed_attempt(
        self, row: Claimed, status: int | None, error: str, retry_after: str | None = None
    ) -> None:
        """The attempt's outcome written: tried again later (no sooner than a Retry-After the
        receiver sent asks), or failed past the row's give-up time."""
        now = self._clock()
        event = row.event
        wait = asked_wait(retry_after, now)
        due = next_try(event.attempts + 1, now, row.give_up_at, self._rng, asked_wait=wait)
        if wait is not None:
            # at most the backoff's cap: a maintenance page's week-long Retry-After must not
            # hold every other event of the target, unseen and out of the admin's reach
            pause = now + min(wait, PAUSE_CAP)
            self._paused[event.target] = max(self._paused.get(event.target, 0.0), pause)
            past = " past the end of retry_for" if due is None else ""
            error = f"{error} (asked to wait {wait:g} s: Retry-After{past})"
        if due is None:
            await self._deliveries.failed(row, now, status, error)
            self._count(event, "failed")
            log.warning("gave up delivering %s to %s: %s", event.event_id, event.target, error)
        else:
            await self._deliveries.retry(row, now, status, error, due)
            self._count(event, "retried")

    def _count(self, event: PendingEvent, outcome: str) -> None:
        self._metrics.deliveries.labels(event.target, outcome).inc()


_URL_PATH = re.compile(r"(https?://[^/\s'\"]+)/[^\s'\"]*")


def failure_text(exc: BaseException) -> str:
    """An exception as the deliveries page and the log show it, with any URL cut to its scheme
    and host: aiohttp names the URL in some errors, and Bitrix24's (and GA4's) carry their keys."""
    return _URL_PATH.sub(r"\1/…", f"{type(exc).__name__}: {exc}")


class _Answer(NamedTuple):
    """What one POST came back with."""

    status: int | None  # None: no answer
    body: bytes  # up to the asked bytes of a 2xx answer
    error: str | None  # a non-2xx answer (its first 200 bytes), no answer, or a failure
    retry_after: str | None = None  # a non-2xx answer's Retry-After header, as sent


async def _exchange(
    http: aiohttp.ClientSession,
    where: Destination,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    read: int,
) -> _Answer:
    """One POST within the target's timeout, reading up to `read` bytes of a 2xx answer."""
    try:
        async with http.post(
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=where.timeout),
            allow_redirects=False,
        ) as response:
            if 200 <= response.status < 300:
                return _Answer(response.status, await _read_up_to(response.content, read), None)
            said = (await response.content.read(200)).decode(errors="replace")
            error = f"HTTP {response.status}: {said}".strip()
            return _Answer(response.status, b"", error, response.headers.get("Retry-After"))
    except TimeoutError:
        return _Answer(None, b"", f"no answer within {where.timeout:g} s")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return _Answer(None, b"", failure_text(exc))


async def _read_up_to(content: aiohttp.StreamReader, limit: int) -> bytes:
    """The body, or its first `limit` bytes (read() returns what has arrived, not all of it)."""
    parts: list[bytes] = []
    size = 0
    while size < limit and (part := await content.read(limit - size)):
        parts.append(part)
        size += len(part)
    return b"".join(parts)


async def delivery_worker(app: web.Application) -> AsyncIterator[None]:
    """The daemon's worker, when the config has any webhook or GA4, and the retention of
    settled deliveries (pbx.app's cleanup context)."""
    settings = app[SETTINGS]
    app[DELIVERIES] = Deliveries(app[ENGINE], app[CLOCK])
    targets = configured_targets(settings)
    tasks = [
        asyncio.create_task(
            _deliveries_upkeep(app[ENGINE], settings.webhooks.keep_days, app[CLOCK], targets),
            name="delivery-upkeep",
        )
    ]
    if settings.webhooks.targets or settings.ga4 is not None:
        composer = composer_for(app)
        worker = DeliveryWorker(app[DELIVERIES], composer, settings, app[METRICS], app[CLOCK])
        app[OUTBOX].on_added(worker.wake)
        tasks.append(asyncio.create_task(worker.run(), name="webhook-deliveries"))
    yield
    await cancel_and_wait(*tasks)


async def _deliveries_upkeep(
    engine: AsyncEngine, keep_days: int, clock: Callable[[], float], targets: frozenset[str]
) -> None:
    """Hourly: deliveries to targets gone from the config are skipped once past their retry
    window, and settled deliveries past `webhooks.keep_days` go, with the caller details their
    bodies hold."""

    async def upkeep() -> int:
        if skipped := await skip_targets_gone(engine, targets, clock()):
            log.warning("%d deliveries skipped: their target is no longer in the config", skipped)
        return await forget_settled_before(engine, clock() - keep_days * 86400.0)

    await every_hour(upkeep, f"deliveries settled over {keep_days} days ago")
