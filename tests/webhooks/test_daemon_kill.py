"""A daemon SIGKILLed between an event's commit and its delivery delivers it after its restart,
once (issue 14). A real `calltrack serve` on SQLite: the call is written into its database by
this test (as another process's CallStore would), the receiver is down, so the first attempt is
refused and recorded; the daemon is killed while the event waits for its retry, the receiver
comes up, and the restarted daemon delivers it exactly once."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx.settings import Settings
from pbx.storage.calls import CallStore
from pbx.storage.db import open_engine
from pbx.storage.deliveries import recent
from pbx.storage.outbox import Outbox
from pbx.storage.visits import VisitStore
from tests.helpers import migrate, settings_for
from tests.postgres.test_two_daemons import calltrack, environment, free_port, wait_healthy
from tests.webhooks.receiver import PATH, Receiver, serve
from tests.webhooks.test_delivery import SECRET, report


class Daemon:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = config.parent / "daemon.log"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                calltrack("serve", "-c", str(self.config), "--port", str(self.port)),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.config.parent,
                env=environment(),
            )
        wait_healthy(f"http://127.0.0.1:{self.port}", self.proc, self.log)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL: no shutdown, no flush
            self.proc.wait()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Daemon, Settings, int]]:
    port = free_port()
    hook = {
        "name": "crm",
        "url": f"http://127.0.0.1:{port}{PATH}",
        "secret": SECRET,
        "timeout": "2s",
    }
    settings = settings_for(tmp_path, webhooks=[hook])
    asyncio.run(migrate(settings))
    running = Daemon(tmp_path / "calltrack.yaml")
    yield running, settings, port
    running.kill()


async def test_killed_between_enqueue_and_delivery_it_delivers_once_after_restart(
    daemon: tuple[Daemon, Settings, int],
) -> None:
    running, settings, port = daemon
    await asyncio.to_thread(running.start)
    engine = open_engine(settings.database)
    try:
        box = Outbox(settings, time.time)
        store = CallStore(engine, settings, VisitStore(engine, settings, time.time), time.time, box)
        assert await store.store(report("K1", time.time()))
        async with asyncio.timeout(10):  # the daemon's poll finds it; the receiver is down
            while True:
                row = (await recent(engine, 1))[0]
                if row["attempts"] >= 1:
                    break
                await asyncio.sleep(0.05)
        assert row["state"] == "pending" and row["last_status"] is None
        assert "Connect" in row["last_error"] or "refused" in row["last_error"]
        running.kill()

        got = Receiver()
        server = await serve(got, port=port)
        try:
            await asyncio.sleep(6)  # past the retry (first retry within 5 s): nobody sends it
            assert got.got == []
            await asyncio.to_thread(running.start)
            await got.wait_for(1, within=15)
            await asyncio.sleep(2)  # time for a duplicate to show up, if any
            assert got.by_event_id() == {row["event_id"]: 1}
            final = (await recent(engine, 1))[0]
            assert final["state"] == "delivered" and final["attempts"] == 2
        finally:
            await server.close()
    finally:
        await engine.dispose()
