"""Reconciliation reading Asterisk's CDR incrementally from real files: partial lines, logrotate's
create and copytruncate modes, files replaced, the per-pass cap, and the daemon's loop storing
into a real SQLite database while a writer appends and rotates."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import os
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from ami_bridge import ReportDelivery, cdr_tail
from ami_bridge.cdr_follow import Position, Segment
from ami_bridge.reconcile import reconcile_pass
from attribution.calls import CallReport, CallStatus
from pbx.pbx_link import reconcile_missed
from pbx.settings import Settings
from pbx.storage.calls import CallStore
from pbx.storage.db import open_engine, upgrade
from pbx.storage.errors import is_transient
from pbx.storage.tables import calls
from pbx.storage.visits import VisitStore
from tests.cdr_lines import busy_call, many_calls
from tests.helpers import FakeClock, make_settings, refuse_opening

AT = 1_800_000_000.0  # FakeClock's start: the calls end then
FIXTURES = Path(__file__).parents[1] / "fixtures" / "ami"


def settings_for(tmp_path: Path) -> Settings:
    return make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        asterisk={"ami": {"secret": "x"}, "cdr_csv": str(tmp_path / "Master.csv")},
    )


class Reader:
    """Runs passes as the daemon does (until caught up), remembering the position between."""

    def __init__(self, settings: Settings, max_bytes: int = 1 << 20) -> None:
        self.settings, self.max_bytes = settings, max_bytes
        self.position: Position | None = None
        self.passes = 0

    def calls(self) -> list[CallReport]:
        reports: list[CallReport] = []
        while True:
            step = reconcile_pass(self.settings, 0.0, self.position, self.max_bytes)
            self.passes += 1
            reports += step.reports
            self.position = step.position
            if step.caught_up:
                return reports

    def linkedids(self) -> list[str]:
        return [r.linkedid for r in self.calls()]


def append(path: Path, *linkedids: str) -> None:
    with path.open("a") as f:  # as cdr_csv does: open, append, close, row by row
        f.write("".join(busy_call(linkedid, AT) for linkedid in linkedids))


def logrotate(master: Path, mode: str) -> None:
    """Rotate `master` to Master.csv.1 as logrotate does: `create` renames it (cdr_csv then makes
    a new file), `copytruncate` copies it and empties it in place."""
    if mode == "create":
        master.rename(master.with_name("Master.csv.1"))
    else:
        shutil.copy(master, master.with_name("Master.csv.1"))
        os.truncate(master, 0)


def test_a_partial_last_line_is_left_for_the_next_pass(tmp_path: Path) -> None:
    master = tmp_path / "Master.csv"
    append(master, "1.1", "1.2")
    third = busy_call("1.3", AT)
    with master.open("a") as f:
        f.write(third[:50])  # Asterisk mid-write
    reader = Reader(settings_for(tmp_path))
    assert reader.linkedids() == ["1.1", "1.2"]
    assert reader.linkedids() == []
    with master.open("a") as f:
        f.write(third[50:])
    [report] = reader.calls()
    assert (report.linkedid, report.status) == ("1.3", CallStatus.BUSY)


def test_create_mode_reads_the_rest_of_the_renamed_file_then_the_new_one(tmp_path: Path) -> None:
    master = tmp_path / "Master.csv"
    append(master, "1.1", "1.2")
    reader = Reader(settings_for(tmp_path))
    assert reader.linkedids() == ["1.1", "1.2"]
    append(master, "1.3")  # after the last pass, before the rotation
    master.rename(tmp_path / "Master.csv.1")
    assert reader.linkedids() == ["1.3"]  # Asterisk has not written the new file yet
    append(master, "1.4", "1.5")
    assert reader.linkedids() == ["1.4", "1.5"]
    append(master, "1.6")
    assert reader.linkedids() == ["1.6"]


def test_the_first_pass_after_a_rotation_reads_the_rotated_file_too(tmp_path: Path) -> None:
    """The daemon's first start, or its first since the position was lost, just after logrotate
    (create mode) renamed the file and before Asterisk wrote a new one, then after it did."""
    master = tmp_path / "Master.csv"
    append(master, "1.1", "1.2")
    master.rename(tmp_path / "Master.csv.1")
    assert Reader(settings_for(tmp_path)).linkedids() == ["1.1", "1.2"]
    append(master, "1.3")
    reader = Reader(settings_for(tmp_path))
    assert reader.linkedids() == ["1.1", "1.2", "1.3"]
    append(master, "1.4")
    assert reader.linkedids() == ["1.4"]


@pytest.mark.parametrize("mode", ["create", "copytruncate"])
def test_dateext_rotations_are_followed_to_the_newest_file_named_after_the_cdr(
    tmp_path: Path, mode: str
) -> None:
    """logrotate's `dateext` (in CentOS's logrotate.conf, so FreePBX's) names the rotated file
    Master.csv-YYYYMMDD; older rotations lie beside it, one of them compressed just now
    (`delaycompress`): the newest plain one is the rotated file."""
    master = tmp_path / "Master.csv"
    older = tmp_path / "Master.csv-20261201"
    append(older, "0.1")
    two_days_ago = time.time() - 2 * 86400
    os.utime(older, (two_days_ago, two_days_ago))
    compressed = tmp_path / "Master.csv-20261130.gz"
    compressed.write_bytes(gzip.compress(busy_call("0.2", AT).encode()))
    append(master, "1.1", "1.2")
    reader = Reader(settings_for(tmp_path))
    assert reader.linkedids() == ["0.1", "1.1", "1.2"]  # the first pass reads the rotated one too
    append(master, "1.3")  # after the last pass, before the rotation
    rotated = tmp_path / "Master.csv-20261203"
    if mode == "create":
        master.rename(rotated)
    else:
        shutil.copy(master, rotated)
        os.truncate(master, 0)
    assert reader.linkedids() == ["1.3"]
    append(master, "2.1", "2.2")
    assert reader.linkedids() == ["2.1", "2.2"]
    assert reader.linkedids() == []


def test_the_rotated_file_is_the_one_written_last_of_those_named_after_the_cdr(
    tmp_path: Path,
) -> None:
    master = tmp_path / "Master.csv"
    assert cdr_tail.rotated_path(master) == tmp_path / "Master.csv.1"  # none yet: the default
    for age, name in enumerate(["Master.csv.1", "Master.csv.2", "Master.csv.3"]):
        (tmp_path / name).write_text("")
        os.utime(tmp_path / name, (AT - age, AT - age))
    (tmp_path / "Master.csv.4.gz").write_text("")  # compressed: never read
    (tmp_path / "Master.csvs").write_text("")  # another file's name
    (tmp_path / "Master.csv.d").mkdir()  # not a file
    assert cdr_tail.rotated_path(master) == tmp_path / "Master.csv.1"
    for at, name in [(AT + 1, "Master.csv-20261201"), (AT + 2, "Master.csv-20250101")]:
        (tmp_path / name).write_text("")  # dateext: the time tells, not the name's order
        os.utime(tmp_path / name, (at, at))
    assert cdr_tail.rotated_path(master) == tmp_path / "Master.csv-20250101"
    (tmp_path / "Master.csv20261202").write_text("")  # dateformat %Y%m%d: no separator
    os.utime(tmp_path / "Master.csv20261202", (AT + 3, AT + 3))
    assert cdr_tail.rotated_path(master) == tmp_path / "Master.csv20261202"


def test_of_two_rotated_files_written_in_the_same_second_the_lower_number_is_newer(
    tmp_path: Path,
) -> None:
    """A file system that keeps whole seconds (some NFS servers): the name breaks the tie, and
    by name `.2` sorted after `.1`."""
    for name in ["Master.csv.1", "Master.csv.2", "Master.csv.10"]:
        (tmp_path / name).write_text("")
        os.utime(tmp_path / name, (AT, AT))
    assert cdr_tail.rotated_path(tmp_path / "Master.csv") == tmp_path / "Master.csv.1"


def test_a_file_gone_while_the_folder_is_listed_leaves_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """delaycompress gzips the older rotation while a pass lists the folder: its stat failed,
    every candidate was dropped, and the newest rotated file's unread rows were lost."""
    for at, name in [(AT, "Master.csv-20261202"), (AT + 1, "Master.csv-20261203")]:
        (tmp_path / name).write_text("")
        os.utime(tmp_path / name, (at, at))
    scandir = os.scandir

    class Listing:
        def __init__(self, entries: Any) -> None:
            self._entries = entries

        def __enter__(self) -> list[Any]:
            listed = list(self._entries.__enter__())
            (tmp_path / "Master.csv-20261202").unlink()  # gzipped meanwhile
            return listed

        def __exit__(self, *exc: object) -> None:
            self._entries.__exit__(*exc)

    monkeypatch.setattr(cdr_tail.os, "scandir", lambda path: Listing(scandir(path)))
    assert cdr_tail.rotated_path(tmp_path / "Master.csv") == tmp_path / "Master.csv-20261203"


