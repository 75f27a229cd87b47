"""Two `calltrack serve` daemons on one PostgreSQL beside the lab Asterisk: exactly one follows
AMI; SIGKILLed in the middle of a call, the other takes over within 5 s and the call is stored
exactly once, attributed to the visit made through the standby daemon."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from pbx.settings import Settings
from tests.asterisk.conftest import (  # noqa: F401  (the lab fixtures)
    lab_dialplan,
    lab_running,
    lab_settings,
)
from tests.e2e.conftest import Daemon, call, free_port, write_daemon_config

pytestmark = [pytest.mark.postgres, pytest.mark.asterisk]

CPC = "http://127.0.0.1:8080/?utm_source=google&utm_medium=cpc&utm_campaign=takeover"
TAKEOVER = 5.0


async def ami_role(daemon: Daemon) -> str | None:
    """/healthz's `pbx.ami` (None while the daemon does not answer)."""
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(daemon.url + "/healthz") as response,
        ):
            body = await response.json()
            return str(body["pbx"]["ami"]) if response.status == 200 else None
    except aiohttp.ClientError:
        return None


async def wait_role(daemon: Daemon, role: str, within: float) -> float:
    """Seconds until /healthz shows `role`."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log.read_text()
        if await ami_role(daemon) == role:
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    raise AssertionError(f"not {role} in {within}s:\n{daemon.log.read_text()[-3000:]}")


def start(folder: Path, lab: Settings, database: str, agi_port: int) -> Daemon:
    folder.mkdir()
    assert lab.asterisk is not None
    asterisk = lab.asterisk.model_dump(mode="json")
    asterisk["agi"]["port"] = agi_port  # one host: each daemon has its FastAGI port
    config = write_daemon_config(folder, database=database, asterisk=asterisk)
    daemon = Daemon(config, free_port(), folder / "daemon.log")
    daemon.url = f"http://127.0.0.1:{daemon.settings.http.port}"
    daemon.start()
    return daemon


async def test_the_standby_daemon_takes_over_ami_mid_call_and_the_call_is_stored_once(
    lab_dialplan: Settings,  # noqa: F811
    postgres_url: str,
    tmp_path: Path,
) -> None:
    assert lab_dialplan.asterisk is not None
    # the first daemon answers the lab dialplan's FastAGI and takes the AMI lock first
    first = start(tmp_path / "a", lab_dialplan, postgres_url, lab_dialplan.asterisk.agi.port)
    second: Daemon | None = None
    try:
        await wait_role(first, "connected", 30)
        second = start(tmp_path / "b", lab_dialplan, postgres_url, free_port())
        await wait_role(second, "standby", 30)
        await asyncio.sleep(2.0)  # it retries the lock meanwhile, and must not get it
        assert await ami_role(second) == "standby"
        assert await ami_role(first) == "connected"

        visit = await second.visit(CPC)  # any daemon serves visitors
        did = visit["numbers"][0]["number"]
        ringing = asyncio.create_task(call(did, tmp_path))  # 7.1 s of talk
        await asyncio.sleep(2.5)  # answered, bridged: the first daemon folds it
        assert not ringing.done()
        first.kill()
        took = await wait_role(second, "connected", TAKEOVER + 5)
        assert took < TAKEOVER
        await ringing

        stored = await second.wait_call(did, within=30)
        assert stored["status"] == "answered"
        assert stored["session_id"] == visit["session_id"] and stored["campaign"] == "takeover"
        assert 6.0 < stored["talk_seconds"] < 8.5
        await asyncio.sleep(3.0)  # a second report (live and reconciled) would show by now
        assert len([c for c in await second.calls() if c["did"] == did]) == 1
    finally:
        first.kill()
        if second is not None:
            second.stop()
