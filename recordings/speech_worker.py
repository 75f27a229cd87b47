"""The speech worker: each converted recording through the configured engine, once.

Analysis takes seconds of CPU per call (pocketsphinx: about 3% of the call's length here, the
transcript engines much more), so it runs in worker processes
(`speech.workers`, through pbx.job_pool) and never in the event loop's. What is pending is read
from the database (converted recordings without a call_speech row); the recording worker nudges
this one after each conversion and a sweep looks again now and then. Each worker process loads
the engine (its model: up to hundreds of MB) once and keeps it for every later call, and runs
only on CPU time nothing else wants (SCHED_IDLE): on two cores a backlog must not slow the calls
or the visitor API. During a burst of calls it does not start at all: an analysis begins once no
call was stored for QUIET seconds (in one run of lab bursts of 10 calls/s with speech in every
call, the calls' hangup-to-record p99 was ~22 ms with the worker running through the bursts
against ~14 ms without it), unless it has been waiting for a quiet moment for MAX_DEFER: then it
works through its backlog without waiting, so a line that is never quiet is still analysed, and
waits again once it has been idle for QUIET.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from pbx.job_pool import STANDBY_LOOK_EVERY, JobPool, JobQueue, WorkerCrashed
from pbx.metrics import Metrics
from pbx.settings import Settings, Speech
from pbx.storage.errors import log_failure
from pbx.storage.speech import SpeechStore
from recordings.files import recording_path
from recordings.speech import (
    SpeechEngine,
    SpeechFailed,
    SpeechInterrupted,
    SpeechResult,
    load_engine,
)

log = logging.getLogger(__name__)

SWEEP_EVERY = 300.0
GAUGE_EVERY = 15.0
RETENTION_EVERY = 3600.0
MAX_ATTEMPTS = 3  # a file that keeps crashing its worker is marked failed after this many
BATCH = 100
QUIET = 3.0  # seconds without a call stored before an analysis starts
MAX_DEFER = 600.0  # ... but after waiting this long for that, start anyway
ENGINE_MODULES = {
    "pocketsphinx": "recordings.speech.pocketsphinx_engine",
    "vosk": "recordings.speech.vosk_engine",
    "faster-whisper": "recordings.speech.whisper_engine",
}

AnalyseJob = Callable[[Path, str, Speech], SpeechResult]

NICENESS = 19  # where SCHED_IDLE is refused: the lowest ordinary priority

#: the engine each worker process loaded, by the settings it was loaded for
_engines: dict[str, SpeechEngine] = {}


def analyse_recording(folder: Path, name: str, speech: Speech) -> SpeechResult:
    """The job a worker process runs: the recording `name` inside `folder` through the engine."""
    path = recording_path(folder, name)
    if path is None or not path.is_file():
        raise SpeechFailed(f"{name}: no such file in {folder}")
    key = speech.model_dump_json()
    if key not in _engines:
        if not _engines:  # this process's first job
            _yield_cpu()
        _engines.clear()
        _engines[key] = load_engine(speech)
    return _engines[key].analyse(path)


def _yield_cpu() -> None:
    """Run (with the ffmpeg it starts) only on CPU time nothing else wants: Linux's SCHED_IDLE.
    nice 10 was not enough on two cores: the visitor API's p99 at a fixed load went from 9-12 ms
    to 22-25 ms while 20 recordings waited (bench/speech.py)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(NICENESS)


