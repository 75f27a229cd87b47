"""Real calls through the lab Asterisk: SIPp as carrier and real line, our dialplan, AGI and AMI.

None of these needs the daemon core: the AGI router and the call store are stand-ins here.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from ami_bridge import AmiBridge, ReportDelivery, reconcile_pass
from attribution.calls import CallReport, CallStatus, Route
from dialplan.agi import start_agi_server
from pbx.settings import Settings
from pbx.storage.errors import is_transient
from tests.asterisk.conftest import lab, load_lab_dialplan
from tests.asterisk.sipp import (
    RealLine,
    agent_logged_in,
    phone_call,
    place_call,
    real_line,
    wav_duration_and_rms,
)
from tests.helpers import db_error

pytestmark = pytest.mark.asterisk

DID = "74990000002"


def _assert_port_free(port: int) -> None:
    with socket.socket() as s:
        refused = s.connect_ex(("127.0.0.1", port)) != 0
    assert refused, f"something listens on 127.0.0.1:{port}; these tests need it free"


class Store:
    """Stands in for the daemon's call store; can be told to fail the first attempts."""

    def __init__(self, failures: int = 0) -> None:
        self.reports: asyncio.Queue[CallReport] = asyncio.Queue()
        self.failures = failures
        self.attempts = 0
        self.rejected: list[CallReport] = []  # refused for good: none of these calls should be

    async def __call__(self, report: CallReport) -> bool:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise db_error(OperationalError, "database is locked")
        self.reports.put_nowait(report)
        return True

    async def next(self, within: float = 15.0) -> CallReport:
        return await asyncio.wait_for(self.reports.get(), within)


@contextlib.asynccontextmanager
async def tracked_calls(
    settings: Settings,
    bridge_factory: Callable[..., Awaitable[AmiBridge]],
    destination: str,
) -> AsyncIterator[tuple[Store, float]]:
    """While inside, the lab's calls are routed to `destination` and followed over AMI into
    the Store yielded, with the CDR time (whole seconds) they all end after."""

    async def route(did: str, caller: str) -> Route:
        return Route(destination)

    await asyncio.sleep(1.1)  # calls of earlier tests end over a second before `since`
    since = float(int(time.time()))
    store = Store()
    await bridge_factory(store)
    server = await start_agi_server(settings, route)
    try:
        yield store, since
    finally:
        server.close()
        await server.wait_closed()


async def cdr_since(settings: Settings, since: float) -> list[CallReport]:
    """The calls the lab's CDR holds that ended since `since`, read back as reconciliation
    reads them (passes from the file's start until caught up)."""
    reports: list[CallReport] = []
    position, caught_up = None, False
    while not caught_up:
        step = await asyncio.to_thread(reconcile_pass, settings, since, position)
        reports += step.reports
        position, caught_up = step.position, step.caught_up
    return reports


@pytest.fixture
async def bridge_factory(
    lab_dialplan: Settings,
) -> AsyncIterator[Callable[..., Awaitable[AmiBridge]]]:
    bridges: list[AmiBridge] = []

    async def make(store: Store, **kwargs: object) -> AmiBridge:
        deliver = ReportDelivery(store, is_transient, store.rejected.append)
        bridge = AmiBridge(lab_dialplan, deliver, **kwargs)  # type: ignore[arg-type]
        bridge.start()
        bridges.append(bridge)
        await asyncio.wait_for(bridge.wait_connected(), 10)
        return bridge

    yield make
    for bridge in bridges:
        await bridge.close()


async def call_through_router(
    settings: Settings,
    router: Callable[[str, str], Awaitable[Route]],
    tmp_path: Path,
    scenario: str = "uas",
) -> RealLine:
    """One call to DID with `router` serving AGI; the real line (SIPp's `scenario`) it rang."""
    server = await start_agi_server(settings, router)
    try:
        async with real_line(tmp_path / "uas", scenario) as line:
            call = await place_call(DID, tmp_path / "uac")
            assert call.returncode == 0, call.output
            await line.wait()
    finally:
        server.close()
        await server.wait_closed()
    return line


async def test_agi_down_call_still_forwarded_and_recorded(
    lab_dialplan: Settings, tmp_path: Path
) -> None:
    _assert_port_free(lab_dialplan.asterisk.agi.port)  # type: ignore[union-attr]
    recordings = lab_dialplan.asterisk_recordings_dir
    before = set(recordings.glob("*.wav"))
    async with real_line(tmp_path / "uas") as line:
        call = await place_call(DID, tmp_path / "uac")
        assert call.returncode == 0, call.output
        assert await line.wait() == 0
    assert "INVITE sip:" in line.messages()
    await asyncio.sleep(0.5)
    new = set(recordings.glob("*.wav")) - before
    assert len(new) == 1, new
    seconds, rms = wav_duration_and_rms(new.pop())
    assert seconds > 5.0
    assert rms > 300, "the recording is silent"


