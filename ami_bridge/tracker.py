"""AMI events folded into calls (one per Linkedid) and a CallReport once a call is over.

Pure bookkeeping, no I/O: the bridge feeds it events as they come, tests feed it recorded ones.
A call counts only if the calltrack dialplan handled it (it sent a Calltrack* UserEvent); the
report is built when the inbound channel and every other leg seen have hung up.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from attribution.calls import CallReport, is_local_channel, local_partner
from attribution.phone import PhoneNumberError, to_e164
from dialplan.generator import EVENT_END, EVENT_START

log = logging.getLogger(__name__)

Event = Mapping[str, str]
#: An AMI message as panoramisk parses it: a header seen more than once has all its values.
Headers = Mapping[str, str | list[str]]

_REMEMBER_FINISHED = 10_000
#: how many dials back an answer is traced (a queue's Local member, its ring group, ...)
_MAX_DIAL_DEPTH = 16
#: answered calls seen without a single BridgeEnter before the AMI user's eventfilter is said to
#: predate them (every answered call is bridged: one such call is already a sign)
BRIDGELESS_WARNING_AFTER = 3
#: the events the fold reads: the AMI user's eventfilter must pass them (`calltrack doctor`
#: checks it; asterisk.conf.d/manager_calltrack.conf passes exactly these and MixMonitorStart)
FOLLOWED_EVENTS = frozenset(
    {"Newchannel", "DialBegin", "DialEnd", "BridgeEnter", "BridgeLeave", "MixMonitorStop"}
    | {"Hangup", "UserEvent"}
)
#: a call open this long without an event of its own is forgotten (see CallTracker.drop_stale)
SILENT_LIMIT = 24 * 3600.0

# Asterisk writes each header once. One that appears twice was smuggled in by a caller-controlled
# value carrying CR/LF (a CallerIDName, a ConnectedLineName), and those sit inside the channel's
# fields: after the headers below, before the channel's Uniqueid/Linkedid and the event's own
# fields (a UserEvent's DID and Recording). So the real value of a repeated header is its first
# if it is one of these, its last otherwise.
_AHEAD_OF_CALLER_FIELDS = frozenset(
    {"Event", "Privilege", "Timestamp", "Channel", "ChannelState", "ChannelStateDesc"}
    # BridgeEnter and BridgeLeave write the bridge's fields before the channel's
    # (main/manager_bridges.c): a repeated BridgeUniqueid would put the caller in a bridge
    # of the caller's making
    | {"BridgeUniqueid", "BridgeType", "BridgeTechnology", "BridgeCreator", "BridgeName"}
    | {"BridgeNumChannels", "BridgeVideoSourceMode", "BridgeVideoSource"}
)
# ... except in events that describe a second channel (Dial*: Dest...), whose caller fields come
# after the first channel's ids: there a repeated header cannot be told from the real one.
_SECOND_CHANNEL = "DestUniqueid"


def event_from_headers(headers: Headers) -> dict[str, str] | None:
    """One value per header, the one Asterisk wrote; None to drop an event that cannot be
    trusted (a repeated header in an event about two channels)."""
    repeated = sorted(key for key, value in headers.items() if not isinstance(value, str))
    if repeated:
        trusted = _SECOND_CHANNEL not in headers
        log.warning(
            "AMI event with repeated headers %s (injected?)%s: %s",
            repeated,
            "" if trusted else ", dropped",
            dict(headers),
        )
        if not trusted:
            return None
    return {
        key: value if isinstance(value, str) else value[0 if key in _AHEAD_OF_CALLER_FIELDS else -1]
        for key, value in headers.items()
    }


def parse_stream(text: str) -> list[dict[str, str]]:
    """Raw AMI text (as read from the socket) into events, a repeated header resolved as
    `event_from_headers` does; responses and banners are skipped."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        headers: dict[str, str | list[str]] = {}
        for line in block.split("\n"):
            key, sep, value = line.partition(": ")
            if not sep:
                continue
            seen = headers.get(key)
            if seen is None:
                headers[key] = value
            else:
                headers[key] = [*([seen] if isinstance(seen, str) else seen), value]
        event = event_from_headers(headers) if "Event" in headers else None
        if event is not None:
            events.append(event)
    return events


