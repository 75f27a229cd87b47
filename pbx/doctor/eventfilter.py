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
  whole event text; they are run here by the C library's own regcomp/regexec, with Asterisk's
  flags, as Asterisk runs them (Python's `re` differs: `\\d`, `{`, `(?i)`, `\\<`, classes);
- advanced lines: `name()` is the exact event name, `header(H)` looks only at lines beginning
  `H:` with a value, `method()` is `none` unless given, and needs a value unless `none`;
- no include filter passes everything; otherwise an event must match one include filter; then
  any matching exclude filter drops it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ami_bridge.tracker import FOLLOWED_EVENTS
from dialplan.generator import EVENT_END, EVENT_START

_METHODS = ("none", "regex", "exact", "starts_with", "ends_with", "contains")
_REG_EXTENDED, _REG_NOSUB = 1, 8  # <regex.h>, glibc and musl alike
_REGEX_T_BYTES = 1024  # more than any C library's regex_t (glibc's is 64)
_libc_path = ctypes.util.find_library("c")
_LIBC = ctypes.CDLL(_libc_path) if _libc_path else None


class CannotJudge(ValueError):
    """A line this host cannot evaluate as Asterisk would (no POSIX regcomp here)."""


class AsteriskCrashes(ValueError):
    """A line Asterisk 22's parser dereferences NULL on: `name`, `header` or `method` with no `(`
    (manager.c takes strstr(option, "(") + 1 unchecked), so `manager reload` would crash it."""


@functools.cache
def _posix(pattern: str) -> ctypes.Array[ctypes.c_char]:
    """The compiled pattern, once per pattern for doctor's run (a filter line is tried on every
    sample event; never freed: doctor is a command that ends); ValueError with regerror's text
    if the C library refuses it, as Asterisk's regcomp would."""
    if _LIBC is None or not hasattr(_LIBC, "regcomp"):
        raise CannotJudge("this host's C library has no regcomp to judge regular expressions")
    compiled = ctypes.create_string_buffer(_REGEX_T_BYTES)
    code = _LIBC.regcomp(compiled, pattern.encode(), _REG_EXTENDED | _REG_NOSUB)
    if code:
        reason = ctypes.create_string_buffer(256)
        _LIBC.regerror(code, compiled, reason, len(reason))
        raise ValueError(reason.value.decode(errors="replace"))
    return compiled


def posix_search(pattern: str, text: str) -> bool:
    """regexec of `pattern` (REG_EXTENDED | REG_NOSUB, Asterisk's flags) anywhere in `text`."""
    return bool(_LIBC.regexec(_posix(pattern), text.encode(), 0, None, 0) == 0)  # type: ignore[union-attr]


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
                return posix_search(self.value, data)
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

    Raises ValueError with Asterisk's reason for a line it refuses (AsteriskCrashes for one its
    parser crashes on), CannotJudge for a regular expression this host cannot run."""
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
        key, paren, argument = option.partition("(")
        argument = argument.strip()
        kind = next((k for k in ("action", "name", "header", "method") if key.startswith(k)), None)
        if kind is None:
            raise ValueError(f"`{line}`: filter option {option!r} is unknown")
        if not paren and kind != "action":
            raise AsteriskCrashes(f"`{line}`: Asterisk 22 crashes reading {kind} without its (")
        if kind == "action":
            if not paren:
                raise ValueError(f"`{line}`: 'action' is not formatted correctly")
            if argument not in ("include", "exclude"):
                raise ValueError(f"`{line}`: action {argument!r} is unknown (include, exclude)")
            exclude = argument == "exclude"
            found.add(kind)
            continue
        if not argument:
            raise ValueError(f"`{line}`: {kind!r} is not formatted correctly")
        if kind == "name":
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
    try:
        _posix(pattern)  # compiled once here, kept for the matching
    except CannotJudge as exc:
        raise CannotJudge(f"`{line}`: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"`{line}`: the regular expression does not compile ({exc})") from exc
    return pattern


@dataclass(frozen=True)
class FilterReading:
    """What Asterisk makes of a user's eventfilter lines."""

    filters: list[EventFilter]
    refused: list[str]  # lines Asterisk ignores, with its reason
    crashing: list[str]  # lines Asterisk's parser would crash on
    unjudged: list[str]  # lines this host cannot evaluate as Asterisk would


