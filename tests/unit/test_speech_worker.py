"""The speech worker: converted recordings analysed in a worker process, the automatic tag on the
call, a corrupt file marked failed without stopping the next call, a conversion nudging it."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from attribution.calls import CallReport
from pbx import job_pool
from pbx.job_pool import WorkerCrashed
from pbx.metrics import Metrics
from pbx.settings import Settings, Speech
from pbx.storage.calls import CallFilter, CallStore
from pbx.storage.db import open_engine
from pbx.storage.outbox import Outbox
from pbx.storage.speech import SpeechStore
from pbx.storage.tables import call_keywords, call_speech, call_tags
from pbx.storage.visits import VisitStore
from recordings import speech_worker
from recordings.speech import SpeechFailed, SpeechInterrupted, SpeechResult, audio
from recordings.speech_worker import MAX_ATTEMPTS, AnalyseJob, SpeechWorker, analyse_recording
from recordings.worker import RecordingWorker
from tests.helpers import FakeClock, migrate, settings_for
from tests.speech_audio import KEYWORD_TEXT, UNRELATED_TEXT, need_espeak, speak

KEYWORDS = {"price": "lead", "call me back": "callback", "refund": "complaint"}


def always_dies(folder: Path, name: str, speech: Speech) -> SpeechResult:
    os._exit(1)


def says_when(folder: Path, name: str, speech: Speech) -> SpeechResult:
    """A stand-in analysis whose transcript is when it ran (CLOCK_MONOTONIC, the machine's)."""
    return SpeechResult(transcript=repr(time.monotonic()))


@dataclass
class Lab:
    settings: Settings
    engine: AsyncEngine
    calls: CallStore
    store: SpeechStore
    metrics: Metrics
    clock: FakeClock
    workers: list[SpeechWorker]

    @property
    def folder(self) -> Path:
        return self.settings.asterisk_recordings_dir

    def worker(
        self,
        job: AnalyseJob = analyse_recording,
        last_call_stored: Callable[[], float | None] = lambda: None,
    ) -> SpeechWorker:
        worker = SpeechWorker(
            self.store, self.settings, self.metrics, self.clock, job, last_call_stored
        )
        self.workers.append(worker)
        return worker

    async def call(self, linkedid: str, recording: str) -> int:
        at = self.clock.now
        report = CallReport(
            linkedid, "+79161234567", "+74990000101", at, at + 10, at + 2, "ANSWER", recording
        )
        assert await self.calls.store(report)
        _total, rows = await self.calls.list(CallFilter())
        return int(next(r["id"] for r in rows if r["linkedid"] == linkedid))

    async def rows(self, query: object) -> list[tuple[object, ...]]:
        async with self.engine.connect() as conn:
            return [tuple(r) for r in await conn.execute(query)]  # type: ignore[call-overload]

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels or {})


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    (tmp_path / "rec").mkdir()
    settings = settings_for(
        tmp_path,
        recordings={"dir": "rec"},
        tags=["lead", "callback", "complaint"],
        speech={"keywords": KEYWORDS},
    )
    await migrate(settings)
    engine = open_engine(settings.database)
    clock = FakeClock()
    box = Outbox(settings, clock)
    visits = VisitStore(engine, settings, clock)
    calls = CallStore(engine, settings, visits, clock, box)
    speech = SpeechStore(engine, visits.transactions, box, clock)
    lab = Lab(settings, engine, calls, speech, Metrics(), clock, [])
    try:
        yield lab
    finally:
        visits.close()
        for worker in lab.workers:
            worker.pool.close()
        await engine.dispose()


async def test_a_corrupt_file_is_marked_failed_and_the_next_call_still_gets_its_tags(
    lab: Lab,
) -> None:
    need_espeak()
    corrupt = lab.folder / "corrupt.mp3"
    corrupt.write_bytes(b"ID3\x03\x00\x00\x00" + os.urandom(4000))
    spoken = speak(KEYWORD_TEXT, lab.folder / "spoken.mp3")
    quiet = speak(UNRELATED_TEXT, lab.folder / "quiet.mp3")
    bad = await lab.call("bad", corrupt.name)
    good = await lab.call("good", spoken.name)
    other = await lab.call("other", quiet.name)
    worker = lab.worker()
    await worker.update_backlog()
    assert lab.sample("calltrack_speech_backlog") == 3
    await worker.analyse_pending()

    speech = dict(
        (r[0], r[1:])
        for r in await lab.rows(
            select(call_speech.c.call_id, call_speech.c.engine, call_speech.c.error)
        )
    )
    assert speech[good] == ("pocketsphinx", None)
    assert speech[other] == ("pocketsphinx", None)
    assert speech[bad][0] == "pocketsphinx" and speech[bad][1], "the reason is kept"
    heard = await lab.rows(
        select(
            call_keywords.c.call_id, call_keywords.c.phrase, call_keywords.c.at_seconds
        ).order_by(call_keywords.c.at_seconds)
    )
    assert [(c, p) for c, p, _at in heard] == [(good, "price"), (good, "call me back")]
    assert 0.8 < float(heard[0][2]) < float(heard[1][2]) < 4.4  # type: ignore[arg-type]
    assert await lab.rows(
        select(call_tags.c.call_id, call_tags.c.tag, call_tags.c.automatic).order_by(
            call_tags.c.tag
        )
    ) == [
        (good, "callback", True),
        (good, "lead", True),
    ]
    assert lab.sample("calltrack_speech_calls_total", {"outcome": "analysed"}) == 2
    assert lab.sample("calltrack_speech_calls_total", {"outcome": "failed"}) == 1
    assert lab.sample("calltrack_speech_backlog") == 0
    await worker.analyse_pending()  # nothing is analysed twice
    assert lab.sample("calltrack_speech_calls_total", {"outcome": "analysed"}) == 2


