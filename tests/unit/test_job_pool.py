"""A daemon killed without a word (SIGKILL, the OOM killer) leaves no worker process behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pbx.tasks import cancel_and_wait

REPO = Path(__file__).resolve().parents[2]

#: a daemon's pool: a worker started through the fork server, then the daemon killed
DAEMON = """
import asyncio, os, sys
from pbx.job_pool import JobPool

async def main():
    pool = JobPool(1, "test", preload=sys.argv[1:])
    print(await pool.run(os.getpid), await pool.run(os.getppid), flush=True)
    os.kill(os.getpid(), 9)

asyncio.run(main())
"""


def running(pid: int) -> bool:
    """Whether the process runs (a zombie waiting for its parent to reap it does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.mark.parametrize("preload", [["os"], ["tests.no_pidfd"]], ids=["pidfd", "no-pidfd"])
def test_the_worker_and_the_fork_server_end_with_the_daemon(
    tmp_path: Path, preload: list[str]
) -> None:
    out = tmp_path / "pids"
    argv = [sys.executable, "-c", DAEMON, *preload]
    with out.open("w") as stdout:  # a file: an orphan holding a pipe would keep run() waiting
        daemon = subprocess.run(argv, cwd=REPO, stdout=stdout, timeout=60)
    assert daemon.returncode == -signal.SIGKILL
    worker, fork_server = (int(pid) for pid in out.read_text().split())
    try:
        deadline = time.monotonic() + 10
        while (running(worker) or running(fork_server)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(worker), "the worker outlived the daemon"
        assert not running(fork_server), "the fork server outlived the daemon"
    finally:
        for pid in (worker, fork_server):  # an orphan left by a failure
            if running(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


async def test_a_dying_worker_is_blamed_on_its_own_job_not_the_one_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a worker dies the executor fails every job it runs; each was charged a crash and
    run again at once beside the same file, so an innocent call was marked failed for good
    after three. Now the jobs beside a crash run again alone: the one that crashes alone is
    charged, the others are done."""
    from pbx import job_pool
    from pbx.job_pool import JobPool, JobQueue
    from tests import crash_jobs

    pool = JobPool(2, "test", preload=["tests.crash_jobs"])
    waiting = {1: "good", 2: "poison", 3: "good"}
    marker = str(tmp_path / "good-started")
    done: dict[int, str] = {}

    async def fetch(after: int | None, limit: int) -> list[tuple[int, str]]:
        return [(i, kind) for i, kind in sorted(waiting.items()) if after is None or i > after][
            :limit
        ]

    async def handle(row_id: int, kind: str) -> float | None:
        job = crash_jobs.good_job if kind == "good" else crash_jobs.poison_job
        done[row_id] = await pool.run(job, marker)
        return None

    queue = JobQueue("test job", pool, fetch, handle, max_attempts=3)
    # on a loaded machine CPython 3.11's fork server itself can die (EOFError in recvfds, seen
    # in CI) and the next worker cannot start: a transient error, tried again later as in the
    # daemon, which is not what this test is about; later here means a moment
    monkeypatch.setattr(job_pool, "TRANSIENT_RETRY_FIRST", 0.2)
    try:
        await pool.run(os.getpid)  # the fork server up before the jobs race
        await queue.read(everything=True)
        async with asyncio.timeout(60):
            for _retry in range(20):  # each drain, then the retry it says is due
                wait = await queue.drain()
                if wait is None:
                    break
                await asyncio.sleep(wait)
    finally:
        pool.close()
    assert done == {1: "fine", 3: "fine"}
    assert queue._attempts == {2: 3}, "only the file that crashes its worker alone is charged"


#: a daemon stopping while its pool runs a long job (an analysis, a hung ffmpeg)
STOPPING_MID_JOB = """
import asyncio, time
from pbx.job_pool import JobPool

async def main():
    pool = JobPool(1, "test", preload=["time"])
    job = asyncio.create_task(pool.run(time.sleep, 60))
    await asyncio.sleep(2)  # under way
    job.cancel()  # the daemon stops: its tasks cancelled, then the pool closed
    await asyncio.gather(job, return_exceptions=True)
    pool.close()

asyncio.run(main())
"""


def test_a_daemon_stopping_does_not_wait_for_the_job_under_way() -> None:
    """Python waits at exit for the executor, which waited for its running job: a daemon told
    to stop waited up to the job's end, and systemd killed it after TimeoutStopSec."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", STOPPING_MID_JOB], cwd=REPO, timeout=120, check=True)
    assert time.monotonic() - started < 15


async def test_a_standby_daemons_queue_waits_until_it_is_the_one_to_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Several daemons on one database each swept and converted the whole backlog: N times
    the ffmpeg work, and the loser of each race counted a failure."""
    from pbx import job_pool
    from pbx.job_pool import JobPool, JobQueue

    monkeypatch.setattr(job_pool, "STANDBY_LOOK_EVERY", 0.05)
    standby = True
    fetched: list[int | None] = []
    done: list[int] = []
    finished = asyncio.Event()

    async def fetch(after: int | None, limit: int) -> list[tuple[int, str]]:
        fetched.append(after)
        return [(1, "job")] if after is None and not done else []

    async def handle(row_id: int, _job: str) -> float | None:
        done.append(row_id)
        finished.set()
        return None

    queue = JobQueue("test job", JobPool(1, "test"), fetch, handle, active=lambda: not standby)
    running = asyncio.create_task(queue.run())
    try:
        await asyncio.sleep(0.3)
        queue.nudge()
        await asyncio.sleep(0.1)
        assert fetched == [] and done == [], "a standby reads nothing"
        standby = False  # this daemon took over
        async with asyncio.timeout(5):
            await finished.wait()
        assert done == [1] and fetched[0] is None, "and then reads everything first"
    finally:
        await cancel_and_wait(running)


class _FakePool:
    """Two workers; the poison job kills its worker, and the executor fails every job it runs
    with it (WorkerCrashed, alone when it ran alone)."""

    workers = 2
    closed = False

    def __init__(self, poison: int) -> None:
        self.poison = poison
        self.running: set[int] = set()
        self.beside_poison: list[int] = []  # the jobs that ran beside it
        self.died_with: int | None = None  # how many jobs the worker that died ran

    async def run(self, row_id: int) -> str:
        from pbx.job_pool import WorkerCrashed

        self.running.add(row_id)
        if self.poison in self.running and len(self.running) > 1:
            self.beside_poison += [i for i in self.running if i != self.poison]
        try:
            await asyncio.sleep(0.05)
            if self.poison in self.running:
                if self.died_with is None:  # as the pool counts: at the first to notice
                    self.died_with = len(self.running)
                alone = self.died_with == 1
                raise WorkerCrashed("the test worker process died", alone=alone)
            return "fine"
        finally:
            self.running.discard(row_id)
            if not self.running:
                self.died_with = None


async def test_a_job_charged_with_a_crash_never_runs_beside_another_again() -> None:
    """After its first charged crash the poison job was no longer a suspect, and each later
    run of it beside another job took that job down with it."""
    from pbx.job_pool import JobQueue

    pool = _FakePool(poison=3)
    rows = {1: "good", 2: "good", 3: "poison", 4: "good"}
    done: list[int] = []

    async def fetch(after: int | None, limit: int) -> list[tuple[int, str]]:
        return [(i, job) for i, job in sorted(rows.items()) if after is None or i > after][:limit]

    async def handle(row_id: int, _job: str) -> float | None:
        await pool.run(row_id)
        done.append(row_id)
        return None

    queue = JobQueue("test job", pool, fetch, handle, max_attempts=3)  # type: ignore[arg-type]
    await queue.read(everything=True)
    async with asyncio.timeout(10):
        await queue.drain()
    assert sorted(done) == [1, 2, 4]
    assert queue._attempts == {3: 3}
    assert pool.beside_poison == [4], "beside another job only before it was suspected"


async def test_a_consumer_that_steps_down_starts_no_new_job() -> None:
    from pbx.job_pool import JobPool, JobQueue

    active = True
    started: list[int] = []

    async def fetch(after: int | None, limit: int) -> list[tuple[int, str]]:
        return [(i, "job") for i in (1, 2, 3) if after is None or i > after][:limit]

    async def handle(row_id: int, _job: str) -> float | None:
        nonlocal active
        started.append(row_id)
        active = False  # the lock lost with the database during the first job
        return None

    queue = JobQueue("test job", JobPool(1, "test"), fetch, handle, active=lambda: active)
    await queue.read(everything=True)
    await queue.drain()
    assert started == [3]


async def test_a_closed_pool_starts_no_job_and_a_cancelled_drain_stops_its_jobs() -> None:
    """After close() (the daemon stopping) a job that woke up started a new executor that no
    one stopped, and the daemon waited for it at exit; a cancelled drain left its jobs running."""
    from pbx.job_pool import JobPool, JobQueue, PoolClosed

    pool = JobPool(1, "test")
    pool.close()
    with pytest.raises(PoolClosed):
        await pool.run(os.getpid)
    assert pool._executor is None

    running = asyncio.Event()
    stopped = asyncio.Event()

    async def fetch(after: int | None, limit: int) -> list[tuple[int, str]]:
        return [(1, "job")] if after is None else []

    async def handle(_row_id: int, _job: str) -> float | None:
        running.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()
        return None

    queue = JobQueue("test job", JobPool(1, "test"), fetch, handle)
    await queue.read(everything=True)
    draining = asyncio.create_task(queue.drain())
    await running.wait()
    await cancel_and_wait(draining)
    assert stopped.is_set()
    assert queue._ready == [-1], "still to do, by the next run"


class _Workers:
    """What JobQueue reads of a pool: how many jobs at once, and whether it is closed."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.closed = False


async def test_a_queue_whose_database_is_away_reads_again_after_a_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failed read was tried again at once: 40,000 reads (and warnings) a second for as long
    as the database was away. Now after READ_RETRY_FIRST, doubling; then the rows run."""
    from pbx import job_pool
    from pbx.job_pool import JobQueue

    monkeypatch.setattr(job_pool, "READ_RETRY_FIRST", 0.3)
    reads = 0
    away = True
    done: list[int] = []

    async def fetch(after: int | None, limit: int) -> list[tuple[int, str]]:
        nonlocal reads
        reads += 1
        if away:
            raise ConnectionRefusedError("the database is away")
        return [(1, "job")] if after is None else []

    async def handle(row_id: int, _job: str) -> float | None:
        done.append(row_id)
        return None

    queue = JobQueue("test job", _Workers(1), fetch, handle)  # type: ignore[arg-type]
    running = asyncio.create_task(queue.run())
    try:
        await asyncio.sleep(0.6)  # reads at 0, 0.3 and 0.9 s: two so far
        assert reads == 2
        away = False
        await asyncio.sleep(0.7)  # the read at 0.9 s finds the database back
        assert reads == 3 and done == [1]
    finally:
        await cancel_and_wait(running)


async def test_news_that_cannot_be_read_leaves_the_jobs_running_alone() -> None:
    """drain() read the news its nudge brought; when that read failed, the exception left
    drain and cancelled every job it was running (the worker went on with it, uncounted, and
    the job ran again later)."""
    from pbx.job_pool import JobQueue

    release = asyncio.Event()
    finished: list[int] = []
    reads = 0

    async def fetch(after: int | None, limit: int) -> list[tuple[int, str]]:
        nonlocal reads
        reads += 1
        if reads > 1:
            raise ConnectionRefusedError("the database is away")
        return [(1, "long"), (2, "short")]

    async def handle(row_id: int, job: str) -> float | None:
        if job == "long":
            await release.wait()
        else:
            await asyncio.sleep(0.1)
        finished.append(row_id)
        return None

    queue = JobQueue("test job", _Workers(2), fetch, handle)  # type: ignore[arg-type]
    await queue.read(everything=True)
    draining = asyncio.create_task(queue.drain())
    await asyncio.sleep(0.05)
    queue.nudge()  # a new row, which cannot be read
    await asyncio.sleep(0.2)  # the short job ends meanwhile
    release.set()
    with pytest.raises(ConnectionRefusedError):  # for run() to read again later
        async with asyncio.timeout(5):
            await draining
    assert sorted(finished) == [1, 2], "the long job went on to its end"


async def test_news_takes_a_free_worker_while_a_long_job_runs() -> None:
    """drain() waited for one of its running jobs to end before it looked at news: a recording
    converted during a minutes-long speech analysis waited that long beside a free worker."""
    from pbx.job_pool import JobQueue

    rows = [1]
    release = asyncio.Event()
    started: list[int] = []

    async def fetch(after: int | None, limit: int) -> list[tuple[int, str]]:
        return [(i, "job") for i in rows if after is None or i > after]

    async def handle(row_id: int, _job: str) -> float | None:
        started.append(row_id)
        if row_id == 1:
            await release.wait()
        return None

    queue = JobQueue("test job", _Workers(2), fetch, handle)  # type: ignore[arg-type]
    await queue.read(everything=True)
    draining = asyncio.create_task(queue.drain())
    try:
        await asyncio.sleep(0.05)
        rows.append(2)
        queue.nudge()
        await asyncio.sleep(0.2)
        assert started == [1, 2], "the new row on the free worker, the long job still running"
    finally:
        release.set()
        async with asyncio.timeout(5):
            await draining


async def test_rows_the_database_no_longer_holds_are_forgotten_at_a_full_read() -> None:
    """A daemon that stood by kept the rows it had queued before and, active again, ran them
    though the other daemon had done them meanwhile; the attempts of rows failed for good were
    kept for the process's life."""
    from pbx.job_pool import JobQueue

    rows = {1: "ok", 2: "fails", 3: "ok"}
    done: list[int] = []

    async def fetch(after: int | None, limit: int) -> list[tuple[int, str]]:
        return [(i, job) for i, job in sorted(rows.items()) if after is None or i > after]

    async def handle(row_id: int, job: str) -> float | None:
        if job == "fails":
            raise ValueError("no audio in the file")
        done.append(row_id)
        del rows[row_id]  # no longer waiting
        return None

    queue = JobQueue("test job", _Workers(1), fetch, handle, max_attempts=1)  # type: ignore[arg-type]
    await queue.read(everything=True)
    assert sorted(queue._jobs) == [1, 2, 3]
    del rows[1], rows[3]  # done by the other daemon; row 2 marked failed there
    rows[4] = "ok"
    await queue.read(everything=True)
    await queue.drain()
    assert done == [4], "neither 1 nor 3 again"
    assert queue._attempts == {2: 1}
    del rows[2]  # gone from the waiting rows (failed for good, or removed by retention)
    await queue.read(everything=True)
    assert queue._attempts == {} and queue._jobs == {}


async def test_a_worker_that_cannot_start_is_tried_again_soon_without_an_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the fork server died (EOFError from multiprocessing's recvfds, seen in CI), submit
    raised: an EOFError counted an attempt against the call and an OSError waited 30 s, and
    the executor kept the job queued, to run it unawaited beside the next one."""
    from concurrent.futures import ProcessPoolExecutor

    from pbx import job_pool
    from pbx.job_pool import JobPool, JobQueue

    real_submit = ProcessPoolExecutor.submit
    refused: list[ProcessPoolExecutor] = []

    def submit(self: ProcessPoolExecutor, fn: object, /, *args: object) -> object:
        if not refused:  # the first spawn meets a dead fork server
            refused.append(self)
            raise EOFError("unexpected EOF")
        return real_submit(self, fn, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ProcessPoolExecutor, "submit", submit)
    monkeypatch.setattr(job_pool, "WORKER_RETRY_FIRST", 0.1)
    pool = JobPool(1, "test")
    done: list[int] = []

    async def fetch(after: int | None, limit: int) -> list[tuple[int, str]]:
        return [(1, "job")] if after is None else []

    async def handle(row_id: int, _job: str) -> float | None:
        done.append(await pool.run(os.getpid))
        return None

    queue = JobQueue("test job", pool, fetch, handle, max_attempts=1)
    try:
        await queue.read(everything=True)
        async with asyncio.timeout(30):
            wait = await queue.drain()
            assert wait is not None and wait <= 0.1 and not done
            await asyncio.sleep(wait)
            assert await queue.drain() is None
    finally:
        pool.close()
    assert len(done) == 1 and done[0] != os.getpid(), "run in a worker, once"
    assert queue._attempts == {}, "no attempt counted"
    assert refused[0] is not pool._executor, "the executor holding the refused job was dropped"


#: a daemon stopping while its first job's worker is being started (the fork server still
#: importing the jobs' modules): the job cancelled, then the pool closed
STOPPING_EARLY = """
import asyncio, contextlib, sys
from pbx.job_pool import JobPool
from tests import slow_import

async def main():
    pool = JobPool(1, "test", preload=["tests.slow_import"])
    job = asyncio.create_task(pool.run(slow_import.slow_job, sys.argv[1], 30.0))
    await asyncio.sleep(0.5)
    job.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await job
    pool.close()

asyncio.run(main())
"""


def test_a_pool_closed_while_its_first_worker_starts_leaves_no_job_running(tmp_path: Path) -> None:
    """close() looked for the workers to stop before the one being started was there: that
    worker then ran its job, and the daemon's exit waited for it to end (30 s here)."""
    marker = tmp_path / "started"
    began = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", STOPPING_EARLY, str(marker)],
        cwd=REPO,
        env={**os.environ, "CALLTRACK_TEST_SLOW_IMPORT": "2"},
        timeout=60,
        check=True,
    )
    assert time.monotonic() - began < 15, "the exit waited for the job"


#: a job running alone while the fork server is killed (the OOM killer's choice): whether the
#: pool blames it, and whether the next job still runs in a worker
SERVER_KILLED = """
import asyncio, os, signal, sys, time
from multiprocessing import forkserver
from pbx.job_pool import JobPool, WorkerCrashed, WorkerNotStarted
from tests import slow_import

async def main():
    marker = sys.argv[1]
    pool = JobPool(1, "test", preload=["tests.slow_import"])
    await pool.run(os.getpid)  # the fork server up
    job = asyncio.create_task(pool.run(slow_import.slow_job, marker, 30.0))
    while not os.path.exists(marker):
        await asyncio.sleep(0.05)
    os.kill(forkserver._forkserver._forkserver_pid, signal.SIGKILL)
    try:
        await job
    except WorkerCrashed as crash:
        print("alone" if crash.alone else "not alone", flush=True)
    for _attempt in range(20):  # as the queue does: the server may not be reapable yet
        try:
            pid = await pool.run(os.getpid)
            break
        except WorkerNotStarted:
            await asyncio.sleep(0.25)
    print("next job in a worker:", pid != os.getpid(), flush=True)
    pool.close()

asyncio.run(main())
"""


def test_a_dead_fork_server_is_not_blamed_on_the_job_running_alone(tmp_path: Path) -> None:
    """Every worker's "alive" pipe is the fork server's: when it died the pool broke as if the
    worker had, and the job running alone was charged a crash (one of its three) for it."""
    out = subprocess.run(
        [sys.executable, "-c", SERVER_KILLED, str(tmp_path / "started")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert out == ["not alone", "next job in a worker: True"], out
