"""Recordings: WAV to a browser format in a worker process, the original removed only after a
successful conversion, a dead worker replaced and its job retried, retention, and names that
cannot leave the folder."""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import math
import os
import sqlite3
import tempfile
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydub import AudioSegment
from sqlalchemy.exc import OperationalError

from attribution.calls import CallReport
from pbx import job_pool
from pbx.metrics import Metrics
from pbx.settings import Settings
from pbx.storage.calls import CallFilter, CallStore
from pbx.storage.db import open_engine
from pbx.storage.visits import VisitStore
from recordings import files
from recordings.files import ConversionFailed, Converted, convert, recording_path, waveform
from recordings.worker import MAX_ATTEMPTS, ConvertJob, RecordingWorker, convert_recording
from tests.helpers import (
    FakeClock,
    aiosqlite_threads,
    aiosqlite_threads_done,
    migrate,
    settings_for,
)

DAY = 86400.0


def job_log_of(folder: Path) -> Path:
    """Where the test jobs note which process ran what: beside the recordings folder."""
    return folder.parent / "jobs.log"


def logged(folder: Path, name: str, to: str) -> Converted:
    """The real job, after noting which process converted which file."""
    with job_log_of(folder).open("a") as log:
        log.write(f"{os.getpid()} {name}\n")
    return convert_recording(folder, name, to)


def busy_until_the_loop_answers(folder: Path, name: str, to: str) -> Converted:
    """Pure CPU until the test's event loop, ticking meanwhile, says go (20 s at most).

    Run in the loop's own process, the loop could not tick while this spins, so no go would come:
    the job then logs that it gave up, and the test fails on that, not on a timing bound.
    """
    log = job_log_of(folder)
    log.with_suffix(".started").touch()
    give_up = time.monotonic() + 20.0
    while not log.with_suffix(".go").exists():
        if time.monotonic() > give_up:
            with log.open("a") as gave_up:
                gave_up.write(f"{os.getpid()} gave-up-waiting-for-the-loop\n")
            break
    return logged(folder, name, to)


def dies_once(folder: Path, name: str, to: str) -> Converted:
    """The worker process dies abruptly on the first attempt (a crash in a decoder)."""
    first = job_log_of(folder).with_suffix(".died")
    if not first.exists():
        first.touch()
        os._exit(1)
    return logged(folder, name, to)


def disk_full_4_times(folder: Path, name: str, to: str) -> Converted:
    """The disk is full for the first four attempts (one more than MAX_ATTEMPTS), as ffmpeg
    says it; then there is space again."""
    tries = job_log_of(folder).with_suffix(".full")
    done = len(tries.read_text()) if tries.exists() else 0
    if done < 4:
        tries.write_text("x" * (done + 1))
        raise ConversionFailed(f"{name}: No space left on device", transient=True)
    return logged(folder, name, to)


def always_dies(folder: Path, name: str, to: str) -> Converted:
    os._exit(1)


