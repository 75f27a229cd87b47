"""CallTracker on raw AMI events recorded from the lab (tests/fixtures/ami/lab_calls.ami):
an answered call, one the real line rejected with 486, one it never answered (ring_timeout 6s).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ami_bridge.tracker import SILENT_LIMIT, CallTracker, event_from_headers, parse_stream
from attribution.calls import CALLER_MAX, DIAL_STATUS_MAX, CallReport, CallStatus
from tests.helpers import SMUGGLED, smuggle

FIXTURE = Path(__file__).parents[1] / "fixtures" / "ami" / "lab_calls.ami"
EVENTS = parse_stream(FIXTURE.read_text())


def replay(events: list[dict[str, str]], tracker: CallTracker | None = None) -> list[CallReport]:
    tracker = CallTracker() if tracker is None else tracker
    return [r for e in events for r in tracker.feed(e, received_at=0.0)]


FULL = {r.linkedid: r for r in replay(EVENTS)}


def test_fixture_is_what_the_calltrack_user_receives() -> None:
    names = {e["Event"] for e in EVENTS}
    assert names == {
        "Newchannel",
        "MixMonitorStart",
        "UserEvent",
        "DialBegin",
        "DialEnd",
        "MixMonitorStop",
        "Hangup",
    }
    assert all("Timestamp" in e for e in EVENTS)


def test_one_report_per_call_with_status_ring_and_talk() -> None:
    reports = replay(EVENTS)
    assert [(r.did, r.caller, r.status) for r in reports] == [
        ("+74990000002", "sipp", CallStatus.ANSWERED),
        ("+74990000003", "sipp", CallStatus.BUSY),
        ("+74990000004", "sipp", CallStatus.MISSED),
    ]
    answered, busy, missed = reports
    assert answered.ring_seconds == pytest.approx(0.0095, abs=0.001)
    assert answered.talk_seconds == pytest.approx(9.07, abs=0.01)
    assert answered.recording == f"{answered.linkedid}.wav"
    assert busy.talk_seconds == 0 and busy.recording is None and busy.dial_status == "BUSY"
    assert missed.ring_seconds == pytest.approx(6.01, abs=0.01)
    assert missed.recording is None and missed.answered_at is None
    # started_at is the inbound channel's creation (Newchannel), not the first event seen.
    assert answered.started_at == float(EVENTS[0]["Timestamp"])


def _end_index(linkedid: str) -> int:
    return next(
        i
        for i, e in enumerate(EVENTS)
        if e.get("UserEvent") == "CalltrackEnd" and e["Linkedid"] == linkedid
    )


def _with_dialed_peer(events: list[dict[str, str]]) -> list[dict[str, str]]:
    """The events as today's dialplan sends them: CalltrackEnd names the channel that answered
    (DialedPeer; the fixture was recorded before it did)."""
    peers = {
        e["Linkedid"]: e["DestChannel"]
        for e in events
        if e["Event"] == "DialEnd"
        and e["DialStatus"] == "ANSWER"
        and e["Uniqueid"] == e["Linkedid"]
    }
    return [
        {**e, "DialedPeer": peers.get(e["Linkedid"], "")}
        if e.get("UserEvent") == "CalltrackEnd"
        else e
        for e in events
    ]


def _line_seen(linkedid: str, dropped: int) -> bool:
    return (
        any(e["Event"] == "DialEnd" and e["Linkedid"] == linkedid for e in EVENTS[dropped:])
        or FULL[linkedid].status is not CallStatus.ANSWERED
    )


@pytest.mark.parametrize("peer", [True, False], ids=["dialed-peer", "without-dialed-peer"])
@pytest.mark.parametrize("dropped", range(len(EVENTS) + 1))
def test_attaching_mid_call_drops_the_first_n_events(dropped: int, peer: bool) -> None:
    """Like connecting to AMI while calls are up: reports stay right, or are left to the CDR."""
    reports = replay((_with_dialed_peer(EVENTS) if peer else EVENTS)[dropped:])
    assert len({r.linkedid for r in reports}) == len(reports)
    # A call is reported iff its CalltrackEnd (sent from the hangup handler) was received; and,
    # if it was answered, an event said whether by a Local line (whose answer may be voicemail's)
    assert {r.linkedid for r in reports} == {
        lid
        for lid in FULL
        if _end_index(lid) >= dropped and (peer or dropped == 0 or _line_seen(lid, dropped))
    }
    for report in reports:
        full = FULL[report.linkedid]
        assert (report.did, report.caller, report.status, report.recording) == (
            full.did,
            full.caller,
            full.status,
            full.recording,
        )
        assert report.started_at == pytest.approx(full.started_at, abs=0.02)
        assert report.ended_at == full.ended_at
        assert report.talk_seconds == pytest.approx(full.talk_seconds, abs=0.05)


def test_calls_outside_calltrack_are_not_reported() -> None:
    others = [e for e in EVENTS if e["Event"] != "UserEvent"]
    tracker = CallTracker()
    assert replay(others, tracker) == []
    assert len(tracker) == 0


def test_events_after_the_report_do_not_report_twice() -> None:
    tracker = CallTracker()
    first = replay(EVENTS, tracker)
    assert replay(EVENTS, tracker) == []
    assert len(first) == 3


def test_recording_only_after_mixmonitor_stopped() -> None:
    """Without MixMonitorStop/CalltrackEnd the file may still be open: no recording named."""
    answered = [e for e in EVENTS if e["Linkedid"] == EVENTS[0]["Linkedid"]]
    unclosed = [
        e
        for e in answered
        if e["Event"] != "MixMonitorStop" and e.get("UserEvent") != "CalltrackEnd"
    ]
    (report,) = replay(unclosed)
    assert report.status is CallStatus.ANSWERED
    assert report.recording is None


def test_calls_open_across_a_lost_link_are_dropped_only_when_silent() -> None:
    tracker = CallTracker()
    first_call = [e for e in EVENTS if e["Linkedid"] == EVENTS[0]["Linkedid"]]
    replay(first_call[:6], tracker)
    assert len(tracker) == 1
    now = float(first_call[5]["Timestamp"])
    assert tracker.drop_stale(now=now + 7200, older_than=60) == []  # not stale: link never lost
    tracker.link_lost()
    assert tracker.drop_stale(now=now + 30, older_than=60) == []
    assert tracker.drop_stale(now=now + 61, older_than=60) == [EVENTS[0]["Linkedid"]]
    assert len(tracker) == 0


def test_a_call_silent_for_a_day_is_forgotten_and_its_late_events_ignored() -> None:
    """An attended transfer or a pickup moves a channel to another call's Linkedid, so the
    Hangup this call waited for never comes under its own: kept forever, such calls were a
    leak of the daemon's memory. Its end is left to the CDR; a late event makes no call."""
    tracker = CallTracker()
    first_call = [e for e in EVENTS if e["Linkedid"] == EVENTS[0]["Linkedid"]]
    replay(first_call[:6], tracker)
    last = float(first_call[5]["Timestamp"])
    assert tracker.drop_stale(now=last + SILENT_LIMIT - 1, older_than=60) == []
    assert tracker.drop_stale(now=last + SILENT_LIMIT + 1, older_than=60) == [EVENTS[0]["Linkedid"]]
    assert replay(first_call[6:], tracker) == [] and len(tracker) == 0