def read_filters(lines: Iterable[tuple[str, str]]) -> FilterReading:
    reading = FilterReading([], [], [], [])
    for name, value in lines:
        if not is_filter(name):
            continue
        try:
            reading.filters.append(parse_filter(name, value))
        except CannotJudge as exc:
            reading.unjudged.append(str(exc))
        except AsteriskCrashes as exc:
            reading.crashing.append(str(exc))
        except ValueError as exc:
            reading.refused.append(str(exc))
    return reading


def passes(filters: Sequence[EventFilter], event: Mapping[str, str]) -> bool:
    includes = [f for f in filters if f.include]
    if includes and not any(f.matches(event) for f in includes):
        return False
    return not any(f.matches(event) for f in filters if not f.include)


def event_text(event: Mapping[str, str]) -> str:
    """The event as Asterisk's filters read it: its header lines, then the empty line."""
    return "".join(f"{key}: {value}\r\n" for key, value in event.items()) + "\r\n"


def sample_events() -> Iterable[tuple[str, dict[str, str]]]:
    """(what it is, the event) for each event the fold follows, from each kind of channel, with
    the headers and in the order Asterisk 22 writes them (tests/fixtures/ami has the lab's)."""
    for name in sorted(FOLLOWED_EVENTS):
        for kind, channel in SAMPLE_CHANNELS.items():
            this = _snapshot(channel, "1700000000.1")
            if name == "UserEvent":
                for user_event in (EVENT_START, EVENT_END):
                    fields = {**this, "UserEvent": user_event, "DID": "+74990000101"}
                    yield f"{user_event} of {kind} channels", _event(name, fields)
                continue
            if name.startswith("Dial"):  # a trunk dials a queue's Local member, a member a phone
                dest = SAMPLE_CHANNELS["Local"] if kind == "trunk" else "PJSIP/office-00000003"
                last = {"DialString": "201@from-queue"} if name == "DialBegin" else {}
                fields = {**this, **_snapshot(dest, "1700000000.3", "Dest"), **last}
                if name == "DialEnd":
                    fields["DialStatus"] = "ANSWER"
            elif name.startswith("Bridge"):
                fields = {**_BRIDGE, **this}
            elif name == "Hangup":
                fields = {**this, "Cause": "16", "Cause-txt": "Normal Clearing"}
            else:
                fields = this
            yield f"{name} of {kind} channels", _event(name, fields)


_BRIDGE = {
    "BridgeUniqueid": "7c46461b-1357-4b57-a8d4-440090ab8b57",
    "BridgeType": "basic",
    "BridgeTechnology": "simple_bridge",
    "BridgeCreator": "<unknown>",
    "BridgeName": "<unknown>",
    "BridgeNumChannels": "2",
    "BridgeVideoSourceMode": "none",
}


def _event(name: str, fields: Mapping[str, str]) -> dict[str, str]:
    privilege = "user,all" if name == "UserEvent" else "call,all"
    return {"Event": name, "Privilege": privilege, "Timestamp": "1700000000.000001", **fields}


def _snapshot(channel: str, uniqueid: str, prefix: str = "") -> dict[str, str]:
    """A channel's fields as Asterisk's snapshot writes them (DialBegin's Dest... with a prefix)."""
    fields = {
        "Channel": channel,
        "ChannelState": "6",
        "ChannelStateDesc": "Up",
        "CallerIDNum": "+79161234567",
        "CallerIDName": "<unknown>",
        "ConnectedLineNum": "<unknown>",
        "ConnectedLineName": "<unknown>",
        "Language": "en",
        "AccountCode": "",
        "Context": "calltrack-inbound",
        "Exten": "74990000101",
        "Priority": "1",
        "Uniqueid": uniqueid,
        "Linkedid": "1700000000.0",
    }
    return {f"{prefix}{key}": value for key, value in fields.items()}


def dropped(filters: Sequence[EventFilter]) -> list[str]:
    """What of the fold's events these filters drop, e.g. `BridgeEnter of Local channels`."""
    return [what for what, event in sample_events() if not passes(filters, event)]
