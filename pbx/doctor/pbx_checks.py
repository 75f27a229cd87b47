"""The checks that ask Asterisk, over AMI as the daemon's configured user.

Every AMI action is bounded by `asterisk.ami.action_timeout` (panoramisk's futures never time
out). A check needing a right the user lacks (Asterisk answers "Permission denied") is skipped
with the right to add: the daemon itself needs only `read = call,user`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import uuid
from typing import Any

from panoramisk import Manager

from ami_bridge.bridge import action_within, connect_within
from ami_bridge.tracker import FOLLOWED_EVENTS
from attribution.numbering import Numbering
from attribution.phone import dialled_forms
from dialplan.generator import agi_address, render_dialplan
from pbx.doctor import Result, Status, fail, ok, skip
from pbx.doctor.asterisk_text import (
    conf_includes,
    first_difference,
    parse_dialplan_show,
    parse_extensions_conf,
    parse_fields,
    permissions,
    shown_includes,
)
from pbx.doctor.eventfilter import dropped, read_filters
from pbx.settings import Ami, Settings

NEEDS_COMMAND = "`write = command` for the AMI user (manager.conf)"
NEEDS_USER = "`write = user` for the AMI user (manager.conf)"
NEEDS_LOGIN = "a working AMI login (see the AMI line)"
NEEDS_CONFIG = (
    "`write = config` for the AMI user while doctor runs, to read its eventfilter from"
    " manager.conf (`manager show user` does not list filters)"
)
FILTER_FIX = (
    "the eventfilter lines of asterisk.conf.d/manager_calltrack.conf in [{user}]"
    " (manager.conf, or manager_custom.conf on FreePBX), `manager reload`, then restart"
    " calltrack: an AMI login keeps the filters it began with"
)
#: the checks after the login, in the order they run
AMI_CHECKS = (
    "AMI rights",
    "AMI events",
    "AMI eventfilter",
    "timestampevents",
    "dialplan",
    "DIDs",
)
PROBE_EVENT = "CalltrackDoctor"  # passes the daemon user's `starts_with Calltrack` filter


class Denied(Exception):
    """Asterisk refused an action for lack of rights."""


class AmiSession:
    """One AMI login for the checks; collects the events it is sent."""

    def __init__(self, ami: Ami) -> None:
        self.ami = ami
        self.events: list[dict[str, Any]] = []
        self.event_arrived = asyncio.Event()
        self._manager: Manager | None = None
        self._manager_settings: dict[str, str] | Denied | None = None

    async def login(self) -> None:
        """Raises OSError/TimeoutError when unreachable, PermissionError when refused."""
        manager = Manager(
            host=self.ami.host,
            port=self.ami.port,
            loop=asyncio.get_running_loop(),
            ping_delay=3600,
            reconnect_timeout=3600,
        )
        manager.register_event("*", self._on_event)
        self._manager = manager
        await connect_within(manager, self.ami.action_timeout)
        response = await self._send(
            {"Action": "Login", "Username": self.ami.username, "Secret": self.ami.secret}
        )
        if response.get("Response") != "Success":
            raise PermissionError(response.get("Message") or "login refused")

    def close(self) -> None:
        if self._manager is not None:
            # a failed login makes Asterisk close the link; panoramisk would dial again
            self._manager.reconnect_timeout = None
            self._manager.close()
            self._manager = None

    def _on_event(self, _manager: Manager, message: Any) -> None:
        self.events.append(dict(message.items()))
        self.event_arrived.set()

    async def _send(self, action: dict[str, str]) -> dict[str, Any]:
        """The action's response; Denied when the user lacks the right to send it."""
        assert self._manager is not None
        response = dict(
            (await action_within(self._manager, action, self.ami.action_timeout)).items()
        )
        if response.get("Message") == "Permission denied":
            raise Denied(action.get("Command") or action["Action"])
        return response

    async def command(self, cli: str) -> list[str]:
        """A CLI command's output lines (also when the command itself failed)."""
        response = await self._send({"Action": "Command", "Command": cli})
        output = response.get("Output", [])
        return [output] if isinstance(output, str) else list(output)

    async def manager_settings(self) -> dict[str, str]:
        """`manager show settings` as fields, asked once per run (the timestampevents line and
        the disabledevents check both read it); Denied without `write = command`."""
        if self._manager_settings is None:
            try:
                self._manager_settings = parse_fields(await self.command("manager show settings"))
            except Denied as denied:
                self._manager_settings = denied
        if isinstance(self._manager_settings, Denied):
            raise self._manager_settings
        return self._manager_settings

    async def config_lines(self, filename: str, category: str) -> list[tuple[str, str]] | str:
        """A section's `name = value` lines as Asterisk reads the file now (GetConfig, which
        follows #include; of a section written twice, the last, as Asterisk's own reading keeps
        it), or why there are none."""
        response = await self._send(
            {"Action": "GetConfig", "Filename": filename, "Category": category}
        )
        if response.get("Response") != "Success":
            return f"{filename}: {response.get('Message') or 'not readable'}"
        sections = sorted(k.split("-")[1] for k in response if k.startswith("Category-"))
        if not sections:  # an unknown section is a Success without one ("No categories found")
            return f"{filename} (with what it includes) has no [{category}] section"
        prefix = f"Line-{sections[-1]}-"
        lines = sorted((k, v) for k, v in response.items() if k.startswith(prefix))
        return [(name, value) for _k, line in lines for name, _eq, value in [line.partition("=")]]

    async def user_event(self, probe: str) -> None:
        await self._send({"Action": "UserEvent", "UserEvent": PROBE_EVENT, "Probe": probe})