def make_wav(path: Path, seconds: float = 3.0, rate: int = 8000) -> Path:
    """A 440 Hz tone that grows louder, as MixMonitor would write it (8 kHz, 16 bit, mono)."""
    frames = int(seconds * rate)
    samples = array.array(
        "h",
        (int(12000 * (i / frames) * math.sin(2 * math.pi * 440 * i / rate)) for i in range(frames)),
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    old = time.time() - 60  # settled: MixMonitor closed it a minute ago
    os.utime(path, (old, old))
    return path


class Lab:
    def __init__(self, settings: Settings, store: CallStore, clock: FakeClock) -> None:
        self.settings, self.store, self.clock = settings, store, clock
        self.folder = settings.asterisk_recordings_dir
        self.metrics = Metrics()
        self.workers: list[RecordingWorker] = []

    def worker(self, fmt: str = "mp3", job: ConvertJob = convert_recording) -> RecordingWorker:
        settings = self.settings.model_copy(
            update={"recordings": self.settings.recordings.model_copy(update={"format": fmt})}
        )
        worker = RecordingWorker(self.store, settings, self.metrics, self.clock, job)
        self.workers.append(worker)
        return worker

    async def call(self, linkedid: str, recording: str | None, at: float | None = None) -> int:
        at = self.clock.now if at is None else at
        report = CallReport(
            linkedid, "+79161234567", "+74990000101", at, at + 10, at + 2, "ANSWER", recording
        )
        assert await self.store.store(report)
        return await self.id_of(linkedid)

    async def id_of(self, linkedid: str) -> int:
        _total, rows = await self.store.list(CallFilter())
        return int(next(r["id"] for r in rows if r["linkedid"] == linkedid))

    async def recording(self, call_id: int) -> dict[str, object]:
        call = await self.store.get(call_id)
        assert call is not None
        return call


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    (tmp_path / "rec").mkdir()
    settings = settings_for(tmp_path, recordings={"dir": "rec", "keep_days": 30})
    await migrate(settings)
    engine = open_engine(settings.database)
    clock = FakeClock(time.time())
    visits = VisitStore(engine, settings, clock)
    lab = Lab(settings, CallStore(engine, settings, visits, clock), clock)
    try:
        yield lab
    finally:
        for worker in lab.workers:
            worker.pool.close()
        await engine.dispose()


@pytest.fixture
def job_log(lab: Lab) -> Path:
    log = job_log_of(lab.folder)
    log.touch()
    return log


def jobs(log: Path) -> list[tuple[int, str]]:
    return [
        (int(pid), name) for pid, name in (line.split() for line in log.read_text().splitlines())
    ]


@pytest.mark.parametrize(
    ("fmt", "suffix", "codec"), [("mp3", ".mp3", "mp3"), ("opus", ".ogg", "ogg")]
)
async def test_wav_becomes_a_compact_browser_format_and_the_wav_goes(
    lab: Lab, fmt: str, suffix: str, codec: str
) -> None:
    wav = make_wav(lab.folder / "1700000000.1.wav")
    call = await lab.call("1700000000.1", wav.name)
    assert await lab.worker(fmt).convert_pending() is None
    stored = await lab.recording(call)
    assert stored["recording"] == "1700000000.1" + suffix
    converted = lab.folder / str(stored["recording"])
    assert not wav.exists(), "the original is deleted after the conversion"
    assert converted.stat().st_size < 48_000 / 4, "a tenth of the WAV's 16 KB per second"
    assert abs(len(AudioSegment.from_file(converted, format=codec)) - 3000) < 100
    assert stored["recording_seconds"] == pytest.approx(3.0, abs=0.05)
    peaks = stored["recording_peaks"]
    assert isinstance(peaks, list) and len(peaks) == 120 and max(peaks) == 100
    assert peaks[5] < peaks[-5], "the tone grows louder"
    assert [p.name for p in lab.folder.iterdir()] == [converted.name], "no partial files left"


async def test_a_wav_that_does_not_convert_is_kept_and_retried_a_few_times(lab: Lab) -> None:
    broken = lab.folder / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    os.utime(broken, (time.time() - 60, time.time() - 60))
    call = await lab.call("broken", broken.name)
    worker = lab.worker()
    for _ in range(MAX_ATTEMPTS + 2):
        await worker.convert_pending()
    assert broken.read_bytes().startswith(b"RIFF"), "the original stays"
    assert (await lab.recording(call))["recording"] == "broken.wav"
    assert sorted(p.name for p in lab.folder.iterdir()) == ["broken.wav"]
    failed = lab.metrics.registry.get_sample_value(
        "calltrack_recordings_total", {"outcome": "failed"}
    )
    assert failed == MAX_ATTEMPTS, "gives up after a few attempts, not on every sweep"


async def converted_after_an_outage(lab: Lab, worker: RecordingWorker, call: int) -> int:
    """Runs the worker as its loop does until the call's recording is converted (an outage
    that passes must not use up its attempts); how many runs that took."""
    for runs in range(1, 20):
        wait = await worker.convert_pending()
        if (await lab.recording(call))["recording"] == "full.mp3":
            return runs
        await asyncio.sleep(wait or 0)
    raise AssertionError("never converted")


async def test_a_full_disk_in_the_conversion_is_waited_out_not_given_up_on(
    lab: Lab, job_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_pool, "TRANSIENT_RETRY_FIRST", 0.01)
    call = await lab.call("full", make_wav(lab.folder / "full.wav", 1).name)
    worker = lab.worker(job=disk_full_4_times)
    assert await converted_after_an_outage(lab, worker, call) == 5
    assert not (lab.folder / "full.wav").exists()
    counted = lab.metrics.registry.get_sample_value
    assert counted("calltrack_recordings_total", {"outcome": "converted"}) == 1
    assert not counted("calltrack_recordings_total", {"outcome": "failed"})


async def test_a_database_full_when_storing_the_conversion_is_waited_out(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_pool, "TRANSIENT_RETRY_FIRST", 0.01)
    call = await lab.call("full", make_wav(lab.folder / "full.wav", 1).name)
    real = lab.store.replace_recording
    refused = 0

    async def full_4_times(*args: Any) -> bool:
        nonlocal refused
        if refused < 4:
            refused += 1
            raise sqlite3.OperationalError("database or disk is full")
        return await real(*args)

    monkeypatch.setattr(lab.store, "replace_recording", full_4_times)
    assert await converted_after_an_outage(lab, lab.worker(), call) == 5
    assert not (lab.folder / "full.wav").exists()


async def test_a_wav_still_being_written_waits_until_it_settles(lab: Lab) -> None:
    wav = make_wav(lab.folder / "fresh.wav")
    os.utime(wav)  # written just now
    call = await lab.call("fresh", wav.name)
    worker = lab.worker()
    wait = await worker.convert_pending()
    assert wait is not None and 0 < wait <= 3.0
    assert wav.exists() and (await lab.recording(call))["recording"] == "fresh.wav"
    os.utime(wav, (time.time() - 10, time.time() - 10))
    assert await worker.convert_pending() is None
    assert (await lab.recording(call))["recording"] == "fresh.mp3"


async def test_newest_calls_are_converted_first(lab: Lab, job_log: Path) -> None:
    await lab.call("old", make_wav(lab.folder / "old.wav", 1).name)
    await lab.call("new", make_wav(lab.folder / "new.wav", 1).name)
    assert await lab.worker(job=logged).convert_pending() is None
    assert [name for _pid, name in jobs(job_log)] == ["new.wav", "old.wav"]


async def test_conversion_runs_in_a_worker_process_and_the_loop_stays_responsive(
    lab: Lab, job_log: Path
) -> None:
    call = await lab.call("busy", make_wav(lab.folder / "busy.wav", 1).name)
    worker = lab.worker(job=busy_until_the_loop_answers)
    started, go = job_log.with_suffix(".started"), job_log.with_suffix(".go")

    async def answer_the_busy_job() -> int:
        """Ticks while the job spins; 20 ticks after it started, tells it to go on."""
        ticks_while_busy = 0
        while ticks_while_busy < 20:
            await asyncio.sleep(0.01)
            ticks_while_busy += started.exists()
        go.touch()
        return ticks_while_busy

    answering = asyncio.create_task(answer_the_busy_job())
    try:
        assert await worker.convert_pending() is None
    finally:
        answering.cancel()
    ran = jobs(job_log)
    assert [name for _pid, name in ran] == ["busy.wav"], "the loop ticked while the job held a core"
    assert ran[0][0] != os.getpid(), "converted in another process"
    assert (await lab.recording(call))["recording"] == "busy.mp3"


async def test_a_worker_that_dies_is_replaced_and_its_recording_retried(
    lab: Lab, job_log: Path
) -> None:
    call = await lab.call("crash", make_wav(lab.folder / "crash.wav", 1).name)
    worker = lab.worker(job=dies_once)
    assert await worker.convert_pending() is None
    assert job_log.with_suffix(".died").exists(), "the first attempt's worker died"
    [(pid, name)] = jobs(job_log)
    assert name == "crash.wav" and pid != os.getpid()
    assert (await lab.recording(call))["recording"] == "crash.mp3"
    later = await lab.call("later", make_wav(lab.folder / "later.wav", 1).name)
    worker.call_stored()
    assert await worker.convert_pending() is None
    assert (await lab.recording(later))["recording"] == "later.mp3", "the new pool works on"


async def test_a_recording_whose_worker_always_dies_is_given_up_and_kept(lab: Lab) -> None:
    wav = make_wav(lab.folder / "poison.wav", 1)
    call = await lab.call("poison", wav.name)
    worker = lab.worker(job=always_dies)
    assert await worker.convert_pending() is None
    assert await worker.convert_pending() is None  # a sweep: no attempts left in this process
    assert wav.exists() and (await lab.recording(call))["recording"] == "poison.wav"


async def test_names_outside_the_folder_are_never_converted(lab: Lab, tmp_path: Path) -> None:
    outside = make_wav(tmp_path / "outside.wav")
    call = await lab.call("escape", "../outside.wav")
    await lab.worker().convert_pending()
    assert outside.exists() and not (tmp_path / "outside.mp3").exists()
    assert (await lab.recording(call))["recording"] == "../outside.wav"


async def test_retention_deletes_old_recordings_and_keeps_the_calls(lab: Lab) -> None:
    now = lab.clock.now
    (lab.folder / "old.mp3").write_bytes(b"x")
    (lab.folder / "recent.mp3").write_bytes(b"y")
    old = await lab.call("old", "old.mp3", at=now - 31 * DAY)
    gone = await lab.call("gone", "already-gone.mp3", at=now - 40 * DAY)
    recent = await lab.call("recent", "recent.mp3", at=now - 29 * DAY)
    assert await lab.worker().expire() == 2
    assert not (lab.folder / "old.mp3").exists()
    assert (lab.folder / "recent.mp3").exists()
    assert (await lab.recording(old))["recording"] is None
    assert (await lab.recording(gone))["recording"] is None
    assert (await lab.recording(recent))["recording"] == "recent.mp3"
    assert await lab.worker().expire() == 0


@pytest.mark.parametrize(
    ("name", "inside"),
    [
        ("1700000000.1.wav", True),
        ("../x.wav", False),
        ("/etc/passwd", False),
        ("a/b.wav", False),
        ("", False),
        (".", False),
        ("..", False),
        (".hidden.wav", False),
    ],
)
def test_recording_path_stays_in_the_folder(tmp_path: Path, name: str, inside: bool) -> None:
    found = recording_path(tmp_path, name)
    assert (found is not None) == inside
    if found is not None:
        assert found.parent == tmp_path.resolve()


def test_recording_path_refuses_a_symlink_out(tmp_path: Path) -> None:
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "link.wav").symlink_to(tmp_path / "secret")
    assert recording_path(tmp_path / "rec", "link.wav") is None