@pytest.mark.parametrize("after", [1, 12], ids=["shorter", "grown-past-the-offset"])
def test_copytruncate_reads_the_copys_tail_then_the_file_from_its_start(
    tmp_path: Path, after: int
) -> None:
    master = tmp_path / "Master.csv"
    append(master, "1.1", "1.2")
    reader = Reader(settings_for(tmp_path))
    assert reader.linkedids() == ["1.1", "1.2"]
    append(master, "1.3")  # only in the copy once truncated
    shutil.copy(master, tmp_path / "Master.csv.1")
    os.truncate(master, 0)
    new = [f"2.{n}" for n in range(after)]
    append(master, *new)
    assert reader.linkedids() == ["1.3", *new]
    assert reader.linkedids() == []


def test_copytruncate_twice_between_passes_reads_the_newer_copy_whole(tmp_path: Path) -> None:
    """Master.csv keeps its inode through both rotations; the rows written between them are only
    in Master.csv.1, and those after the first one's copy only in Master.csv.2 (gone here, as
    with `rotate 1`): what is in neither file cannot be read, the rest is read once."""
    master, rotated = tmp_path / "Master.csv", tmp_path / "Master.csv.1"
    append(master, "1.1", "1.2")
    reader = Reader(settings_for(tmp_path))
    assert reader.linkedids() == ["1.1", "1.2"]
    for batch in (["2.1"], ["3.1", "3.2"]):
        append(master, *batch)
        shutil.copy(master, rotated)  # the second copy replaces the first
        os.truncate(master, 0)
    append(master, "4.1", "4.2", "4.3")  # past the old offset again
    assert reader.linkedids() == ["3.1", "3.2", "4.1", "4.2", "4.3"]
    assert reader.linkedids() == []


