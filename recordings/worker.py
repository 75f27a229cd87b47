"""The recordings' background work: convert each new call's WAV, delete recordings past keep_days.

Both run as tasks beside the event loop; ffmpeg runs in a thread (asyncio.to_thread), one file at
a time, so AMI, FastAGI and HTTP never wait for audio work. What is pending is read from the
calls table (recordings still named *.wav), so nothing is lost across restarts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from pbx.metrics import Metrics
from pbx.settings import Settings
from pbx.storage.calls import CallStore
from pbx.storage.errors import log_failure
from recordings.files import ConversionFailed, convert, recording_path

log = logging.getLogger(__name__)

SETTLE_SECONDS = 3.0  # MixMonitor may still be closing the file just after the hangup
SWEEP_EVERY = 300.0  # look again even without news: files that appeared late, failures to retry
RETENTION_EVERY = 3600.0
MAX_ATTEMPTS = 3  # per file and process; a WAV that cannot be converted stays as it is
BATCH = 100


class RecordingWorker:
    def __init__(
        self,
        store: CallStore,
        settings: Settings,
        metrics: Metrics,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._folder = settings.asterisk_recordings_dir
        self._format = settings.recordings.format
        self._keep_seconds = settings.recordings.keep_days * 86400.0
        self._metrics = metrics
        self._clock = clock  # the app's: retention compares it with the calls' times
        self._attempts: dict[int, int] = {}
        self._news = asyncio.Event()

    def call_stored(self) -> None:
        """A call was stored: its recording may be waiting."""
        self._news.set()

    async def convert_pending(self) -> float | None:
        """Convert every waiting WAV that has settled, newest first; seconds until the next one
        settles. A call stored meanwhile cuts the sweep short: it goes before the backlog."""
        next_in: float | None = None
        before: int | None = None
        while batch := await self._store.unconverted_recordings(before, BATCH):
            for call_id, name in batch:
                if self._news.is_set():
                    return 0.0
                before = call_id
                if self._attempts.get(call_id, 0) >= MAX_ATTEMPTS:
                    continue
                wait = await self._convert(call_id, name)
                if wait is not None:
                    next_in = wait if next_in is None else min(next_in, wait)
        return next_in

    async def _convert(self, call_id: int, name: str) -> float | None:
        path = recording_path(self._folder, name)
        try:
            age = time.time() - path.stat().st_mtime if path else None  # the file system's clock
        except FileNotFoundError:
            age = None
        if path is None or age is None:
            self._failed(call_id, f"{name}: no such file in {self._folder}")
            return None
        if age < SETTLE_SECONDS:
            return SETTLE_SECONDS - age
        try:
            converted = await asyncio.to_thread(convert, path, self._format)
        except ConversionFailed as exc:
            self._failed(call_id, str(exc))
            return None
        if await self._store.replace_recording(
            call_id, name, converted.path.name, converted.seconds, converted.peaks
        ):
            path.unlink(missing_ok=True)  # only now: the call points at the converted file
            self._metrics.recordings.labels("converted").inc()
        self._attempts.pop(call_id, None)
        return None

    def _failed(self, call_id: int, reason: str) -> None:
        self._attempts[call_id] = self._attempts.get(call_id, 0) + 1
        self._metrics.recordings.labels("failed").inc()
        log.warning("recording of call %d not converted (the WAV is kept): %s", call_id, reason)

    async def expire(self) -> int:
        """Delete the recordings of calls older than keep_days; the calls themselves stay."""
        before = self._clock() - self._keep_seconds
        expired = 0
        while batch := await self._store.recordings_before(before, BATCH):
            for call_id, name in batch:
                if path := recording_path(self._folder, name):
                    path.unlink(missing_ok=True)  # first the file: a crash leaves no orphan
                expired += await self._store.replace_recording(call_id, name, None)
        if expired:
            self._metrics.recordings.labels("expired").inc(expired)
            log.info("deleted %d recording(s) older than the retention period", expired)
        return expired

    async def run_conversions(self) -> None:
        while True:
            self._news.clear()
            try:
                next_in = await self.convert_pending()
            except Exception as error:  # tried again on the next sweep
                log_failure(log, "recording conversion sweep failed, the next one retries", error)
                next_in = None
            try:
                async with asyncio.timeout(next_in if next_in is not None else SWEEP_EVERY):
                    await self._news.wait()
            except TimeoutError:
                pass

    async def run_retention(self) -> None:
        while True:
            try:
                await self.expire()
            except Exception as error:
                log_failure(log, "recording retention sweep failed, the next one retries", error)
            await asyncio.sleep(RETENTION_EVERY)
