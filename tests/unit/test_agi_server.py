"""The FastAGI server against a scripted Asterisk: always an explicit, bounded answer."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from attribution.calls import Route
from dialplan import agi as agi_module
from dialplan.agi import clean_caller_name, start_agi_server
from pbx.settings import ConfigError, Settings, parse_settings

Router = Callable[[str, str], Awaitable[Route]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _settings(port: int, region: str = "null", agi: str = "") -> Settings:
    return parse_settings(f"""
region: {region}
forward_to: PJSIP/office
sites:
  - name: shop
    origins: ["https://shop.test"]
    replace: ["+74950000000"]
    pools: [{{name: ads, numbers: ["+74951111111"], forward_to: PJSIP/sales}}]
asterisk:
  ami: {{secret: x}}
  agi: {{host: 127.0.0.1, port: {port}, answer_within: 0.2s{agi}}}
""")


@pytest.fixture
async def agi(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[Router], Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def start(router: Router) -> int:
        port = _free_port()
        servers.append(await start_agi_server(_settings(port), router))
        return port

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def asterisk(
    port: int, script: str = "route", did: str = "+74951111111", caller: str = "79161234567"
) -> tuple[list[str], float]:
    """Plays Asterisk's side: sends the AGI environment, answers every command with 200."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"agi_network: yes\nagi_network_script: {script}\n"
        f"agi_request: agi://127.0.0.1:{port}/{script}\nagi_channel: PJSIP/trunk-00000001\n"
        f"agi_callerid: {caller}\nagi_extension: {did.lstrip('+')}\nagi_arg_1: {did}\n\n".encode()
    )
    commands = []
    while line := await asyncio.wait_for(reader.readline(), 3):
        commands.append(line.decode().rstrip("\n"))
        writer.write(b"200 result=1\n")
    writer.close()
    return commands, time.monotonic() - started


async def test_route_and_caller_name(agi: Callable[[Router], Awaitable[int]]) -> None:
    asked = []

    async def router(did: str, caller: str) -> Route:
        asked.append((did, caller))
        return Route("PJSIP/sales&PJSIP/boss", "[cpc] Anna")

    commands, _ = await asterisk(await agi(router))
    assert asked == [("+74951111111", "79161234567")]
    assert commands == [
        'SET VARIABLE CALLTRACK_DEST "PJSIP/sales&PJSIP/boss"',
        'SET VARIABLE CALLERID(name) "[cpc] Anna"',
    ]


@pytest.mark.parametrize("did", ["84951111111", "4951111111", "74951111111", "+74951111111"])
async def test_a_national_did_is_read_in_the_region(did: str) -> None:
    """Carriers may send the DID nationally: with `region: RU` it is still the tracked number."""
    asked = []

    async def router(did: str, caller: str) -> Route:
        asked.append(did)
        return Route("PJSIP/sales")

    port = _free_port()
    server = await start_agi_server(_settings(port, "RU"), router)
    try:
        commands, _ = await asterisk(port, did=did)
    finally:
        server.close()
        await server.wait_closed()
    assert asked == ["+74951111111"]
    assert commands == ['SET VARIABLE CALLTRACK_DEST "PJSIP/sales"']


async def test_stalled_router_gets_the_numbers_real_line_in_time(
    agi: Callable[[Router], Awaitable[int]],
) -> None:
    async def stalled(did: str, caller: str) -> Route:
        await asyncio.sleep(10)
        return Route("PJSIP/late")

    commands, seconds = await asterisk(await agi(stalled))
    assert commands == ['SET VARIABLE CALLTRACK_DEST "PJSIP/sales"']
    assert 0.2 <= seconds < 0.5


@pytest.mark.parametrize(
    "answer",
    [RuntimeError("database is locked"), Route("PJSIP/x,60,tT"), Route('PJSIP/x"\nEXEC Hangup')],
)
async def test_failing_or_unsafe_answers_fall_back(
    agi: Callable[[Router], Awaitable[int]], answer: Exception | Route
) -> None:
    async def router(did: str, caller: str) -> Route:
        if isinstance(answer, Exception):
            raise answer
        return answer

    commands, _ = await asterisk(await agi(router))
    assert commands == ['SET VARIABLE CALLTRACK_DEST "PJSIP/sales"']


