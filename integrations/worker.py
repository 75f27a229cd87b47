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
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from integrations.compose import composer_for
from integrations.delivery import Composer, Outgoing, PendingEvent, Skip
from integrations.retry import next_try
from integrations.signing import HEADER, sign
from pbx.keys import CLOCK, DELIVERIES, ENGINE, METRICS, OUTBOX, SETTINGS
from pbx.metrics import Metrics
from pbx.settings import Settings
from pbx.storage.deliveries import Claimed, Deliveries

log = logging.getLogger(__name__)

POLL = 1.0  # seconds between looks for rows nobody woke us for
CONCURRENCY = 8  # deliveries in flight at once
LEASE_MARGIN = 15.0  # a claim outlives its request's timeout by this much
GA4_TIMEOUT = 10.0
DB_BACKOFF_MAX = 30.0  # seconds between claims while the database is down
SHUTDOWN_GRACE = 5.0  # in-flight deliveries may finish when the daemon stops


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
        self._hooks = {hook.name: hook for hook in settings.webhooks.targets}
        self._metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()
        self._limit = concurrency
        self._poll = poll
        self._lease = max([GA4_TIMEOUT, *(h.timeout for h in self._hooks.values())]) + LEASE_MARGIN
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
                            claimed = await self._deliveries.claim(free, self._lease)
                            db_failures = 0
                        except Exception:
                            db_failures += 1
                            pause = min(DB_BACKOFF_MAX, self._poll * 2**db_failures)
                            log.warning("outbox: cannot claim deliveries", exc_info=True)
                            await asyncio.sleep(pause)
                            continue
                        for row in claimed:
                            self._start(http, row)
                        if len(claimed) == free:
                            continue  # more may be due
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), self._poll)
            finally:
                if self._running:
                    await asyncio.wait(self._running, timeout=SHUTDOWN_GRACE)
                for task in self._running:
                    task.cancel()

    def _start(self, http: aiohttp.ClientSession, row: Claimed) -> None:
        task = asyncio.create_task(self._deliver(http, row), name=f"deliver-{row.event.id}")
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wakeup.set()  # a slot is free
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("delivery not recorded (tried again after its lease)", exc_info=error)

    async def _deliver(self, http: aiohttp.ClientSession, row: Claimed) -> None:
        event = row.event
        outgoing, secret = row.sent, self._secret(event.target) if row.signed else None
        if row.signed and secret is None:
            await self._deliveries.skipped(event.id, f"no webhook named {event.target!r} now")
            self._count(event, "skipped")
            return
        if outgoing is None:
            try:
                outgoing = await self._composer.compose(event)
            except Skip as skip:
                await self._deliveries.skipped(event.id, str(skip))
                self._count(event, "skipped")
                return
            except Exception as exc:
                log.exception("composing %s for %s", event.event_id, event.target)
                await self._failed_attempt(row, None, f"compose: {type(exc).__name__}: {exc}")
                return
            await self._deliveries.keep(event.id, outgoing)
            secret = outgoing.secret
        status, error = await self._post(http, event, outgoing, secret)
        if error is None and status is not None:
            now = self._clock()
            await self._deliveries.delivered(event.id, now, status)
            self._count(event, "delivered")
            self._metrics.delivery_latency.observe(max(0.0, now - event.created_at))
        else:
            await self._failed_attempt(row, status, error or "")

    async def _post(
        self,
        http: aiohttp.ClientSession,
        event: PendingEvent,
        outgoing: Outgoing,
        secret: str | None,
    ) -> tuple[int | None, str | None]:
        """(status, error): error None when the receiver took it (2xx)."""
        headers = {
            "Content-Type": "application/json",
            **outgoing.headers,
            "X-Calltrack-Event-Id": event.event_id,
            "X-Calltrack-Event": str(event.event),
        }
        if secret is not None:
            headers[HEADER] = sign(secret, outgoing.body, int(self._clock()))
        timeout = self._timeout(event.target)
        try:
            async with http.post(
                outgoing.url,
                data=outgoing.body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                if 200 <= response.status < 300:
                    return response.status, None
                said = (await response.content.read(200)).decode(errors="replace")
                return response.status, f"HTTP {response.status}: {said}".strip()
        except TimeoutError:
            return None, f"no answer within {timeout:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return None, f"{type(exc).__name__}: {exc}"

    async def _failed_attempt(self, row: Claimed, status: int | None, error: str) -> None:
        now = self._clock()
        event = row.event
        due = next_try(event.attempts + 1, now, row.give_up_at, self._rng)
        if due is None:
            await self._deliveries.failed(event.id, now, status, error)
            self._count(event, "failed")
            log.warning("gave up delivering %s to %s: %s", event.event_id, event.target, error)
        else:
            await self._deliveries.retry(event.id, now, status, error, due)
            self._count(event, "retried")

    def _secret(self, target: str) -> str | None:
        hook = self._hooks.get(target)
        return None if hook is None else hook.signing_secret

    def _timeout(self, target: str) -> float:
        hook = self._hooks.get(target)
        return GA4_TIMEOUT if hook is None else hook.timeout

    def _count(self, event: PendingEvent, outcome: str) -> None:
        self._metrics.deliveries.labels(event.target, outcome).inc()


async def delivery_worker(app: web.Application) -> AsyncIterator[None]:
    """The daemon's worker, when the config has any webhook or GA4 (pbx.app's cleanup context)."""
    settings = app[SETTINGS]
    app[DELIVERIES] = Deliveries(app[ENGINE], app[CLOCK])
    if not settings.webhooks.targets and settings.ga4 is None:
        yield
        return
    worker = DeliveryWorker(app[DELIVERIES], composer_for(app), settings, app[METRICS], app[CLOCK])
    app[OUTBOX].on_added(worker.wake)
    task = asyncio.create_task(worker.run(), name="webhook-deliveries")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
