"""AmiBridge against a scripted AMI server replaying events recorded from the lab: reports are
retried while the database is away and skipped when it refuses one for good, the link is
re-established after a drop or a silent (Pong-less) socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import DataError, DBAPIError, OperationalError

from ami_bridge import AmiBridge, OnConnected, ReportDelivery
from ami_bridge import bridge as bridge_module
from ami_bridge.tracker import parse_stream
from attribution.calls import CallReport
from pbx.settings import Settings, parse_settings
from pbx.storage.errors import is_transient
from pbx.tasks import cancel_and_wait
from tests.helpers import db_error, smuggle

RAW = (Path(__file__).parents[1] / "fixtures" / "ami" / "lab_calls.ami").read_bytes().decode()
BLOCKS = [b + "\r\n\r\n" for b in RAW.split("\r\n\r\n") if b.strip()]
FIRST_CALL = BLOCKS[:10]  # Newchannel .. Hangup of the answered call
OTHER_CALLS = BLOCKS[10:]


class FakeAsterisk:
    """Accepts AMI logins; connection n gets `scripts[n]` of events, then stays open.

    `pong[n]` False makes connection n ignore Ping (a half-dead link); `close[n]` drops it
    right after the events.
    """

    def __init__(self, scripts: list[list[str]], pong: list[bool], close: list[bool]) -> None:
        self.scripts, self.pong, self.close = scripts, pong, close
        self.logins = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        n = None
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                action = dict(
                    line.split(": ", 1) for line in raw.decode().split("\r\n") if ": " in line
                )
                reply = f"ActionID: {action.get('ActionID', '')}\r\n"
                if action["Action"] == "Login":
                    if action["Secret"] != "pw":
                        writer.write(
                            f"Response: Error\r\n{reply}Message: Authentication failed"
                            "\r\n\r\n".encode()
                        )
                        continue
                    n = self.logins
                    self.logins += 1
                    writer.write(
                        f"Response: Success\r\n{reply}Message: Authentication accepted"
                        "\r\n\r\n".encode()
                    )
                    await asyncio.sleep(0.05)
                    writer.write("".join(self.scripts[n]).encode())
                    if self.close[n]:
                        await writer.drain()
                        writer.close()
                        return
                elif action["Action"] == "Ping" and n is not None and self.pong[n]:
                    writer.write(f"Response: Success\r\n{reply}Ping: Pong\r\n\r\n".encode())
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def _settings(port: int, secret: str = "pw") -> Settings:
    return parse_settings(f"""
forward_to: PJSIP/office
asterisk:
  ami: {{port: {port}, secret: {secret}, action_timeout: 0.3s, ping_interval: 0.2s}}