async def login_check(session: AmiSession) -> Result:
    where = f"{session.ami.host}:{session.ami.port}"
    try:
        await session.login()
    except PermissionError as exc:
        if "already in use" in str(exc).lower():  # manager.c, allowmultiplelogin = no
            return fail(
                "AMI",
                f"{where} refused the login of {session.ami.username!r}: {exc} (the daemon is"
                " logged in as that user, and Asterisk allows one login of it)",
                f"`allowmultiplelogin = yes` in [{session.ami.username}] (manager.conf), or a"
                " second AMI user for doctor (asterisk.conf.d/manager_doctor.conf, --ami-user)",
            )
        return fail(
            "AMI",
            f"{where} refused the login of {session.ami.username!r}: {exc}",
            f"the [{session.ami.username}] secret in manager.conf must equal asterisk.ami.secret,"
            " and its permit= must allow this host; then `manager reload`",
        )
    except (OSError, TimeoutError) as exc:
        return fail(
            "AMI",
            f"cannot reach {where}: {reason(exc, session.ami.action_timeout)}",
            "check asterisk.ami.host/port and manager.conf [general] enabled = yes,"
            " bindaddr/port; a firewall between the hosts",
        )
    return ok("AMI", f"{where} accepted the login of {session.ami.username!r}")


async def rights_check(
    session: AmiSession, daemon_user: str | None = None
) -> tuple[Result, dict[str, str] | None]:
    """The daemon's user's read classes (`manager show user`); it needs call and user.
    `daemon_user`: the daemon's AMI user, when doctor logs in as another (--ami-user)."""
    user = daemon_user or session.ami.username
    try:
        fields = parse_fields(await session.command(f"manager show user {user}"))
    except Denied:
        return skip("AMI rights", "cannot read the user's rights", NEEDS_COMMAND), None
    have = permissions(fields.get("read perm", ""))
    missing = sorted({"call", "user"} - have) if "all" not in have else []
    if missing:
        return (
            fail(
                "AMI rights",
                f"{user!r} reads {', '.join(sorted(have)) or 'nothing'}; calltrack follows"
                " channel events (call) and the dialplan's UserEvents (user)",
                f"`read = call,user` in [{user}] (manager.conf), then `manager reload`",
            ),
            fields,
        )
    return ok("AMI rights", f"{user!r} reads {', '.join(sorted(have))}"), fields


async def events_check(session: AmiSession) -> tuple[Result, dict[str, Any] | None]:
    """Sends a UserEvent named like the dialplan's and waits for it to come back."""
    probe = uuid.uuid4().hex
    try:
        await session.user_event(probe)
    except Denied:
        return skip("AMI events", "cannot send a test UserEvent", NEEDS_USER), None

    def arrived() -> dict[str, Any] | None:
        return next((e for e in session.events if e.get("Probe") == probe), None)

    deadline = asyncio.get_running_loop().time() + session.ami.action_timeout
    while (event := arrived()) is None:
        session.event_arrived.clear()
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.event_arrived.wait(), left)
    if event is None:
        return (
            fail(
                "AMI events",
                f"a test UserEvent {PROBE_EVENT} did not come back",
                f"`read = call,user` in [{session.ami.username}] and an eventfilter passing"
                " UserEvents that start with Calltrack (asterisk.conf.d/manager_calltrack.conf)",
            ),
            None,
        )
    return ok("AMI events", f"a test UserEvent {PROBE_EVENT} came back"), event