async def test_unknown_number_and_unknown_script(agi: Callable[[Router], Awaitable[int]]) -> None:
    async def router(did: str, caller: str) -> Route:
        raise AssertionError("not asked for junk")

    port = await agi(router)
    # the dialplan's own line for it (an empty destination dials CALLTRACK_FALLBACK), not
    # this config's default one: the dialplan may know a number this daemon does not yet
    for did in ("not-a-number", "+74957777777"):
        commands, _ = await asterisk(port, did=did)
        assert commands == ['SET VARIABLE CALLTRACK_DEST ""'], did
    commands, _ = await asterisk(port, script="other")
    assert commands == ["FAILURE"]  # AGISTATUS=FAILURE, not the SUCCESS of a closed socket


async def test_connection_closed_before_the_environment_does_not_hang(
    agi: Callable[[Router], Awaitable[int]],
) -> None:
    async def router(did: str, caller: str) -> Route:
        return Route("PJSIP/sales")

    port = await agi(router)
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"agi_network: yes\n")
    writer.close()
    await asyncio.sleep(0.1)
    commands, _ = await asterisk(port)  # the server still serves
    assert commands == ['SET VARIABLE CALLTRACK_DEST "PJSIP/sales"']


@pytest.mark.parametrize(
    ("name", "clean"),
    [
        ("[cpc] Anna", "[cpc] Anna"),
        ('Anna "x"\r\nEXEC Hangup', "Anna x EXEC Hangup"),
        ("Анна\u202e\u0000 ;,|`$<>'\\", "Анна"),
        ("  \t ", None),
        (None, None),
        ("x" * 100, "x" * 48),
    ],
)
def test_clean_caller_name(name: str | None, clean: str | None) -> None:
    assert clean_caller_name(name) == clean


async def test_a_callers_number_cannot_choose_the_did(
    agi: Callable[[Router], Awaitable[int]],
) -> None:
    """Asterisk writes agi_callerid unescaped: a number with newlines (a SIP From's user part,
    %0A) added variables after it, and a blank line ended the environment before the real
    agi_arg_1, so the caller's own DID picked another number's real line and caller name. The
    DID now comes in the script's path, sent before anything of the caller's, and a
    variable's first value is the one taken."""
    asked = []

    async def router(did: str, caller: str) -> Route:
        asked.append(did)
        return Route("PJSIP/sales")

    port = await agi(router)
    for forged in (
        "1\nagi_network_script: route/+74990000666\nagi_arg_1: +74990000666\n",
        "1\nagi_arg_1: +74990000666\n\n",  # the environment ended early
    ):
        asked.clear()
        commands, _ = await asterisk(port, script="route/+74951111111", caller=forged)
        assert asked == ["+74951111111"], forged
        assert commands == ['SET VARIABLE CALLTRACK_DEST "PJSIP/sales"']


async def test_a_peer_not_allowed_is_hung_up_on_unanswered_and_named_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """FastAGI has no password: whoever reached the port learned which campaign holds each
    number (the caller-ID name) and made the daemon read the database per request."""
    asked = []

    async def router(did: str, caller: str) -> Route:
        asked.append(did)
        return Route("PJSIP/sales", "[cpc] Anna")

    agi_module._refused.cache_clear()
    port = _free_port()
    server = await start_agi_server(_settings(port, agi=", allowed_peers: [10.0.0.0/8]"), router)
    try:
        for _ in range(2):
            started = time.monotonic()
            try:  # closed at once, unread: the environment sent may come back as a reset
                commands, _took = await asterisk(port)
            except ConnectionResetError:
                commands = []
            assert commands == [] and time.monotonic() - started < 1.0  # no answer at all
    finally:
        server.close()
        await server.wait_closed()
    assert asked == []
    named = [r.getMessage() for r in caplog.records if "may not ask" in r.getMessage()]
    assert len(named) == 1 and named[0].startswith("FastAGI: 127.0.0.1 may not ask"), named


async def test_without_allowed_peers_anyone_may_ask(
    agi: Callable[[Router], Awaitable[int]],
) -> None:
    async def router(did: str, caller: str) -> Route:
        return Route("PJSIP/sales", None)

    commands, _ = await asterisk(await agi(router))
    assert commands == ['SET VARIABLE CALLTRACK_DEST "PJSIP/sales"']


def test_allowed_peers_are_addresses_or_networks_not_names_nor_none() -> None:
    with pytest.raises(ConfigError, match="expected an IP address or a network"):
        _settings(4573, agi=", allowed_peers: [asterisk.local]")
    with pytest.raises(ConfigError, match="at least 1 item"):  # would refuse Asterisk too
        _settings(4573, agi=", allowed_peers: []")
