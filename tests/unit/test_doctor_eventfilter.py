"""doctor's reading of an AMI user's eventfilter (pbx.doctor.eventfilter), on the lines we ship,
on faults an admin makes, and against the lab's recorded events."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import pytest

from ami_bridge.tracker import FOLLOWED_EVENTS, CallTracker, parse_stream
from attribution.calls import CallReport
from pbx.doctor import Result, Status
from pbx.doctor.eventfilter import (
    EventFilter,
    dropped,
    is_filter,
    parse_filter,
    passes,
    read_filters,
    sample_events,
)
from pbx.doctor.pbx_checks import AmiSession, disabled_events, eventfilter_check, timestamp_check
from pbx.settings import Ami

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "ami"
RECORDED = {p.name: parse_stream(p.read_text()) for p in sorted(FIXTURES.glob("*.ami"))}
LOCAL_SAMPLES = [what for what, _e in sample_events() if what.endswith("of Local channels")]
TRUNK_HANGUP = dict(sample_events())["Hangup of trunk channels"]


def filter_lines(conf: Path) -> list[tuple[str, str]]:
    """A user's eventfilter lines, split as Asterisk's config reader does (at the first =)."""
    lines = []
    for line in conf.read_text().splitlines():
        if line.startswith("eventfilter"):
            name, _eq, value = line.partition("=")
            lines.append((name, value))
    return lines


def parsed(*lines: tuple[str, str]) -> list[EventFilter]:
    return [parse_filter(name, value) for name, value in lines]


SHIPPED = filter_lines(ROOT / "asterisk.conf.d" / "manager_calltrack.conf")


def test_the_fold_needs_no_event_but_the_followed_ones() -> None:
    def replay(events: list[dict[str, str]]) -> list[CallReport]:
        tracker = CallTracker()
        return [r for e in events for r in tracker.feed(e, received_at=0.0)]

    for name, events in RECORDED.items():
        followed = [e for e in events if e["Event"] in FOLLOWED_EVENTS]
        assert len(followed) < len(events), f"{name} has MixMonitorStart: a check of this test"
        assert replay(followed) == replay(events), name


@pytest.mark.parametrize(
    "conf", ["manager_calltrack.conf", "manager_doctor.conf"], ids=["daemon", "doctor"]
)
def test_the_users_we_ship_pass_every_followed_event(conf: str) -> None:
    filters = parsed(*filter_lines(ROOT / "asterisk.conf.d" / conf))
    assert len(filters) >= len(FOLLOWED_EVENTS)
    assert dropped(filters) == []
    for name, events in RECORDED.items():
        lost = [e for e in events if e["Event"] in FOLLOWED_EVENTS and not passes(filters, e)]
        assert lost == [], name


def test_a_filter_from_before_the_bridge_events_drops_them() -> None:
    older = [line for line in SHIPPED if "Bridge" not in line[0]]
    assert dropped(parsed(*older)) == [
        "BridgeEnter of trunk channels",
        "BridgeEnter of Local channels",
        "BridgeLeave of trunk channels",
        "BridgeLeave of Local channels",
    ]


def test_excluding_local_channels_drops_a_queues_members_events() -> None:
    by_header = ("eventfilter(action(exclude),header(Channel),method(starts_with))", " Local/")
    assert dropped(parsed(*SHIPPED, by_header)) == LOCAL_SAMPLES
    # a `!` excludes on an advanced line too
    bang = ("eventfilter(header(Channel),method(starts_with))", "!Local/")
    assert dropped(parsed(*SHIPPED, bang)) == LOCAL_SAMPLES
    # a legacy regex searches the whole event: a trunk's dial of a Local member goes as well
    legacy = dropped(parsed(("eventfilter", "!Channel: Local/")))
    assert legacy == sorted(
        [*LOCAL_SAMPLES, "DialBegin of trunk channels", "DialEnd of trunk channels"],
        key=[what for what, _e in sample_events()].index,
    )


def test_legacy_regex_lines_read_as_posix_extended() -> None:
    only_some = parsed(("eventfilter", "Event: (Newchannel|DialBegin|DialEnd|Hangup|UserEvent)"))
    assert {what.split()[0] for what in dropped(only_some)} == {
        "BridgeEnter",
        "BridgeLeave",
        "MixMonitorStop",
    }
    # manager.conf.sample's own example: `.` crosses the event's line breaks
    sample = parsed(("eventfilter", "!Event: (Newchannel|Hangup).*Channel: Local/"))
    assert dropped(sample) == ["Hangup of Local channels", "Newchannel of Local channels"]
    # POSIX bracket classes
    trunks = parsed(("eventfilter", "Channel: [[:alpha:]]+/[[:lower:]]+-[[:digit:]]+"))
    assert dropped(trunks) == [w for w in LOCAL_SAMPLES if not w.startswith("Dial")]


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [
        (r"Linkedid: \d+", False),  # in POSIX ERE \d is the letter d
        ("Linkedid: 1700000000", True),
        (r"Channel: \<PJSIP", True),  # GNU's word start
        ("[[:print:]]+Hangup", True),
        (r"Event: Hangup\r\n", False),  # \r is the letter r
        ("^Event: Hangup", True),
        ("Cause: 16$", False),  # $ is the end of the whole text, not of a line
    ],
)
def test_regexes_are_the_c_librarys_as_asterisk_runs_them(pattern: str, matches: bool) -> None:
    assert passes(parsed(("eventfilter", pattern)), TRUNK_HANGUP) is matches


def test_no_filter_passes_everything_and_an_exclude_alone_drops_only_its_match() -> None:
    assert dropped([]) == []
    no_hangup = parsed(("eventfilter(action(exclude),name(Hangup))", ""))
    assert dropped(no_hangup) == ["Hangup of trunk channels", "Hangup of Local channels"]


def test_a_user_event_filter_must_pass_the_dialplans_names() -> None:
    other_prefix = ("eventfilter(name(UserEvent),header(UserEvent),method(exact))", "Calltrack")
    lines = [line for line in SHIPPED if "UserEvent" not in line[0]] + [other_prefix]
    assert dropped(parsed(*lines)) == [
        "CalltrackStart of trunk channels",
        "CalltrackEnd of trunk channels",
        "CalltrackStart of Local channels",
        "CalltrackEnd of Local channels",
    ]


def test_a_line_asterisk_refuses_is_no_filter() -> None:
    """The shipped UserEvent line without its method(): Asterisk logs a warning and drops the
    line, so no Calltrack UserEvent passes the others (every call lost)."""
    no_method = [
        (name.replace(",method(starts_with)", ""), value) if "UserEvent" in name else (name, value)
        for name, value in SHIPPED
    ]
    reading = read_filters(no_method)
    assert len(reading.filters) == len(SHIPPED) - 1
    assert len(reading.refused) == 1 and "needs a method()" in reading.refused[0]
    lost = {what.split()[0] for what in dropped(reading.filters)}
    assert lost == {"CalltrackStart", "CalltrackEnd"}
    # refused as an exclude, it excludes nothing
    reading = read_filters([("eventfilter(action(exclude),header(Channel))", "Local/")])
    assert reading.filters == [] and len(reading.refused) == 1


def test_names_are_read_as_asterisk_reads_them() -> None:
    assert not is_filter("EventFilter(action(exclude),name(Hangup))")
    assert read_filters([("EventFilter(action(exclude),name(Hangup))", "")]).filters == []
    spaced = parse_filter("eventfilter(name(Hangup) header(Channel) method(starts_with))", "PJ")
    assert (spaced.name, spaced.header, spaced.method) == ("Hangup", "Channel:", "starts_with")
    colon = parse_filter("eventfilter(action(exclude),header(Channel:),method(starts_with))", "L")
    assert colon.header == "Channel:"
    legacy_named = parse_filter("eventfilter_extra", "Event: Hangup")
    assert legacy_named.method == "regex" and legacy_named.include


def test_a_line_asterisk_crashes_on_is_named() -> None:
    reading = read_filters([*SHIPPED, ("eventfilter(action(exclude),name (Hangup))", "")])
    assert len(reading.filters) == len(SHIPPED) and reading.refused == []
    assert reading.crashing == [
        "`eventfilter(action(exclude),name (Hangup)) = `: Asterisk 22 crashes reading name"
        " without its ("
    ]


def test_the_samples_carry_what_real_events_carry() -> None:
    """Each sample has every header the lab's recorded event of its kind has (a filter on
    Cause, DialString or BridgeTechnology must meet it)."""
    samples = {e["Event"]: set(e) for _what, e in sample_events()}
    for name, events in RECORDED.items():
        for event in events:
            if event["Event"] in FOLLOWED_EVENTS and event["Event"] != "UserEvent":
                # a BridgeEnter that replaces a channel (an agent), a channel driver's own cause
                optional = {"SwapUniqueid", "TechCause"}
                assert set(event) - optional <= samples[event["Event"]], (name, event["Event"])
    normal_hangups = ("eventfilter(action(exclude),name(Hangup),header(Cause),method(exact))", "16")
    assert dropped(parsed(normal_hangups)) == [
        "Hangup of trunk channels",
        "Hangup of Local channels",
    ]


@pytest.mark.parametrize(
    ("method", "value", "kept"),
    [
        ("exact", "PJSIP/trunk-00000001", True),
        ("exact", "PJSIP/trunk", False),
        ("starts_with", "PJSIP/", True),
        ("ends_with", "-00000001", True),
        ("contains", "trunk", True),
        ("contains", "Local", False),
        ("regex", "^PJSIP/[a-z]+-", True),
        ("regex", "^SIP/", False),
        ("none", "", True),
    ],
)
def test_match_methods_on_a_header(method: str, value: str, kept: bool) -> None:
    line = (f"eventfilter(action(include),name(Hangup),header(Channel),method({method}))", value)
    assert passes(parsed(line), TRUNK_HANGUP) is kept


def test_a_header_the_event_lacks_or_leaves_empty_does_not_match() -> None:
    line = ("eventfilter(action(exclude),header(DestChannel))", "")
    assert {what.split()[0] for what in dropped(parsed(line))} == {"DialBegin", "DialEnd"}
    blank = parsed(("eventfilter(action(exclude),header(AccountCode))", ""))
    assert passes(blank, {**TRUNK_HANGUP, "AccountCode": ""})
    assert not passes(blank, {**TRUNK_HANGUP, "AccountCode": "7"})


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("eventfilter(action(include),nmae(Hangup))", "", "option 'nmae(Hangup' is unknown"),
        ("eventfilter(action(keep),name(Hangup))", "", "action 'keep' is unknown"),
        ("eventfilter(action(Include),name(Hangup))", "", "action 'Include' is unknown"),
        ("eventfilter(name(Hangup),method(glob))", "x", "method 'glob' is unknown"),
        ("eventfilter(name(UserEvent),header(UserEvent))", "Calltrack", "needs a method()"),
        ("eventfilter(name(Hangup),method(exact))", "", "needs a value after the ="),
        ("eventfilter(method(none))", "", "no name, no header and no value"),
        ("eventfilter()", "", "no action, name, header or method option"),
        ("eventfilter(name(Hangup", "", "not formatted correctly"),
        ("eventfilter", "!", "a legacy filter needs a pattern"),
        ("eventfilter", "", "a legacy filter needs a pattern"),
        ("eventfilter", "Event: (Hangup", "the regular expression does not compile"),
        ("eventfilter(header(Channel),method(regex))", "[", "does not compile"),
        ("eventfilter", "Hangup{", "does not compile"),
        ("eventfilter", "(?i)event: hangup", "does not compile"),
        ("eventfilter(action(),name(Hangup))", "", "action '' is unknown"),
        ("eventfilter(action,name(Hangup))", "", "'action' is not formatted correctly"),
    ],
)
def test_a_line_asterisk_refuses_says_why(name: str, value: str, expected: str) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)):
        parse_filter(name, value)


class ConfigAsterisk:
    """Accepts the login and answers GetConfig as Asterisk 22 does (manager.c)."""

    def __init__(self, answer: str, disabled: str = "") -> None:
        self.answer = answer
        self.disabled = disabled  # [general] disabledevents
        self.asked: list[dict[str, str]] = []
        self.commands: list[str] = []

    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                raw = (await reader.readuntil(b"\r\n\r\n")).decode()
                fields = dict(line.split(": ", 1) for line in raw.split("\r\n") if ": " in line)
                action_id = f"ActionID: {fields.get('ActionID', '')}\r\n"
                if fields.get("Action") == "Login":
                    body = "Response: Success\r\nMessage: Authentication accepted\r\n"
                elif fields.get("Action") == "Command":  # manager show settings
                    self.commands.append(fields["Command"])
                    body = f"Response: Success\r\nOutput: Disabled events: {self.disabled}\r\n"
                else:
                    self.asked.append(fields)
                    body = self.answer
                writer.write(f"{body}{action_id}\r\n".encode())
                await writer.drain()
        writer.close()


def getconfig_answer(*lines: tuple[str, str]) -> str:
    body = "Response: Success\r\nCategory-000000: calltrack\r\n"
    body += "Line-000000-000000: secret=s3cret\r\nLine-000000-000001: read=call,user\r\n"
    return body + "".join(
        f"Line-000000-{n:06d}: {name.strip()}={value.strip()}\r\n"
        for n, (name, value) in enumerate(lines, start=2)
    )


async def check_with(
    answer: str, daemon_user: str | None = None, disabled: str = ""
) -> tuple[Result, list[dict[str, str]]]:
    asterisk = ConfigAsterisk(answer, disabled)
    server = await asyncio.start_server(asterisk.client, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    ami = Ami(host="127.0.0.1", port=port, username="calltrack", secret="s3cret")
    session = AmiSession(ami)
    try:
        await session.login()
        return await eventfilter_check(session, daemon_user), asterisk.asked
    finally:
        session.close()
        server.close()


async def test_the_check_reads_the_users_section_of_manager_conf() -> None:
    result, asked = await check_with(getconfig_answer(*SHIPPED))
    assert result.status is Status.OK, result.line()
    assert f"its {len(SHIPPED)} eventfilter lines pass every event calltrack" in result.message
    assert asked == [
        {"Action": "GetConfig", "Filename": "manager.conf", "Category": "calltrack"}
        | {"ActionID": asked[0]["ActionID"]}
    ]


async def test_doctor_logged_in_as_another_user_checks_the_daemons() -> None:
    result, asked = await check_with(getconfig_answer(*SHIPPED), daemon_user="calltrack-daemon")
    assert [a["Category"] for a in asked] == ["calltrack-daemon"]
    assert result.message.startswith(
        f"[calltrack-daemon] in manager.conf (as on disk): its {len(SHIPPED)}"
    )


async def test_of_a_section_written_twice_the_last_counts_as_for_asterisk() -> None:
    """manager.conf's [calltrack] and FreePBX's manager_custom.conf's: Asterisk clears the
    filters at each, so the last one's are the user's."""
    first = getconfig_answer(*SHIPPED)
    bridgeless = [line for line in SHIPPED if "Bridge" not in line[0]]
    second = "".join(
        f"Line-000001-{n:06d}: {name.strip()}={value.strip()}\r\n"
        for n, (name, value) in enumerate(bridgeless)
    )
    result, _asked = await check_with(first + "Category-000001: calltrack\r\n" + second)
    assert result.status is Status.FAIL and "drops BridgeEnter" in result.message
    result, _asked = await check_with(
        getconfig_answer(*bridgeless).replace("000000", "000001")
        + "Category-000002: calltrack\r\n"
        + first.split("\r\n", 2)[2].replace("Line-000000", "Line-000002")
    )
    assert result.status is Status.OK, result.line()


@pytest.mark.parametrize(
    ("answer", "status", "said"),
    [
        (
            getconfig_answer(*[ln for ln in SHIPPED if "Bridge" not in ln[0]]),
            Status.FAIL,
            "[calltrack] in manager.conf (as on disk): its eventfilter drops BridgeEnter of trunk",
        ),
        (
            getconfig_answer(*SHIPPED, ("eventfilter(name(Hangup),method(glob))", "x")),
            Status.WARN,
            f"its {len(SHIPPED)} eventfilter lines pass every event calltrack follows; Asterisk"
            " ignores `eventfilter(name(Hangup),method(glob)) = x`: method 'glob' is unknown",
        ),
        (getconfig_answer(), Status.OK, "no eventfilter line, so every event calltrack follows"),
        ("Response: Success\r\nNo categories found\r\n", Status.SKIP, "has no [calltrack] section"),
        (
            "Response: Error\r\nMessage: Config file not found\r\n",
            Status.SKIP,
            "manager.conf: Config file not found",
        ),
        ("Response: Error\r\nMessage: Permission denied\r\n", Status.SKIP, "cannot read manager"),
    ],
    ids=["bridgeless", "refused-line", "no-filter", "no-section", "no-file", "denied"],
)
async def test_what_the_check_says(answer: str, status: Status, said: str) -> None:
    result, _asked = await check_with(answer)
    assert result.status is status and said in result.message, result.line()
    if status in (Status.FAIL, Status.WARN):
        assert "asterisk.conf.d/manager_calltrack.conf" in result.fix
        assert "restart calltrack" in result.fix
    if "denied" in answer.lower():
        assert "`write = config`" in result.fix


async def test_events_disabled_for_every_user_are_named() -> None:
    """manager.conf [general] disabledevents drops events before any user's filter
    (main/manager.c): a BridgeEnter listed there passed as OK with the user's filter alone."""
    result, _ = await check_with(getconfig_answer(*SHIPPED), disabled="VarSet, BridgeEnter,Cdr")
    assert result.status is Status.FAIL, result.line()
    assert "disabledevents drops BridgeEnter for every AMI user" in result.message
    # matched as Asterisk does, exactly: another case is another name
    fine, _ = await check_with(getconfig_answer(*SHIPPED), disabled="VarSet,bridgeenter")
    assert fine.status is Status.OK, fine.line()


