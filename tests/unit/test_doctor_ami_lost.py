"""`calltrack doctor` when AMI accepts the login and then stops answering (Asterisk overloaded,
restarting, a link dropped): a FAIL line that says so, the checks not run skipped, the rest of
the report still printed; never a traceback that loses every line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pbx.doctor import Status
from pbx.doctor.pbx_checks import AMI_CHECKS, pbx_checks
from pbx.settings import parse_settings


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
    results, user = await asyncio.wait_for(pbx_checks(settings, "calltrack.yaml"), 10)
    by_check = {(r.check, r.status) for r in results}
    assert ("AMI", Status.OK) in by_check, "the login itself worked"
    [lost] = [r for r in results if r.check == "AMI" and r.status is Status.FAIL]
    assert "stopped answering" in lost.message and "action_timeout" in lost.fix
    assert {(name, Status.SKIP) for name in AMI_CHECKS} <= by_check
    assert results[-1].check == "FastAGI", "the checks after AMI's still ran"
    assert user is None