async def eventfilter_check(session: AmiSession, user: str | None = None) -> Result:
    """The eventfilter of the daemon's AMI user (`user`, default the one doctor logs in as),
    replayed on the events the fold follows (pbx.doctor.eventfilter): the UserEvent probe shows
    only that UserEvents pass, and only for doctor's own user."""
    user = user or session.ami.username
    fix = FILTER_FIX.format(user=user)
    try:
        lines = await session.config_lines("manager.conf", user)
    except Denied:
        return skip("AMI eventfilter", "cannot read manager.conf", NEEDS_CONFIG)
    if isinstance(lines, str):
        return skip("AMI eventfilter", lines, f"[{user}] in manager.conf or a file it includes")
    reading = read_filters(lines)
    lost = dropped(reading.filters)
    disabled = await disabled_events(session)
    notes = [f"Asterisk crashes on {line}" for line in reading.crashing]
    notes += [f"Asterisk ignores {line}" for line in reading.refused]
    notes += [f"doctor cannot judge {line}" for line in reading.unjudged]
    count = len(reading.filters)
    everything = "every event calltrack follows" if not reading.unjudged else "every event"
    if lost:
        verdict = f"its eventfilter drops {', '.join(lost)}: calls through them are lost or wrong"
    elif count:
        verdict = f"its {count} eventfilter line{'s pass' if count > 1 else ' passes'} {everything}"
    else:
        verdict = f"no eventfilter line, so {everything} passes"
    message = "; ".join([f"[{user}] in manager.conf (as on disk): {verdict}", *notes])
    if disabled:  # before any user's filter, and beside it: both may need mending
        names = ", ".join(disabled)
        message = (
            f"manager.conf [general] disabledevents drops {names} for every AMI user: calls"
            f" through them are lost or wrong; {message}"
        )
        undisable = f"take {names} out of disabledevents"
        return fail(
            "AMI eventfilter",
            message,
            f"{undisable}, and {fix}"
            if lost or reading.crashing  # FILTER_FIX replaces those lines before any reload
            else f"{undisable}, `manager reload`, then restart calltrack",
        )
    if lost or reading.crashing:
        return fail("AMI eventfilter", message, fix)
    if reading.unjudged:
        return skip("AMI eventfilter", message, "doctor on a host whose C library has regcomp")
    if reading.refused:
        return Result("AMI eventfilter", Status.WARN, message, fix)
    return ok("AMI eventfilter", message)


async def disabled_events(session: AmiSession) -> list[str]:
    """The events calltrack follows that manager.conf's [general] `disabledevents` drops for
    every user before any eventfilter (main/manager.c; `manager show settings` prints it).
    Names are matched as Asterisk does: exactly, blanks before each skipped. Empty when it
    cannot be asked (no `write = command`): the user's eventfilter is still checked."""
    try:
        fields = await session.manager_settings()
    except Denied:
        return []
    listed = {name.lstrip() for name in fields.get("disabled events", "").split(",")}
    return sorted(FOLLOWED_EVENTS & listed)


async def timestamp_check(session: AmiSession, event: dict[str, Any] | None) -> Result:
    """calltrack takes call times from the events' Timestamp header."""
    fix = "`timestampevents = yes` in manager.conf [general], then `manager reload`"
    if event is not None:
        if "Timestamp" in event:
            return ok("timestampevents", "events carry a Timestamp")
        return fail("timestampevents", "events carry no Timestamp", fix)
    try:
        fields = await session.manager_settings()
    except Denied:
        return skip("timestampevents", "no event to look at", f"{NEEDS_USER} or {NEEDS_COMMAND}")
    if fields.get("timestamp events", "").lower() == "yes":
        return ok("timestampevents", "on (manager show settings)")
    return fail("timestampevents", "off (manager show settings)", fix)


