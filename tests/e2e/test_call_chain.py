"""Issue 3's six scenarios, end to end: a visitor's number, a real call, a stored, attributed
record with its recording, read back through the public staff API."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import aiohttp
import pytest
from pydub import AudioSegment

from tests.asterisk.conftest import lab
from tests.e2e.conftest import FREEZE, Daemon, call
from tests.helpers import STAFF_TOKEN

pytestmark = pytest.mark.asterisk

CPC = "http://127.0.0.1:8080/landing?utm_source=google&utm_medium=cpc&utm_campaign=x&gclid=G1"
STATIC = "+74990000009"
SCENARIO_TALK = 7.1  # scenarios/uac_audio.xml: pause after ACK, then BYE


async def test_paid_visitor_call_is_answered_recorded_and_attributed(
    daemon: Daemon, tmp_path: Path
) -> None:
    visit = await daemon.visit(CPC)
    did = visit["numbers"][0]["number"]
    await call(did, tmp_path)
    stored = await daemon.wait_call(did)
    assert stored["status"] == "answered"
    assert stored["attribution"] == "session"
    assert stored["session_id"] == visit["session_id"]
    assert stored["visitor_id"] == visit["visitor_id"]
    assert (stored["source"], stored["medium"], stored["campaign"]) == ("google", "cpc", "x")
    assert stored["click_ids"] == {"gclid": "G1"}
    assert stored["landing_url"] == CPC and stored["visit_number"] == 1
    assert stored["first_source"] == "google"
    assert not stored["repeat_caller"]
    converted = await daemon.wait_converted(stored["id"])  # the WAV became an mp3
    async with aiohttp.ClientSession() as http:
        async with http.get(converted["recording_url"]) as anonymous:
            assert anonymous.status == 401
        async with http.get(
            converted["recording_url"], headers={"Authorization": f"Bearer {STAFF_TOKEN}"}
        ) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "audio/mpeg"
            audio = AudioSegment.from_file(io.BytesIO(await response.read()), format="mp3")
    assert audio.rms > 300, "the recording is silent"
    # the scenario talks for 7.1 s (7.08 s of audio, then BYE): all agree with it within 1 s
    assert abs(stored["talk_seconds"] - SCENARIO_TALK) < 1.0
    assert abs(len(audio) / 1000 - SCENARIO_TALK) < 1.0
    assert abs(converted["recording_seconds"] - SCENARIO_TALK) < 1.0
    # ... and the channel report counts it: google's visit, call, answer and campaign
    by_source = {r["key"]: r for r in (await daemon.report(group_by="source"))["rows"]}
    assert (by_source["google"]["visits"], by_source["google"]["calls"]) == (1, 1)
    assert by_source["google"]["answered"] == 1
    # SIPp's caller ID is "sipp", not a number: it may have called before, so not first-time
    assert by_source["google"]["first_time_callers"] == 0
    by_campaign = await daemon.report(group_by="campaign", model="first", source="google")
    assert [(r["key"], r["calls"]) for r in by_campaign["rows"]] == [("x", 1)]


async def test_static_number_call_is_attributed_to_its_source(
    daemon: Daemon, tmp_path: Path
) -> None:
    await call(STATIC, tmp_path)
    stored = await daemon.wait_call(STATIC)
    assert (stored["attribution"], stored["source"], stored["medium"]) == (
        "static",
        "billboard",
        "offline",
    )
    assert stored["session_id"] is None


async def test_call_after_the_freeze_is_not_given_to_the_old_session(
    daemon: Daemon, tmp_path: Path
) -> None:
    visit = await daemon.visit(CPC)
    did = visit["numbers"][0]["number"]
    await asyncio.sleep(FREEZE + 1.0)  # no pings: the lease ends freeze_time after the visit
    await call(did, tmp_path)
    stored = await daemon.wait_call(did)
    # only probably the old session's (its lease ended within the probable window), never as
    # an exact match: no session, no source, and a row of its own in the report
    assert stored["attribution"] == "probable"
    assert stored["session_id"] is None and stored["source"] is None
    # (filtered by the visit's campaign: reconciliation also brings the lab's earlier calls)
    report = await daemon.report(group_by="source", campaign="x")
    assert {r["key"]: r["calls"] for r in report["rows"]} == {"(probable)": 1, "google": 0}
    included = await daemon.report(group_by="source", campaign="x", include_probable="1")
    assert {r["key"]: r["calls"] for r in included["rows"]} == {"google": 1}


async def test_a_national_did_from_the_carrier_reaches_its_number(
    daemon: Daemon, tmp_path: Path
) -> None:
    """With `region: RU`, a carrier sending 8 499 ... instead of +7 499 ... is still tracked."""
    await call("8" + STATIC.removeprefix("+7"), tmp_path)
    stored = await daemon.wait_call(STATIC)
    assert (stored["did"], stored["attribution"], stored["source"]) == (
        STATIC,
        "static",
        "billboard",
    )


@pytest.mark.parametrize(("line", "status"), [("busy", "busy"), ("ring", "missed")])
async def test_unanswered_call_is_stored_with_its_ring_time(
    daemon: Daemon, tmp_path: Path, line: str, status: str
) -> None:
    await call(STATIC, tmp_path, line)
    stored = await daemon.wait_call(STATIC)
    assert stored["status"] == status
    assert stored["answered_at"] is None and stored["talk_seconds"] == 0
    if line == "ring":  # lab.yaml: ring_timeout 6s
        assert 5.0 < stored["ring_seconds"] < 8.0


async def test_call_while_the_daemon_is_dead_is_forwarded_recorded_and_stored_later(
    daemon: Daemon, tmp_path: Path
) -> None:
    visit = await daemon.visit(CPC)
    did = visit["numbers"][0]["number"]
    daemon.kill()  # SIGKILL: no goodbye to Asterisk, AGI refused from now on
    await call(did, tmp_path)
    daemon.start()
    await daemon.wait_ready()
    stored = await daemon.wait_call(did)
    assert stored["status"] == "answered"
    assert stored["session_id"] == visit["session_id"] and stored["source"] == "google"
    assert stored["recording_url"]


async def test_bridge_reconnects_after_asterisk_restart(daemon: Daemon, tmp_path: Path) -> None:
    restarted = await asyncio.to_thread(lab, "restart")
    assert restarted.returncode == 0, restarted.stderr
    await daemon.wait_ready(within=60)
    await call(STATIC, tmp_path)
    stored = await daemon.wait_call(STATIC)
    assert stored["status"] == "answered"
    calls = [c for c in await daemon.calls() if c["did"] == STATIC]
    assert len(calls) == 1, "stored once, not once per path (AMI and reconciliation)"