def _float(text: str | None) -> float | None:
    try:
        value = float(text) if text else None
    except ValueError:
        return None
    return value if value else None


def _caller(event: Event) -> str:
    number = event.get("CallerIDNum", "")
    return "" if number == "<unknown>" else number


@dataclass
class _Call:
    linkedid: str
    first_seen: float
    inbound: str = ""  # uniqueid of the caller's channel
    inbound_channel: str = ""  # its name
    marked: bool = False  # the calltrack dialplan ran on it
    did: str = ""
    caller: str = ""
    started_at: float | None = None
    answered_at: float | None = None  # the real line took the call
    #: a person took the call: when each device (not a Local channel) answered a Dial of the
    #: call or was bridged with one of its channels, by the device's uniqueid, and through which
    #: of the call's channels (its name: the one that dialed it or was bridged with it)
    person_answers: dict[str, tuple[float, str]] = field(default_factory=dict)
    #: the channel that dialed each channel of the call (by name), to tell which answers came
    #: through a queue member that app_queue later takes back
    dialed_by: dict[str, str] = field(default_factory=dict)
    #: the real line is a Local channel, whose answer may be a machine's; None: no event said
    #: (the line's Dial events and the end event's DialedPeer were not seen)
    local_line: bool | None = None
    ended_at: float | None = None
    dial_status: str = ""
    answered_ms: float | None = None
    end_event_at: float | None = None
    recording: str | None = None
    recording_closed: bool = False
    alive: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)
    last_event: float = 0.0
    stale: bool = False  # open across a lost AMI link: its end may never come
    #: some of its events may be missing: first seen mid-way (calltrack attached to AMI while it
    #: was up), or open across a lost link or dropped events; `stale` is cleared by its next
    #: event, this is not
    gap: bool = False

    @property
    def person_answered_at(self) -> float | None:
        """When a person first took the call (an answer not taken back), or None."""
        return min((at for at, _ in self.person_answers.values()), default=None)

    def callers_side(self, uniqueid: str, channel: str) -> bool:
        """The channel (uniqueid, name) is the caller's: the call's first channel (the trunk's,
        or a phone of the PBX calling a tracking number), the channel the calltrack dialplan
        ran on, or the far half of the Local channel that is. Such a channel bridged with the
        line is no person who answered; the first is known before the dialplan's event, which
        calltrack may not have seen (it attached to AMI mid-call)."""
        inbound = self.inbound_channel
        return uniqueid == self.linkedid or (
            bool(inbound) and channel in (inbound, local_partner(inbound))
        )

    def came_through(self, channel: str, ancestor: str) -> bool:
        """Whether `channel` was reached through `ancestor`: dialed by it, or by a channel it
        dialed, the two halves of a Local channel counting as one."""
        for _ in range(_MAX_DIAL_DEPTH):
            if channel == ancestor or local_partner(channel) == ancestor:
                return True
            dialer = self.dialed_by.get(channel) or self.dialed_by.get(local_partner(channel))
            if dialer is None:
                return False
            channel = dialer
        return False