async def dialplan_check(session: AmiSession, settings: Settings, config: str) -> Result:
    """The loaded contexts against what `calltrack dialplan` writes for this config."""
    assert settings.asterisk is not None
    fix = (
        f"`calltrack dialplan -c {config} -o /etc/asterisk/extensions_calltrack.conf`,"
        " `#include extensions_calltrack.conf` in extensions.conf (FreePBX:"
        " extensions_custom.conf), then `dialplan reload`"
    )
    try:
        text = render_dialplan(settings)
    except ValueError as exc:  # a value the dialplan cannot carry safely (a path, a number)
        return fail("dialplan", f"cannot be generated from {config}: {exc}", "fix that value")
    wanted, includes = parse_extensions_conf(text), conf_includes(text)
    for context, extensions in wanted.items():
        try:
            lines = await session.command(f"dialplan show {context}")
        except Denied:
            return skip("dialplan", "cannot read the loaded dialplan", NEEDS_COMMAND)
        loaded = parse_dialplan_show(lines)
        if loaded is None:
            return fail("dialplan", f"context {context} is not loaded", fix)
        difference = first_difference(extensions, loaded)
        if difference is None and (
            absent := set(includes.get(context, [])) - set(shown_includes(lines))
        ):
            difference = f"it does not include {', '.join(sorted(absent))}"
        if difference is not None:
            return fail("dialplan", f"context {context} is not current: {difference}", fix)
    other = settings.asterisk.other_numbers_context
    if (
        other is not None
        and parse_dialplan_show(await session.command(f"dialplan show {other}")) is None
    ):
        # Asterisk takes an include of a context it does not have, and then finds nothing in it
        return fail(
            "dialplan",
            f"context {other} (asterisk.other_numbers_context) is not loaded: the trunk's"
            " numbers calltrack does not track are refused",
            "name the context the trunk's calls entered before calltrack, then regenerate",
        )
    return ok("dialplan", f"{', '.join(wanted)} loaded and current")


async def dids_check(session: AmiSession, settings: Settings) -> list[Result]:
    """Each tracked number, as the carrier may dial it, lands on its own extension."""
    assert settings.asterisk is not None
    context = settings.asterisk.context
    lost: list[Result] = []
    numbers = list(Numbering.from_settings(settings))
    for number in numbers:
        reached = []
        for form in dialled_forms(number.e164, settings.region):
            try:
                lines = await session.command(f"dialplan show {form}@{context}")
            except Denied:
                return [skip("DIDs", "cannot look the numbers up", NEEDS_COMMAND)]
            found = parse_dialplan_show(lines) or {}
            first = [p for priorities in found.values() for p in priorities[:1]]
            if any(f"CALLTRACK_DID={number.e164}" in p.app for p in first):
                reached.append(form)
        if not reached:
            lost.append(
                fail(
                    "DIDs",
                    f"{number.e164} ({number.origin}) does not reach [{context}]",
                    "regenerate and reload the dialplan (see the dialplan line)",
                )
            )
    return lost or [ok("DIDs", f"all {len(numbers)} tracked numbers reach [{context}]")]


async def agi_check(settings: Settings, asterisk_is_here: bool | None) -> Result:
    """The FastAGI port accepts a connection from this host (the daemon is listening), at an
    address Asterisk can reach: the dialplan's loopback address is Asterisk's own host."""
    assert settings.asterisk is not None
    address = agi_address(settings)
    host, _, port = address.rpartition(":")
    if asterisk_is_here is False and _is_loopback(host.strip("[]")):
        # a WARN: AMI's address is not this host's, but a NAT's public address or a
        # container's published port can still lead here
        return Result(
            "FastAGI",
            Status.WARN,
            f"the dialplan asks agi://{address}, and Asterisk seems to run on another host"
            f" (AMI at {settings.asterisk.ami.host}, not an address of this one): there that"
            " address is its own, and every call goes to its fallback line, unattributed",
            "unless Asterisk reaches this host's loopback (a container's published port), set"
            " asterisk.agi.host to this host's address as Asterisk reaches it, then regenerate"
            " and reload the dialplan",
        )
    try:
        async with asyncio.timeout(settings.asterisk.ami.action_timeout):
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    except (OSError, TimeoutError) as exc:
        return fail(
            "FastAGI",
            f"{address} does not accept connections:"
            f" {reason(exc, settings.asterisk.ami.action_timeout)}",
            "start the daemon (`calltrack serve`, or `systemctl start calltrack`); calls go to"
            " the real lines meanwhile",
        )
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    if settings.asterisk.agi.allowed_peers is None and not _is_loopback(host.strip("[]")):
        return Result(
            "FastAGI",
            Status.WARN,
            f"{address} accepts connections, and answers anyone who reaches it (FastAGI has no"
            " password: a number's real line, and the campaign that holds it)",
            "set asterisk.agi.allowed_peers to Asterisk's address (and a TCP balancer's in"
            " between), or let only Asterisk reach the port (a firewall rule)",
        )
    return ok(
        "FastAGI",
        f"{address} accepts connections from here (Asterisk's own side is proven by a test call"
        " or `agi set debug on` while one rings)",
    )


