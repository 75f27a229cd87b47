"""A call while the SQLite database is on a full disk, beside the lab Asterisk: FastAGI still
routes it (named for its source), Asterisk forwards and records it, and the call is stored,
attributed, once there is space again."""

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
from tests.faults.conftest import fill

pytestmark = pytest.mark.asterisk

CPC = "http://127.0.0.1:8080/?utm_source=google&utm_medium=cpc&utm_campaign=full"
#: from space returning to the call stored: the report is retried every few seconds at most
STORED_WITHIN = 8.0


async def test_a_call_on_a_full_disk_is_forwarded_recorded_and_stored_after(
    lab_dialplan: Settings,  # noqa: F811
    small_tmpfs: Path,
    tmp_path: Path,
) -> None:
    database = f"sqlite+aiosqlite:///{small_tmpfs / 'calltrack.db'}"
    assert lab_dialplan.asterisk is not None
    # no reconciliation: it would store the lab CDR's last hour (other tests' calls) in the
    # background, and the call's report is what this test follows
    asterisk = lab_dialplan.asterisk.model_dump(mode="json") | {"cdr_csv": None}
    # the log and the config stay off the tmpfs
    config = write_daemon_config(tmp_path, database=database, asterisk=asterisk)
    async with serving(config, tmp_path) as daemon:
        visit = await daemon.visit(CPC)
        did = visit["numbers"][0]["number"]
        filler = fill(small_tmpfs)
        await call(did, tmp_path)  # asserts that the real line was rung
        assert await daemon.calls() == []  # not stored: no space
        async with aiohttp.ClientSession() as http, http.get(daemon.url + "/healthz") as health:
            assert health.status == 503
            assert (await health.json())["database"].startswith("full: ")

        filler.unlink()
        freed = time.monotonic()
        stored = await daemon.wait_call(did, within=STORED_WITHIN + 5)
        assert time.monotonic() - freed < STORED_WITHIN
        assert stored["status"] == "answered" and stored["recording_url"]
        assert stored["session_id"] == visit["session_id"] and stored["campaign"] == "full"
        failed = f"storing call {stored['linkedid']} failed ((sqlite3.OperationalError) database"
        assert f"{failed} or disk is full" in daemon.log.read_text()
