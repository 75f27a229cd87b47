"""The daemon's link to Asterisk: the FastAGI router and the AMI bridge, with reconciliation.

Every call ends up stored exactly once: the AMI bridge reports calls as they end, and after every
(re)connection the calls that ended while the link (or the daemon) was down are read back from
Asterisk's CDR file, as they are every `asterisk.reconcile_every` while the link is up; the store
is idempotent on Linkedid, so both paths may report a call.
Several daemons on one PostgreSQL take turns following AMI (pbx.ami_role); all serve FastAGI. Both
hand their reports to one ReportDelivery: a database outage is waited out, a report the database
refuses for good is logged, counted (calltrack_call_reports_rejected) and skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ami_bridge import AmiBridge, ReportDelivery, StoreReport
from ami_bridge.reconcile import reconcile_pass
from attribution.calls import CallReport
from dialplan.agi import start_agi_server
from pbx.ami_role import AmiConsumerLock, consume_when_elected
from pbx.keys import CALLS, CLOCK, ENGINE, METRICS, PBX_LINK, RECORDINGS, SETTINGS, PbxLink
from pbx.metrics import Metrics
from pbx.settings import Settings
from pbx.storage.calls import CallStore
from pbx.storage.cdr_positions import CdrPositions
from pbx.storage.db import is_sqlite
from pbx.storage.errors import is_transient, log_failure
from pbx.storage.tables import calls, sessions
from pbx.tasks import cancel_and_wait
from pbx.watchdog import LoopWatchdog

log = logging.getLogger(__name__)

RECONCILE_OVERLAP = 3600.0  # look back this far before the gap: re-reading is harmless
#: a CDR file written to this recently may hold part of a call (a row per channel, written as
#: each ends): its last call is read a pass later (ami_bridge.reconcile.reconcile_pass)
CDR_SETTLE = 1.0
SETTLE_WAITS = 3  # waits for it in one reconciliation, at most
#: at shutdown, how long calls already folded may still take to be stored (the database away)
REPORTS_GRACE = 5.0


def call_recorder(
    store: CallStore, metrics: Metrics, clock: Callable[[], float], on_stored: Callable[[], None]
) -> StoreReport:
    """Stores a finished call and counts it by status and attribution, if it is new."""

    async def record(report: CallReport) -> bool:
        attribution = await store.store(report)
        if attribution is None:
            metrics.call_reports_duplicate.inc()
            return False
        metrics.calls.labels(report.status, attribution).inc()
        metrics.call_store_latency.observe(max(0.0, clock() - report.ended_at))
        on_stored()
        return True

    return record


async def reconcile_missed(
    settings: Settings,
    engine: AsyncEngine,
    deliver: ReportDelivery,
    clock: Callable[[], float],
    lost_at: float | None,
    settle: float = CDR_SETTLE,
) -> int:
    """Store the calls that ended while nobody listened (the link or the daemon was down), each
    through `deliver` like a live one; returns how many were new. A call Asterisk may still be
    writing (the file written less than `settle` seconds ago) is read `settle` seconds later;
    if the file is still being written after SETTLE_WAITS waits, the last call is left for the
    next reconciliation (the periodic one, or the next login's), never read half.

    The CDR file is read from where the last pass stopped, in capped passes (each in a thread)
    until it is caught up; each pass's position is kept once its calls are stored, so a daemon
    stopped mid-way goes on from there."""
    if settings.asterisk is None or settings.asterisk.cdr_csv is None:
        return 0
    since = lost_at
    if since is None:  # daemon start: since the last stored call, or since tracking began
        async with engine.connect() as conn:
            since = await conn.scalar(select(func.max(calls.c.ended_at)))
            if since is None:
                since = await conn.scalar(select(func.min(sessions.c.started_at)))
    # a first start does not import the PBX's whole history, only the last hour
    since = (since if since is not None else clock()) - RECONCILE_OVERLAP
    path = str(settings.asterisk.cdr_csv)
    positions = CdrPositions(engine, clock)
    saved = await positions.load(path)
    position, kept_at = saved if saved is not None else (None, None)
    if kept_at is not None:
        # the rows after the kept position were never read: their calls count whenever they
        # ended, not only since the newest stored call (live calls went on being stored while
        # passes failed, e.g. on a Master.csv logrotate made unreadable, for a day)
        since = min(since, kept_at - RECONCILE_OVERLAP)
    stored = reported = waits = 0
    while True:
        step = await asyncio.to_thread(reconcile_pass, settings, since, position, settle=settle)
        for report in step.reports:
            stored += await deliver(report)
        reported += len(step.reports)
        if step.position is not None and step.position != position:
            # a file it could not read keeps the earlier time: its rows, read once it can be,
            # count back to then (a day of calls missed over AMI behind a logrotate's mode)
            await positions.save(path, step.position, kept_at if step.unreadable else None)
            position = step.position
        if step.settling and waits < SETTLE_WAITS:  # a call Asterisk was writing: read it
            waits += 1  # once it is written
            await asyncio.sleep(settle)
        elif step.caught_up:
            # caught up; or still being written after SETTLE_WAITS waits (a busy PBX's file
            # always is): its last call is left, unread, for the next reconciliation
            break
    if stored:
        log.info(
            "reconciled %d call(s) from the CDR that AMI did not report (%d not new)",
            stored,
            reported - stored,
        )
    return stored


class Reconciler:
    """Runs reconciliation passes one at a time: after every AMI login, and every
    `asterisk.reconcile_every` while this daemon follows AMI and the link is up, so the stored CDR
    position stays fresh on a link that lasts for months and a rotation between two connections
    is followed. Each periodic pass looks for calls since the previous pass began."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        deliver: ReportDelivery,
        clock: Callable[[], float],
    ) -> None:
        self._settings, self._engine, self._deliver, self._clock = settings, engine, deliver, clock
        self._lock = asyncio.Lock()
        self._last: float | None = None  # when the last pass began

    async def after_login(self, lost_at: float | None) -> None:
        # since the link was lost, or since the last pass began if that is earlier: a call left
        # to the CDR (its events did not tell its status) may have ended between the two
        since = lost_at if lost_at is None or self._last is None else min(lost_at, self._last)
        try:
            await self._pass(since)
        except Exception as error:  # the next pass reads from the same position
            log_failure(log, "reconciliation from the CDR failed", error)

    async def run_periodic(self, link: PbxLink, every: float) -> None:
        """Runs until cancelled; passes only while `link` follows AMI and is logged in."""
        while True:
            await asyncio.sleep(every)
            if link.ami is None or not link.ami.connected:
                continue
            try:
                await self._pass(self._last)
            except Exception as error:  # the database is away: the next pass goes on from there
                log_failure(log, "periodic CDR reconciliation failed", error)

    async def _pass(self, since: float | None) -> None:
        async with self._lock:
            began = self._clock()
            await reconcile_missed(self._settings, self._engine, self._deliver, self._clock, since)
            self._last = began


