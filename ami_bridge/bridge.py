"""The AMI link: Asterisk's events in, one CallReport per finished call out.

Asterisk stops writing to an AMI client that reads slower than its 100 ms write timeout, so the
reader only parses and enqueues; another task folds events into calls and hands each report to
a ReportDelivery (which retries while the database is away and skips a report it refuses for
good). The link is supervised here, not by panoramisk: a Ping watchdog notices a half-dead
socket, and reconnecting backs off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol

from ami_bridge.delivery import ReportDelivery
from ami_bridge.tracker import CallTracker, event_from_headers
from attribution.calls import CallReport
from pbx.settings import Settings
from pbx.tasks import cancel_and_wait

log = logging.getLogger(__name__)

#: Called after every successful login with the time the previous link was lost (None at first).
OnConnected = Callable[[float | None], Awaitable[None]]

_LINK_LOST = object()
#: events waiting to be folded, at most. Folding waits while a report cannot be stored (the
#: database away or full: delivery retries), and AMI goes on sending; past this many (some
#: 100 MB) new events are dropped as across a lost link until half have been folded: their
#: calls are left to reconciliation from the CDR, and the daemon's memory stays bounded.
MAX_BACKLOG = 50_000


async def connect_within(manager: Manager, seconds: float) -> None:
    """Open panoramisk `manager`'s connection within `seconds`: else TimeoutError, or the
    OSError of a refused or unreachable address.

    panoramisk's connect() returns its connection task with `connection_made` as its done
    callback. That callback is taken off and called here once the connection is up: a timeout
    cancels the task, and the callback then raised CancelledError into the loop's exception
    handler (a traceback on stderr), and a refused connection was logged by it and redialled
    by panoramisk itself. asyncio.timeout, not wait_for: on Python 3.11 a wait_for whose
    awaited thing finishes as its task is cancelled drops the cancellation (then a daemon
    stepping down, or stopping, went on into the link it was told to leave)."""
    task = manager.connect()
    task.remove_done_callback(manager.connection_made)
    try:
        async with asyncio.timeout(seconds):
            await task
    except BaseException:
        # connected in the very turn the timeout (or a cancel) came: attached to the manager
        # and closed through it, which nothing else would do (closed bare, its protocol,
        # never attached, raised into the loop when the connection went)
        if task.done() and not task.cancelled() and task.exception() is None:
            manager.connection_made(task)
            manager.close()
        raise
    manager.connection_made(task)
    if manager.protocol is None:
        raise OSError("connection not established")


async def action_within(manager: Manager, action: dict[str, str], seconds: float) -> Any:
    """`action`'s answer within `seconds` (TimeoutError): panoramisk's futures never time out."""
    async with asyncio.timeout(seconds):
        return await manager.send_action(action)


class AmiLoginError(Exception):
    pass


#: a channel snapshot's headers (main/manager_channels.c) that always have a value, and those
#: that are always there, empty or not: every channel event of the lab's captures has them all
_SNAPSHOT_VALUES = ("Channel", "ChannelState", "Context", "Priority", "Linkedid")
_SNAPSHOT_KEYS = ("ChannelStateDesc", "Exten", "Language", "AccountCode")


def _has_snapshot(message: Any) -> bool:
    return all(message.get(k) for k in _SNAPSHOT_VALUES) and all(
        k in message for k in _SNAPSHOT_KEYS
    )


class _Protocol(AMIProtocol):  # type: ignore[misc]
    """panoramisk's protocol, not brought down by a repeated header or a forged event.

    panoramisk keeps all values of a header given twice in a list, and its own dispatching,
    which expects one string for Event and ActionID, fails on it and drops the connection. Such
    a repeat can only have been smuggled in through a caller's name (see
    tracker.event_from_headers), and these headers come ahead of it: the first value is real.
    """

    def handle_message(self, message: Any) -> None:
        for key in ("Event", "Response", "ActionID", "CommandID"):
            if isinstance(value := message.get(key), list):
                message[key] = value[0]
        if "Event" in message and "Response" not in message and "ActionID" not in message:
            # Asterisk escapes a caller's name in AMI but not a caller's number, which a SIP
            # From can give any bytes (%0D%0A): a blank line in it ends the real event and what
            # follows reads as one of its own
            if not message.get("Privilege"):  # every event Asterisk sends on its own has one
                log.warning("AMI block without Privilege dropped (injected?): %s", dict(message))
                return
            if "Uniqueid" in message and not _has_snapshot(message):
                # a channel's event carries the channel's whole snapshot; a forged one must fit
                # the 79 bytes of a SIP From's user part, where Privilege and a Uniqueid fit,
                # and not the rest
                log.warning(
                    "AMI channel event without its snapshot dropped (injected?): %s", dict(message)
                )
                return
            if str(message["Event"]).lower() == "shutdown":
                # panoramisk drops the connection on it: a forged one would, at every event of
                # the caller's call. Asterisk closes the socket itself when it stops
                self.factory.dispatch(message)
                return
        super().handle_message(message)


class _Manager(Manager):  # type: ignore[misc]
    """panoramisk's Manager with its own reconnecting and keep-alive switched off.

    Its ping never checks the answer and its reconnect has no backoff; AmiBridge does both.
    """

    def __init__(self, on_lost: Callable[[], None], **config: Any) -> None:
        super().__init__(**config)
        self._on_lost = on_lost

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if not f.cancelled() and f.exception() is None:
            super().connection_made(f)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._connected = False
        self._on_lost()

    def ping(self) -> None:
        """The bridge's watchdog pings instead."""