def test_waveform_of_silence_and_of_nothing() -> None:
    assert waveform(AudioSegment.silent(duration=0)) == []
    assert set(waveform(AudioSegment.silent(duration=1000))) == {0}


async def test_a_database_that_is_away_is_one_line_per_sweep_not_a_traceback(
    lab: Lab, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    open_before = aiosqlite_threads()
    away = f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'calltrack.db'}"  # cannot be opened
    settings = lab.settings.model_copy(update={"database": away})
    engine = open_engine(away)
    store = CallStore(engine, settings, VisitStore(engine, settings, lab.clock), lab.clock)
    sweeping = asyncio.create_task(
        RecordingWorker(store, settings, lab.metrics, lab.clock).run_conversions()
    )
    try:
        await asyncio.sleep(0.3)
    finally:
        sweeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeping
        await engine.dispose()
        await aiosqlite_threads_done(open_before)  # a connect cancelled must not outlive the loop
    failed = [r for r in caplog.records if "could not read" in r.getMessage()]
    assert failed and all(r.exc_info is None and r.levelname == "WARNING" for r in failed)
    assert "database down: " in failed[0].getMessage()
    # a failed read was retried at once, 40,000 times a second: now after READ_RETRY_FIRST
    assert len(failed) == 1, [r.getMessage() for r in failed[:3]]