def test_parse_stream_skips_responses_and_keeps_empty_values() -> None:
    text = (
        "Asterisk Call Manager/9.0.0\r\nResponse: Success\r\nPing: Pong\r\n\r\n"
        "Event: Hangup\r\nAccountCode: \r\nLinkedid: 1.0\r\n\r\n"
    )
    assert parse_stream(text) == [{"Event": "Hangup", "AccountCode": "", "Linkedid": "1.0"}]


def _first_call_with(**changes: str) -> list[dict[str, str]]:
    linkedid = EVENTS[0]["Linkedid"]
    return [
        {**e, **{k: v for k, v in changes.items() if k in e}}
        for e in EVENTS
        if e["Linkedid"] == linkedid
    ]


def test_pbx_fields_are_fitted_to_the_calls_table() -> None:
    """An over-long caller ID is cut to its column, a recording that is no plain file name is
    dropped: the database never gets a value it would refuse, and nothing outside the folder."""
    (long,) = replay(_first_call_with(CallerIDNum="7" * 200, DialStatus="ANSWER" + "X" * 50))
    assert long.caller == "7" * CALLER_MAX
    assert len(long.dial_status) == DIAL_STATUS_MAX
    for bad in ("../../etc/passwd", "/var/spool/x.wav", "a\\b.wav", "x" * 300 + ".wav"):
        (report,) = replay(_first_call_with(Recording=bad))
        assert report.recording is None, bad
        assert report.status is CallStatus.ANSWERED


