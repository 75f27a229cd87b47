"""The daemon that follows AMI reads the CDR again every `asterisk.reconcile_every` while its link
stays up: a real app on SQLite, logged in once to a scripted AMI server, stores calls that only
the CDR file has, across both kinds of logrotate rotation, without reconnecting; a daemon that
does not follow AMI reads nothing."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from ami_bridge import ReportDelivery
from attribution.calls import CallReport
from pbx.app import build_app
from pbx.keys import ENGINE, PBX_LINK, PbxLink
from pbx.pbx_link import Reconciler
from pbx.settings import Settings
from pbx.storage.db import open_engine
from pbx.storage.errors import is_transient
from pbx.storage.tables import calls
from tests.helpers import FakeClock, migrate, settings_for
from tests.unit.test_ami_bridge import FakeAsterisk
from tests.unit.test_cdr_rotation import AT, append

Client = TestClient  # type: ignore[type-arg]
EVERY = 0.2  # seconds between periodic passes in these tests


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _settings(tmp_path: Path, ami_port: int) -> Settings:
    return settings_for(
        tmp_path,
        asterisk={
            "ami": {"port": ami_port, "secret": "pw", "action_timeout": "1s"},
            "agi": {"port": _free_port()},
            "cdr_csv": str(tmp_path / "Master.csv"),
            "reconcile_every": f"{EVERY}s",
        },
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeAsterisk]:
    asterisk = FakeAsterisk([[]], pong=[True], close=[False])  # one login, no events
    yield asterisk
    await asterisk.stop()


async def _linkedids(client: Client) -> list[str]:
    async with client.app[ENGINE].connect() as conn:
        return sorted(await conn.scalars(select(calls.c.linkedid)))


async def _wait_for(client: Client, expected: list[str]) -> None:
    """Polls the database (the test has no other view of it) until `expected` are stored."""
    for _ in range(200):
        if await _linkedids(client) == sorted(expected):
            return
        await asyncio.sleep(0.05)
    assert await _linkedids(client) == sorted(expected)


async def test_calls_only_the_cdr_has_are_stored_while_the_link_stays_up(
    tmp_path: Path, fake: FakeAsterisk, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    master = tmp_path / "Master.csv"
    append(master, "1.1")
    settings = _settings(tmp_path, await fake.start())
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=FakeClock(AT + 60)))
    await _wait_for(client, ["1.1"])  # the pass after the login

    append(master, "1.2")  # its AMI events were missed
    await _wait_for(client, ["1.1", "1.2"])

    append(master, "1.3")  # logrotate's create mode: the rest of the old file, then the new one
    master.rename(tmp_path / "Master.csv.1")
    append(master, "1.4")
    await _wait_for(client, ["1.1", "1.2", "1.3", "1.4"])

    append(master, "1.5")  # copytruncate
    shutil.copy(master, tmp_path / "Master.csv.1")
    os.truncate(master, 0)
    append(master, "1.6")
    await _wait_for(client, ["1.1", "1.2", "1.3", "1.4", "1.5", "1.6"])

    assert fake.logins == 1, "the calls must come from periodic passes, not a reconnection"
    assert client.app[PBX_LINK].state()["ami"] == "connected"


async def test_a_daemon_not_following_ami_reads_nothing(
    tmp_path: Path, fake: FakeAsterisk, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """A standby daemon (its PbxLink has no AMI bridge) leaves the CDR to the one that has."""
    append(tmp_path / "Master.csv", "1.1")
    settings = _settings(tmp_path, await fake.start())
    await migrate(settings)
    client = await aiohttp_client(build_app(settings, clock=FakeClock(AT + 60)))
    await _wait_for(client, ["1.1"])
    delivered: list[str] = []

    async def record(report: object) -> bool:
        delivered.append(str(report))
        return True

    reconciler = Reconciler(
        settings, client.app[ENGINE], ReportDelivery(record, is_transient), FakeClock(AT + 60)
    )
    append(tmp_path / "Master.csv", "1.2")
    standby = asyncio.create_task(reconciler.run_periodic(PbxLink(standby=True), EVERY))
    await asyncio.sleep(5 * EVERY)
    standby.cancel()
    assert delivered == []


async def test_after_a_login_the_pass_reaches_back_to_the_last_pass(tmp_path: Path) -> None:
    """A call the AMI fold left to the CDR ended after the last periodic pass began; the link was
    lost more than RECONCILE_OVERLAP after that (a long reconcile_every). The pass after the next
    login looked only RECONCILE_OVERLAP before the loss: the call was never stored."""
    settings = _settings(tmp_path, _free_port())
    await migrate(settings)
    (tmp_path / "Master.csv").write_text("")
    delivered: list[str] = []

    async def record(report: CallReport) -> bool:
        delivered.append(report.linkedid)
        return True

    clock = FakeClock(AT - 5)
    engine = open_engine(settings.database)
    try:
        reconciler = Reconciler(settings, engine, ReportDelivery(record, is_transient), clock)
        await reconciler.after_login(AT - 20)  # a pass: nothing yet
        append(tmp_path / "Master.csv", "1.1")  # ends at AT
        clock.advance(2 * 3600)
        await reconciler.after_login(clock())  # the link was lost just now
        assert delivered == ["1.1"]
    finally:
        await engine.dispose()