def test_copytruncate_right_after_a_pass_read_goes_on_in_the_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """logrotate copies and truncates Master.csv just after a pass read its new rows: the
    position's mark is that of the bytes the pass read, so the next pass finds them in the copy
    and reads nothing twice (a mark read again after the truncation matched neither file, and
    the whole copy was read again)."""
    master, rotated = tmp_path / "Master.csv", tmp_path / "Master.csv.1"
    append(master, "1.1", "1.2")
    reader = Reader(settings_for(tmp_path))
    assert reader.linkedids() == ["1.1", "1.2"]
    append(master, "1.3")
    opened = Path.open

    class RotatedAfterRead:
        def __init__(self, f: Any) -> None:
            self.f = f

        def read(self, size: int = -1) -> bytes:
            data: bytes = self.f.read(size)
            if b'"1.3"' in data and not rotated.exists():
                shutil.copy(master, rotated)
                os.truncate(master, 0)
            return data

        def __getattr__(self, name: str) -> Any:
            return getattr(self.f, name)

        def __enter__(self) -> RotatedAfterRead:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

    def open_(path: Path, *args: Any, **kwargs: Any) -> Any:
        f = opened(path, *args, **kwargs)
        return RotatedAfterRead(f) if path == master else f

    monkeypatch.setattr(Path, "open", open_)
    assert reader.linkedids() == ["1.3"]
    monkeypatch.undo()
    append(master, "2.1")
    assert reader.linkedids() == ["2.1"]