def test_a_bridge_id_smuggled_into_a_bridge_event_is_not_the_bridge() -> None:
    """BridgeEnter writes the bridge's fields before the channel's: a caller-set value with
    CR/LF repeats BridgeUniqueid after the real one, and the last value won."""
    headers = {
        "Event": "BridgeEnter",
        "Privilege": "call,all",
        "BridgeUniqueid": ["real-bridge", "callers-bridge"],
        "BridgeType": ["basic", "holding"],
        "Channel": "PJSIP/trunk-00000001",
        "CallerIDNum": "sipp",
        "Uniqueid": "1.1",
    }
    event = event_from_headers(headers)
    assert event is not None
    assert (event["BridgeUniqueid"], event["BridgeType"]) == ("real-bridge", "basic")


def test_headers_smuggled_in_through_the_callers_name_are_ignored() -> None:
    """Asterisk writes the caller's name before the channel's ids and the UserEvent's own DID and
    Recording: lines smuggled in there come first and must not win (nor move the event to another
    call, or turn it into another event)."""
    raw = FIXTURE.read_bytes().decode()
    forged = smuggle(raw)
    assert forged.count(SMUGGLED) == 33  # every name of the caller in the capture
    reports = replay(parse_stream(forged))
    assert [(r.linkedid, r.did, r.caller, r.status, r.recording) for r in reports] == [
        (r.linkedid, r.did, r.caller, r.status, r.recording) for r in FULL.values()
    ]
    for report in reports:
        full = FULL[report.linkedid]
        assert (report.started_at, report.ended_at) == (full.started_at, full.ended_at)
        assert report.talk_seconds == pytest.approx(full.talk_seconds, abs=0.05)


def test_an_event_about_two_channels_with_a_repeated_header_is_dropped() -> None:
    """In Dial events the second channel's caller fields come after the first channel's ids, so
    a repeated Linkedid there cannot be told from the real one."""
    assert (
        event_from_headers({"Event": "DialEnd", "DestUniqueid": "2", "Linkedid": ["1", "3"]})
        is None
    )
    assert event_from_headers(
        {"Event": ["UserEvent", "Hangup"], "DID": ["+7499666", "+7499002"]}
    ) == {
        "Event": "UserEvent",
        "DID": "+7499002",
    }


def test_a_local_line_counts_as_answered_only_when_a_phone_behind_it_answers() -> None:
    """tests/fixtures/ami/local_lines.ami: two lab calls to Local/ lines, as a FreePBX ring group
    is (asterisk.conf.d/extensions.conf [lab-pbx]). Both Local channels answered the inbound one:
    the first when the real line did, the second when voicemail took the call after 3 s."""
    events = parse_stream((FIXTURE.parent / "local_lines.ami").read_text())
    person, voicemail = replay(events)
    assert person.status is CallStatus.ANSWERED
    assert person.ring_seconds == pytest.approx(0.011, abs=0.001)
    assert person.talk_seconds == pytest.approx(9.02, abs=0.01)
    assert voicemail.status is CallStatus.VOICEMAIL
    assert (voicemail.answered_at, voicemail.dial_status) == (None, "ANSWER")
    # the caller waited while the ring group rang (3 s), not while they left their message
    assert voicemail.talk_seconds == 0 and voicemail.ring_seconds == pytest.approx(3.01, abs=0.01)
    assert voicemail.ended_at - voicemail.started_at == pytest.approx(12.03, abs=0.01)
    # the caller's message is what staff want to hear
    assert voicemail.recording == f"{voicemail.linkedid}.wav"


