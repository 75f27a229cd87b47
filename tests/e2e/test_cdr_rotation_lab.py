"""The lab Asterisk writes Master.csv while it is rotated, with calls around the rotation whose AMI
events nobody heard (the daemon was stopped): reconciliation stores each call exactly once.

Both logrotate modes need nothing from Asterisk: cdr_csv opens Master.csv, appends one record and
closes it again for every call (cdr_csv.c, writefile), so after `create`'s rename the next call's
record makes a new Master.csv, and after `copytruncate` it appends to the emptied file. (Neither
`module reload cdr_csv.so` nor `logger rotate` is needed; the latter rotates Asterisk's own logs.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from pbx.settings import Settings
from tests.e2e.conftest import Daemon, call, write_daemon_config

pytestmark = pytest.mark.asterisk

LIVE = "+74990000009"  # heard over AMI
BEFORE = "+74990000002"  # daemon stopped, ends before the rotation: in the rotated file
ACROSS = "+74990000003"  # daemon stopped, rings through the rotation, ends after it
AFTER = "+74990000004"  # daemon stopped, after the rotation: in the new Master.csv
RECONCILE_EVERY = 1.0  # the periodic pass runs often while the daemon is up


@pytest.fixture
def daemon_config(lab_dialplan: Settings, tmp_path: Path) -> Path:
    assert lab_dialplan.asterisk is not None
    asterisk = lab_dialplan.asterisk.model_dump(mode="json")
    asterisk["reconcile_every"] = f"{RECONCILE_EVERY}s"
    return write_daemon_config(tmp_path, asterisk=asterisk)


async def wait_caught_up(daemon: Daemon, master: Path, within: float = 20.0) -> None:
    """Until the daemon's stored CDR position is the end of `master` as it is now. A first pass
    stopped before it stored its position would start over from the current file only (the
    rotated one is read only to finish a file already begun)."""
    now = await asyncio.to_thread(master.stat)
    database = daemon.settings.database.removeprefix("sqlite+aiosqlite:///")
    for _ in range(int(within / 0.1)):
        with contextlib.closing(sqlite3.connect(database)) as db:
            row = db.execute("SELECT inode, offset FROM cdr_positions").fetchone()
        if row is not None and (int(row[0]), row[1]) == (now.st_ino, now.st_size):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the daemon did not read {master} to its end in {within}s")


def rotate(master: Path, mode: str, rotated: Path) -> None:
    """What logrotate does to Master.csv in `mode` (no compression)."""
    if mode == "create":
        master.rename(rotated)
    else:
        shutil.copyfile(master, rotated)
        os.truncate(master, 0)


@pytest.mark.parametrize(
    ("mode", "suffix"),
    [("create", ".1"), ("copytruncate", ".1"), ("create", "-20261203")],
    ids=["create", "copytruncate", "create-dateext"],  # dateext: CentOS's, so FreePBX's default
)
async def test_calls_around_a_rotation_missed_over_ami_are_stored_once(
    daemon: Daemon, lab_dialplan: Settings, tmp_path: Path, mode: str, suffix: str
) -> None:
    assert lab_dialplan.asterisk is not None and lab_dialplan.asterisk.cdr_csv is not None
    master = lab_dialplan.asterisk.cdr_csv
    rotated = master.with_name(master.name + suffix)
    try:
        await _rotate_with_calls_around(daemon, master, tmp_path, mode, rotated)
    finally:
        if suffix != ".1":  # the other tests' rotations make Master.csv.1 (the newest then)
            rotated.unlink(missing_ok=True)


async def _rotate_with_calls_around(
    daemon: Daemon, master: Path, tmp_path: Path, mode: str, rotated: Path
) -> None:
    await call(LIVE, tmp_path, "busy")
    await daemon.wait_call(LIVE)
    await wait_caught_up(daemon, master)  # a periodic pass keeps the position past LIVE

    daemon.stop()
    await call(BEFORE, tmp_path, "busy")
    ringing = asyncio.create_task(call(ACROSS, tmp_path, "ring"))  # lab.yaml: rings 6 s
    await asyncio.sleep(2.0)
    rotate(master, mode, rotated)
    await ringing
    await call(AFTER, tmp_path, "busy")
    written = await asyncio.to_thread(lambda: master.exists() and master.stat().st_size > 0)
    assert written, "Asterisk did not write after rotating"

    daemon.start()
    await daemon.wait_ready()
    for did in (BEFORE, ACROSS, AFTER):
        await daemon.wait_call(did, within=15)
    stored = [c for c in await daemon.calls() if c["did"] in (LIVE, BEFORE, ACROSS, AFTER)]
    assert Counter(c["did"] for c in stored) == Counter([LIVE, BEFORE, ACROSS, AFTER])
    statuses = {c["did"]: c["status"] for c in stored}
    assert statuses == {LIVE: "busy", BEFORE: "busy", ACROSS: "missed", AFTER: "busy"}