async def pbx_link(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.asterisk is None:
        yield
        return
    store = app[CALLS]
    metrics = app[METRICS]
    clock = app[CLOCK]
    deliver = ReportDelivery(
        call_recorder(store, metrics, clock, app[RECORDINGS].call_stored),
        is_transient,
        lambda _report: metrics.call_reports_rejected.inc(),
    )

    reconciler = Reconciler(settings, app[ENGINE], deliver, clock)

    def new_bridge() -> AmiBridge:
        return AmiBridge(settings, deliver, reconciler.after_login)

    link = app[PBX_LINK]
    watchdog = LoopWatchdog(settings.asterisk.agi.exit_on_stall).start()
    consumer: asyncio.Task[None] | None = None
    if is_sqlite(settings.database):  # one daemon by design: it follows AMI
        link.ami = new_bridge()
        link.ami.start()
    else:  # several daemons may share the database: one follows AMI at a time
        elected = consume_when_elected(AmiConsumerLock(settings.database), new_bridge, link)
        consumer = asyncio.create_task(elected, name="ami-role")
    periodic = asyncio.create_task(
        reconciler.run_periodic(link, settings.asterisk.reconcile_every), name="cdr-reconcile"
    )
    link.agi = agi = await start_agi_server(settings, store.route)
    try:
        yield
    finally:
        await cancel_and_wait(periodic)
        agi.close()
        await agi.wait_closed()
        if consumer is not None:
            await cancel_and_wait(consumer)
        elif link.ami is not None:
            await link.ami.close()
        await deliver.finish(REPORTS_GRACE)
        watchdog.cancel()