async def test_stalled_router_answered_with_fallback_within_a_second(
    lab_dialplan: Settings, tmp_path: Path, bridge_factory: Callable[..., Awaitable[AmiBridge]]
) -> None:
    asked: list[tuple[str, str]] = []

    async def stalled(did: str, caller: str) -> Route:
        asked.append((did, caller))
        await asyncio.sleep(30)
        return Route("PJSIP/nowhere")

    store = Store()
    await bridge_factory(store)
    await call_through_router(lab_dialplan, stalled, tmp_path)
    assert asked == [("+74990000002", "sipp")]
    report = await store.next()
    assert report.status is CallStatus.ANSWERED
    # The router had answer_within (0.5 s); then the real line got the call at once.
    assert 0.45 < report.ring_seconds < 1.0, report


async def test_raising_router_still_forwarded(
    lab_dialplan: Settings, tmp_path: Path, bridge_factory: Callable[..., Awaitable[AmiBridge]]
) -> None:
    asked: list[str] = []

    async def broken(did: str, caller: str) -> Route:
        asked.append(did)
        raise RuntimeError("no such table: leases")

    store = Store()
    await bridge_factory(store)
    await call_through_router(lab_dialplan, broken, tmp_path)
    assert asked == ["+74990000002"]
    report = await store.next()
    assert report.status is CallStatus.ANSWERED
    assert report.ring_seconds < 0.45, report


async def test_router_route_and_caller_name_reach_the_real_line(
    lab_dialplan: Settings, tmp_path: Path
) -> None:
    async def route(did: str, caller: str) -> Route:
        return Route("PJSIP/realline", 'cpc "Anna"\r\nX-Injected: 1')

    line = await call_through_router(lab_dialplan, route, tmp_path)
    invite = line.messages().split("INVITE sip:", 1)[1]
    from_header = next(h for h in invite.splitlines() if h.startswith("From:"))
    assert '"cpc Anna X-Injected: 1"' in from_header, from_header
    assert "\nX-Injected" not in invite


@pytest.mark.parametrize(
    ("scenario", "status", "ring", "talk"),
    [
        ("uas", CallStatus.ANSWERED, (0.0, 0.5), (6.0, 10.0)),
        ("busy", CallStatus.BUSY, (0.0, 0.5), (0.0, 0.0)),
        ("ring", CallStatus.MISSED, (5.5, 7.0), (0.0, 0.0)),  # lab.yaml: ring_timeout 6s
    ],
)
async def test_bridge_reports_each_call_once(
    lab_dialplan: Settings,
    tmp_path: Path,
    bridge_factory: Callable[..., Awaitable[AmiBridge]],
    scenario: str,
    status: CallStatus,
    ring: tuple[float, float],
    talk: tuple[float, float],
) -> None:
    store = Store(failures=2)  # the store fails twice: the report is retried, not lost
    await bridge_factory(store)
    started = time.time()
    async with real_line(tmp_path / "uas", scenario) as line:
        await place_call("+74990000003", tmp_path / "uac")
        await line.wait()
    report = await store.next()
    assert report.did == "+74990000003"
    assert report.caller == "sipp"
    assert started - 0.5 < report.started_at < started + 1.0
    assert report.status is status
    assert ring[0] <= report.ring_seconds <= ring[1], report
    assert talk[0] <= report.talk_seconds <= talk[1], report
    if status is CallStatus.ANSWERED:
        assert report.recording == f"{report.linkedid}.wav"
        seconds, rms = wav_duration_and_rms(lab_dialplan.asterisk_recordings_dir / report.recording)
        assert seconds > 5.0 and rms > 300
    else:
        assert report.recording is None
    assert store.attempts == 3 and store.rejected == []
    with pytest.raises(TimeoutError):
        await store.next(within=1.5)


async def test_bridge_reconnects_after_asterisk_restart(
    lab_dialplan: Settings, tmp_path: Path, bridge_factory: Callable[..., Awaitable[AmiBridge]]
) -> None:
    connects: list[float | None] = []
    reconnected = asyncio.Event()

    async def on_connected(lost_at: float | None) -> None:
        connects.append(lost_at)
        if len(connects) == 2:
            reconnected.set()

    store = Store()
    bridge = await bridge_factory(store, on_connected=on_connected)
    assert bridge.connected
    restarted = await asyncio.to_thread(lab, "restart")
    assert restarted.returncode == 0, restarted.stderr
    await asyncio.wait_for(reconnected.wait(), 20)
    assert bridge.connected
    assert len(connects) == 2 and connects[0] is None and connects[1] is not None, connects
    async with real_line(tmp_path / "uas", "busy") as line:
        await place_call("+74990000004", tmp_path / "uac")
        await line.wait()
    report = await store.next()
    assert (report.did, report.status) == ("+74990000004", CallStatus.BUSY)


