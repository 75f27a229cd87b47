"""`calltrack doctor`'s network checks: when AMI accepts the login and then stops answering
(Asterisk overloaded, restarting, a link dropped) a FAIL line that says so, the checks not run
skipped, the rest of the report still printed, never a traceback that loses every line; an AMI
address that never answers; a FastAGI address Asterisk cannot reach."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator

import pytest

from pbx.doctor import Status
from pbx.doctor import pbx_checks as pbx_checks_module
from pbx.doctor.pbx_checks import (
    AMI_CHECKS,
    AmiSession,
    agi_check,
    asterisk_here,
    login_check,
    pbx_checks,
)
from pbx.settings import Settings, parse_settings


class MuteAsterisk:
    """Accepts the login, then answers nothing (`hang_up`: closes the link instead)."""

    def __init__(self, hang_up: bool) -> None:
        self.hang_up = hang_up

    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        try:
            while True:
                raw = (await reader.readuntil(b"\r\n\r\n")).decode()
                fields = dict(line.split(": ", 1) for line in raw.split("\r\n") if ": " in line)
                if fields.get("Action") == "Login":
                    writer.write(
                        f"Response: Success\r\nActionID: {fields.get('ActionID', '')}\r\n"
                        "Message: Authentication accepted\r\n\r\n".encode()
                    )
                    await writer.drain()
                elif self.hang_up:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest.fixture(params=[False, True], ids=["silent", "hangs-up"])
async def ami_port(request: pytest.FixtureRequest) -> AsyncIterator[int]:
    server = await asyncio.start_server(MuteAsterisk(request.param).client, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()


async def test_an_ami_link_that_stops_answering_fails_one_line_and_skips_the_rest(
    ami_port: int,
) -> None:
    settings = parse_settings(f"""
forward_to: PJSIP/office
asterisk:
  ami: {{port: {ami_port}, secret: pw, action_timeout: 0.3s}}
""")
    results, user, _ = await asyncio.wait_for(pbx_checks(settings, "calltrack.yaml"), 10)
    by_check = {(r.check, r.status) for r in results}
    assert ("AMI", Status.OK) in by_check, "the login itself worked"
    [lost] = [r for r in results if r.check == "AMI" and r.status is Status.FAIL]
    assert "stopped answering" in lost.message and "action_timeout" in lost.fix
    why = lost.message.split("during the checks: ", 1)[1]
    assert why.strip(), "a timeout's own text is empty: the line says what happened instead"
    assert {(name, Status.SKIP) for name in AMI_CHECKS} <= by_check
    assert results[-1].check == "FastAGI", "the checks after AMI's still ran"
    assert user is None


def agi_settings(ami_host: str, agi_port: int, agi_host: str = "0.0.0.0") -> Settings:
    return parse_settings(f"""
forward_to: PJSIP/office
asterisk:
  ami: {{host: "{ami_host}", secret: pw, action_timeout: 0.5s}}
  agi: {{host: "{agi_host}", port: {agi_port}}}
""")


async def test_a_loopback_agi_address_for_an_asterisk_elsewhere_is_a_warning() -> None:
    """With agi.host 0.0.0.0 the dialplan asks agi://127.0.0.1: Asterisk's own loopback when
    it runs on another host, so every call went to its fallback line while the FastAGI line,
    connecting from calltrack's host, said OK."""
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        remote = await agi_check(agi_settings("192.0.2.10", port), asterisk_is_here=False)
        # a WARN, not a FAIL: a NAT's public address or a container's published port may
        # still lead Asterisk to this host's loopback
        assert remote.status is Status.WARN
        assert "Asterisk seems to run on another host (AMI at 192.0.2.10" in remote.message
        assert "asterisk.agi.host" in remote.fix
        named = agi_settings("192.0.2.10", port, agi_host="calltrack.invalid")
        result = await agi_check(named, asterisk_is_here=False)  # a name: was a traceback
        assert result.status is Status.FAIL and "does not accept connections" in result.message
        local = await agi_check(agi_settings("127.0.0.1", port), asterisk_is_here=True)
        assert local.status is Status.OK
        unknown = await agi_check(agi_settings("pbx.example", port), asterisk_is_here=None)
        assert unknown.status is Status.OK
    finally:
        server.close()


async def test_a_fastagi_port_open_to_anyone_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """agi.host on an address other hosts reach, and no allowed_peers: whoever reaches the
    port may ask it (FastAGI has no password)."""
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    # the listening address stands for one other hosts reach (this test's is loopback)
    monkeypatch.setattr(pbx_checks_module, "_is_loopback", lambda _host: False)
    try:
        open_to_all = await agi_check(agi_settings("127.0.0.1", port, "127.0.0.1"), True)
        assert open_to_all.status is Status.WARN
        assert "answers anyone who reaches it" in open_to_all.message
        assert "asterisk.agi.allowed_peers" in open_to_all.fix
        limited = agi_settings("127.0.0.1", port, "127.0.0.1").model_dump(mode="json")
        limited["asterisk"]["agi"]["allowed_peers"] = ["192.0.2.10"]
        only_asterisk = Settings.model_validate(limited)
        assert (await agi_check(only_asterisk, True)).status is Status.OK
    finally:
        server.close()


async def test_where_asterisk_runs_is_told_by_its_ami_address() -> None:
    assert await asterisk_here(agi_settings("127.0.0.1", 1).asterisk.ami) is True  # type: ignore[union-attr]
    assert await asterisk_here(agi_settings("localhost", 1).asterisk.ami) is True  # type: ignore[union-attr]
    # an address this host has, not loopback: binding a socket to it succeeds
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet: picks the outgoing interface's address
        own = probe.getsockname()[0]
    if not ipaddress.ip_address(own).is_loopback:
        assert await asterisk_here(agi_settings(own, 1).asterisk.ami) is True  # type: ignore[union-attr]
    assert await asterisk_here(agi_settings("192.0.2.10", 1).asterisk.ami) is False  # type: ignore[union-attr]


async def test_an_ami_address_that_never_answers_says_so_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A timed-out connect was "cannot reach HOST:PORT: " with nothing after it (a
    TimeoutError's text is empty), and its cancelled task raised CancelledError into the
    loop's exception handler: a traceback on stderr under the report."""
    loop = asyncio.get_running_loop()
    handled: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: handled.append(context))

    async def hang(*_args: object, **_kwargs: object) -> None:
        await asyncio.sleep(3600)

    monkeypatch.setattr(loop, "create_connection", hang)
    session = AmiSession(agi_settings("192.0.2.10", 1).asterisk.ami)  # type: ignore[union-attr]
    try:
        result = await login_check(session)
    finally:
        session.close()
    for _ in range(3):
        await asyncio.sleep(0)  # the cancelled connect's callbacks run
    assert result.status is Status.FAIL
    assert (
        result.message
        == "cannot reach 192.0.2.10:5038: no answer within 0.5 s (asterisk.ami.action_timeout)"
    )
    assert handled == []
    assert "Not able to" not in caplog.text
