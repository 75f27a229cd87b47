"""A daemon that steps down from AMI (on PostgreSQL its consumer lock goes with the database
connection, as when the database restarts) still stores the calls it had already folded, and
one that stops gives them a few seconds, then names them for reconciliation from the CDR. It
stops following before another daemon may start, and a holder that cannot log in to AMI lets
another daemon try."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time

import pytest
from sqlalchemy.exc import OperationalError

from ami_bridge import AmiBridge, ReportDelivery
from attribution.calls import CallReport
from pbx.ami_role import LOGIN_GRACE, LOGIN_STANDOFF, AmiConsumerLock, consume_when_elected
from pbx.app import build_app
from pbx.keys import PBX_LINK, PbxLink
from pbx.settings import Ami, parse_settings
from pbx.storage.errors import is_transient
from pbx.tasks import cancel_and_wait
from tests.helpers import db_error
from tests.unit.test_ami_bridge import (
    FIRST_CALL,
    OTHER_CALLS,
    FakeAsterisk,
    Store,
    _bridge,
    _settings,
)

DOWN = db_error(OperationalError, "server closed the connection unexpectedly")
FIRST_CALL_LINKEDID = next(
    line.removeprefix("Linkedid: ")
    for line in FIRST_CALL[0].split("\r\n")
    if line.startswith("Linkedid: ")
)


class Database:
    """Away from the start (the outage began as the call ended) until `up` is set."""

    def __init__(self) -> None:
        self.up = False
        self.back = asyncio.Event()
        self.stored: list[str] = []
        self.tried = asyncio.Event()
        self.wrote = asyncio.Event()

    def come_back(self) -> None:
        self.up = True
        self.back.set()

    async def store(self, report: CallReport) -> bool:
        self.tried.set()
        if not self.up:
            raise DOWN
        self.stored.append(report.linkedid)
        self.wrote.set()
        return True


class LockLostWithTheDatabase:
    """As AmiConsumerLock behaves in the outage: held, lost once the call's store has failed,
    taken again once the database is back."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.taken = 0
        self.lost = asyncio.Event()

    async def acquire(self) -> None:
        if self.taken:
            await self.db.back.wait()
        self.taken += 1

    async def hold(self) -> None:
        if self.taken > 1:
            await asyncio.Event().wait()  # held for good the second time
        await self.db.tried.wait()
        self.lost.set()

    async def release(self) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_a_call_folded_before_the_lock_went_with_the_database_is_stored_after() -> None:
    """The bridge closed on losing the lock cancelled the report it was retrying, and the call
    was gone (stored 0 times): its events do not come again, and without cdr_csv nothing reads
    it back. On SQLite, with no lock, the same bridge stored it once the database was back."""
    fake = FakeAsterisk([FIRST_CALL, []], pong=[True, True], close=[False, False])
    settings = _settings(await fake.start())
    db = Database()
    lock = LockLostWithTheDatabase(db)
    deliver = ReportDelivery(db.store, is_transient, max_backoff=0.1)
    link = PbxLink()
    role = asyncio.create_task(
        consume_when_elected(lock, lambda: AmiBridge(settings, deliver), link)  # type: ignore[arg-type]
    )
    try:
        async with asyncio.timeout(5):
            await lock.lost.wait()
        await asyncio.sleep(0.2)  # the bridge that folded the call is closed meanwhile
        assert link.ami is None and link.standby
        db.come_back()
        async with asyncio.timeout(5):
            await db.wrote.wait()
        await asyncio.sleep(0.3)
        assert db.stored == [FIRST_CALL_LINKEDID]
        assert lock.taken == 2, "and the daemon follows AMI again"
    finally:
        role.cancel()
        await asyncio.gather(role, return_exceptions=True)
        await fake.stop()


