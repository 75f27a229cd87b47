"""The whole chain: the daemon (`calltrack serve`) beside the lab Asterisk, driven over HTTP+SIP."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ruamel.yaml import YAML

from bench.lease_api import free_port
from pbx.settings import Settings, load_settings
from tests.asterisk.conftest import (  # noqa: F401  (the lab fixtures, shared)
    LAB_CONFIG,
    lab_dialplan,
    lab_running,
    lab_settings,
)
from tests.asterisk.sipp import place_call, real_line
from tests.helpers import STAFF_TOKEN, config_dict

LAB_ORIGIN = "http://127.0.0.1:8080"
FREEZE = 5.0


async def call(did: str, tmp_path: Path, line: str = "uas") -> float:
    """Dial `did` from the carrier while the real line behaves as `line`; SIPp's seconds."""
    async with real_line(tmp_path / f"uas-{time.monotonic()}", line) as real:
        result = await place_call(did.lstrip("+"), tmp_path / "uac", scenario="uac_audio.xml")
        await real.wait()
    assert "INVITE sip:" in real.messages(), "the call never reached the real line"
    return result.seconds


class Daemon:
    """`calltrack serve` as an admin runs it; can be SIGKILLed and started again."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.settings: Settings = load_settings(config)
        self.since = time.time()  # the lab's CDR holds calls of earlier tests: ignore those

    def start(self, program: list[str] | None = None) -> None:
        """`calltrack serve -c CONFIG`, or `program` (given the config path as last argument)."""
        argv = program or [sys.executable, "-m", "pbx.cli", "serve", "-c"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*argv, str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    async def wait_ready(self, within: float = 30.0) -> None:
        """Until /healthz says the database answers and AMI is logged in."""
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
                try:
                    async with http.get(self.url + "/healthz") as response:
                        body = await response.json()
                        if response.status == 200 and body["pbx"].get("ami") == "connected":
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"daemon not ready in {within}s:\n{self.log.read_text()[-3000:]}")

    async def visit(self, url: str) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                self.url + "/api/v1/visits",
                json={"site": "lab", "url": url},
                headers={"Origin": LAB_ORIGIN},
            ) as response,
        ):
            assert response.status == 200, await response.text()
            body: dict[str, Any] = await response.json()
            return body

    async def calls(self) -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                self.url + "/api/v1/calls",
                params={"since": str(self.since), "limit": "1000"},
                headers={"Authorization": f"Bearer {STAFF_TOKEN}"},
            ) as response,
        ):
            assert response.status == 200
            body = await response.json()
            return list(body["calls"])

    async def report(self, **params: str) -> dict[str, Any]:
        """GET /api/v1/reports for today (UTC, the lab config's time zone)."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                self.url + "/api/v1/reports",
                params=params,
                headers={"Authorization": f"Bearer {STAFF_TOKEN}"},
            ) as response,
        ):
            assert response.status == 200, await response.text()
            body: dict[str, Any] = await response.json()
            return body

    async def wait_converted(self, call_id: int, within: float = 20.0) -> dict[str, Any]:
        """The call once its recording is converted for browsers (recordings/ worker)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            call = next(c for c in await self.calls() if c["id"] == call_id)
            if call["recording_seconds"] is not None:
                return call
            await asyncio.sleep(0.3)
        raise AssertionError(
            f"recording of call {call_id} not converted in {within}s:\n{self.log.read_text()[-3000:]}"
        )

    async def wait_call(self, did: str, known: int = 0, within: float = 20.0) -> dict[str, Any]:
        """The newest call to `did` once more than `known` calls to it are stored."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            matching = [c for c in await self.calls() if c["did"] == did]
            if len(matching) > known:
                return matching[0]
            await asyncio.sleep(0.2)
        raise AssertionError(
            f"no call to {did} stored in {within}s:\n{self.log.read_text()[-3000:]}"
        )


def write_daemon_config(folder: Path, **overrides: Any) -> Path:
    """The lab config with its own (migrated) database, a short freeze time, the test's token."""
    with LAB_CONFIG.open() as f:
        config: dict[str, Any] = YAML(typ="safe").load(f)
    token = config_dict("unused")["api_tokens"]
    config.update(
        freeze_time=f"{FREEZE}s",
        database=f"sqlite+aiosqlite:///{folder / 'calltrack.db'}",
        api_tokens=token,
        http={"host": "127.0.0.1", "port": free_port()},
    )
    config.update(overrides)
    path = folder / "calltrack.yaml"
    with path.open("w") as f:
        YAML().dump(config, f)
    upgraded = subprocess.run(
        [sys.executable, "-m", "pbx.cli", "db", "upgrade", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert upgraded.returncode == 0, upgraded.stderr
    return path


@pytest.fixture
def daemon_config(tmp_path: Path) -> Path:
    return write_daemon_config(tmp_path)


@pytest.fixture
async def daemon(
    lab_dialplan: Settings,  # noqa: F811  (the fixture imported above)
    daemon_config: Path,
    tmp_path: Path,
) -> AsyncIterator[Daemon]:
    async with serving(daemon_config, tmp_path) as running:
        yield running


@contextlib.asynccontextmanager
async def serving(config: Path, folder: Path) -> AsyncIterator[Daemon]:
    """`calltrack serve` on `config`, ready (database and AMI up) until the block ends."""
    running = Daemon(config, load_settings(config).http.port, folder / "daemon.log")
    running.start()
    try:
        await running.wait_ready()
        yield running
    finally:
        running.stop()