def _is_loopback(host: str) -> bool:
    """A loopback address literal, or localhost (agi.host may be a name)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: where it leads is the resolver's
        return False


def reason(error: OSError | TimeoutError, seconds: float) -> str:
    """What went wrong, for a line: a timeout's own text is empty."""
    if isinstance(error, TimeoutError) and not str(error):
        return f"no answer within {seconds:g} s (asterisk.ami.action_timeout)"
    return str(error) or type(error).__name__


async def asterisk_user(session: AmiSession) -> str | None:
    """The Unix user and group Asterisk says it runs as, "user/group" (asterisk.conf's runuser
    and rungroup): "/" or "" when it names none (started without them: as whoever started it,
    or -U and -G), None when it may not be asked."""
    try:
        fields = parse_fields(await session.command("core show settings"))
    except Denied:
        return None
    # "User name and group: asterisk/asterisk"; "/" when it names none
    return fields.get("user name and group", "").strip()


async def asterisk_here(ami: Ami) -> bool | None:
    """Asterisk runs on this host: its AMI address is one of this host's (loopback, or an
    address a socket here can bind). None when the name does not resolve."""
    try:
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo(ami.host, ami.port, type=socket.SOCK_STREAM),
            ami.action_timeout,
        )
    except (OSError, TimeoutError):
        return None
    return all(_is_this_host(family, str(address[0])) for family, _, _, _, address in infos)


def _is_this_host(family: int, address: str) -> bool:
    if ipaddress.ip_address(address.partition("%")[0]).is_loopback:
        return True
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((address, 0))
    except OSError:  # EADDRNOTAVAIL: not an address of this host; EAFNOSUPPORT: IPv6 is off
        return False
    return True


async def pbx_checks(
    settings: Settings, config: str, daemon_user: str | None = None
) -> tuple[list[Result], str | None, bool | None]:
    """Every AMI-based check, in order (`daemon_user`: the AMI user whose eventfilter is checked,
    when doctor logs in as another); the Unix user Asterisk says it runs as (see
    asterisk_user); whether it runs on this host (see asterisk_here)."""
    assert settings.asterisk is not None
    here = await asterisk_here(settings.asterisk.ami)
    session = AmiSession(settings.asterisk.ami)
    results = [await login_check(session)]
    user = None
    try:
        if results[0].status is not Status.OK:
            results += [skip(name, "not checked", NEEDS_LOGIN) for name in AMI_CHECKS]
        else:
            try:
                rights, _ = await rights_check(session, daemon_user)
                results.append(rights)
                events, event = await events_check(session)
                results += [events, await eventfilter_check(session, daemon_user)]
                results.append(await timestamp_check(session, event))
                results.append(await dialplan_check(session, settings, config))
                results += await dids_check(session, settings)
                user = await asterisk_user(session)
            except (OSError, TimeoutError) as exc:  # an action unanswered, the link dropped
                checked = {r.check for r in results}
                why = reason(exc, settings.asterisk.ami.action_timeout)
                results.append(
                    fail(
                        "AMI",
                        f"the link stopped answering during the checks: {why}",
                        "is Asterisk overloaded or restarting? a larger asterisk.ami.action_timeout"
                        f" (now {settings.asterisk.ami.action_timeout:g} s) for a slow one",
                    )
                )
                results += [
                    skip(name, "not checked", "an AMI link that answers (see the AMI line)")
                    for name in AMI_CHECKS
                    if name not in checked
                ]
        results.append(await agi_check(settings, here))
        return results, user, here
    finally:
        session.close()