class SpeechWorker:
    def __init__(
        self,
        store: SpeechStore,
        settings: Settings,
        metrics: Metrics,
        clock: Callable[[], float],
        job: AnalyseJob = analyse_recording,
        last_call_stored: Callable[[], float | None] = lambda: None,
        active: Callable[[], bool] = lambda: True,
    ) -> None:
        self._store = store
        self._last_call_stored = last_call_stored  # time.monotonic() of it
        self._deferring_since: float | None = None  # waiting for a quiet moment since then
        self._last_finished: float | None = None  # time.monotonic() the last analysis ended
        self._speech = settings.speech
        self._folder = settings.asterisk_recordings_dir
        self._keep_seconds = settings.transcript_keep_days * 86400.0
        self._metrics = metrics
        self._clock = clock
        self._job = job  # a module-level function: it is pickled to the worker process
        self._crashes: dict[int, int] = {}
        self._active = active
        self.pool = JobPool(
            self._speech.workers,
            "speech analysis",
            preload=[job.__module__, ENGINE_MODULES[self._speech.engine]],
        )
        self._queue = JobQueue(
            "speech analysis of call",
            self.pool,
            store.pending,
            self._analyse,
            max_attempts=MAX_ATTEMPTS,
            sweep_every=SWEEP_EVERY,
            batch=BATCH,
            active=active,
        )

    def recording_converted(self) -> None:
        """A recording was converted: it may be analysed now."""
        self._queue.nudge()

    async def analyse_pending(self) -> None:
        """Analyse every waiting recording, newest first."""
        await self._queue.read(everything=True)
        await self._queue.drain()

    async def _quiet_moment(self) -> None:
        """Return once no call was stored for QUIET seconds, or once this worker has been
        waiting for that for MAX_DEFER: it then goes on at once until it finds a quiet moment
        or has been idle for QUIET (its backlog done), when it waits again."""
        idle_since = self._last_finished
        if idle_since is not None and time.monotonic() - idle_since >= QUIET:
            self._deferring_since = None
        while (last := self._last_call_stored()) is not None:
            now = time.monotonic()
            if now - last >= QUIET:
                break
            if self._deferring_since is None:
                self._deferring_since = now
            deferred = now - self._deferring_since
            if deferred >= MAX_DEFER:
                return
            await asyncio.sleep(min(QUIET - (now - last), MAX_DEFER - deferred))
        self._deferring_since = None

    async def _analyse(self, call_id: int, name: str) -> float | None:
        await self._quiet_moment()
        if not self._active():  # stepped down while it waited: the new consumer analyses it
            return STANDBY_LOOK_EVERY
        try:
            await self._analyse_now(call_id, name)
        finally:
            self._last_finished = time.monotonic()
        return None

    async def _analyse_now(self, call_id: int, name: str) -> None:
        engine = self._speech.engine
        try:
            result = await self.pool.run(self._job, self._folder, name, self._speech)
        except SpeechFailed as exc:  # the file's fault: trying again would not help
            await self._failed(call_id, str(exc))
            return None
        except WorkerCrashed as crash:
            # beside another job: not known to be this file's fault, the queue runs it alone
            if not crash.alone or self._tries_left(call_id):
                raise
            await self._failed(
                call_id, f"the analysis crashed its worker process {MAX_ATTEMPTS} times"
            )
            return None
        except SpeechInterrupted as stop:
            # killed or out of time: the machine's doing, or the file's if it keeps happening
            # (each try can cost TIMEOUT of a worker); no memory for a moment: waited out
            if stop.transient or self._tries_left(call_id):
                raise
            await self._failed(call_id, f"{stop}, {MAX_ATTEMPTS} times")
            return None
        self._crashes.pop(call_id, None)
        if await self._store.save(call_id, engine, result, self._speech.keywords):
            self._metrics.speech.labels("analysed").inc()
        await self.update_backlog()
        return None

    def _tries_left(self, call_id: int) -> bool:
        """Count a try of `call_id` that ended abnormally; whether it may be tried again."""
        tries = self._crashes[call_id] = self._crashes.get(call_id, 0) + 1
        return tries < MAX_ATTEMPTS

    async def _failed(self, call_id: int, error: str) -> None:
        self._crashes.pop(call_id, None)
        log.warning("speech analysis of call %d failed: %s", call_id, error)
        if await self._store.failed(call_id, self._speech.engine, error):
            self._metrics.speech.labels("failed").inc()
        await self.update_backlog()

    async def update_backlog(self) -> None:
        self._metrics.speech_backlog.set(await self._store.backlog())

    async def expire(self) -> int:
        """Forget transcripts older than speech.keep_days (default recordings.keep_days)."""
        expired = await self._store.expire_transcripts(self._clock() - self._keep_seconds)
        if expired:
            log.info("forgot %d transcript(s) older than the retention period", expired)
        return expired

    async def run_analysis(self) -> None:
        try:
            await self._queue.run()
        finally:
            self.pool.close()

    async def run_upkeep(self) -> None:
        """The backlog gauge every few seconds, transcript retention every hour."""
        expired_at = -RETENTION_EVERY
        while True:
            try:
                await self.update_backlog()
                now = asyncio.get_running_loop().time()
                if now - expired_at >= RETENTION_EVERY:
                    expired_at = now
                    await self.expire()
            except Exception as error:
                log_failure(log, "speech upkeep failed, the next round retries", error)
            await asyncio.sleep(GAUGE_EVERY)