async def test_the_calls_queued_behind_the_one_being_retried_are_stored_too() -> None:
    """While the bridge retried the first call's store, the events of the calls after it
    waited in its queue unfolded; the step-down dropped them with the bridge (3 calls, 1
    stored: without cdr_csv nothing recovers the others)."""
    every = Store()
    alone = FakeAsterisk([FIRST_CALL + OTHER_CALLS], pong=[True], close=[False])
    plain = _bridge(_settings(await alone.start()), every)
    plain.start()
    await every.wait_for(3)
    await plain.close()
    await alone.stop()
    fake = FakeAsterisk([FIRST_CALL + OTHER_CALLS, []], pong=[True, True], close=[False, False])
    settings = _settings(await fake.start())
    db = Database()
    lock = LockLostWithTheDatabase(db)
    deliver = ReportDelivery(db.store, is_transient, max_backoff=0.1)
    role = asyncio.create_task(
        consume_when_elected(lock, lambda: AmiBridge(settings, deliver), PbxLink())  # type: ignore[arg-type]
    )
    try:
        async with asyncio.timeout(5):
            await lock.lost.wait()
        await asyncio.sleep(0.3)  # the events have all arrived, and the bridge is closed
        db.come_back()
        async with asyncio.timeout(5):
            while len(db.stored) < 3:
                db.wrote.clear()
                await db.wrote.wait()
        assert sorted(db.stored) == sorted(r.linkedid for r in every.reports)
    finally:
        await cancel_and_wait(role)
        await fake.stop()


async def test_stopping_waits_a_while_for_calls_being_stored_then_names_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = Database()
    deliver = ReportDelivery(db.store, is_transient, max_backoff=0.1)
    report = CallReport("1700.7", "+79161234567", "+74990000101", 0.0, 30.0, 5.0, "ANSWER")
    folding = asyncio.create_task(deliver.hand_over([report]))
    await db.tried.wait()
    folding.cancel()  # the bridge closed: the call is still being stored
    await asyncio.gather(folding, return_exceptions=True)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.WARNING, logger="ami_bridge.delivery"):
        await deliver.finish(0.3)
    assert 0.3 <= loop.time() - started < 1.0
    assert "1 calls not stored" in caplog.text and "1700.7" in caplog.text
    db.come_back()
    await asyncio.sleep(0.3)
    assert db.stored == [], "given up: left to the CDR"

    back = ReportDelivery(db.store, is_transient, max_backoff=0.1)
    await back.hand_over([report])
    await back.finish(0.3)  # nothing in flight: returns at once
    assert db.stored == ["1700.7"]


class _Blackholed:
    """A connection whose packets go nowhere: no answer, no close."""

    async def scalar(self, *_args: object) -> object:
        await asyncio.Event().wait()
        raise AssertionError

    async def close(self) -> None:
        await asyncio.Event().wait()


class _Bridge:
    def __init__(self, log: list[tuple[str, float]], connected: bool = False) -> None:
        self.log = log
        self.connected = connected

    def start(self) -> None:
        self.log.append(("start", time.monotonic()))

    async def close(self) -> None:
        self.log.append(("close", time.monotonic()))


async def test_a_holder_cut_off_from_the_database_stops_following_before_another_may_start() -> (
    None
):
    """The server ends a silent session idle_limit after the last good check, and another
    daemon takes the lock then. The holder waited idle_limit for its check and as long again
    for the connection to close before stopping its bridge: two consumers for seconds."""
    retry, idle = 0.2, 1.0
    lock = AmiConsumerLock(
        "postgresql+asyncpg://u@127.0.0.1:1/x", retry_every=retry, idle_limit=idle
    )
    log: list[tuple[str, float]] = []
    taken = asyncio.Event()

    async def acquire() -> None:
        if taken.is_set():
            await asyncio.Event().wait()  # another daemon has it now
        taken.set()
        lock._conn = _Blackholed()  # type: ignore[assignment]

    lock.acquire = acquire  # type: ignore[method-assign]
    role = asyncio.create_task(
        consume_when_elected(lock, lambda: _Bridge(log), PbxLink())  # type: ignore[arg-type,return-value]
    )
    await asyncio.sleep(idle + 1.0)
    role.cancel()
    await asyncio.gather(role, return_exceptions=True)
    (_, started), (_, stopped) = log
    assert stopped - started <= idle + 0.15, "stopped by the time the server frees the lock"