""")


LOCKED = db_error(OperationalError, "database is locked")


class Store:
    """Fails its first `failures` attempts with `error`, and every attempt to store `poison`."""

    def __init__(
        self,
        failures: int = 0,
        error: DBAPIError = LOCKED,
        poison: str | None = None,
    ) -> None:
        self.reports: list[CallReport] = []
        self.failures, self.error, self.poison = failures, error, poison
        self.attempts = 0
        self.rejected: list[CallReport] = []
        self.changed = asyncio.Event()

    async def __call__(self, report: CallReport) -> bool:
        self.attempts += 1
        if self.failures or report.linkedid == self.poison:
            self.failures = max(0, self.failures - 1)
            raise self.error
        self.reports.append(report)
        self.changed.set()
        return True

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.reports) < count:
                self.changed.clear()
                await self.changed.wait()


def _bridge(settings: Settings, store: Store, on_connected: OnConnected | None = None) -> AmiBridge:
    deliver = ReportDelivery(store, is_transient, store.rejected.append, max_backoff=0.2)
    return AmiBridge(settings, deliver, on_connected, max_backoff=0.2)


@pytest.fixture
async def run() -> AsyncIterator[list[AmiBridge]]:
    bridges: list[AmiBridge] = []
    yield bridges
    for bridge in bridges:
        await bridge.close()


async def test_reports_are_retried_until_stored(run: list[AmiBridge]) -> None:
    fake = FakeAsterisk([BLOCKS], pong=[True], close=[False])
    store = Store(failures=3)
    bridge = _bridge(_settings(await fake.start()), store)
    run.append(bridge)
    bridge.start()
    await store.wait_for(3)
    assert [r.did for r in store.reports] == ["+74990000002", "+74990000003", "+74990000004"]
    assert store.attempts == 6
    assert store.rejected == []
    assert bridge.connected
    await asyncio.sleep(0.5)  # pings answered: still the first connection
    assert fake.logins == 1


@pytest.mark.parametrize("failure", ["dropped", "silent"])
async def test_relinks_after_a_dropped_or_silent_connection(
    run: list[AmiBridge], failure: str
) -> None:
    dropped = failure == "dropped"
    fake = FakeAsterisk([FIRST_CALL, OTHER_CALLS], pong=[dropped, True], close=[dropped, False])
    connects: list[float | None] = []

    async def on_connected(lost_at: float | None) -> None:
        connects.append(lost_at)

    store = Store()
    bridge = _bridge(_settings(await fake.start()), store, on_connected)
    run.append(bridge)
    started = time.time()
    bridge.start()
    await store.wait_for(3)
    assert fake.logins == 2
    assert len(connects) == 2 and connects[0] is None
    assert connects[1] is not None and started < connects[1] < time.time()
    assert len({r.linkedid for r in store.reports}) == 3


async def test_a_report_refused_for_good_is_skipped_and_the_next_calls_stored(
    run: list[AmiBridge],
) -> None:
    """A value the database will never take must not hold back every call after it."""
    first = next(line for line in FIRST_CALL[0].split("\r\n") if line.startswith("Linkedid: "))
    poison = first.removeprefix("Linkedid: ")
    fake = FakeAsterisk([BLOCKS], pong=[True], close=[False])
    refused = db_error(DataError, "value too long for type character varying(64)")
    store = Store(error=refused, poison=poison)
    bridge = _bridge(_settings(await fake.start()), store)
    run.append(bridge)
    bridge.start()
    await store.wait_for(2)
    assert [r.did for r in store.reports] == ["+74990000003", "+74990000004"]
    assert [r.linkedid for r in store.rejected] == [poison]
    assert store.attempts == 3  # the refused one was tried once


async def reports_of(run: list[AmiBridge], script: list[str]) -> list[CallReport]:
    """The calls a bridge stores from `script`, its three calls' events as Asterisk sends them."""
    fake = FakeAsterisk([script], pong=[True], close=[False])
    store = Store()
    bridge = _bridge(_settings(await fake.start()), store)
    run.append(bridge)
    bridge.start()
    await store.wait_for(3)
    return store.reports


async def test_headers_smuggled_in_through_the_callers_name_are_ignored(
    run: list[AmiBridge],
) -> None:
    """As panoramisk parses them: a CallerIDName carrying CR/LF cannot set DID or Recording."""
    forged = [smuggle(block) for block in BLOCKS]
    assert forged != BLOCKS
    honest, smuggled = await reports_of(run, BLOCKS), await reports_of(run, forged)
    assert [(r.linkedid, r.did, r.recording, r.status) for r in smuggled] == [
        (r.linkedid, r.did, r.recording, r.status) for r in honest
    ]


#: what a SIP From's user part can carry to AMI's CallerIDNum (pjsip unescapes %0D%0A;
#: Asterisk escapes a caller's name, not the number): a forged Shutdown, then a forged Hangup
#: without Privilege; each ends the real event early with its blank line
FORGED_NUMBER = (
    "sipp\r\n\r\nEvent: Shutdown\r\nPrivilege: system,all\r\n\r\n"
    "Event: Hangup\r\nUniqueid: 1.1\r\n\r\nX: y"
)


async def test_a_callers_number_cannot_forge_events_or_drop_the_link(
    run: list[AmiBridge],
) -> None:
    """panoramisk closed the connection on the forged Shutdown, at every event of the
    caller's call: a reconnect each, the calls around them left to the CDR or lost."""
    first = next(i for i, block in enumerate(BLOCKS) if "CallerIDNum: sipp\r" in block)
    forged = list(BLOCKS)
    forged[first] = forged[first].replace(
        "CallerIDNum: sipp\r", f"CallerIDNum: {FORGED_NUMBER}\r", 1
    )
    fake = FakeAsterisk([forged], pong=[True], close=[False])
    store = Store()
    bridge = _bridge(_settings(await fake.start()), store)
    run.append(bridge)
    bridge.start()
    await store.wait_for(2)  # the calls after the forged event's are folded
    await asyncio.sleep(0.3)
    assert bridge.connected and fake.logins == 1  # never dropped, never logged in again


#: forged Hangups in the 79 bytes a SIP From's user part may have, each naming a channel (here
#: its own call's, ringing) by its Uniqueid: one with Privilege, one with the snapshot's
#: headers the first filter asked for, empty
FORGED_HANGUPS = [
    "\r\n\r\nEvent: Hangup\r\nPrivilege: call,all\r\nUniqueid: 1795807259.18\r\n",
    "\r\n\r\nEvent: Hangup\r\nPrivilege: \r\nChannel: \r\nLinkedid: \r\n"
    "Uniqueid: 1795807259.18\r\n",
]


