"""The recordings' background work: convert each new call's WAV, delete recordings past keep_days.

Conversion (ffmpeg and the waveform) runs in worker processes (`recordings.workers`, through
pbx.job_pool), so AMI, FastAGI and HTTP never wait for audio work nor share a core's GIL with
it. What is pending is read from the calls table (recordings still named *.wav), so nothing is
lost across restarts; a worker that dies is replaced and its recording tried again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from pbx.job_pool import JobPool, JobQueue
from pbx.metrics import Metrics
from pbx.settings import Settings
from pbx.storage.calls import CallStore
from pbx.storage.errors import log_failure
from recordings.files import (
    ConversionFailed,
    Converted,
    NoAudio,
    convert,
    recording_path,
    stale_partials,
)

log = logging.getLogger(__name__)

SETTLE_SECONDS = 3.0  # MixMonitor may still be closing the file just after the hangup
SWEEP_EVERY = 300.0  # look again even without news: files that appeared late, failures to retry
RETENTION_EVERY = 3600.0
MAX_ATTEMPTS = 3  # per file and process; a WAV that cannot be converted stays as it is
BATCH = 100

ConvertJob = Callable[[Path, str, str], Converted]


def convert_recording(folder: Path, name: str, to: str) -> Converted:
    """The job a worker process runs: `name` inside `folder`, converted to `to`."""
    path = recording_path(folder, name)
    if path is None:
        raise ConversionFailed(f"{name}: no such file in {folder}")
    return convert(path, to)


def _delete(path: Path) -> bool:
    """Delete a recording's file; False, with a line in the log, when it would not go (the
    folder's sticky bit keeps Asterisk's files from us, a file made immutable for a legal
    hold): one file that stays must not stop the others', nor fail a conversion done."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("recording %s not deleted: %s", path, exc.strerror or exc)
        return False
    return True


class RecordingWorker:
    def __init__(
        self,
        store: CallStore,
        settings: Settings,
        metrics: Metrics,
        clock: Callable[[], float],
        job: ConvertJob = convert_recording,
        active: Callable[[], bool] = lambda: True,
    ) -> None:
        self._store = store
        self._folder = settings.asterisk_recordings_dir
        self._format = settings.recordings.format
        self._keep_seconds = settings.recordings.keep_days * 86400.0
        self._metrics = metrics
        self._clock = clock  # the app's: retention compares it with the calls' times
        self._job = job  # a module-level function: it is pickled to the worker process
        self._on_converted: list[Callable[[], None]] = []
        #: when (time.monotonic()) the last call was stored, None before the first one: the
        #: speech worker waits for a quiet moment
        self.last_call_stored: float | None = None
        self.pool = JobPool(
            settings.recordings.workers, "recording conversion", preload=[job.__module__]
        )
        self._queue = JobQueue(
            "recording of call",
            self.pool,
            store.unconverted_recordings,
            self._convert,
            max_attempts=MAX_ATTEMPTS,
            sweep_every=SWEEP_EVERY,
            batch=BATCH,
            active=active,
        )

    def on_converted(self, listener: Callable[[], None]) -> None:
        """`listener` is called after each conversion (the speech worker analyses it)."""
        self._on_converted.append(listener)

    def call_stored(self) -> None:
        """A call was stored: its recording may be waiting."""
        self.last_call_stored = time.monotonic()
        self._queue.nudge()

    async def convert_pending(self) -> float | None:
        """Convert every waiting WAV that has settled, newest first; seconds until the next one
        settles."""
        await self._queue.read(everything=True)
        return await self._queue.drain()

    async def _convert(self, call_id: int, name: str) -> float | None:
        try:  # the file system's clock; a name that is not a plain file name fails in the job
            age = time.time() - os.stat(self._folder / name).st_mtime
        except (OSError, ValueError):
            age = SETTLE_SECONDS
        if age < SETTLE_SECONDS:
            return SETTLE_SECONDS - age
        try:
            converted = await self.pool.run(self._job, self._folder, name, self._format)
        except NoAudio:
            # MixMonitor's header alone (a call never bridged): nothing to play, nothing to
            # keep converting at every start; the call keeps no recording
            path = recording_path(self._folder, name)  # as retention finds a call's file
            if await self._store.replace_recording(call_id, name, None) and path is not None:
                _delete(path)
            self._metrics.recordings.labels("empty").inc()
            return None
        except ConversionFailed as exc:
            if not exc.transient:  # a full disk is waited out (pbx.job_pool), not a failure
                self._metrics.recordings.labels("failed").inc()
            raise
        if await self._store.replace_recording(
            call_id, name, converted.path.name, converted.seconds, converted.peaks
        ):
            _delete(converted.path.with_name(name))  # only now: the call points at the new file
            self._metrics.recordings.labels("converted").inc()
            for listener in self._on_converted:
                listener()
        else:  # the call points elsewhere: its recording expired meanwhile (retention)
            converted.path.unlink(missing_ok=True)
        return None

    async def expire(self) -> int:
        """Delete the recordings of calls older than keep_days (the calls themselves stay),
        and the unfinished conversions of workers killed mid-file."""
        for partial in await asyncio.to_thread(
            stale_partials, self._folder, time.time() - RETENTION_EVERY
        ):
            partial.unlink(missing_ok=True)
        before = self._clock() - self._keep_seconds
        expired = 0
        kept: set[int] = set()  # calls whose file would not go: left for the next sweep
        while batch := await self._store.recordings_before(before, BATCH):
            if all(call_id in kept for call_id, _ in batch):
                break  # a batch of files that would not go: the next sweep tries them again
            for call_id, name in batch:
                path = recording_path(self._folder, name)
                # first the file: a crash leaves no orphan
                if call_id in kept or (path is not None and not _delete(path)):
                    kept.add(call_id)
                    continue
                expired += await self._store.replace_recording(call_id, name, None)
        if expired:
            self._metrics.recordings.labels("expired").inc(expired)
            log.info("deleted %d recording(s) older than the retention period", expired)
        return expired

    async def run_conversions(self) -> None:
        try:
            await self._queue.run()
        finally:
            self.pool.close()

    async def run_retention(self) -> None:
        while True:
            try:
                await self.expire()
            except Exception as error:
                log_failure(log, "recording retention sweep failed, the next one retries", error)
            await asyncio.sleep(RETENTION_EVERY)
