"""The FastAGI server the dialplan asks where each call goes.

Asterisk waits for a FastAGI server forever once connected, and takes a closed socket for
SUCCESS. So every request gets an explicit answer within `asterisk.agi.answer_within`: the
router's route, or, when the router is slow, raises or returns junk, the number's real line.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import unicodedata
from collections.abc import Awaitable, Callable

from panoramisk.fast_agi import Application, Request

from attribution.calls import Route
from attribution.numbering import Numbering
from attribution.phone import PhoneNumberError, to_e164
from dialplan.generator import AGI_ROUTE, VAR_DEST, check_dial_string
from pbx.networks import Network, networks, parse_address, within
from pbx.settings import Settings

log = logging.getLogger(__name__)

Router = Callable[[str, str], Awaitable[Route]]

#: How long a connected Asterisk may take to send the AGI environment.
ENV_TIMEOUT = 2.0
#: How long sending the answer may take; Asterisk reads it at once unless the call is gone.
SEND_TIMEOUT = 1.0
CALLER_NAME_MAX = 48
_NOT_IN_NAMES = re.compile(r'["\'\\<>;,|`$]')


def clean_caller_name(name: str | None) -> str | None:
    """A caller-ID name safe for an AGI command and a phone display, or None if nothing is left.

    The name may carry visitor-controlled text (a campaign tag): no control or format characters,
    quotes or separators, one space between words, at most CALLER_NAME_MAX characters.
    """
    if not name:
        return None
    kept = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in name)
    kept = " ".join(_NOT_IN_NAMES.sub("", kept).split())[:CALLER_NAME_MAX].strip()
    return kept or None


def _script_and_did(headers: dict[str, str]) -> tuple[str, str]:
    """The script a request asks for and the DID in its path: `route/+74951111111`, where no
    caller's value can reach (agi_network_script is sent before the environment, agi_arg_1
    after agi_callerid); an older dialplan's plain `route` has none ("")."""
    script, _slash, did = headers.get("agi_network_script", "").partition("/")
    return script, did


@functools.lru_cache(maxsize=256)
def _refused(peer: str) -> None:
    """Says once per peer that it may not ask (an Asterisk behind a NAT, or a stranger)."""
    log.warning(
        "FastAGI: %s may not ask (asterisk.agi.allowed_peers): hung up on; if it is your"
        " Asterisk, add its address there (its calls take the dialplan's line meanwhile)",
        peer,
    )


class _App(Application):  # type: ignore[misc]
    """panoramisk's FastAGI application with a request reader that cannot hang or spin, for
    the allowed peers only.

    The stock reader loops forever on a connection closed before the AGI environment arrived and
    leaves the socket open if the environment is not valid UTF-8. FastAGI has no password: a
    stranger who reaches the port could learn which campaign holds each number (the caller-ID
    name) and make the daemon read the database for every request.
    """

    def __init__(self, allowed: tuple[Network, ...] | None) -> None:
        super().__init__()
        self._allowed = allowed  # None: anyone

    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._allowed is not None:
            peer = writer.get_extra_info("peername")
            address = parse_address(str(peer[0])) if peer else None
            if address is None or not within(address, self._allowed):
                _refused(str(address or peer))
                writer.close()
                return
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\n\n"), ENV_TIMEOUT)
            lines = raw.decode(self.default_encoding, errors="replace").splitlines()
            # the first value of a variable: Asterisk writes the caller's number (agi_callerid)
            # unescaped, and a newline in it adds variables of the caller's making after the
            # real ones (agi_network_script comes first of all, before the environment)
            headers: dict[str, str] = {}
            for line in lines:
                if ": " in line:
                    key, value = line.split(": ", 1)
                    headers.setdefault(key, value)
            script, _did = _script_and_did(headers)
            route = self._route.get(script)
            if route is None:
                log.error("FastAGI request for unknown script %r", script)
                writer.write(b"FAILURE\n")
                await asyncio.wait_for(writer.drain(), SEND_TIMEOUT)
                return
            await route(Request(self, headers, reader, writer, self.default_encoding))
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            log.warning("FastAGI request from %s dropped", writer.get_extra_info("peername"))
        finally:
            writer.close()


class _RouteHandler:
    """Answers `agi://host:port/route/DID` (and an older dialplan's `route,DID`): sets
    CALLTRACK_DEST and the caller-ID name."""

    def __init__(self, settings: Settings, router: Router) -> None:
        assert settings.asterisk is not None
        self._router = router
        self._within = settings.asterisk.agi.answer_within
        self._numbering = Numbering.from_settings(settings)
        self._region = settings.region  # carriers may send the DID as a national number

    async def handle(self, request: Request) -> None:
        headers: dict[str, str] = request.headers
        raw_did = (
            _script_and_did(headers)[1]
            or headers.get("agi_arg_1")
            or headers.get("agi_extension", "")
        )
        caller = headers.get("agi_callerid", "")
        caller = "" if caller == "unknown" else caller
        try:
            did = to_e164(raw_did, self._region)
        except PhoneNumberError:
            log.error("FastAGI route for %r, not a phone number: the default real line", raw_did)
            did = ""
        if self._numbering.get(did) is None:
            # a number this daemon's config does not have (added and the dialplan reloaded
            # before a restart; a rolling one): the dialplan's own line for it, not this
            # config's default one. An empty CALLTRACK_DEST dials the dialplan's fallback
            log.warning(
                "FastAGI route for %r, a number not in this config: the dialplan's line", raw_did
            )
            did = ""
        fallback = self._numbering.real_line(did) if did else ""
        destination, name = fallback, None
        if did:
            try:
                route = await asyncio.wait_for(self._router(did, caller), self._within)
                destination = check_dial_string(route.destination)
                name = clean_caller_name(route.caller_name)
            except TimeoutError:
                log.warning("router silent for %s after %.2fs: %s", did, self._within, fallback)
            except Exception:
                log.exception("router failed for %s: %s", did, fallback)
        try:
            await asyncio.wait_for(self._answer(request, destination, name), SEND_TIMEOUT)
        except Exception as exc:  # a closed socket makes panoramisk raise ValueError
            log.warning("FastAGI answer for %s not sent (%r); the dialplan falls back", did, exc)

    @staticmethod
    async def _answer(request: Request, destination: str, name: str | None) -> None:
        # The destination first: it is what the call needs, the name is a courtesy.
        result = await request.send_command(f'SET VARIABLE {VAR_DEST} "{destination}"')
        if result.get("status_code") != 200:
            log.error("Asterisk refused SET VARIABLE %s: %s", VAR_DEST, result)
        if name:
            await request.send_command(f'SET VARIABLE CALLERID(name) "{name}"')


async def start_agi_server(settings: Settings, router: Router) -> asyncio.Server:
    """Listen on asterisk.agi.host:port; close the returned server to stop.

    `router(did_e164, caller)` returns where the call goes; it gets `answer_within` seconds.
    """
    if settings.asterisk is None:
        raise ValueError("the config has no `asterisk:` section")
    agi = settings.asterisk.agi
    allowed = agi.allowed_peers
    app = _App(None if allowed is None else networks(tuple(allowed)))
    app.add_route(AGI_ROUTE, _RouteHandler(settings, router).handle)
    return await asyncio.start_server(app.handler, agi.host, agi.port, reuse_address=True)