@pytest.mark.parametrize("forged_hangup", FORGED_HANGUPS)
async def test_a_forged_channel_event_without_the_channels_snapshot_is_dropped(
    run: list[AmiBridge], forged_hangup: str
) -> None:
    """Every channel event Asterisk sends carries the channel's snapshot (Channel, Uniqueid,
    Linkedid, ...); a forged one with Privilege passed the check above, and ended a ringing
    call early: stored unanswered, without its recording."""
    # the caller's number ends with the forged block, the real event's line end ends it (80
    # bytes for the second: a target whose Uniqueid is one digit shorter fits the 79)
    assert len(forged_hangup) <= 80
    ringing = next(i for i, block in enumerate(BLOCKS) if "Event: DialBegin" in block and i > 10)
    forged = list(BLOCKS)
    forged[ringing] = forged[ringing].replace(
        "CallerIDNum: sipp\r", f"CallerIDNum: sipp{forged_hangup}\r", 1
    )
    honest, smuggled = await reports_of(run, BLOCKS), await reports_of(run, forged)
    assert [(r.linkedid, r.status, r.recording, r.ended_at) for r in smuggled] == [
        (r.linkedid, r.status, r.recording, r.ended_at) for r in honest
    ]


async def test_refused_login_is_retried_and_not_connected(run: list[AmiBridge]) -> None:
    fake = FakeAsterisk([BLOCKS], pong=[True], close=[False])
    store = Store()
    bridge = _bridge(_settings(await fake.start(), secret="wrong"), store)
    run.append(bridge)
    bridge.start()
    await asyncio.sleep(0.8)
    assert not bridge.connected
    assert fake.logins == 0 and store.reports == []


async def test_asterisk_down_then_up(run: list[AmiBridge]) -> None:
    fake = FakeAsterisk([BLOCKS], pong=[True], close=[False])
    port = await fake.start()
    await fake.stop()
    store = Store()
    bridge = _bridge(_settings(port), store)
    run.append(bridge)
    bridge.start()
    await asyncio.sleep(0.6)
    assert not bridge.connected
    fake.server = await asyncio.start_server(fake._client, "127.0.0.1", port)
    await asyncio.wait_for(bridge.wait_connected(), 3)
    await store.wait_for(3)
    await fake.stop()


async def test_close_ends_the_bridge_while_events_pour_in(run: list[AmiBridge]) -> None:
    """Python 3.11's wait_for drops a cancellation when what it awaits finishes at that moment:
    with an event always waiting, the folding loop went on after close() cancelled it, and
    close() (the daemon stopping) waited for it forever."""
    fake = FakeAsterisk([BLOCKS + OTHER_CALLS * 30], pong=[True], close=[False])
    store = Store(failures=10**9)  # reports wait: the events pile up behind them
    bridge = _bridge(_settings(await fake.start()), store)
    bridge.start()
    await asyncio.sleep(0.5)
    store.failures = 0  # folding goes on, an event always waiting
    await store.wait_for(1)
    asked = time.monotonic()
    await asyncio.wait_for(bridge.close(), 5)  # (close() swallows this wait_for's cancel too)
    assert time.monotonic() - asked < 2, "closed at once, not only when the wait gave up"


