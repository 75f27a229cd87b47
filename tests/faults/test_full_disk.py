"""The SQLite database on a full disk, against a real `calltrack serve`: visitors keep getting
answers (the site's own numbers), /healthz and the log say the database is full, and what was
waiting (the pages a visitor viewed meanwhile) is written once there is space again."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

from tests.e2e.conftest import free_port
from tests.faults.conftest import fill, serving
from tests.unit.test_agi_server import asterisk

PAID = "https://shop.test/?utm_source=google&utm_medium=cpc"
ORGANIC = "https://shop.test/?utm_medium=organic"


def page_views(database: Path, session_id: str) -> list[str]:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        rows = conn.execute(
            "SELECT url FROM page_views WHERE session_id = ? ORDER BY at", (session_id,)
        )
        return [url for (url,) in rows]


async def test_on_a_full_disk_visitors_see_own_numbers_and_pending_writes_land_after(
    small_tmpfs: Path,
) -> None:
    database = small_tmpfs / "calltrack.db"
    agi_port = free_port()
    pbx = {  # FastAGI is asked as the dialplan would; no Asterisk follows (AMI: nobody there)
        "ami": {"host": "127.0.0.1", "port": free_port(), "secret": "x"},
        "agi": {"host": "127.0.0.1", "port": agi_port, "answer_within": "0.5s"},
    }
    async with serving(small_tmpfs, f"sqlite+aiosqlite:///{database}", asterisk=pbx) as site:
        status, before = await site.visit(PAID)
        assert status == 200 and before["numbers"][0]["number"] == "+74990000001"

        filler = fill(small_tmpfs)
        # new visitors: always answered, and once a write fails, with the site's own numbers
        answers = [await site.visit(ORGANIC) for _ in range(20)]
        assert [status for status, _ in answers] == [200] * 20
        unstored = [body for _, body in answers if not body["numbers"]]
        assert unstored, answers
        assert unstored[0]["session_id"] is None and unstored[0]["ping_interval_s"] == 30
        # a visitor of before the fill moves to another page: answered, same session
        status, pinged = await site.ping(before, "https://shop.test/contacts")
        assert status == 200 and pinged["session_id"] == before["session_id"]

        # a call to the visitor's number is routed from what is held, and named for its source
        commands, _seconds = await asterisk(agi_port, did="+74990000001")
        assert commands == [
            'SET VARIABLE CALLTRACK_DEST "PJSIP/realline"',
            'SET VARIABLE CALLERID(name) "[cpc] google"',
        ]

        status, health = await site.health()
        assert status == 503 and health["status"] == "degraded"
        assert health["database"].startswith("full: "), health
        assert "database cannot take writes (full: " in site.log
        assert "Traceback" not in site.log

        filler.unlink()
        await site.wait_health(200, 15)
        status, after = await site.visit(ORGANIC)
        assert status == 200 and after["numbers"][0]["number"] == "+74990000011"
        # the page view waited in the write-behind batch, and landed
        for _ in range(50):
            if "https://shop.test/contacts" in page_views(database, before["session_id"]):
                break
            await asyncio.sleep(0.1)
        assert page_views(database, before["session_id"]) == [PAID, "https://shop.test/contacts"]
        assert "database takes writes again after" in site.log
        assert "Traceback" not in site.log