async def test_a_disabled_event_and_the_users_own_filter_are_both_named() -> None:
    """disabledevents was a FAIL on its own: the admin mended it, and only then learned that
    the user's filter dropped the bridge events too."""
    bridgeless = [line for line in SHIPPED if "Bridge" not in line[0]]
    result, _ = await check_with(getconfig_answer(*bridgeless), disabled="Hangup")
    assert result.status is Status.FAIL, result.line()
    assert "disabledevents drops Hangup for every AMI user" in result.message
    assert "its eventfilter drops BridgeEnter" in result.message
    assert result.fix.startswith("take Hangup out of disabledevents, and ")
    assert "asterisk.conf.d/manager_calltrack.conf" in result.fix
    # a line Asterisk crashes on: the fix replaces it before the reload the rest asks for
    crashing = await check_with(
        getconfig_answer(*SHIPPED, ("eventfilter(name)", "")), disabled="Hangup"
    )
    assert "Asterisk crashes on" in crashing[0].message
    assert crashing[0].fix.startswith("take Hangup out of disabledevents, and the eventfilter")
    alone, _ = await check_with(getconfig_answer(*SHIPPED), disabled="Hangup")
    assert (
        alone.fix == "take Hangup out of disabledevents, `manager reload`, then restart calltrack"
    )


async def test_manager_show_settings_is_asked_once_a_run() -> None:
    """The timestampevents line (with no event to look at) and the disabledevents check both
    read it: one Command, not two."""
    asterisk = ConfigAsterisk(getconfig_answer(*SHIPPED), disabled="Cdr")
    server = await asyncio.start_server(asterisk.client, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    session = AmiSession(Ami(host="127.0.0.1", port=port, username="calltrack", secret="s3cret"))
    try:
        await session.login()
        assert await disabled_events(session) == []
        await timestamp_check(session, None)
        assert asterisk.commands == ["manager show settings"]
    finally:
        session.close()
        server.close()
