"""The AMI link drops in the middle of a call (the trap: events sent while it is down are lost,
and AMI has no replay). The call must still be stored, once, with its attribution."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pbx.settings import Settings
from tests.e2e.conftest import Daemon, call, free_port, serving, write_daemon_config

pytestmark = pytest.mark.asterisk

CPC = "http://127.0.0.1:8080/?utm_source=google&utm_medium=cpc&utm_campaign=drop"
AMI = ("127.0.0.1", 5038)


class CuttableLink:
    """A TCP relay between the daemon and Asterisk's AMI that a test can cut and restore."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*AMI)
        self._writers |= {writer, up_writer}
        with contextlib.suppress(ConnectionError):
            await asyncio.gather(self._relay(reader, up_writer), self._relay(up_reader, writer))

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()


@pytest.fixture
async def link() -> AsyncIterator[CuttableLink]:
    relay = CuttableLink()
    await relay.restore()
    yield relay
    await relay.cut()


@pytest.fixture
async def relayed_daemon(
    lab_dialplan: Settings, link: CuttableLink, tmp_path: Path
) -> AsyncIterator[Daemon]:
    assert lab_dialplan.asterisk is not None
    ami = {**lab_dialplan.asterisk.ami.model_dump(), "port": link.port}
    ami = {k: v for k, v in ami.items() if k in ("host", "port", "username", "secret")}
    asterisk = {
        **lab_dialplan.asterisk.model_dump(mode="json", exclude={"ami"}),
        "ami": {**ami, "action_timeout": "2s", "ping_interval": "1s"},
    }
    async with serving(write_daemon_config(tmp_path, asterisk=asterisk), tmp_path) as running:
        yield running


async def test_call_spanning_an_ami_outage_is_stored_once_and_attributed(
    relayed_daemon: Daemon, link: CuttableLink, tmp_path: Path
) -> None:
    visit = await relayed_daemon.visit(CPC)
    did = visit["numbers"][0]["number"]
    ringing = asyncio.create_task(call(did, tmp_path))  # 7.1 s of talk
    await asyncio.sleep(2.0)
    await link.cut()  # the call's middle events (answer, bridge) may be lost
    await asyncio.sleep(2.0)
    await link.restore()
    await ringing
    stored = await relayed_daemon.wait_call(did, within=30)
    assert link.connections >= 2, "the bridge did not reconnect"
    assert stored["status"] == "answered"
    assert stored["session_id"] == visit["session_id"] and stored["campaign"] == "drop"
    assert 6.0 < stored["talk_seconds"] < 8.5
    await asyncio.sleep(3.0)  # a second report (live and reconciled) would show by now
    assert len([c for c in await relayed_daemon.calls() if c["did"] == did]) == 1