class AmiBridge:
    """Follows calls over AMI and hands each finished one to `deliver`.

    `connected` says whether the link is up and logged in (for /healthz); `on_connected` runs
    after every login, so the daemon can reconcile calls that ended while the link was down.
    """

    def __init__(
        self,
        settings: Settings,
        deliver: ReportDelivery,
        on_connected: OnConnected | None = None,
        *,
        stale_after: float = 6 * 3600.0,
        max_backoff: float = 30.0,
    ) -> None:
        if settings.asterisk is None:
            raise ValueError("the config has no `asterisk:` section")
        self._ami = settings.asterisk.ami
        self._deliver = deliver
        self._on_connected = on_connected
        self._stale_after = stale_after
        self._max_backoff = max_backoff
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._tracker = CallTracker(cdr=settings.asterisk.cdr_csv is not None)
        self._up = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._callbacks: set[asyncio.Task[None]] = set()
        self._manager: _Manager | None = None
        self._lost_at: float | None = None
        self._overflowing = False

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    async def wait_connected(self) -> None:
        await self._up.wait()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._supervise(), name="ami-link"),
            asyncio.create_task(self._consume(), name="ami-calls"),
        ]

    async def close(self) -> None:
        """Stop following AMI. The events received and not yet folded are folded now and
        their calls handed to the delivery, which stores them once the database takes them
        (closed on a step-down, the bridge may be waiting on a database that is away: the
        calls that ended meanwhile were dropped with its queue). Calls still in progress are
        left to whoever follows AMI next, and to the CDR."""
        try:
            await cancel_and_wait(*self._tasks, *self._callbacks)
        finally:
            self._tasks = []
            if self._manager is not None:
                self._manager.close()
                self._manager = None
            self._up.clear()
            if reports := self._fold_queued():
                self._deliver.start(reports)

    def _fold_queued(self) -> list[CallReport]:
        reports: list[CallReport] = []
        while not self._queue.empty():
            reports += self._fold(self._queue.get_nowait())
        return reports

    def _fold(self, item: object) -> list[CallReport]:
        """One queued item into the tracker: an event (with when it arrived), or the link lost;
        the calls it finished."""
        if item is _LINK_LOST:
            self._tracker.link_lost()
            return []
        assert isinstance(item, tuple)
        received_at, event = item
        return list(self._tracker.feed(event, received_at))

    # The link.

    async def _supervise(self) -> None:
        backoff = 0.5
        while True:
            lost = asyncio.Event()
            try:
                manager = await self._connect(lost)
            except Exception as exc:  # refused, timed out, login refused, garbled
                log.warning(
                    "AMI %s:%s: %s; retrying in %.1fs",
                    self._ami.host,
                    self._ami.port,
                    exc or type(exc).__name__,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = 0.5
            self._manager = manager
            self._up.set()
            log.info("AMI connected to %s:%s", self._ami.host, self._ami.port)
            if self._on_connected is not None:
                task = asyncio.create_task(self._notify_connected(self._lost_at))
                self._callbacks.add(task)
                task.add_done_callback(self._callbacks.discard)
            await self._watch(manager, lost)
            self._up.clear()
            self._lost_at = time.time()
            self._queue.put_nowait(_LINK_LOST)
            manager.close()
            self._manager = None
            log.warning("AMI link lost; reconnecting")

    async def _connect(self, lost: asyncio.Event) -> _Manager:
        timeout = self._ami.action_timeout
        manager = _Manager(
            lost.set,
            host=self._ami.host,
            port=self._ami.port,
            loop=asyncio.get_running_loop(),
            ping_delay=3600,
            protocol_factory=_Protocol,
        )
        manager.register_event("*", self._on_event)
        try:
            await connect_within(manager, timeout)
            response = await action_within(
                manager,
                {
                    "Action": "Login",
                    "Username": self._ami.username,
                    "Secret": self._ami.secret,
                    "Events": "on",
                },
                timeout,
            )
            if not response.success:
                raise AmiLoginError(f"login as {self._ami.username!r} refused: {response.message}")
        except BaseException:
            manager.close()
            raise
        return manager

    async def _watch(self, manager: _Manager, lost: asyncio.Event) -> None:
        """Returns when the link is gone: closed by Asterisk, or no Pong within the timeout."""
        # asyncio.timeout, not wait_for, in these loops: on Python 3.11 a wait_for whose awaited
        # thing finishes as the task is cancelled returns its result and drops the cancellation,
        # so the loop went on and close() waited for it forever (seen with events pouring in)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._ami.ping_interval):
                    await lost.wait()
                return
            try:
                async with asyncio.timeout(self._ami.action_timeout):
                    await manager.send_action({"Action": "Ping"})
            except TimeoutError:
                log.warning("AMI: no answer to Ping within %.1fs", self._ami.action_timeout)
                return

    async def _notify_connected(self, lost_at: float | None) -> None:
        assert self._on_connected is not None
        try:
            await self._on_connected(lost_at)
        except Exception:
            log.exception("on_connected failed")

    def _on_event(self, _manager: Manager, message: Any) -> None:
        """panoramisk's callback: parse and enqueue, nothing else (see MAX_BACKLOG)."""
        event = event_from_headers(dict(message.items()))
        if event is None:
            return
        waiting = self._queue.qsize()
        if self._overflowing and waiting < MAX_BACKLOG // 2:
            self._overflowing = False
            log.warning("AMI: folding events again; the calls meanwhile are left to the CDR")
        elif not self._overflowing and waiting >= MAX_BACKLOG:
            self._overflowing = True
            log.error(
                "AMI: %d events wait to be folded (reports cannot be stored?): new ones are"
                " dropped until half are, and their calls left to reconciliation from the CDR",
                waiting,
            )
            self._queue.put_nowait(_LINK_LOST)  # the calls open now may end unseen
        if not self._overflowing:
            self._queue.put_nowait((time.time(), event))

    # The calls.

    async def _consume(self) -> None:
        sweep_at = time.monotonic()
        while True:
            if time.monotonic() >= sweep_at:
                self._tracker.drop_stale(time.time(), self._stale_after)
                sweep_at = time.monotonic() + 60
            try:
                async with asyncio.timeout(60):  # see _watch: not wait_for
                    item = await self._queue.get()
            except TimeoutError:
                continue
            if reports := self._fold(item):
                await self._deliver.hand_over(reports)
