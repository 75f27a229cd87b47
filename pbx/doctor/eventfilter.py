"""Which of the events calltrack follows an AMI user's `eventfilter` lines let through.

An eventfilter that drops one of the fold's events loses calls quietly: without BridgeEnter a
caller an agent takes is stored as voicemail, without Hangup of Local channels a queue's calls
never end. Asterisk's `manager show user` does not list a user's filters, so doctor reads them
from manager.conf (AMI GetConfig) and replays Asterisk's rules here on a sample of each event,
from a trunk channel and from a Local one (a filter excluding `Local/` is a common copy-paste).

The rules are main/manager.c's (Asterisk 22: `manager_add_filter`, `filter_cmp_fn`,
`should_send_event`), followed to the letter because a near miss is a wrong verdict:
- a line is a filter when its name begins with `eventfilter` (case matters); one Asterisk
  refuses (it logs a warning) is no filter at all, and doctor says so;
- a value beginning with `!` excludes, on any line; an advanced line's `action()` overrides it;
- legacy lines (no `(` in the name) are POSIX extended regular expressions searched in the
  whole event text, where `.` also matches the line breaks;
- advanced lines: `name()` is the exact event name, `header(H)` looks only at lines beginning
  `H:` with a value, `method()` is `none` unless given, and needs a value unless `none`;
- no include filter passes everything; otherwise an event must match one include filter; then
  any matching exclude filter drops it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ami_bridge.tracker import FOLLOWED_EVENTS
from dialplan.generator import EVENT_END, EVENT_START

_METHODS = ("none", "regex", "exact", "starts_with", "ends_with", "contains")
#: POSIX bracket classes (inside [...]) in Python's spelling; Python reads `[[:digit:]]` as a set
_POSIX_CLASSES = {
    "[:alpha:]": "a-zA-Z",
    "[:digit:]": "0-9",
    "[:alnum:]": "a-zA-Z0-9",
    "[:upper:]": "A-Z",
    "[:lower:]": "a-z",
    "[:space:]": r" \t\r\n\v\f",
    "[:blank:]": r" \t",
    "[:xdigit:]": "0-9A-Fa-f",
    "[:punct:]": r"!-/:-@\[-`{-~",
}
#: the channels each event is tried with: what a carrier's trunk and a queue's member look like
SAMPLE_CHANNELS = {"trunk": "PJSIP/trunk-00000001", "Local": "Local/201@from-queue-00000002;1"}


@dataclass(frozen=True)
class EventFilter:
    """One `eventfilter` line of a manager.conf user, as Asterisk reads it."""

    include: bool
    method: str  # one of _METHODS
    value: str
    name: str | None = None
    header: str | None = None  # with its colon, as Asterisk matches it

    def matches(self, event: Mapping[str, str]) -> bool:
        if self.name is not None and event.get("Event") != self.name:
            return False
        if self.header is None:
            return self._matches(event_text(event))
        values = (
            line[len(self.header) :].lstrip(" \t")
            for line in event_text(event).split("\r\n")
            if line.startswith(self.header)
        )
        return any(value and self._matches(value) for value in values)

    def _matches(self, data: str) -> bool:
        match self.method:
            case "none":
                return True
            case "regex":
                return re.search(self.value, data, re.DOTALL) is not None
            case "exact":
                return data == self.value
            case "starts_with":
                return data.startswith(self.value)
            case "ends_with":
                return data.endswith(self.value)
            case _:  # contains
                return self.value in data


def is_filter(name: str) -> bool:
    """Whether a manager.conf line is an eventfilter for Asterisk (its name's start, as is)."""
    return name.strip().startswith("eventfilter")


def parse_filter(name: str, value: str) -> EventFilter:
    """An `eventfilter` line (its name and value, as GetConfig gives them).

    Raises ValueError with Asterisk's reason for a line it refuses, and for a regular expression
    this reading cannot follow."""
    criteria, pattern = name.strip(), value.strip()
    line = f"{criteria} = {value.strip()}"
    exclude = pattern.startswith("!")
    pattern = pattern[1:] if exclude else pattern
    opening = criteria.find("(")
    if opening < 0:
        if not pattern:
            raise ValueError(f"`{line}`: a legacy filter needs a pattern")
        return EventFilter(not exclude, "regex", _regex(pattern, line))
    options = criteria[opening + 1 :].strip()
    if not options.endswith(")"):
        raise ValueError(f"`{line}`: the options are not formatted correctly")
    method, event, header = "none", None, None
    found = set()
    for option in filter(None, re.split(r"[ ,)]", options)):
        key, _paren, argument = option.partition("(")
        argument = argument.strip()
        kind = next((k for k in ("action", "name", "header", "method") if key.startswith(k)), None)
        if kind is None:
            raise ValueError(f"`{line}`: filter option {option!r} is unknown")
        if not argument:
            raise ValueError(f"`{line}`: {kind!r} is not formatted correctly")
        if kind == "action":
            if argument not in ("include", "exclude"):
                raise ValueError(f"`{line}`: action {argument!r} is unknown (include, exclude)")
            exclude = argument == "exclude"
        elif kind == "name":
            event = argument
        elif kind == "header":
            header = argument if argument.endswith(":") else f"{argument}:"
        else:
            if argument not in _METHODS:
                raise ValueError(
                    f"`{line}`: method {argument!r} is unknown ({', '.join(_METHODS)})"
                )
            method = argument
        found.add(kind)
    if not found:
        raise ValueError(f"`{line}`: no action, name, header or method option")
    if not pattern and method != "none":
        raise ValueError(f"`{line}`: method {method!r} needs a value after the =")
    if pattern and method == "none":
        raise ValueError(f"`{line}`: a value after the = needs a method(), e.g. method(exact)")
    if event is None and header is None and method == "none":
        raise ValueError(f"`{line}`: no name, no header and no value")
    value = _regex(pattern, line) if method == "regex" else pattern
    return EventFilter(not exclude, method, value, event, header)


def _regex(pattern: str, line: str) -> str:
    for posix, python in _POSIX_CLASSES.items():
        pattern = pattern.replace(posix, python)
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"`{line}`: a regular expression doctor cannot read ({exc})") from exc
    return pattern