@pytest.mark.parametrize("in_place", [True, False], ids=["in-place", "new-inode"])
def test_a_file_replaced_by_a_smaller_one_is_read_from_its_start(
    tmp_path: Path, in_place: bool
) -> None:
    master = tmp_path / "Master.csv"
    append(master, "1.1", "1.2", "1.3")
    reader = Reader(settings_for(tmp_path))
    assert len(reader.linkedids()) == 3
    replacement = tmp_path / "new.csv"
    append(replacement, "2.1")
    if in_place:
        master.write_bytes(replacement.read_bytes())
    else:
        replacement.replace(master)
    assert reader.linkedids() == ["2.1"]


def test_a_file_rewritten_in_place_to_the_same_size_is_read_again(tmp_path: Path) -> None:
    """Only the mark tells it: the inode and the size are those already read."""
    master = tmp_path / "Master.csv"
    append(master, "1.1", "1.2")
    reader = Reader(settings_for(tmp_path))
    assert len(reader.linkedids()) == 2
    master.write_text(master.read_text().replace("1.1", "3.1").replace("1.2", "3.2"))
    assert reader.linkedids() == ["3.1", "3.2"]


def test_the_cap_spreads_the_file_over_passes_and_never_splits_a_call(tmp_path: Path) -> None:
    master = tmp_path / "Master.csv"
    ids = [f"1.{n}" for n in range(40)]
    append(master, *ids)
    row = len(busy_call("1.10", AT)) // 2  # one of the two rows of a call
    reader = Reader(settings_for(tmp_path), max_bytes=3 * row + 7)  # a pass ends mid-call
    reports = reader.calls()
    assert sorted(r.linkedid for r in reports) == sorted(ids)
    # a call cut in two would be reported from its Hangup row alone: the caller hung up
    assert {r.status for r in reports} == {CallStatus.BUSY}
    assert reader.passes >= master.stat().st_size // (3 * row + 7)


def _with_caller_name(call: str, name: str) -> str:
    """`call`'s rows (tests.cdr_lines.busy_call) with `name` in their clid, as cdr_csv writes it:
    inner quotes doubled, anything else as it is."""
    clid = '"' + f'"{name}" <79160000001>'.replace('"', '""') + '"'
    return call.replace('"calltrack-inbound-call","",', f'"calltrack-inbound-call",{clid},')


def test_a_newline_in_a_callers_name_never_splits_its_row_wherever_the_cap_falls(
    tmp_path: Path,
) -> None:
    """A CNAM lookup may give a caller's name with a newline; cdr_csv writes it inside the quotes.
    Before, a pass whose cap fell inside that row ended there: the call was read in two halves
    (BUSY, then ABANDONED from its Hangup row) or its rows were refused for their columns."""
    calls = [busy_call(f"1.{n}", AT) for n in range(8)]
    calls[3] = _with_caller_name(calls[3], "Anna\nfrom the CRM")
    calls[4] = _with_caller_name(calls[4], "Boris\n\n(VIP)")
    text = "".join(calls)
    master = tmp_path / "Master.csv"
    master.write_text(text)
    for cap in range(len(calls[0]), len(text) + 1, 5):  # at least a call a pass
        reports = Reader(settings_for(tmp_path), max_bytes=cap).calls()
        assert sorted(r.linkedid for r in reports) == [f"1.{n}" for n in range(8)], cap
        assert {r.status for r in reports} == {CallStatus.BUSY}, cap


def test_a_torn_row_costs_the_rows_joined_to_it_not_the_rest_of_the_file(tmp_path: Path) -> None:
    """A write cut short (a full disk) leaves a row's quote open: it is joined with at most
    ROW_LINES - 1 lines after it, and every pass still moves on."""
    calls = [busy_call(f"1.{n}", AT) for n in range(8)]
    torn = calls[2].split("\n")[0][:70] + "\n"
    assert torn.count('"') % 2 == 1
    (tmp_path / "Master.csv").write_text("".join(calls[:2]) + torn + "".join(calls[2:]))
    lost = {"1.2", "1.3"}  # the torn row takes the next ROW_LINES - 1 = 3 rows with it
    for cap in (1 << 20, 400, 700):
        reports = Reader(settings_for(tmp_path), max_bytes=cap).calls()
        whole = {r.linkedid for r in reports if r.status is CallStatus.BUSY}
        assert whole >= {f"1.{n}" for n in range(8)} - lost, cap