class _FakeLock:
    def __init__(self) -> None:
        self.events: list[tuple[str, float]] = []
        self.busy = asyncio.Event()

    async def acquire(self) -> None:
        self.events.append(("acquire", time.monotonic()))

    async def hold(self) -> None:
        await asyncio.Event().wait()  # the database is fine

    async def release(self) -> None:
        self.events.append(("release", time.monotonic()))

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("logs_in", [False, True], ids=["never-logged-in", "logged-in"])
async def test_a_holder_that_cannot_log_in_to_ami_lets_another_daemon_try(logs_in: bool) -> None:
    """A holder whose AMI login kept failing (an old secret in its copy of the config) kept
    the lock: the other daemons stood by for good, and no daemon followed or reconciled calls."""
    lock = _FakeLock()
    log: list[tuple[str, float]] = []
    link = PbxLink()
    role = asyncio.create_task(
        consume_when_elected(
            lock,  # type: ignore[arg-type]
            lambda: _Bridge(log, connected=logs_in),  # type: ignore[arg-type,return-value]
            link,
            login_grace=0.4,
            login_standoff=0.2,
        )
    )
    await asyncio.sleep(1.0)
    role.cancel()
    await asyncio.gather(role, return_exceptions=True)
    if logs_in:
        assert [name for name, _ in lock.events] == ["acquire", "release"]  # at cancel only
        return
    (_, first), (_, released), (_, again), *_ = lock.events
    assert [name for name, _ in lock.events[:3]] == ["acquire", "release", "acquire"]
    assert 0.4 <= released - first < 0.8, "given up after the grace"
    assert again - released >= 0.2, "and stood by a moment, so another daemon takes it"


def test_the_login_grace_outlasts_an_asterisk_restart_with_the_reconnect_backoff() -> None:
    """The bridge reconnects at 0, 0.5, 1.5, ... then every 30 s: a 30 s grace made a healthy
    consumer step down when Asterisk took more than ~15 s to restart, and stand by 30 s more
    with Asterisk up (found by review with a real bridge and an 18 s outage)."""
    backoff = inspect.signature(AmiBridge).parameters["max_backoff"].default
    action_timeout = Ami(secret="x").action_timeout
    assert 3 * (backoff + action_timeout) <= LOGIN_GRACE
    assert LOGIN_STANDOFF > 1.0, "the others try every second"


@pytest.mark.parametrize(
    ("database", "standby"),
    [("postgresql+asyncpg://ct@db.invalid/ct", True), ("sqlite+aiosqlite:///ct.db", False)],
)
def test_a_daemon_on_postgresql_starts_standing_by(database: str, standby: bool) -> None:
    """It started as the consumer until its role task ran: the recordings queue, started
    first, saw it active and converted the whole backlog on every daemon's start."""
    settings = parse_settings(f"""
forward_to: PJSIP/office
database: {database}
asterisk:
  ami: {{secret: pw}}
""")
    assert build_app(settings)[PBX_LINK].standby is standby


async def test_calls_handed_over_later_are_stored_after_the_earlier_ones() -> None:
    """A bridge's close hands over the calls it folds last while its first call is still being
    retried; both retried the same, so the later call could be stored first and take the
    earlier one's "called before"."""
    db = Database()
    deliver = ReportDelivery(db.store, is_transient, max_backoff=0.1)
    first = CallReport("1700.1", "+79161234567", "+74990000101", 0.0, 30.0, 5.0, "ANSWER")
    later = CallReport("1700.2", "+79161234567", "+74990000101", 60.0, 90.0, 65.0, "ANSWER")
    folding = asyncio.create_task(deliver.hand_over([first]))
    await db.tried.wait()
    folding.cancel()  # the bridge closed
    await asyncio.gather(folding, return_exceptions=True)
    db.come_back()  # as the first waits for its next try
    deliver.start([later])
    await deliver.finish(5.0)
    assert db.stored == ["1700.1", "1700.2"]