class CallTracker:
    """Follows calls by Linkedid; `feed` returns the reports of calls that just ended.

    A channel's Linkedid can change mid-call: a bridge gives every channel in it the Linkedid
    of its oldest channel. A caller connected to an agent logged in earlier (app_agent_pool's
    AgentRequest), or put in a conference, goes on under the agent's or the conference's
    Linkedid, which every later caller to them shares. So a channel seen in a call stays that
    call's, whatever Linkedid its later events carry, until it hangs up.
    """

    def __init__(self, *, cdr: bool = True) -> None:
        """`cdr`: calls are read back from the CDR (asterisk.cdr_csv is set), so a call whose
        events do not tell its status can be left to it; without it, such a call is reported
        as its events have it."""
        self._cdr = cdr
        self._calls: dict[str, _Call] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        #: the call (its first Linkedid) of each channel alive in a call followed here
        self._call_of: dict[str, str] = {}
        #: the channels (uniqueid: name) in each two-party bridge, and the bridge of each
        self._bridges: dict[str, dict[str, str]] = {}
        self._bridge_of: dict[str, str] = {}
        self._bridges_seen = False
        self._answered_without_bridges = 0

    def __len__(self) -> int:
        return len(self._calls)

    def feed(self, event: Event, received_at: float) -> list[CallReport]:
        name = event.get("Event", "")
        if name in ("BridgeLeave", "Hangup"):
            self._left_bridge(event.get("Uniqueid", ""))
        linkedid = self._call_of.get(event.get("Uniqueid", "")) or event.get("Linkedid")
        bridged = name == "BridgeEnter" and event.get("BridgeType") == "basic"
        self._bridges_seen = self._bridges_seen or name == "BridgeEnter"
        if not linkedid or linkedid in self._finished:
            if bridged:  # an agent logged in long ago, whose own call was dropped as silent
                self._entered_bridge(event, _float(event.get("Timestamp")) or received_at)
            return []
        at = _float(event.get("Timestamp")) or received_at
        call = self._calls.get(linkedid)
        if call is None:
            call = self._calls[linkedid] = _Call(linkedid, first_seen=at)
            # a call's first event is its inbound channel's creation
            created = event.get("Event") == "Newchannel" and event.get("Uniqueid") == linkedid
            call.gap = not created
        call.last_event = at
        call.stale = False
        self._apply(call, event, at)
        if bridged:
            self._entered_bridge(event, at)
        return self._finish_if_over(call)

    def _entered_bridge(self, event: Event, at: float) -> None:
        """A channel joined a two-party bridge: a call of either channel was taken by a person
        if the other is a device, whether a Dial reached it or not (an agent logged in earlier
        and connected by AgentRequest, a phone that picked the call up)."""
        uniqueid, channel = event.get("Uniqueid", ""), event.get("Channel", "")
        bridge = event.get("BridgeUniqueid", "")
        if not uniqueid or not bridge:
            return
        self._left_bridge(uniqueid)
        members = self._bridges.setdefault(bridge, {})
        for other, other_channel in members.items():
            self._talked((uniqueid, channel), (other, other_channel), at)
            self._talked((other, other_channel), (uniqueid, channel), at)
        members[uniqueid] = channel
        self._bridge_of[uniqueid] = bridge

    def _left_bridge(self, uniqueid: str) -> None:
        bridge = self._bridge_of.pop(uniqueid, "")
        members = self._bridges.get(bridge)
        if members is not None:
            members.pop(uniqueid, None)
            if not members:
                del self._bridges[bridge]

    def _talked(self, mine: tuple[str, str], peer: tuple[str, str], at: float) -> None:
        """A channel (uniqueid, name) was bridged with `peer`: a person took its call if the
        peer is a device and no caller, on the side of the call that answers (not the caller's
        own channel or the Local channel it is on)."""
        call = self._calls.get(self._call_of.get(mine[0], ""))
        if call is None or is_local_channel(peer[1]) or call.callers_side(*mine):
            return
        if call.callers_side(*peer):
            return  # the caller, bridged with the line
        peer_call = self._calls.get(self._call_of.get(peer[0], ""))
        if peer_call is not None and peer_call.marked and peer[0] == peer_call.inbound:
            return  # a caller to a tracking number: another call's
        call.person_answers.setdefault(peer[0], (at, mine[1]))

    def link_lost(self) -> None:
        """Calls open now may have ended unseen; reconciliation from the CDR covers those."""
        for call in self._calls.values():
            call.stale = call.gap = True
        self._bridges.clear()  # who left them meanwhile was not seen
        self._bridge_of.clear()

    def drop_stale(self, now: float, older_than: float) -> list[str]:
        """Forget calls that stayed silent `older_than` since a lost link, and any call silent
        for SILENT_LIMIT (no call lasts that long without an event: its Hangup came under
        another Linkedid, as after an attended transfer or a pickup, which move channels to
        another call's Linkedid); returns their linkedids. Their ends are left to reconciliation
        from the CDR, so later events of theirs are ignored, not made into a partial call."""
        dropped = [
            c.linkedid
            for c in self._calls.values()
            if now - c.last_event > (older_than if c.stale else max(older_than, SILENT_LIMIT))
        ]
        for linkedid in dropped:
            stale = self._forget(self._calls.pop(linkedid)).stale
            self._remember_finished(linkedid)
            why = "AMI link lost" if stale else f"silent for {SILENT_LIMIT / 3600:g} h"
            log.warning("call %s: end not seen (%s); left to reconciliation", linkedid, why)
        return dropped

    def _forget(self, call: _Call) -> _Call:
        """Its channels are no longer followed as its (their events go by their Linkedid)."""
        for uniqueid in call.alive:
            self._unfollow(call, uniqueid)
        return call

    def _remember_finished(self, linkedid: str) -> None:
        self._finished[linkedid] = None
        if len(self._finished) > _REMEMBER_FINISHED:
            self._finished.popitem(last=False)

    def _apply(self, call: _Call, event: Event, at: float) -> None:
        name = event.get("Event", "")
        uniqueid = event.get("Uniqueid", "")
        if uniqueid and name != "Hangup" and uniqueid not in call.gone:
            self._follow(call, uniqueid)
        if name == "UserEvent" and event.get("UserEvent") in (EVENT_START, EVENT_END):
            self._calltrack_event(call, event, at)
        elif name == "Newchannel" and uniqueid == call.linkedid:
            call.started_at = at
            call.caller = call.caller or _caller(event)
        elif name == "DialBegin" and event.get("DestUniqueid"):
            # what a channel of this call dials is this call's, though it was created under
            # another Linkedid (a caller who took on an agent's, transferred on by the agent)
            self._follow(call, event["DestUniqueid"], dialed=True)
            call.dialed_by[event.get("DestChannel", "")] = event.get("Channel", "")
            if uniqueid == (call.inbound or call.linkedid):
                call.local_line = is_local_channel(event.get("DestChannel", ""))
        elif name == "DialEnd":
            self._dial_end(call, event, at)
        elif name == "MixMonitorStop" and uniqueid == (call.inbound or call.linkedid):
            call.recording_closed = True
        elif name == "Hangup":
            call.alive.discard(uniqueid)
            call.gone.add(uniqueid)
            self._unfollow(call, uniqueid)
            if uniqueid == (call.inbound or call.linkedid):
                call.ended_at = at

    def _follow(self, call: _Call, uniqueid: str, *, dialed: bool = False) -> None:
        call.alive.add(uniqueid)
        before = self._call_of.setdefault(uniqueid, call.linkedid)
        if dialed and before != call.linkedid and (other := self._calls.get(before)):
            other.alive.discard(uniqueid)
            self._call_of[uniqueid] = call.linkedid

    def _unfollow(self, call: _Call, uniqueid: str) -> None:
        """The channel's events go by their Linkedid again (unless another call claimed it)."""
        if self._call_of.get(uniqueid) == call.linkedid:
            del self._call_of[uniqueid]

    @staticmethod
    def _dial_end(call: _Call, event: Event, at: float) -> None:
        answered = event.get("DialStatus") == "ANSWER"
        dest = event.get("DestChannel", "")
        to_device = not is_local_channel(dest)
        device = event.get("DestUniqueid") or dest
        if answered and to_device:
            # whichever leg dialed it: the line, a ring group's or a queue's
            call.person_answers.setdefault(device, (at, event.get("Channel", "")))
        elif not answered:
            # app_queue takes back a member's answer with a second DialEnd (NOANSWER) when the
            # member hangs up during the member's announcement: the member's device, or, for a
            # Local member (FreePBX's), whoever answered through it
            call.person_answers.pop(device, None)
            for taken in [
                d for d, (_, via) in call.person_answers.items() if call.came_through(via, dest)
            ]:
                del call.person_answers[taken]
        if event.get("Uniqueid", "") == (call.inbound or call.linkedid):
            call.local_line = not to_device
            call.dial_status = event.get("DialStatus", call.dial_status)
            if answered and call.answered_at is None:
                call.answered_at = at

    @staticmethod
    def _calltrack_event(call: _Call, event: Event, at: float) -> None:
        call.marked = True
        call.inbound = event.get("Uniqueid", "") or call.inbound
        call.inbound_channel = event.get("Channel", "") or call.inbound_channel
        call.caller = call.caller or _caller(event)
        try:
            call.did = to_e164(event.get("DID", "") or event.get("Exten", ""))
        except PhoneNumberError:
            log.error("call %s: no usable DID in %s", call.linkedid, dict(event))
        call.recording = event.get("Recording") or call.recording
        if call.started_at is None:
            call.started_at = _float(event.get("Start"))
        if event.get("UserEvent") == EVENT_END:
            # Sent from the hangup handler after StopMixMonitor closed the file.
            call.recording_closed = True
            call.end_event_at = at
            call.dial_status = event.get("DialStatus") or call.dial_status
            call.answered_ms = _float(event.get("AnsweredMs"))
            peer = event.get("DialedPeer")  # the channel that answered the Dial (if any)
            if peer:
                call.local_line = is_local_channel(peer)

    def _finish_if_over(self, call: _Call) -> list[CallReport]:
        inbound = call.inbound or call.linkedid
        if inbound not in call.gone or call.alive:
            return []
        self._forget(self._calls.pop(call.linkedid))
        self._remember_finished(call.linkedid)
        if not call.marked or not call.did:
            return []
        if self._person_unknown(call):
            if self._cdr:
                log.info(
                    "call %s: some of its events were missed and its line may be a Local one;"
                    " whether a person answered is left to reconciliation from the CDR",
                    call.linkedid,
                )
                return []
            log.warning(
                "call %s: some of its events were missed and its line may be a Local one:"
                " stored as answered or voicemail by what was seen (no CDR to read it from)",
                call.linkedid,
            )
        report = self._report(call)
        if report.line_answered_at is not None and not self._bridges_seen:
            self._answered_without_bridges += 1
            if self._answered_without_bridges == BRIDGELESS_WARNING_AFTER:
                log.warning(
                    "%d answered calls and not one BridgeEnter event: the AMI user's eventfilter"
                    " predates 2026-12-02, so a caller an agent takes without a Dial is stored"
                    " as voicemail. Add the BridgeEnter and BridgeLeave lines of"
                    " asterisk.conf.d/manager_calltrack.conf, `manager reload`, then restart"
                    " calltrack: an AMI login keeps the filters it logged in with",
                    BRIDGELESS_WARNING_AFTER,
                )
        return [report]

    @staticmethod
    def _person_unknown(call: _Call) -> bool:
        """The line answered, but whether a person did cannot be told from the events seen: a
        Local line's (or one of unknown kind) without the answer of a phone behind it, when
        events may be missing. The CDR has all of the call's rows."""
        line_answered = call.answered_at is not None or call.dial_status == "ANSWER"
        maybe_local = call.local_line is not False
        return call.gap and line_answered and maybe_local and call.person_answered_at is None

    @staticmethod
    def _report(call: _Call) -> CallReport:
        ended = call.ended_at or call.end_event_at or call.last_event
        answered = call.answered_at
        if answered is None and call.answered_ms:
            answered = (call.end_event_at or ended) - call.answered_ms / 1000
        # No dial status and no answer: the caller left before the real line was dialed.
        status = call.dial_status or ("ANSWER" if answered is not None else "CANCEL")
        # The recording is kept whenever the line took the call: a voicemail's holds the message.
        recording = call.recording if answered is not None and call.recording_closed else None
        line_answered = answered
        if call.local_line:
            # A Local line answers when its dialplan does: a person picking up one of the ring
            # group's phones, or voicemail, an IVR or a queue's hold music. Only the first is an
            # answered call; the others keep status ANSWER without a person (CallStatus.VOICEMAIL).
            person = call.person_answered_at
            answered = None if answered is None or person is None else max(answered, person)
        return CallReport(
            linkedid=call.linkedid,
            caller=call.caller,
            did=call.did,
            started_at=call.started_at or call.first_seen,
            ended_at=ended,
            answered_at=answered,
            dial_status=status,
            recording=recording,
            line_answered_at=line_answered,
        ).fitted()