@pytest.mark.parametrize("then", ["torn", "name"], ids=["two-torn-rows", "torn-then-a-name"])
def test_torn_rows_joined_with_others_never_stop_reconciliation(tmp_path: Path, then: str) -> None:
    """Rows with a quote open within ROW_LINES lines of each other (two torn rows, or a torn one
    and a name holding a newline) join into one with an even number of quotes and a newline
    outside them. Parsed with the others it raised csv.Error out of the pass, whose position
    was then never saved: every later pass raised at the same spot, no call was read again."""
    calls = [busy_call(f"1.{n}", AT) for n in range(8)]
    torn = calls[2].split("\n")[0][:70] + "\n"
    calls[3] = _with_caller_name(calls[3], "Anna\nfrom the CRM")
    middle = torn + torn + "".join(calls[4:]) if then == "torn" else torn + "".join(calls[3:])
    master = tmp_path / "Master.csv"
    master.write_text("".join(calls[:2]) + middle)
    for cap in (1 << 20, 300, 700):
        reader = Reader(settings_for(tmp_path), max_bytes=cap)
        reports = reader.calls()
        whole = {r.linkedid for r in reports if r.status is CallStatus.BUSY}
        assert whole >= {"1.0", "1.1", "1.6", "1.7"}, cap  # and the few rows joined: lost
        assert reader.position is not None and reader.position.offset == len(master.read_bytes())


@dataclass
class Daemon:
    """What the daemon's reconciliation uses: settings, a real migrated SQLite database, and a
    delivery that records every report it is handed."""

    settings: Settings
    engine: AsyncEngine
    delivered: list[str]
    reconcile: Callable[..., asyncio.Future[int]]

    async def stored(self) -> int:
        async with self.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(calls)) or 0)


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    settings = settings_for(tmp_path)
    engine = open_engine(settings.database)
    await upgrade(engine)
    clock = FakeClock(AT + 60)
    store = CallStore(engine, settings, VisitStore(engine, settings, clock), clock)
    delivered: list[str] = []

    async def record(report: CallReport) -> bool:
        delivered.append(report.linkedid)
        return await store.store(report) is not None

    deliver = ReportDelivery(record, is_transient)

    def reconcile(settle: float = 0.05) -> asyncio.Future[int]:
        # the writers below append as the passes read: some passes leave a call for later
        missed = reconcile_missed(settings, engine, deliver, clock, AT - 600, settle=settle)
        return asyncio.ensure_future(missed)

    yield Daemon(settings, engine, delivered, reconcile)
    await engine.dispose()


@pytest.mark.parametrize("mode", ["create", "copytruncate"])
async def test_rotation_while_calls_arrive_stores_every_call_once(
    daemon: Daemon, tmp_path: Path, mode: str
) -> None:
    master = tmp_path / "Master.csv"
    written: list[str] = []
    lock = threading.Lock()  # copytruncate loses rows written between its copy and truncate
    done = threading.Event()

    passed = threading.Event()  # a reconcile pass ended: the writer goes on in step with them

    def writer() -> None:
        for n in range(60):
            with lock:
                append(master, f"5.{n}")
                written.append(f"5.{n}")
            if n % 5 == 4:  # a few rows per pass, however loaded the machine
                passed.wait(5)
                passed.clear()
        done.set()

    def rotate() -> None:
        with lock:
            logrotate(master, mode)

    thread = threading.Thread(target=writer)
    thread.start()
    passes = 0
    while not done.is_set():
        await daemon.reconcile()
        passes += 1
        passed.set()
        if len(written) > 30 and not (tmp_path / "Master.csv.1").exists():
            rotate()
        await asyncio.sleep(0.01)
    thread.join()
    await daemon.reconcile()
    assert (tmp_path / "Master.csv.1").exists() and passes > 3
    assert sorted(daemon.delivered) == sorted(written)  # each read once, none missed
    assert await daemon.stored() == 60


