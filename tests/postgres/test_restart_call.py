"""PostgreSQL down while a call comes in, beside the lab Asterisk: FastAGI still sends the call
to the real line, the daemon stands by on AMI (it lost the consumer lock with its connection),
and once PostgreSQL is back the call is read back from the CDR and stored once, attributed."""

from __future__ import annotations

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
from tests.e2e.conftest import call, serving, write_daemon_config
from tests.postgres.conftest import PostgresCluster

pytestmark = [pytest.mark.postgres, pytest.mark.asterisk]

CPC = "http://127.0.0.1:8080/?utm_source=google&utm_medium=cpc&utm_campaign=restart"
#: from PostgreSQL accepting connections again to the call stored: the lock is retried every
#: second, then AMI logs in and the CDR is read from where the last pass stopped
STORED_WITHIN = 10.0


async def test_a_call_while_postgres_is_down_is_forwarded_and_stored_once_it_is_back(
    lab_dialplan: Settings,  # noqa: F811
    postgres_cluster: PostgresCluster,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    config = write_daemon_config(tmp_path, database=postgres_url)
    async with serving(config, tmp_path) as daemon:
        visit = await daemon.visit(CPC)
        did = visit["numbers"][0]["number"]
        postgres_cluster.stop()
        try:
            await call(did, tmp_path)  # asserts that the real line was rung
            async with (
                aiohttp.ClientSession() as http,
                http.get(daemon.url + "/healthz") as response,
            ):
                health = await response.json()
            assert response.status == 503 and health["database"].startswith("down: "), health
            assert health["pbx"]["ami"] == "standby"
        finally:
            postgres_cluster.start()
        back = time.monotonic()
        stored = await daemon.wait_call(did, within=STORED_WITHIN + 10)
        assert time.monotonic() - back < STORED_WITHIN
        assert stored["status"] == "answered" and stored["recording_url"]
        assert stored["session_id"] == visit["session_id"] and stored["campaign"] == "restart"
        assert len([c for c in await daemon.calls() if c["did"] == did]) == 1
        log = daemon.log.read_text()
        assert f"call to {did} routed without its source: database down: " in log
        assert "Traceback" not in log, log