def read_filters(lines: Iterable[tuple[str, str]]) -> tuple[list[EventFilter], list[str]]:
    """The filters Asterisk makes of a user's lines, and why it ignores the others."""
    filters: list[EventFilter] = []
    ignored: list[str] = []
    for name, value in lines:
        if is_filter(name):
            try:
                filters.append(parse_filter(name, value))
            except ValueError as exc:
                ignored.append(str(exc))
    return filters, ignored


def passes(filters: Sequence[EventFilter], event: Mapping[str, str]) -> bool:
    includes = [f for f in filters if f.include]
    if includes and not any(f.matches(event) for f in includes):
        return False
    return not any(f.matches(event) for f in filters if not f.include)


def event_text(event: Mapping[str, str]) -> str:
    """The event as Asterisk's filters read it: its header lines, then the empty line."""
    return "".join(f"{key}: {value}\r\n" for key, value in event.items()) + "\r\n"


def sample_events() -> Iterable[tuple[str, dict[str, str]]]:
    """(what it is, the event) for each event the fold follows, from each kind of channel."""
    for name in sorted(FOLLOWED_EVENTS):
        for kind, channel in SAMPLE_CHANNELS.items():
            if name == "UserEvent":
                for user_event in (EVENT_START, EVENT_END):
                    event = _sample(name, channel, UserEvent=user_event)
                    yield f"{user_event} of {kind} channels", event
                continue
            extra: dict[str, str] = {}
            if name.startswith("Dial"):  # a trunk dials a queue's Local member, a member a phone
                dest = SAMPLE_CHANNELS["Local"] if kind == "trunk" else "PJSIP/office-00000003"
                extra = {"DestChannel": dest, "DestUniqueid": "1700000000.3"}
            elif name.startswith("Bridge"):
                extra = {"BridgeUniqueid": "a1b2c3", "BridgeType": "basic"}
            yield f"{name} of {kind} channels", _sample(name, channel, **extra)


def _sample(name: str, channel: str, **fields: str) -> dict[str, str]:
    privilege = "user,all" if name == "UserEvent" else "call,all"
    return {
        "Event": name,
        "Privilege": privilege,
        "Timestamp": "1700000000.000001",
        "Channel": channel,
        "ChannelState": "6",
        "ChannelStateDesc": "Up",
        "CallerIDNum": "+79161234567",
        "Context": "calltrack-inbound",
        "Exten": "74990000101",
        "Uniqueid": "1700000000.1",
        "Linkedid": "1700000000.0",
        **fields,
    }


def dropped(filters: Sequence[EventFilter]) -> list[str]:
    """What of the fold's events these filters drop, e.g. `BridgeEnter of Local channels`."""
    return [what for what, event in sample_events() if not passes(filters, event)]