async def test_a_pass_over_a_million_line_cdr_with_nothing_new_is_quick(
    daemon: Daemon, tmp_path: Path
) -> None:
    master = tmp_path / "Master.csv"
    old = many_calls(0, 100_000, AT - 86_400).encode()  # a day before the outage: not imported
    with master.open("wb") as f:
        for _ in range(10):
            f.write(old)
    assert await daemon.reconcile() == 0  # the first pass reads it all once
    started = time.perf_counter()
    assert await daemon.reconcile() == 0
    assert time.perf_counter() - started < 2.0  # a guard; bench/cdr_reconcile.py has the figure
    with master.open("a") as f:
        f.write(many_calls(2_000_000, 5, AT))
    assert await daemon.reconcile() == 5
    assert sorted(daemon.delivered) == [f"1.{n}" for n in range(2_000_000, 2_000_005)]


#: Master-local-lines.csv's answered call through a Local line, without the row of the bridged
#: phone a Local channel optimized away gives: the inbound's Dial of the Local line, and the
#: ring group's Dial of the phone (context lab-pbx), which alone tells that a person answered
#: (moved from 2026-12-01 22:0x to 2027-01-15 07:0x UTC, an hour before AT: the daemon's pass
#: below looks for calls since its outage)
SHIFT = 1_800_000_000 - 3600 - 1_796_162_400
LOCAL_LINE_ROWS = [
    row.replace("2026-12-01 22:", "2027-01-15 07:").replace(
        "calltrack-start=1796162638", f"calltrack-start={1_796_162_638 + SHIFT}"
    )
    for row in (FIXTURES / "Master-local-lines.csv").read_text().splitlines(keepends=True)
]
INBOUND_ROW, PHONE_ROW = LOCAL_LINE_ROWS[1], LOCAL_LINE_ROWS[0]
LOCAL_LINE_CALL = "1796162638.0"


def test_the_last_call_of_a_file_just_written_is_left_until_it_is_whole(tmp_path: Path) -> None:
    """Asterisk writes a row per channel as each ends. A pass between the inbound's row and the
    phone's used to read the call as voicemail for good (the first stored report wins); within
    `settle` seconds of the file's last write its last call is left for the next pass."""
    master = tmp_path / "Master.csv"
    append(master, "1.1")
    with master.open("a") as f:
        f.write(INBOUND_ROW)
    settings = settings_for(tmp_path)
    hurried = reconcile_pass(settings, 0.0, None)
    statuses = {r.linkedid: r.status for r in hurried.reports}
    assert statuses == {"1.1": CallStatus.BUSY, LOCAL_LINE_CALL: CallStatus.VOICEMAIL}
    first = reconcile_pass(settings, 0.0, None, settle=60.0)
    assert [r.linkedid for r in first.reports] == ["1.1"] and first.settling
    assert first.caught_up and first.position is not None
    assert first.position.offset == len(busy_call("1.1", AT))  # before the held rows
    with master.open("a") as f:
        f.write(PHONE_ROW)
    second = reconcile_pass(settings, 0.0, first.position, settle=60.0)
    assert second.reports == [] and second.settling  # still being written: held again
    old = time.time() - 10
    os.utime(master, (old, old))  # quiet for 10 s: whole
    third = reconcile_pass(settings, 0.0, first.position, settle=5.0)
    assert [(r.linkedid, r.status) for r in third.reports] == [
        (LOCAL_LINE_CALL, CallStatus.ANSWERED)
    ]
    assert not third.settling
    assert third.position is not None and third.position.offset == master.stat().st_size


def test_a_file_whose_time_is_far_off_is_not_held(tmp_path: Path) -> None:
    """A file server's clock an hour ahead (or the host's stepped back): the file's age is
    unknown, and holding its last call until the clock caught up would delay it by hours, or
    loop (an age below 0 is below any settle)."""
    master = tmp_path / "Master.csv"
    append(master, "1.1", "1.2")
    ahead = time.time() + 3600
    os.utime(master, (ahead, ahead))
    settings = settings_for(tmp_path)
    for settle in (0.0, 1.0):
        step = reconcile_pass(settings, 0.0, None, settle=settle)
        assert [r.linkedid for r in step.reports] == ["1.1", "1.2"] and not step.settling