async def test_a_file_that_kills_its_worker_is_given_up_after_a_few_attempts(lab: Lab) -> None:
    (lab.folder / "x.mp3").write_bytes(b"whatever")
    call = await lab.call("x", "x.mp3")
    worker = lab.worker(always_dies)
    for _ in range(MAX_ATTEMPTS + 1):
        await worker.analyse_pending()
    ((error,),) = await lab.rows(select(call_speech.c.error).where(call_speech.c.call_id == call))
    assert "crashed its worker process" in str(error)
    assert await lab.store.pending(None, 10) == []


async def test_a_crash_beside_the_analysis_is_not_charged_to_its_call(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that died while another ran beside it failed both; each call was charged a
    crash, and an innocent one was marked failed for good after MAX_ATTEMPTS of them."""
    (lab.folder / "x.mp3").write_bytes(b"whatever")
    call = await lab.call("x", "x.mp3")
    worker = lab.worker(says_when)
    real = worker.pool.run
    beside = MAX_ATTEMPTS + 2

    async def dies_beside_another(*args: object) -> object:
        nonlocal beside
        if beside:
            beside -= 1
            raise WorkerCrashed("the speech worker process died", alone=False)
        return await real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(worker.pool, "run", dies_beside_another)
    await worker.analyse_pending()
    ((transcript, error),) = await lab.rows(
        select(call_speech.c.transcript, call_speech.c.error).where(call_speech.c.call_id == call)
    )
    assert error is None and transcript


def interrupted_once(folder: Path, name: str, speech: Speech) -> SpeechResult:
    """ffmpeg could not start for want of memory, the first time (as audio._run says it)."""
    marker = folder / ".interrupted-once"
    if not marker.exists():
        marker.touch()
        raise SpeechInterrupted("ffprobe could not start: [Errno 12] Cannot allocate memory", True)
    return SpeechResult(transcript="fine")


async def test_an_analysis_interrupted_by_the_machine_is_tried_again_not_failed(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ffmpeg that could not start (ENOMEM), was killed (the OOM killer) or ran out of time on
    a loaded machine was a SpeechFailed: the call was marked failed for good, never analysed."""
    monkeypatch.setattr(job_pool, "TRANSIENT_RETRY_FIRST", 0.01)
    (lab.folder / "x.mp3").write_bytes(b"whatever")
    call = await lab.call("x", "x.mp3")
    worker = lab.worker(interrupted_once)
    for _ in range(3):
        await worker.analyse_pending()
        await asyncio.sleep(0.05)
    ((transcript, error),) = await lab.rows(
        select(call_speech.c.transcript, call_speech.c.error).where(call_speech.c.call_id == call)
    )
    assert (transcript, error) == ("fine", None)


@pytest.mark.parametrize(
    ("outcome", "transient"),
    [
        (OSError(errno.ENOMEM, "Cannot allocate memory"), True),
        (OSError(errno.EAGAIN, "Resource temporarily unavailable"), True),
        (subprocess.TimeoutExpired("ffmpeg", 600), False),
        (subprocess.CompletedProcess(["ffmpeg"], -9, b"", b""), False),
    ],
    ids=["no-memory", "no-process", "timeout", "killed"],
)
def test_ffmpeg_stopped_by_the_machine_is_an_interruption_not_the_files_fault(
    monkeypatch: pytest.MonkeyPatch, outcome: object, transient: bool
) -> None:
    def run(*_args: object, **_kwargs: object) -> object:
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(audio.subprocess, "run", run)
    with pytest.raises(SpeechInterrupted) as caught:
        audio.channels(Path("/tmp/x.mp3"))
    assert caught.value.transient is transient
    assert job_pool.passes_by_itself(caught.value) is transient


@pytest.mark.parametrize(
    "done",
    [
        subprocess.CompletedProcess(["ffprobe"], 1, b"", b"x.mp3: Invalid data found\n"),
        subprocess.CompletedProcess(["ffprobe"], -11, b"", b""),  # its decoder crashed on it
    ],
    ids=["refused", "crashed"],
)
def test_a_file_ffmpeg_cannot_read_is_still_the_files_fault(
    monkeypatch: pytest.MonkeyPatch, done: subprocess.CompletedProcess[bytes]
) -> None:
    monkeypatch.setattr(audio.subprocess, "run", lambda *_a, **_k: done)
    with pytest.raises(SpeechFailed):
        audio.channels(Path("/tmp/x.mp3"))


def always_out_of_time(folder: Path, name: str, speech: Speech) -> SpeechResult:
    raise SpeechInterrupted("ffmpeg ran out of time (600 s)")


async def test_a_file_that_always_runs_out_of_time_is_marked_failed_after_a_few_tries(
    lab: Lab,
) -> None:
    """Retried on every start for ever, each try costing 600 s of a worker, its backlog
    never reaching 0."""
    (lab.folder / "x.mp3").write_bytes(b"whatever")
    call = await lab.call("x", "x.mp3")
    worker = lab.worker(always_out_of_time)
    for _ in range(MAX_ATTEMPTS + 1):
        await worker.analyse_pending()
    ((error,),) = await lab.rows(select(call_speech.c.error).where(call_speech.c.call_id == call))
    assert error == f"ffmpeg ran out of time (600 s), {MAX_ATTEMPTS} times"
    assert await lab.store.pending(None, 10) == []


async def test_a_conversion_nudges_the_speech_worker(lab: Lab) -> None:
    wav = lab.folder / "call.wav"
    speak(UNRELATED_TEXT, wav)
    old = wav.stat().st_mtime - 60
    os.utime(wav, (old, old))
    await lab.call("call", wav.name)
    recordings = RecordingWorker(lab.calls, lab.settings, lab.metrics, lab.clock)
    nudged: list[int] = []
    recordings.on_converted(lambda: nudged.append(1))
    try:
        await recordings.convert_pending()
    finally:
        recordings.pool.close()
    assert nudged == [1]
    assert [name for _id, name in await lab.store.pending(None, 10)] == ["call.mp3"]


async def ran_at(lab: Lab, call: int) -> float:
    ((transcript,),) = await lab.rows(
        select(call_speech.c.transcript).where(call_speech.c.call_id == call)
    )
    return float(str(transcript))


async def test_an_analysis_waits_for_a_moment_without_calls_stored(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(speech_worker, "QUIET", 1.0)
    (lab.folder / "a.mp3").write_bytes(b"audio")
    call = await lab.call("a", "a.mp3")
    stored = time.monotonic()
    await lab.worker(says_when, lambda: stored).analyse_pending()
    assert await ran_at(lab, call) >= stored + 1.0, "not while calls are being stored"


async def test_a_line_that_is_never_quiet_is_still_analysed_after_max_defer(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(speech_worker, "QUIET", 60.0)
    monkeypatch.setattr(speech_worker, "MAX_DEFER", 0.5)
    for name in ("a", "b"):
        (lab.folder / f"{name}.mp3").write_bytes(b"audio")
        await lab.call(name, f"{name}.mp3")
    began = time.monotonic()
    await lab.worker(says_when, time.monotonic).analyse_pending()  # a call stored every moment
    finished = time.monotonic()
    assert finished - began < 30, "the wait is capped"
    assert finished - began >= 0.5
    assert lab.sample("calltrack_speech_calls_total", {"outcome": "analysed"}) == 2


async def test_after_a_capped_wait_the_worker_waits_again_once_it_was_idle(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(speech_worker, "QUIET", 1.0)
    monkeypatch.setattr(speech_worker, "MAX_DEFER", 0.4)
    worker = lab.worker(says_when, time.monotonic)  # a call stored every moment
    (lab.folder / "a.mp3").write_bytes(b"audio")
    await lab.call("a", "a.mp3")
    await worker.analyse_pending()  # waits the whole cap, then goes on
    await asyncio.sleep(1.1)  # idle for QUIET: its backlog was done
    (lab.folder / "b.mp3").write_bytes(b"audio")
    b = await lab.call("b", "b.mp3")
    began = time.monotonic()
    await worker.analyse_pending()
    assert await ran_at(lab, b) >= began + 0.4, "it waits for a quiet moment again"


async def test_a_daemon_that_stands_by_while_waiting_for_a_quiet_moment_analyses_nothing(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue checks that its daemon stores the calls before it starts a job, but the job
    then waits up to MAX_DEFER for a quiet moment; a daemon that stepped down meanwhile still
    analysed the recording, which the daemon now active analysed too."""
    monkeypatch.setattr(speech_worker, "QUIET", 0.5)
    active = True
    stored = time.monotonic()

    def last_call_stored() -> float:
        nonlocal active
        active = False  # the consumer lock lost while the job waits for calls to stop
        return stored

    (lab.folder / "a.mp3").write_bytes(b"audio")
    call = await lab.call("a", "a.mp3")
    worker = SpeechWorker(
        lab.store, lab.settings, lab.metrics, lab.clock, says_when, last_call_stored, lambda: active
    )
    lab.workers.append(worker)
    await worker.analyse_pending()
    assert await lab.rows(select(call_speech.c.call_id).where(call_speech.c.call_id == call)) == []
    assert lab.sample("calltrack_speech_calls_total", {"outcome": "analysed"}) is None