async def test_reconcile_reads_calls_made_while_the_bridge_was_down(
    lab_dialplan: Settings, tmp_path: Path
) -> None:
    await asyncio.sleep(1.1)  # calls of earlier tests end over a second before `since`
    since = float(int(time.time()))  # CDR times are whole seconds
    async with real_line(tmp_path / "uas1") as line:
        await place_call("74990000005", tmp_path / "uac")
        await line.wait()
    async with real_line(tmp_path / "uas2", "busy") as line:
        await place_call("+74990000009", tmp_path / "uac")
        await line.wait()
    await asyncio.sleep(0.5)
    reports = await cdr_since(lab_dialplan, since)  # the whole file, in capped passes
    assert [(r.did, r.status) for r in reports] == [
        ("+74990000005", CallStatus.ANSWERED),
        ("+74990000009", CallStatus.BUSY),
    ]
    answered, busy = reports
    assert answered.recording == f"{answered.linkedid}.wav"
    assert 5.0 < answered.talk_seconds < 11.0
    assert busy.recording is None and busy.answered_at is None
    assert all(r.caller == "sipp" for r in reports)


@pytest.mark.parametrize(
    ("destination", "scenario", "status"),
    [
        ("Local/person@lab-pbx", "uas", CallStatus.ANSWERED),
        ("Local/ringgroup@lab-pbx", "ring", CallStatus.VOICEMAIL),
    ],
)
async def test_a_local_line_is_answered_only_by_a_person(
    lab_dialplan: Settings,
    tmp_path: Path,
    bridge_factory: Callable[..., Awaitable[AmiBridge]],
    destination: str,
    scenario: str,
    status: CallStatus,
) -> None:
    """A FreePBX ring group is a Local/ line: it answers when a phone does, and also when its
    voicemail does (asterisk.conf.d/extensions.conf [lab-pbx]). Both the live AMI fold and the
    CDR read back tell the two apart; the voicemail keeps its recording (the message)."""

    calls = tracked_calls(lab_dialplan, bridge_factory, destination)
    async with calls as (store, since), real_line(tmp_path / "uas", scenario) as line:
        call = await place_call(DID, tmp_path / "uac")
        assert call.returncode == 0, call.output
        await line.wait()
    live = await store.next()
    assert live.status is status, live
    assert live.recording == f"{live.linkedid}.wav"
    seconds, rms = wav_duration_and_rms(lab_dialplan.asterisk_recordings_dir / live.recording)
    assert seconds > 5.0 and rms > 300  # the caller's audio: what a voicemail keeps
    if status is CallStatus.ANSWERED:
        assert live.ring_seconds < 1.0 and 5.0 < live.talk_seconds < 11.0, live
    else:  # the ring group rang 3 s, then voicemail listened to the caller until they left
        assert live.answered_at is None and live.dial_status == "ANSWER", live
        assert 2.5 < live.ring_seconds < 4.0 and live.talk_seconds == 0.0, live
        assert 8.0 < live.ended_at - live.started_at < 15.0, live

    await asyncio.sleep(0.5)
    read_back = [r for r in await cdr_since(lab_dialplan, since) if r.linkedid == live.linkedid]
    assert len(read_back) == 1
    cdr = read_back[0]
    assert (cdr.status, cdr.recording) == (status, live.recording), cdr
    assert abs(cdr.ended_at - live.ended_at) < 1.5
    assert abs(cdr.talk_seconds - live.talk_seconds) < 1.5
    assert abs(cdr.ring_seconds - live.ring_seconds) < 1.5


@pytest.mark.parametrize("queue", ["queue", "queue-local"])
async def test_a_queue_member_who_hangs_up_during_the_announcement_did_not_take_the_call(
    lab_dialplan: Settings,
    tmp_path: Path,
    bridge_factory: Callable[..., Awaitable[AmiBridge]],
    queue: str,
) -> None:
    """A queue that answers first, as FreePBX's do, and plays its member an announcement
    (asterisk.conf.d/queues.conf), the member a device or, as in FreePBX, a Local channel
    that dials it: the member picks up and hangs up a second into it, so the caller never
    talks to anyone. app_queue rings the member again until the queue gives up and the caller
    is left to listen: the call is the PBX's (voicemail), not answered, though a phone's Dial
    was answered."""

    async def route(did: str, caller: str) -> Route:
        return Route(f"Local/{queue}@lab-pbx")

    store = Store()
    await bridge_factory(store)
    await call_through_router(lab_dialplan, route, tmp_path, "hang_up")
    live = await store.next()
    assert live.status is CallStatus.VOICEMAIL, live
    assert (live.answered_at, live.dial_status) == (None, "ANSWER"), live
    assert live.recording == f"{live.linkedid}.wav"