async def test_a_file_always_being_written_leaves_its_last_call_for_the_next_reconciliation(
    daemon: Daemon, tmp_path: Path
) -> None:
    """A busy PBX: the file is written again before every wait ends. The reconciliation stops
    after its waits with the last call unread (never half-read), and the next one reads it."""
    master = tmp_path / "Master.csv"
    stop = threading.Event()

    def busy() -> None:
        n = 0
        while not stop.is_set():
            append(master, f"6.{n}")
            n += 1
            time.sleep(0.01)

    append(master, "6.start")
    writer = threading.Thread(target=busy)
    writer.start()
    try:
        await daemon.reconcile(settle=0.2)
    finally:
        stop.set()
        writer.join()
    written = master.read_text().count("Hangup")
    assert len(daemon.delivered) < written  # the last call, at least, was left
    await asyncio.sleep(0.3)  # quiet now
    await daemon.reconcile(settle=0.2)
    assert len(daemon.delivered) == written == await daemon.stored()


async def test_the_daemon_reads_a_call_being_written_once_it_is_whole(
    daemon: Daemon, tmp_path: Path
) -> None:
    """reconcile_missed waits `settle` and reads again, rather than leaving the call to the
    next periodic pass (5 minutes by default) or storing half of it."""
    master = tmp_path / "Master.csv"
    with master.open("a") as f:
        f.write(INBOUND_ROW)

    def phone_row_later() -> None:  # however late the pass begins, it sees both rows or waits
        time.sleep(0.2)
        with master.open("a") as f:
            f.write(PHONE_ROW)

    writer = threading.Thread(target=phone_row_later)
    writer.start()
    try:
        assert await daemon.reconcile(settle=1.0) == 1
    finally:
        writer.join()
    async with daemon.engine.connect() as conn:
        assert list(await conn.execute(select(calls.c.status))) == [("answered",)]


@pytest.mark.parametrize("mode", ["create", "copytruncate"])
def test_a_call_a_rotation_splits_within_the_settle_is_read_whole(
    tmp_path: Path, mode: str
) -> None:
    """The inbound's row in the file logrotate rotates, the phone's in the new one: the pass
    that reads across the rotation takes nothing while the new file is being written, then the
    whole call."""
    master = tmp_path / "Master.csv"
    append(master, "1.1")
    with master.open("a") as f:
        f.write(INBOUND_ROW)
    settings = settings_for(tmp_path)
    first = reconcile_pass(settings, 0.0, None, settle=60.0)
    assert [r.linkedid for r in first.reports] == ["1.1"] and first.settling
    logrotate(master, mode)
    with master.open("a") as f:
        f.write(PHONE_ROW)
    second = reconcile_pass(settings, 0.0, first.position, settle=60.0)
    assert second.reports == [] and second.settling and second.position == first.position
    old = time.time() - 10
    os.utime(master, (old, old))
    third = reconcile_pass(settings, 0.0, first.position, settle=5.0)
    assert [(r.linkedid, r.status) for r in third.reports] == [
        (LOCAL_LINE_CALL, CallStatus.ANSWERED)
    ]


@pytest.mark.parametrize("mode", ["create", "copytruncate"])
@pytest.mark.parametrize("before", [0, 1], ids=["alone", "after-a-call"])
def test_a_call_a_rotation_splits_is_read_whole_when_the_cap_falls_at_the_rotation(
    tmp_path: Path, mode: str, before: int
) -> None:
    """The inbound's row ends the rotated file, the phone's begins the new one, and a pass's
    budget runs out right at the end of the rotated file: the pass must not stop between the
    two rows (the inbound's row alone is a voicemail)."""
    master = tmp_path / "Master.csv"
    append(master, "1.1")
    settings = settings_for(tmp_path)
    first = reconcile_pass(settings, 0.0, None)
    assert [r.linkedid for r in first.reports] == ["1.1"] and first.caught_up
    append(master, *[f"2.{n}" for n in range(before)])
    with master.open("a") as f:
        f.write(INBOUND_ROW)
    rest = master.stat().st_size - first.position.offset  # type: ignore[union-attr]
    logrotate(master, mode)
    with master.open("a") as f:
        f.write(PHONE_ROW)
    append(master, "3.1")
    reader = Reader(settings, max_bytes=rest)  # the budget is the rotated file's rest
    reader.position = first.position
    reports = reader.calls()
    assert [(r.linkedid, r.status) for r in reports if r.linkedid == LOCAL_LINE_CALL] == [
        (LOCAL_LINE_CALL, CallStatus.ANSWERED)
    ]
    assert sorted(r.linkedid for r in reports) == sorted(
        [*(f"2.{n}" for n in range(before)), LOCAL_LINE_CALL, "3.1"]
    )