def test_a_queue_member_who_hangs_up_during_the_announcement_did_not_take_the_call() -> None:
    """tests/fixtures/ami/queue_members.ami: two lab calls to a queue that answers first, as
    FreePBX's do, and plays its member an announcement before connecting them
    (asterisk.conf.d/queues.conf). The first call's member picked up and hung up a second into
    it: app_queue says so with a second DialEnd for that member (NOANSWER), then rang the
    member again unanswered until the queue gave up and the caller was left to listen. The
    second call's member heard the announcement out and talked."""
    dumped, connected = replay(parse_stream((FIXTURE.parent / "queue_members.ami").read_text()))
    assert dumped.status is CallStatus.VOICEMAIL, dumped
    assert (dumped.answered_at, dumped.dial_status) == (None, "ANSWER")
    assert dumped.recording == f"{dumped.linkedid}.wav"  # the line took the call: keep what it got
    assert connected.status is CallStatus.ANSWERED, connected
    assert connected.ring_seconds == pytest.approx(0.008, abs=0.001)
    assert connected.talk_seconds == pytest.approx(9.01, abs=0.01)


AGENT_EVENTS = parse_stream((FIXTURE.parent / "agent_calls.ami").read_text())
#: each call's first Linkedid: its inbound channel's, which names its recording
AGENT_CALLS = [e["Uniqueid"] for e in AGENT_EVENTS if e.get("UserEvent") == "CalltrackStart"]


@pytest.mark.parametrize("bridges", [True, False], ids=["bridge events", "an older eventfilter"])
def test_callers_connected_to_a_logged_in_agent_are_each_their_own_answered_call(
    bridges: bool,
) -> None:
    """tests/fixtures/ami/agent_calls.ami: an agent logs in (app_agent_pool's AgentLogin, its
    own call), then two lab calls reach them in turn through `Local/agent@lab-pbx`
    (AgentRequest), each talking 9 s. The bridge gives each caller's channel the agent's older
    Linkedid, so each call's last events (its end event, its Hangup) come under the agent's.
    Each call is still reported once, under the Linkedid it began with, with its own caller and
    times; before, both ends went to the agent's call (the agent's number as the caller, the
    login's start), the second was lost as a repeat of the first, and the calls never ended.
    No Dial reached the agent: the agent's BridgeEnter beside the caller's Local line says a
    person took the call. Without Bridge events (an AMI user's eventfilter from before
    2026-12-02) the call is the voicemail it looks like."""
    events = [e for e in AGENT_EVENTS if bridges or not e["Event"].startswith("Bridge")]
    agent = events[0]["Linkedid"]
    assert {e["Linkedid"] for e in events if e.get("UserEvent") == "CalltrackEnd"} == {agent}
    assert agent not in AGENT_CALLS and len(AGENT_CALLS) == 2
    tracker = CallTracker()
    reports = replay(events, tracker)
    assert len(tracker) == 0  # every call ended, the agent's login too
    assert [r.linkedid for r in reports] == AGENT_CALLS
    for report in reports:
        assert report.caller == "sipp" and report.recording == f"{report.linkedid}.wav"
        assert report.ended_at - report.started_at == pytest.approx(9.5, abs=0.3)
        if bridges:
            assert report.status is CallStatus.ANSWERED, report
            assert report.talk_seconds == pytest.approx(9.0, abs=0.1)
            assert report.ring_seconds < 0.6
        else:
            assert report.status is CallStatus.VOICEMAIL, report


def test_a_local_queue_member_who_hangs_up_during_the_announcement_did_not_take_the_call() -> None:
    """tests/fixtures/ami/queue_local_members.ami: the queue of the test above with its member
    behind a Local channel, as FreePBX's are (`Local/person@lab-pbx/n`, which dials the real
    line). The phone's answer comes from the Local member's far half, and app_queue's second
    DialEnd names the member's near half: what answered through it is taken back. The second
    call's member heard the announcement out and talked."""
    events = parse_stream((FIXTURE.parent / "queue_local_members.ami").read_text())
    dumped, connected = replay(events)
    assert dumped.status is CallStatus.VOICEMAIL, dumped
    assert connected.status is CallStatus.ANSWERED, connected
    assert connected.talk_seconds == pytest.approx(9.01, abs=0.01)