async def test_callers_connected_to_a_logged_in_agent_are_each_stored_once(
    lab_dialplan: Settings,
    tmp_path: Path,
    bridge_factory: Callable[..., Awaitable[AmiBridge]],
) -> None:
    """Two callers in turn reach an agent who logged in earlier (app_agent_pool: AgentLogin,
    then AgentRequest behind `Local/agent@lab-pbx`). The bridge gives each caller's channel
    the agent's older Linkedid for the rest of the call. Each call is still reported once,
    under the Linkedid it began with (its inbound channel's, which names its recording), with
    its own caller, answered by a person though no Dial reached one (the agent's BridgeEnter);
    the CDR is read back under the same keys and as answered, so reconciliation stores no
    second copy."""

    calls = tracked_calls(lab_dialplan, bridge_factory, "Local/agent@lab-pbx")
    async with calls as (store, since), agent_logged_in(tmp_path / "agent"):
        for n in range(2):
            call = await place_call(DID, tmp_path / f"uac{n}")
            assert call.returncode == 0, call.output
    live = [await store.next(), await store.next()]
    assert [r.recording for r in live] == [f"{r.linkedid}.wav" for r in live]
    assert live[0].linkedid != live[1].linkedid
    assert all(r.caller == "sipp" and r.status is CallStatus.ANSWERED for r in live), live
    assert all(8.0 < r.talk_seconds < 10.0 for r in live), live
    assert all(8.0 < r.ended_at - r.started_at < 11.0 for r in live), live

    await asyncio.sleep(0.5)
    read_back = await cdr_since(lab_dialplan, since)
    assert sorted((r.linkedid, r.status) for r in read_back) == sorted(
        (r.linkedid, r.status) for r in live
    )


async def test_a_phone_of_the_pbx_calling_a_tracking_number_is_not_a_person_who_answered(
    lab_dialplan: Settings,
    tmp_path: Path,
    bridge_factory: Callable[..., Awaitable[AmiBridge]],
) -> None:
    """Staff call their own tracking number from a phone of the PBX: it reaches the calltrack
    dialplan through a Local channel (`internal` in [lab-pbx]), and the ring group goes to
    voicemail. The phone is bridged with that Local channel from the start: it is the caller,
    and the call is voicemail, live and read back from the CDR, under one key."""

    calls = tracked_calls(lab_dialplan, bridge_factory, "Local/ringgroup@lab-pbx")
    async with calls as (store, since), real_line(tmp_path / "uas", "ring") as line:
        phone = await phone_call(tmp_path / "phone", "internal", 8)
        assert await asyncio.wait_for(phone.wait(), 40) == 0
        await line.wait()
    live = await store.next()
    assert (live.caller, live.status) == ("agentphone", CallStatus.VOICEMAIL), live

    await asyncio.sleep(0.5)
    read_back = await cdr_since(lab_dialplan, since)
    assert [(r.linkedid, r.status) for r in read_back] == [(live.linkedid, live.status)]


async def test_a_number_calltrack_does_not_track_goes_on_to_the_trunks_other_context(
    lab_dialplan: Settings, tmp_path: Path
) -> None:
    """With the trunk pointed at calltrack's context, a number it does not track found no
    extension there and Asterisk refused the call (the office's main line, a fax). Named in
    asterisk.other_numbers_context, the trunk's old context takes it: here the lab PBX's
    `person`, which rings the real line. calltrack neither records nor routes it."""
    assert lab_dialplan.asterisk is not None
    other = lab_dialplan.model_copy(
        update={
            "asterisk": lab_dialplan.asterisk.model_copy(
                update={"other_numbers_context": "lab-pbx"}
            )
        }
    )
    recordings = lab_dialplan.asterisk_recordings_dir
    before = set(recordings.glob("*.wav"))
    load_lab_dialplan(other)
    try:
        async with real_line(tmp_path / "uas") as line:
            call = await place_call("person", tmp_path / "uac")
            assert call.returncode == 0, call.output
            assert await line.wait() == 0
        assert "INVITE sip:" in line.messages()
    finally:
        load_lab_dialplan(lab_dialplan)
    assert set(recordings.glob("*.wav")) == before, "not a tracked call: nothing recorded"