def test_a_file_replaced_while_a_pass_reads_the_rotated_one_leaves_the_pass_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another rotation between planning a pass and opening the new file: the rotated file's
    rows already read may end in a call that goes on there, so none of them is taken."""
    master = tmp_path / "Master.csv"
    append(master, "1.1")
    settings = settings_for(tmp_path)
    first = reconcile_pass(settings, 0.0, None)
    with master.open("a") as f:
        f.write(INBOUND_ROW)
    master.rename(tmp_path / "Master.csv.1")
    with master.open("a") as f:
        f.write(PHONE_ROW)
    real_plan = cdr_tail.plan

    def replaced_meanwhile(*args: Any) -> list[Segment]:
        *rotated, current = real_plan(*args)
        gone = dataclasses.replace(current.file, inode=current.file.inode + 1)
        return [*rotated, dataclasses.replace(current, file=gone)]

    monkeypatch.setattr(cdr_tail, "plan", replaced_meanwhile)
    held = reconcile_pass(settings, 0.0, first.position)
    assert held.reports == [] and held.position == first.position and not held.caught_up
    monkeypatch.setattr(cdr_tail, "plan", real_plan)
    whole = reconcile_pass(settings, 0.0, held.position)
    assert [(r.linkedid, r.status) for r in whole.reports] == [
        (LOCAL_LINE_CALL, CallStatus.ANSWERED)
    ]


def test_rows_a_copytruncate_moves_before_the_first_row_was_read_are_read(
    tmp_path: Path,
) -> None:
    """A pass over an empty Master.csv (a new install) used to keep the position "offset 0 of
    this inode", which any file of the inode continues: after calls and a copytruncate, the
    calls in the copy were never read. Nothing read from a file's start keeps no position."""
    master = tmp_path / "Master.csv"
    master.touch()
    reader = Reader(settings_for(tmp_path))
    assert reader.linkedids() == [] and reader.position is None
    append(master, "2.1", "2.2")
    shutil.copy(master, tmp_path / "Master.csv.1")
    os.truncate(master, 0)
    append(master, "2.3")
    assert sorted(reader.linkedids()) == ["2.1", "2.2", "2.3"]
    assert reader.linkedids() == []


def test_a_new_file_the_daemon_cannot_read_leaves_the_rotated_tail_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """logrotate's `create 640 root root` makes a Master.csv the daemon may not read: the
    PermissionError stopped the whole pass, the rotated file's tail unread with it."""
    master = tmp_path / "Master.csv"
    append(master, "1.1")
    reader = Reader(settings_for(tmp_path))
    assert reader.linkedids() == ["1.1"]
    append(master, "1.2")
    master.rename(tmp_path / "Master.csv.1")
    append(master, "1.3")
    opening = refuse_opening(monkeypatch, master)
    assert reader.linkedids() == ["1.2"]
    monkeypatch.setattr(Path, "open", opening)  # its mode mended
    assert reader.linkedids() == ["1.3"]


def test_a_rotated_file_gone_between_the_plan_and_its_read_is_planned_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gzipped away (compress without delaycompress) or renamed again after the plan: the
    FileNotFoundError threw the whole pass out, with a traceback in the log."""
    master = tmp_path / "Master.csv"
    append(master, "1.1")
    reader = Reader(settings_for(tmp_path))
    assert reader.linkedids() == ["1.1"]
    master.rename(tmp_path / "Master.csv.1")
    append(master, "1.2")
    rotated = tmp_path / "Master.csv.1"
    planned = cdr_tail.plan

    def then_gone(*args: Any) -> list[Segment]:
        segments = planned(*args)
        if rotated.exists():
            rotated.unlink()  # after the plan named it
        return segments

    monkeypatch.setattr(cdr_tail, "plan", then_gone)
    assert reader.linkedids() == ["1.2"]