def test_a_phone_of_the_pbx_calling_a_tracking_number_is_the_caller_not_a_person() -> None:
    """tests/fixtures/ami/internal_call.ami: a phone of the PBX dials a tracking number through
    a Local channel (staff testing their own number); the ring group it reaches goes to
    voicemail. The phone is bridged with the Local channel the calltrack dialplan runs on: it
    is the caller's side, not a person who answered."""
    [call] = replay(parse_stream((FIXTURE.parent / "internal_call.ami").read_text()))
    assert (call.caller, call.status) == ("agentphone", CallStatus.VOICEMAIL), call
    assert call.ring_seconds == pytest.approx(3.01, abs=0.01)


BRIDGED = [
    e
    for name in ("queue_local_members", "internal_call", "agent_calls")
    for e in parse_stream((FIXTURE.parent / f"{name}.ami").read_text())
]
BRIDGED_FULL = {r.linkedid: r.status for r in replay(BRIDGED)}


@pytest.mark.parametrize("dropped", range(0, len(BRIDGED) + 1, 3))
def test_attached_mid_call_with_bridges_the_caller_is_never_the_person(dropped: int) -> None:
    """calltrack attached to AMI mid-call (a restart, a lost link): the events before are not
    seen, the dialplan's start event among them. The caller (the call's first channel) bridged
    with the line is still no person: a call that went to voicemail is never reported
    answered; whatever cannot be told is left to the CDR."""
    for report in replay(BRIDGED[dropped:]):
        if report.linkedid in BRIDGED_FULL:  # not a call seen from its middle under another key
            assert report.status is BRIDGED_FULL[report.linkedid], (dropped, report)


def test_a_member_two_local_channels_away_is_taken_back_too() -> None:
    """FreePBX's queue member (from-queue) may dial a follow-me, itself a Local channel, which
    dials the phone: the first call of queue_local_members.ami with that hop added. The member
    hangs up during the announcement: app_queue takes back the member, and with it what
    answered two Local channels down."""
    events = parse_stream((FIXTURE.parent / "queue_local_members.ami").read_text())
    dumped = events[0]["Linkedid"]
    member = next(e["DestChannel"] for e in events if e["Event"] == "DialBegin" and
                  e["DestChannel"].startswith("Local/person"))  # fmt: skip
    member_far = member[:-1] + "2"
    hop_near, hop_far = "Local/fm@lab-pbx-000000f1;1", "Local/fm@lab-pbx-000000f1;2"
    chain: list[dict[str, str]] = []
    for e in (e for e in events if e["Linkedid"] == dumped):
        at = float(e["Timestamp"])
        if e["Event"] == "DialBegin" and e["Channel"] == member_far:  # the hop, then the phone
            chain += [
                dict(e, Event="Newchannel", Channel=hop_near, Uniqueid="F1", Timestamp=str(at)),
                dict(e, Event="Newchannel", Channel=hop_far, Uniqueid="F2", Timestamp=str(at)),
                dict(e, DestChannel=hop_near, DestUniqueid="F1"),
                dict(e, Channel=hop_far, Uniqueid="F2"),
            ]
        elif e["Event"] == "DialEnd" and e["Channel"] == member_far:
            chain += [dict(e, Channel=hop_far, Uniqueid="F2"),
                      dict(e, DestChannel=hop_near, DestUniqueid="F1")]  # fmt: skip
        elif e["Event"] == "BridgeEnter" and e["Channel"] == member_far:
            chain.append(dict(e, Channel=hop_far, Uniqueid="F2"))  # the phone's bridge
        elif e["Event"] == "Hangup" and e["Channel"] == member_far:
            chain += [dict(e, Channel=hop_near, Uniqueid="F1"),
                      dict(e, Channel=hop_far, Uniqueid="F2"), e]  # fmt: skip
        else:
            chain.append(e)
    [report] = replay(chain)
    assert report.status is CallStatus.VOICEMAIL, report


