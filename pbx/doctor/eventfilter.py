"""Which of the events calltrack follows an AMI user's `eventfilter` lines let through.

An eventfilter that drops one of the fold's events loses calls quietly: without BridgeEnter a
caller an agent takes is stored as voicemail, without Hangup of Local channels a queue's calls
never end. Asterisk's `manager show user` does not list a user's filters, so doctor reads them
from manager.conf (AMI GetConfig) and replays Asterisk's rules here on a sample of each event,
from a trunk channel and from a Local one (a filter excluding `Local/` is a common copy-paste).

The rules, as manager.conf documents them (Asterisk 20 and later): no include filter passes
everything; otherwise an event must match one include filter; then any matching exclude filter
drops it. Legacy lines (`eventfilter = [!]regex`) search the whole event text; advanced ones
(`eventfilter(action(..),name(..),header(..),method(..)) = value`) name the event, the header
whose value is matched, and how.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ami_bridge.tracker import FOLLOWED_EVENTS
from dialplan.generator import EVENT_END, EVENT_START

_ADVANCED = re.compile(r"eventfilter\((?P<criteria>.*)\)", re.IGNORECASE | re.DOTALL)
_CRITERION = re.compile(r"\s*(?P<key>\w+)\((?P<value>[^()]*)\)\s*(?:,|$)")
_METHODS = frozenset({"none", "regex", "exact", "starts_with", "ends_with", "contains"})
#: the channels each event is tried with: what a carrier's trunk and a queue's member look like
SAMPLE_CHANNELS = {"trunk": "PJSIP/trunk-00000001", "Local": "Local/201@from-queue-00000002;1"}


@dataclass(frozen=True)
class EventFilter:
    """One `eventfilter` line of a manager.conf user."""

    include: bool
    method: str  # one of _METHODS; legacy lines are "regex" on the whole event
    value: str
    name: str | None = None
    header: str | None = None

    def matches(self, event: Mapping[str, str]) -> bool:
        if self.name is not None and event.get("Event") != self.name:
            return False
        if self.header is not None:
            if self.header not in event:
                return False
            data = event[self.header]
        else:
            data = "".join(f"{key}: {value}\r\n" for key, value in event.items())
        match self.method:
            case "none":
                return True
            case "regex":
                return re.search(self.value, data) is not None
            case "exact":
                return data == self.value
            case "starts_with":
                return data.startswith(self.value)
            case "ends_with":
                return data.endswith(self.value)
            case _:  # contains
                return self.value in data


def parse_filter(key: str, value: str) -> EventFilter:
    """A manager.conf `eventfilter` line (its name and value, as GetConfig gives them).

    Raises ValueError saying what was expected, for a line Asterisk itself would refuse or one
    this reading cannot follow (a regular expression Python does not read)."""
    key, value = key.strip(), value.strip()
    if key.lower() == "eventfilter":
        include = not value.startswith("!")
        pattern = value if include else value[1:]
        return EventFilter(include, "regex", _regex(pattern, key, value))
    advanced = _ADVANCED.fullmatch(key)
    if advanced is None:
        raise ValueError(f"{key!r} is neither `eventfilter` nor `eventfilter(<criteria>)`")
    criteria: dict[str, str] = {}
    rest = advanced["criteria"]
    while rest.strip():
        criterion = _CRITERION.match(rest)
        if criterion is None:
            raise ValueError(f"{key!r}: expected criteria like name(Hangup), separated by commas")
        criteria[criterion["key"].lower()] = criterion["value"].strip()
        rest = rest[criterion.end() :]
    unknown = set(criteria) - {"action", "name", "header", "method"}
    if unknown:
        raise ValueError(f"{key!r}: unknown criteria {', '.join(sorted(unknown))}")
    action = criteria.get("action", "include").lower()
    method = criteria.get("method", "none").lower()
    if action not in ("include", "exclude") or method not in _METHODS:
        raise ValueError(f"{key!r}: action(include|exclude), method({'|'.join(sorted(_METHODS))})")
    return EventFilter(
        action == "include",
        method,
        _regex(value, key, value) if method == "regex" else value,
        criteria.get("name") or None,
        criteria.get("header") or None,
    )


def _regex(pattern: str, key: str, value: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(
            f"{key} = {value}: a regular expression doctor cannot read ({exc})"
        ) from exc
    return pattern


def passes(filters: Sequence[EventFilter], event: Mapping[str, str]) -> bool:
    includes = [f for f in filters if f.include]
    if includes and not any(f.matches(event) for f in includes):
        return False
    return not any(f.matches(event) for f in filters if not f.include)


def sample_events() -> Iterable[tuple[str, dict[str, str]]]:
    """(what it is, the event) for each event the fold follows, as Asterisk sends it."""
    for name in sorted(FOLLOWED_EVENTS):
        if name == "UserEvent":
            for user_event in (EVENT_START, EVENT_END):
                yield (
                    user_event,
                    _sample("UserEvent", SAMPLE_CHANNELS["trunk"], UserEvent=user_event),
                )
            continue
        for kind, channel in SAMPLE_CHANNELS.items():
            extra: dict[str, str] = {}
            if name.startswith("Dial"):
                extra = {"DestChannel": "PJSIP/office-00000003", "DestUniqueid": "1700000000.3"}
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