def test_the_converted_file_and_its_name_are_on_disk_before_the_wav_may_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renamed into place without an fsync, a power cut within ext4's writeback (~30 s) could
    leave the new file empty after the WAV was deleted: the recording lost."""
    wav = make_wav(tmp_path / "c.wav", 1)
    synced: list[str] = []
    real = os.fsync

    def noted(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real(descriptor)

    monkeypatch.setattr(os, "fsync", noted)
    converted = convert(wav, "mp3")
    assert converted.path == tmp_path / "c.mp3"
    assert len(synced) == 2
    assert Path(synced[0]).suffix == ".mp3", "the data, under its unfinished name"
    assert synced[1] == str(tmp_path), "then the folder, holding its final name"


async def test_a_conversion_whose_commit_answer_was_lost_still_deletes_the_wav(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the COMMIT can land and its answer be lost. The job ran again, its update
    matched nothing (the call already pointed at c.mp3), and c.wav stayed forever: retention
    deletes only the name the call holds."""
    monkeypatch.setattr(job_pool, "TRANSIENT_RETRY_FIRST", 0.01)
    call = await lab.call("lost", make_wav(lab.folder / "lost.wav", 1).name)
    real = lab.store.replace_recording
    answers_lost = 1

    async def committed_then_cut_off(*args: Any) -> bool:
        nonlocal answers_lost
        changed = await real(*args)
        if answers_lost:
            answers_lost -= 1
            raise OperationalError("COMMIT", {}, ConnectionResetError("connection lost"))
        return changed

    monkeypatch.setattr(lab.store, "replace_recording", committed_then_cut_off)
    worker = lab.worker()
    for _ in range(5):
        if (wait := await worker.convert_pending()) is None:
            break
        await asyncio.sleep(wait)
    assert (await lab.recording(call))["recording"] == "lost.mp3"
    assert sorted(p.name for p in lab.folder.iterdir()) == ["lost.mp3"]