def test_an_agent_logged_in_for_longer_than_a_call_can_last_still_takes_callers() -> None:
    """The agent's own call (the login) says nothing for a day and is dropped as silent, or
    after a lost AMI link: the callers connected to the agent later are still answered."""
    first = next(e for e in AGENT_EVENTS if e["Uniqueid"] == AGENT_CALLS[0])
    for link_lost in (False, True):
        tracker = CallTracker()
        reports = []
        for event in AGENT_EVENTS:
            if event is first:
                if link_lost:
                    tracker.link_lost()
                silent = float(event["Timestamp"]) + SILENT_LIMIT + 1
                assert tracker.drop_stale(silent, older_than=6 * 3600) == [
                    AGENT_EVENTS[0]["Linkedid"]
                ]
            reports += tracker.feed(event, 0.0)
        assert [r.status for r in reports] == [CallStatus.ANSWERED] * 2, link_lost


def test_a_caller_an_agent_transfers_on_is_reported_when_they_hang_up() -> None:
    """After the agent's bridge the caller's channel carries the agent's Linkedid, and so does
    the leg it dials when the agent transfers it to extension 202 (events shaped as the lab's).
    That leg is the caller's call's: its Hangup ends it there, and the call is reported."""
    caller = AGENT_CALLS[0]
    agent = AGENT_EVENTS[0]["Linkedid"]
    cut = next(
        i
        for i, e in enumerate(AGENT_EVENTS)
        if e["Event"] == "BridgeLeave" and e["Uniqueid"] == caller and e["Linkedid"] == agent
    )
    trunk = AGENT_EVENTS[cut]["Channel"]
    leg, leg_id = "PJSIP/202-00000009", "1796209070.9"

    def event(name: str, channel: str, uniqueid: str, at: float, **more: str) -> dict[str, str]:
        return {
            "Event": name, "Channel": channel, "Uniqueid": uniqueid, "Linkedid": agent,
            "Timestamp": str(at), **more,
        }  # fmt: skip

    dial = {"DestChannel": leg, "DestUniqueid": leg_id}
    transfer = [
        event("BridgeLeave", trunk, caller, 1796209070.01, BridgeUniqueid="b1"),
        event("Newchannel", leg, leg_id, 1796209070.10),
        event("DialBegin", trunk, caller, 1796209070.11, **dial),
        event("DialEnd", trunk, caller, 1796209073.0, DialStatus="ANSWER", **dial),
        event("BridgeEnter", leg, leg_id, 1796209073.01, BridgeUniqueid="b2", BridgeType="basic"),
        event("BridgeEnter", trunk, caller, 1796209073.02, BridgeUniqueid="b2", BridgeType="basic"),
        event("UserEvent", trunk, caller, 1796209090.0, UserEvent="CalltrackEnd",
              DID="74990000002", DialStatus="ANSWER"),
        event("Hangup", leg, leg_id, 1796209090.01),
        event("Hangup", trunk, caller, 1796209090.02),
    ]  # fmt: skip
    tracker = CallTracker()
    reports = replay(AGENT_EVENTS[:cut] + transfer, tracker)
    assert [(r.linkedid, r.status) for r in reports] == [(caller, CallStatus.ANSWERED)]
    assert reports[0].ended_at == pytest.approx(1796209090.02)
    assert len(tracker) == 1  # the agent's login, still on


