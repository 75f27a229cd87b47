"""Reading what Asterisk's CLI prints (`dialplan show`, `manager show user`, `... show
settings`) and the dialplan calltrack generates, into comparable values. Pure: no I/O.

The CLI output is meant for people, so only the parts that matter are compared: per extension,
the priorities with their labels and application calls; alignment and file positions are not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: exten -> its priorities, in order
Extensions = dict[str, list["Priority"]]


@dataclass(frozen=True)
class Priority:
    number: int
    label: str | None
    app: str  # the application call as written, e.g. Set(CALLTRACK_DID=+74990000002)

    def __str__(self) -> str:
        label = f"({self.label})" if self.label else ""
        return f"{self.number}{label},{self.app}"


_SHOW_LINE = re.compile(
    r"^\s*(?:'(?P<exten>[^']*)'\s*=>)?\s*(?:\[(?P<label>[^\]]+)\])?\s*(?P<number>\d+)\.\s+"
    r"(?P<app>.*?)(?:\s+\[[^\]]*\])?\s*$"
)
_MISSING = ("There is no existence of", "No such context")


def parse_dialplan_show(lines: list[str]) -> Extensions | None:
    """`dialplan show CONTEXT` (or `EXTEN@CONTEXT`) as extensions; None when Asterisk says the
    context (or extension) does not exist."""
    if any(line.startswith(_MISSING) for line in lines):
        return None
    found: Extensions = {}
    current: list[Priority] | None = None
    for line in lines:
        match = _SHOW_LINE.match(line)
        if match is None:
            continue
        if match["exten"] is not None:
            current = found.setdefault(match["exten"], [])
        if current is None:
            continue
        current.append(Priority(int(match["number"]), match["label"], match["app"].strip()))
    return found


_SHOW_INCLUDE = re.compile(r"^\s*Include =>\s+'(?P<name>[^']+)'")


def shown_includes(lines: list[str]) -> list[str]:
    """The contexts a `dialplan show CONTEXT` says it includes (main/pbx.c: "  Include =>")."""
    return [m["name"] for line in lines if (m := _SHOW_INCLUDE.match(line))]


_CONF_INCLUDE = re.compile(r"^\s*include\s*=>\s*(?P<name>[^\s;]+)")


def conf_includes(text: str) -> dict[str, list[str]]:
    """The `include =>` lines of an extensions.conf as calltrack writes it, by context."""
    found: dict[str, list[str]] = {}
    context = None
    for line in text.splitlines():
        if line.startswith("[") and line.rstrip().endswith("]"):
            context = line.rstrip()[1:-1]
        elif context is not None and (m := _CONF_INCLUDE.match(line)):
            found.setdefault(context, []).append(m["name"])
    return found


_CONF_EXTEN = re.compile(r"^\s*exten\s*=>\s*(?P<exten>[^,]+),(?P<prio>[^,]+),(?P<app>.*)$")
_CONF_SAME = re.compile(r"^\s*same\s*=>\s*(?P<prio>[^,]+),(?P<app>.*)$")
_CONF_PRIO = re.compile(r"^(?P<n>\d+|n)(?:\((?P<label>[^)]+)\))?$")


def parse_extensions_conf(text: str) -> dict[str, Extensions]:
    """The contexts of an extensions.conf as calltrack writes it (`exten =>` and `same =>` with
    priorities 1 or n, optional labels); comments and blank lines ignored."""
    contexts: dict[str, Extensions] = {}
    context: Extensions | None = None
    current: list[Priority] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        if line.startswith("[") and line.endswith("]"):
            context = contexts.setdefault(line[1:-1], {})
            continue
        match = _CONF_EXTEN.match(line) or _CONF_SAME.match(line)
        if match is None or context is None:
            continue
        if "exten" in match.groupdict():
            current = context.setdefault(match["exten"].strip(), [])
        prio = _CONF_PRIO.match(match["prio"].strip())
        if prio is None:
            continue
        number = int(prio["n"]) if prio["n"] != "n" else (current[-1].number + 1 if current else 1)
        current.append(Priority(number, prio["label"], match["app"].strip()))
    return contexts


def first_difference(wanted: Extensions, loaded: Extensions) -> str | None:
    """The first way `loaded` differs from `wanted` (a person reads it), or None if the same."""
    for exten, priorities in wanted.items():
        if exten not in loaded:
            return f"extension {exten} is missing"
        have = loaded[exten]
        for want, got in zip(priorities, have, strict=False):
            if want != got:
                return f"{exten} priority {want.number} is `{got}`, expected `{want}`"
        if len(have) != len(priorities):
            return f"{exten} has {len(have)} priorities, expected {len(priorities)}"
    extra = sorted(set(loaded) - set(wanted))
    if extra:
        return f"extension {extra[0]} is not calltrack's"
    return None


def parse_fields(lines: list[str]) -> dict[str, str]:
    """`key: value` lines (`manager show user`, `manager show settings`, `core show settings`),
    keys lower-cased; the first value of a key wins."""
    fields: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if sep and key.strip():
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def permissions(value: str) -> set[str]:
    """A `read perm`/`write perm` value as a set of classes (`<none>` is empty)."""
    return {p.strip() for p in value.split(",") if p.strip() and p.strip() != "<none>"}