@pytest.mark.parametrize(
    ("converted_to", "kept"), [("mp3", "undone.mp3"), ("opus", "undone.ogg")], ids=["mp3", "opus"]
)
async def test_a_call_read_back_finds_its_converted_file(
    lab: Lab, converted_to: str, kept: str
) -> None:
    """SQLite's synchronous=NORMAL: a power cut can undo the last commits, so the call may
    still name c.wav when the WAV is already deleted and c.mp3 is on disk. The same after a
    restore from a backup made before the call was converted, also to Opus when the daemon's
    recordings.format is mp3 now: its .ogg is read back."""
    call = await lab.call("undone", make_wav(lab.folder / "undone.wav", 2).name)
    convert(lab.folder / "undone.wav", converted_to)
    (lab.folder / "undone.wav").unlink()
    assert await lab.worker().convert_pending() is None
    row = await lab.recording(call)
    assert row["recording"] == kept
    assert row["recording_seconds"] == pytest.approx(2.0, abs=0.1)
    assert sorted(p.name for p in lab.folder.iterdir()) == [kept]


async def test_a_conversion_finished_after_its_recording_expired_is_not_left_behind(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    call = await lab.call("late", make_wav(lab.folder / "late.wav", 1).name)
    real = lab.store.replace_recording

    async def expired_meanwhile(call_id: int, old: str, *args: Any) -> bool:
        await real(call_id, old, None)  # retention, while the worker converted
        return await real(call_id, old, *args)

    monkeypatch.setattr(lab.store, "replace_recording", expired_meanwhile)
    await lab.worker().convert_pending()
    assert (await lab.recording(call))["recording"] is None
    assert not (lab.folder / "late.mp3").exists()


async def test_retention_removes_conversions_a_killed_worker_left_unfinished(lab: Lab) -> None:
    hour_ago = time.time() - 3700
    stale = lab.folder / ".1700000000.1.0a1b2c3d.mp3"
    fresh = lab.folder / ".1700000000.2.0a1b2c3d.ogg"  # a conversion under way now
    other = lab.folder / ".hidden.mp3"  # not a name convert() writes
    for path in (stale, fresh, other):
        path.write_bytes(b"x")
    for path in (stale, other):
        os.utime(path, (hour_ago, hour_ago))
    await lab.worker().expire()
    assert sorted(p.name for p in lab.folder.iterdir()) == sorted([other.name, fresh.name])


async def test_the_queue_and_retention_reads_use_their_partial_indexes(lab: Lab) -> None:
    """Both run every few minutes in the event loop (SQLite): scanning the calls table took
    0.8 s at 1,000,000 calls (bench/recording_queue.py), and FastAGI answers waited. A bound
    LIKE pattern instead of the literal one would not let SQLite use the partial index."""
    from sqlalchemy import event

    from pbx.storage.inline_sqlite import open_inline_engine

    inline = open_inline_engine(str(lab.settings.database).split(":///", 1)[1])
    store = CallStore(lab.store._engine, lab.settings, lab.store._visits, lab.clock, inline=inline)
    seen: list[tuple[str, Any]] = []

    def note(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        seen.append((statement, parameters))

    event.listen(inline.sync_engine, "before_cursor_execute", note)
    try:
        await store.unconverted_recordings(None, 100)
        await store.unconverted_recordings(7, 100)
        await store.recordings_before(lab.clock.now, 100)
    finally:
        await inline.dispose()
    reads = [(sql, params) for sql, params in seen if sql.lstrip().startswith("SELECT")]
    assert len(reads) == 3
    database = str(lab.settings.database).split(":///", 1)[1]
    with contextlib.closing(sqlite3.connect(database)) as conn:
        plans = [
            " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            for sql, params in reads
        ]
    assert "USING INDEX ix_calls_as_recorded" in plans[0], plans[0]
    assert "ix_calls_as_recorded" in plans[1], plans[1]
    assert "USING INDEX ix_calls_recorded_started" in plans[2], plans[2]


@pytest.mark.parametrize("number", [errno.ENOMEM, errno.EAGAIN, errno.ENOSPC])
def test_ffmpeg_that_cannot_start_for_a_moment_is_waited_out_not_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, number: int
) -> None:
    """Out of memory or processes for a moment, ffmpeg could not start: counted against the
    file, whose WAV then waited for the next restart after three such moments."""
    wav = make_wav(tmp_path / "c.wav", 1)

    def cannot_start(*_args: object, **_kwargs: object) -> AudioSegment:
        raise OSError(number, os.strerror(number))

    monkeypatch.setattr(AudioSegment, "from_file", cannot_start)
    with pytest.raises(ConversionFailed) as caught:
        convert(wav, "mp3")
    assert caught.value.transient
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.wav"]


def fake_ffmpeg(folder: Path, script: str) -> str:
    """An ffmpeg that runs `script` (sh) instead, for AudioSegment.converter."""
    path = folder / "ffmpeg"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return str(path)


def test_a_failed_ffmpeg_leaves_no_copy_of_the_wav_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pydub's export copied the whole WAV into the temporary folder and left it there, with
    its output file, whenever ffmpeg failed: an ffmpeg without an encoder, or a full disk
    (retried for ever), filled the disk Asterisk records to with copies of recordings."""
    wav = make_wav(tmp_path / "c.wav", 1)
    spare = tmp_path / "tmp"
    spare.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))
    failing = fake_ffmpeg(tmp_path, "echo 'Unknown encoder libmp3lame' >&2; exit 1")
    monkeypatch.setattr(AudioSegment, "converter", failing)
    with pytest.raises(ConversionFailed, match="Unknown encoder libmp3lame"):
        convert(wav, "mp3")
    assert list(spare.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.wav", "ffmpeg", "tmp"]


def test_a_hung_ffmpeg_fails_the_file_in_its_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stalled mount or a decoder stuck on a bad file held the only worker for ever: nothing
    else was converted until a restart."""
    wav = make_wav(tmp_path / "c.wav", 1)
    monkeypatch.setattr(files, "FFMPEG_SECONDS", 0.5)
    monkeypatch.setattr(AudioSegment, "converter", fake_ffmpeg(tmp_path, "exec sleep 5"))
    started = time.monotonic()
    with pytest.raises(ConversionFailed, match="ffmpeg did not finish in 1 s") as caught:
        convert(wav, "mp3")
    assert time.monotonic() - started < 3 and not caught.value.transient
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.wav", "ffmpeg"]


async def test_a_wav_with_no_audio_is_dropped_not_retried_at_every_start(lab: Lab) -> None:
    """MixMonitor's header alone (a call never bridged) failed three times per process for
    ever, and staff saw a player for an empty file."""
    empty = lab.folder / "empty.wav"
    with wave.open(str(empty), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
    os.utime(empty, (time.time() - 60, time.time() - 60))
    call = await lab.call("empty", empty.name)
    await lab.worker().convert_pending()
    assert (await lab.recording(call))["recording"] is None
    assert list(lab.folder.iterdir()) == []
    counted = lab.metrics.registry.get_sample_value
    assert counted("calltrack_recordings_total", {"outcome": "empty"}) == 1
    assert not counted("calltrack_recordings_total", {"outcome": "failed"})


def refuse_unlinking(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """`name` will not go (a sticky folder, a file made immutable): PermissionError."""
    unlink = Path.unlink

    def held(path: Path, missing_ok: bool = False) -> None:
        if path.name == name:
            raise PermissionError(errno.EPERM, "Operation not permitted", str(path))
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", held)


async def test_a_recording_that_will_not_go_leaves_the_others_to_expire(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The first file that would not go stopped the whole sweep, oldest first: the same one
    failed every hour and nothing newer ever expired."""
    now = lab.clock.now
    (lab.folder / "held.mp3").write_bytes(b"x")
    (lab.folder / "old.mp3").write_bytes(b"y")
    held = await lab.call("held", "held.mp3", at=now - 40 * DAY)
    old = await lab.call("old", "old.mp3", at=now - 35 * DAY)
    refuse_unlinking(monkeypatch, "held.mp3")
    assert await lab.worker().expire() == 1
    assert sorted(p.name for p in lab.folder.iterdir()) == ["held.mp3"]
    assert (await lab.recording(held))["recording"] == "held.mp3"  # tried again next sweep
    assert (await lab.recording(old))["recording"] is None
    assert "recording" in caplog.text and "held.mp3 not deleted" in caplog.text


async def test_a_wav_that_will_not_go_after_its_conversion_is_no_failed_conversion(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    call = await lab.call("sticky", make_wav(lab.folder / "sticky.wav", 1).name)
    refuse_unlinking(monkeypatch, "sticky.wav")
    await lab.worker().convert_pending()
    assert (await lab.recording(call))["recording"] == "sticky.mp3"
    counted = lab.metrics.registry.get_sample_value
    assert counted("calltrack_recordings_total", {"outcome": "converted"}) == 1
    assert not counted("calltrack_recordings_total", {"outcome": "failed"})
    assert "sticky.wav not deleted" in caplog.text