async def test_events_past_the_backlog_cap_are_dropped_as_across_a_lost_link(
    run: list[AmiBridge], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Reports that cannot be stored (the database away for long) stop the folding, and AMI goes
    on sending: the events waiting are capped, the calls past the cap left to the CDR."""
    monkeypatch.setattr(bridge_module, "MAX_BACKLOG", 12)
    fake = FakeAsterisk([BLOCKS + OTHER_CALLS * 3], pong=[True], close=[False])
    store = Store(failures=10**9)  # the database away
    bridge = _bridge(_settings(await fake.start()), store)
    run.append(bridge)
    bridge.start()
    await asyncio.sleep(1.0)  # every event has arrived; the first call's report waits
    assert store.attempts and bridge._queue.qsize() <= 12 + 1, "bounded (and the lost-link mark)"
    errors = [r.message for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith("AMI: 12 events wait to be folded")
    store.failures = 0  # the database is back
    await store.wait_for(1)
    assert store.reports[0].did == "+74990000002", "the call before the cap is stored"
    async with asyncio.timeout(5):
        while bridge._queue.qsize():  # noqa: ASYNC110 (the queue has no "emptied" event)
            await asyncio.sleep(0.01)
    [event] = parse_stream(BLOCKS[0])
    bridge._on_event(None, event)  # as panoramisk hands the next event over
    assert bridge._queue.qsize() == 1, "taken again once the backlog is folded"
    assert any(r.message.startswith("AMI: folding events again") for r in caplog.records)


class _LoginHeldManager:
    """A Manager whose connection is up at once and whose Login answer the test gives."""

    login: asyncio.Future[object] | None = None
    asked = asyncio.Event()

    def __init__(self, _on_lost: object, **_config: object) -> None:
        self.protocol = object()

    def register_event(self, *_args: object) -> None:
        pass

    def connect(self) -> asyncio.Task[None]:
        return asyncio.ensure_future(asyncio.sleep(0))

    def connection_made(self, _task: object) -> None:
        pass

    def send_action(self, action: dict[str, str]) -> asyncio.Future[object]:
        future = asyncio.get_running_loop().create_future()
        if action["Action"] == "Login":
            _LoginHeldManager.login = future
            _LoginHeldManager.asked.set()
        return future  # a Ping is never answered

    def close(self) -> None:
        pass


class _Accepted:
    success = True
    message = "Authentication accepted"


async def test_close_returns_when_it_cancels_as_the_login_answer_arrives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """close() cancelled the link's task in the loop turn its Login answer arrived: on Python
    3.11 the wait_for around the login returned the answer and dropped the cancellation, the
    task went on to watch the link, and close() (a daemon stepping down, or stopping) waited
    for it forever (review finding)."""
    monkeypatch.setattr(bridge_module, "_Manager", _LoginHeldManager)
    _LoginHeldManager.login = None
    _LoginHeldManager.asked = asyncio.Event()

    async def store(_report: CallReport) -> bool:
        return True

    bridge = AmiBridge(_settings(1), ReportDelivery(store, is_transient))
    bridge.start()
    async with asyncio.timeout(5):
        await _LoginHeldManager.asked.wait()
    assert _LoginHeldManager.login is not None
    _LoginHeldManager.login.set_result(_Accepted())  # Asterisk answers the Login...
    closing = asyncio.create_task(bridge.close())  # ...as the daemon is told to let go
    done, _ = await asyncio.wait([closing], timeout=3)
    for task in bridge._tasks:
        task.cancel()
    assert done, "close() waits for a link task that dropped its cancellation"


async def test_a_connect_cancelled_as_it_completes_is_closed_not_leaked() -> None:
    """The awaiting task cancelled (a timeout, a step-down) in the turn the connection came
    up: nobody closed it, and its peer's close later raised into the loop from a protocol
    panoramisk never attached."""
    closed = asyncio.Event()
    raised: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: raised.append(context))

    async def asterisk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/5.0.0\r\n")
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the client closes its end
        closed.set()
        writer.close()

    server = await asyncio.start_server(asterisk, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])

    class CancelledAsItConnects(bridge_module._Manager):
        def connect(self) -> asyncio.Task[Any]:
            task: asyncio.Task[Any] = super().connect()
            awaiting = asyncio.current_task()
            assert awaiting is not None
            task.add_done_callback(lambda _task: awaiting.cancel())
            return task

    manager = CancelledAsItConnects(
        lambda: None,
        host="127.0.0.1",
        port=port,
        loop=asyncio.get_running_loop(),
        ping_delay=3600,
        protocol_factory=bridge_module._Protocol,
    )
    with pytest.raises(asyncio.CancelledError):
        await bridge_module.connect_within(manager, 5)
    try:
        async with asyncio.timeout(2):
            await closed.wait()
        await asyncio.sleep(0.1)
    finally:
        server.close()
    assert raised == [], "and nothing raised into the loop"


async def test_close_stops_the_reconciliation_started_after_a_login() -> None:
    """It went on after the bridge closed (a step-down, a shutdown), past the engine's
    disposal, retrying against a database no longer there."""
    fake = FakeAsterisk([[]], pong=[True], close=[False])
    started = asyncio.Event()

    async def reconcile(_lost_at: float | None) -> None:  # retrying: the database away
        started.set()
        await asyncio.Event().wait()

    bridge = _bridge(_settings(await fake.start()), Store(), reconcile)
    bridge.start()
    async with asyncio.timeout(5):
        await started.wait()
    await bridge.close()
    left = [task for task in bridge._callbacks if not task.done()]
    await cancel_and_wait(*left)
    await fake.stop()
    assert not left