def test_an_eventfilter_without_bridge_events_is_named_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An AMI user set up before 2026-12-02 does not pass BridgeEnter: every answered call is
    bridged, so after BRIDGELESS_WARNING_AFTER answered calls without one, the log says once
    what to add. Lab captures without bridge events (three answered calls) warn once; after
    bridge events, never."""
    bridgeless = [
        e
        for name in ("lab_calls", "local_lines")
        for e in parse_stream((FIXTURE.parent / f"{name}.ami").read_text())
    ]
    assert sum(r.line_answered_at is not None for r in replay(bridgeless)) == 3
    warnings = [r for r in caplog.records if "BridgeEnter" in r.getMessage()]
    assert len(warnings) == 1 and "manager_calltrack.conf" in warnings[0].getMessage()
    caplog.clear()
    replay(AGENT_EVENTS + bridgeless)  # the filter passes them: the same calls say nothing
    assert not [r for r in caplog.records if "BridgeEnter" in r.getMessage()]


def test_a_local_line_without_its_own_dial_end_still_needs_a_phones_answer() -> None:
    """Without its own DialEnd (an event lost), a Local line's answer comes from the end event's
    AnsweredMs, and still needs a phone's answer to count as a person's."""
    events = parse_stream((FIXTURE.parent / "local_lines.ami").read_text())
    inbound_answers = [
        e for e in events if e["Event"] == "DialEnd" and e["Channel"].startswith("PJSIP/trunk")
    ]
    kept = [e for e in events if e not in inbound_answers]
    person, voicemail = replay(kept)
    assert person.status is CallStatus.ANSWERED
    assert voicemail.status is CallStatus.VOICEMAIL


LOCAL_EVENTS = parse_stream((FIXTURE.parent / "local_lines.ami").read_text())
LOCAL_FULL = {r.linkedid: r for r in replay(LOCAL_EVENTS)}


def _same_call(report: CallReport) -> None:
    full = LOCAL_FULL[report.linkedid]
    assert (report.status, report.dial_status, report.recording) == (
        full.status,
        full.dial_status,
        full.recording,
    )
    assert (report.answered_at is None) == (full.answered_at is None)


def _indexes(linkedid: str) -> list[int]:
    return [i for i, e in enumerate(LOCAL_EVENTS) if e["Linkedid"] == linkedid]


PERSON = next(r for r in LOCAL_FULL.values() if r.status is CallStatus.ANSWERED)
VOICEMAIL = next(r for r in LOCAL_FULL.values() if r.status is CallStatus.VOICEMAIL)
#: where the phone behind the first call's Local line answered
PHONE_ANSWER = next(
    i
    for i in _indexes(PERSON.linkedid)
    if LOCAL_EVENTS[i]["Event"] == "DialEnd"
    and not LOCAL_EVENTS[i]["DestChannel"].startswith("Local/")
)


@pytest.mark.parametrize("dropped", range(len(LOCAL_EVENTS) + 1))
def test_a_local_line_attached_mid_call_is_right_or_left_to_the_cdr(dropped: int) -> None:
    """Whether a phone behind a Local line answered is one event (its DialEnd): attached after
    it, the call is left to the CDR, never reported as the voicemail it was not; attached before
    it, the call is reported. The voicemail is reported only when seen from its start (its
    line's answer alone does not say that no phone answered)."""
    reports = replay(LOCAL_EVENTS[dropped:])
    for report in reports:
        _same_call(report)
    reported = {r.linkedid for r in reports}
    assert (PERSON.linkedid in reported) == (dropped <= PHONE_ANSWER)
    assert (VOICEMAIL.linkedid in reported) == (dropped <= _indexes(VOICEMAIL.linkedid)[0])


@pytest.mark.parametrize("lost", range(len(LOCAL_EVENTS)))
def test_a_local_line_whose_events_were_dropped_midway_is_right_or_left_to_the_cdr(
    lost: int,
) -> None:
    """The AMI link lost (or events dropped for the backlog) at one event of the call: that
    event is missing, later ones come. Before, a phone's answer missed made it voicemail."""
    tracker = CallTracker()
    reports = replay(LOCAL_EVENTS[:lost], tracker)
    tracker.link_lost()
    reports += replay(LOCAL_EVENTS[lost + 1 :], tracker)
    for report in reports:
        _same_call(report)
    untouched = {  # not up when the link was lost: none of their events is missing
        lid for lid in LOCAL_FULL if not _indexes(lid)[0] <= lost <= _indexes(lid)[-1]
    }
    assert untouched <= {r.linkedid for r in reports}
    if lost != PHONE_ANSWER and LOCAL_EVENTS[lost]["Event"] != "Hangup":
        assert PERSON.linkedid in {r.linkedid for r in reports}  # its phone's answer was seen


def test_without_a_cdr_a_call_whose_events_do_not_tell_is_still_stored() -> None:
    """With no asterisk.cdr_csv nothing would read it back: it is reported as seen, not lost."""
    answer = next(
        i
        for i, e in enumerate(LOCAL_EVENTS)
        if e["Event"] == "DialEnd" and e["DestChannel"].startswith("PJSIP/")
    )
    events = LOCAL_EVENTS[answer + 1 :]  # attached after the phone's answer
    assert {r.linkedid for r in replay(events)} == {LOCAL_EVENTS[-1]["Linkedid"]}
    reports = replay(events, CallTracker(cdr=False))
    assert {r.linkedid for r in reports} == set(LOCAL_FULL)
