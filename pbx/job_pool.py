"""Heavy per-call work (recording conversion; later speech) in worker processes, fed from the
database.

Storing a call must never wait for audio work: at 50 calls/s the event loop's process has no CPU
to spare, and a thread would still share its GIL. So the work runs in a small
ProcessPoolExecutor (`JobPool`), and what is to do is read from the database (`JobQueue`: the
rows still waiting), so nothing is lost across restarts and nothing waits in memory that the
database does not also say. A worker that dies (a crash in ffmpeg's decoder, the OOM killer)
breaks the executor; the pool starts a new one and the job is tried again, a few times at most.
The executor fails every job it was running, and only a job that was running alone is charged
the crash: the others run again alone to find out (WorkerCrashed.alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import multiprocessing
import os
import select
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import forkserver
from typing import Generic, ParamSpec, TypeVar

from pbx.storage.errors import is_transient, log_failure
from pbx.tasks import cancel_and_wait

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


_preloaded: set[str] = set()


def exit_with(daemon_pid: int) -> None:
    """A worker's initializer: the worker ends when the daemon that made its pool ends.

    A worker waits on its task queue, whose write end it holds too (multiprocessing gives a
    child both ends of a queue), so it never saw a daemon killed without a word (SIGKILL, the
    OOM killer, a test's takeover) go: it waited forever, and so did the fork server, whose
    "alive" pipe each worker holds. A pidfd becomes readable when its process ends (Linux 5.3);
    without one (another system, a seccomp filter) the daemon is looked for every second. An
    initializer that raised would break every pool, so neither way raises."""
    try:
        daemon: int | None = os.pidfd_open(daemon_pid)
    except ProcessLookupError:  # gone already
        os._exit(0)
    except (AttributeError, OSError):
        daemon = None

    def wait() -> None:
        if daemon is not None:
            ended = select.poll()
            ended.register(daemon, select.POLLIN)
            ended.poll()
        else:
            while _running(daemon_pid):
                time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=wait, name="exit-with-daemon", daemon=True).start()


async def _fork_server_died() -> bool:
    """Whether multiprocessing's fork server has ended (the OOM killer's choice, a crash): the
    pool breaks as if every worker had died, and the job running alone is not to blame. Asked
    without reaping it (WNOWAIT): multiprocessing reaps it, and starts a new one, at the next
    worker's start. A process that ends closes its pipes before it can be waited for, so the
    pool may notice first: it is asked for FORK_SERVER_EXIT seconds (a worker's crash, the
    server alive, waits that long)."""
    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if pid is None:
        return False
    deadline = time.monotonic() + FORK_SERVER_EXIT
    while True:
        try:
            # WNOHANG: it answers at once, waiting is the asyncio.sleep below
            ended = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)  # noqa: ASYNC222
            if ended is not None:
                return True
        except ChildProcessError:  # reaped already
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.02)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal: only whether it can be sent
    except OSError:  # no such process, or another user's that took the pid since
        return False
    return True


#: a job that failed for a reason that passes (the database away or full, the disk full) is
#: tried again after this many seconds, doubling up to TRANSIENT_RETRY_MAX, without counting
#: an attempt: after an outage every waiting job goes on, with no restart needed
TRANSIENT_RETRY_FIRST = 30.0
#: a queue of a standby daemon looks this often whether it has become the one to work
STANDBY_LOOK_EVERY = 5.0
TRANSIENT_RETRY_MAX = 600.0
#: a job whose worker could not be started is tried again after this many seconds, doubling up
#: to TRANSIENT_RETRY_FIRST: the fork server that died is started again by the next spawn, once
#: its parent can reap it
WORKER_RETRY_FIRST = 0.5
#: how long a broken pool waits to learn whether the fork server, not a worker, died
FORK_SERVER_EXIT = 0.5
#: a queue that could not read its rows (the database away) reads them all again after this
#: many seconds, doubling up to its sweep_every
READ_RETRY_FIRST = 5.0


class JobFailed(Exception):
    """A job's own failure (recordings.files.ConversionFailed, a SpeechInterrupted):
    `transient` when it passes by itself (a full disk, no memory for a moment), so the queue
    waits it out without counting an attempt.

    Both are in `args`: the exception comes back pickled from the worker process."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message, transient)

    @property
    def transient(self) -> bool:
        return bool(self.args[1])

    def __str__(self) -> str:
        return str(self.args[0])


def passes_by_itself(error: Exception) -> bool:
    """A database failure that passes (storage.errors.is_transient), or a job's own failure
    that says it does (JobFailed.transient)."""
    return is_transient(error) or (isinstance(error, JobFailed) and error.transient)


class WorkerCrashed(Exception):
    """The worker process running the job died; the pool has been renewed.

    `alone`: the job was the only one the pool was running. When a worker dies, the executor
    fails every job it was running, and which of them killed it is not known: a job that was
    not alone is not to blame (JobQueue runs it again alone to find out). Blamed, an innocent
    call beside a file that crashes its decoder (or beside a worker the OOM killer chose) was
    marked failed for good after three such crashes."""

    def __init__(self, message: str, alone: bool) -> None:
        super().__init__(message, alone)

    @property
    def alone(self) -> bool:
        return bool(self.args[1])

    def __str__(self) -> str:
        return str(self.args[0])


class PoolClosed(Exception):
    """The pool was closed (the daemon stopping): no job starts any more."""


class WorkerNotStarted(Exception):
    """No worker process could be started for the job (multiprocessing's fork server died,
    under memory pressure for one): not the job's fault, and the pool is renewed. The queue
    tries the job again after a moment (WORKER_RETRY_FIRST), counting no attempt."""


class JobPool:
    """At most `workers` processes; `run` awaits a job without blocking the event loop.

    Workers are forked from multiprocessing's fork server, not from the daemon: the daemon has
    threads (SQLite, the watchdog) whose locks a fork would copy in whatever state they are in.
    The server is a fresh process that imports `preload` (the jobs' modules) once, so a new
    worker (at start, after a crash) is ready in milliseconds instead of importing them again.
    """

    def __init__(self, workers: int, name: str, preload: Sequence[str] = ()) -> None:
        self.workers = workers
        self._name = name
        self._executor: ProcessPoolExecutor | None = None
        self._running = 0  # jobs submitted to the current executor and not finished
        self._broken_with = 0  # how many the last executor to die was running
        self._closed = False
        # one fork server per daemon, started by the first pool to run a job: it preloads the
        # union of what every pool made so far needs (the daemon makes its pools at start-up)
        _preloaded.update(preload)

    def _current(self) -> ProcessPoolExecutor:
        if self._executor is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(sorted(_preloaded))
            self._executor = ProcessPoolExecutor(
                self.workers,
                mp_context=context,
                initializer=exit_with,
                initargs=(os.getpid(),),
            )
        return self._executor

    async def run(self, job: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        if self._closed:  # a job started after close() would start a worker no one stops
            raise PoolClosed(self._name)
        executor = self._current()
        self._running += 1
        try:
            # submitting may start a worker, and the first one the fork server, which imports
            # the preloaded modules before it answers (seconds): never in the event loop
            try:
                future = await asyncio.to_thread(executor.submit, job, *args, **kwargs)
            except BrokenProcessPool:
                raise
            except Exception as exc:
                # the worker could not be started (EOFError, ConnectionRefusedError, a broken
                # pipe: the fork server died). The executor keeps the job queued and would run
                # it, unawaited, beside the next one: that executor is done with
                if self._executor is executor:
                    self._renew(executor)
                log.error("could not start a %s worker process: %r", self._name, exc)
                raise WorkerNotStarted(f"no {self._name} worker process could start") from exc
            return await asyncio.wrap_future(future)
        except BrokenProcessPool as exc:
            if self._executor is executor:  # the first of its jobs to notice renews the pool
                self._renew(executor)
                if await _fork_server_died():  # every worker's "alive" pipe is the server's
                    self._broken_with = 0
                    log.error("the fork server of the %s workers died; starting anew", self._name)
                else:
                    log.error("a %s worker process died; starting a new one", self._name)
            raise WorkerCrashed(
                f"the {self._name} worker process died", alone=self._broken_with == 1
            ) from exc
        finally:
            if self._executor is executor:  # else a new one counts from 0
                self._running -= 1

    def _renew(self, executor: ProcessPoolExecutor) -> None:
        """Drop `executor` (the next job makes a new one), its queued jobs cancelled."""
        executor.shutdown(wait=False, cancel_futures=True)
        self._executor = None
        self._broken_with, self._running = self._running, 0

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop the workers, also one in the middle of a job: at exit Python waits for the
        executor, which waits for its running job (a long analysis, a hung ffmpeg), and a
        stopping daemon waited with it until systemd killed it."""
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is None:
            return
        # no public way to stop a running worker before Python 3.14's terminate_workers()
        processes = executor._processes if executor._processes is not None else {}
        for process in list(processes.values()):
            process.terminate()
        executor.shutdown(wait=False, cancel_futures=True)
        # a submit still in its thread was starting a worker (the fork server importing the
        # jobs' modules): shutdown waited for it, and it is in the dict only now
        for process in list(processes.values()):
            process.terminate()


Fetch = Callable[[int | None, int], Awaitable[Sequence[tuple[int, T]]]]
"""(after id, limit) -> the waiting rows with a greater id, in id order: (id, what to do)."""
Handle = Callable[[int, T], Awaitable[float | None]]
"""Does one job (through the pool); seconds until it may be tried again if it is not ready yet,
else None. Raises on failure: the job is counted as an attempt."""


class JobQueue(Generic[T]):
    """The waiting rows of one kind of job, run newest first, at most `pool.workers` at a time.

    New rows are read after a `nudge` (only ids past the last one seen: no rescan of a backlog
    per call) and all of them on every `sweep_every`, which retries the failed ones. A job that
    failed or whose worker died is tried `max_attempts` times per process at most. While
    `active()` is false (a standby daemon: another one stores the calls and does their work)
    the queue only waits: several daemons each converting the whole backlog did it N times.
    """

    def __init__(
        self,
        name: str,
        pool: JobPool,
        fetch: Fetch[T],
        handle: Handle[T],
        *,
        max_attempts: int = 3,
        sweep_every: float = 300.0,
        batch: int = 500,
        active: Callable[[], bool] = lambda: True,
    ) -> None:
        self._name = name
        self._active = active
        self._pool = pool
        self._fetch = fetch
        self._handle = handle
        self._max_attempts = max_attempts
        self._sweep_every = sweep_every
        self._batch = batch
        self._jobs: dict[int, T] = {}  # known and not done: ready, waiting or running
        self._ready: list[int] = []  # heap of -id: newest first
        self._waiting: list[tuple[float, int]] = []  # heap of (monotonic time, id)
        self._attempts: dict[int, int] = {}
        self._retry_after: dict[int, float] = {}  # the next wait after a transient failure
        self._suspects: set[int] = set()  # running when a worker died: next run alone
        self._running_ids: set[int] = set()
        self._last_id: int | None = None
        self._news = asyncio.Event()

    def nudge(self) -> None:
        """A row may have been added: read the new ones."""
        self._news.set()

    async def read(self, everything: bool = False) -> None:
        """Queue the rows added since the last read, or all waiting rows (and look again at
        once at those not ready before, and forget those no longer waiting)."""
        after = None if everything else self._last_id
        waiting: set[int] = set()  # every row waiting in the database (when everything)
        while rows := await self._fetch(after, self._batch):
            for row_id, job in rows:
                waiting.add(row_id)
                if row_id in self._jobs or self._attempts.get(row_id, 0) >= self._max_attempts:
                    continue
                self._jobs[row_id] = job
                heapq.heappush(self._ready, -row_id)
            after = rows[-1][0]  # fetch gives id order
            self._last_id = after if self._last_id is None else max(self._last_id, after)
            if len(rows) < self._batch:
                break
        if everything:
            self._keep_only(waiting)

    def _keep_only(self, waiting: set[int]) -> None:
        """After a read of every waiting row: all of them are ready now, and what the database
        no longer holds is forgotten (done by another daemon while this one stood by, removed
        by retention, failed for good): neither run again nor kept for the process's life.
        A row due to be tried again stays, and is tried now: its last try may have done the
        work and lost the answer (a COMMIT cut off), and the next one finishes it (deletes
        the WAV the call no longer names)."""
        kept = waiting | self._running_ids | {row_id for _at, row_id in self._waiting}
        self._jobs = {row_id: job for row_id, job in self._jobs.items() if row_id in kept}
        self._waiting.clear()
        self._ready = [-row_id for row_id in self._jobs if row_id not in self._running_ids]
        heapq.heapify(self._ready)
        self._attempts = {k: n for k, n in self._attempts.items() if k in kept}
        self._retry_after = {k: t for k, t in self._retry_after.items() if k in kept}
        self._suspects &= kept

    async def drain(self) -> float | None:
        """Run every ready job, reading new rows as they are nudged (they go first); seconds
        until the next waiting one is ready, None if none."""
        running: set[asyncio.Task[None]] = set()
        alone: asyncio.Task[None] | None = None  # a suspect's run: nothing beside it
        unread: Exception | None = None  # news that could not be read: for run() to retry
        try:
            while True:
                if alone is not None and alone.done():
                    alone = None
                if self._news.is_set():
                    self._news.clear()
                    try:
                        await self.read()
                    except Exception as error:  # the database away: the jobs running go on
                        unread = error
                self._wake_waiting()
                while (
                    self._ready
                    and len(running) < self._pool.workers
                    and not alone
                    and not self._pool.closed
                ):
                    row_id = -self._ready[0]
                    if row_id in self._suspects and running:
                        break  # it runs alone once the others are done
                    if not self._active():  # stepped down meanwhile: the new consumer does it
                        break
                    heapq.heappop(self._ready)
                    task = asyncio.create_task(self._run(row_id))
                    running.add(task)
                    if row_id in self._suspects:
                        alone = task
                if not running:
                    break
                # until a job ends, news comes (a free worker takes it at once, not after the
                # longest job beside it) or a row waiting is due
                news = asyncio.ensure_future(self._news.wait())
                try:
                    await asyncio.wait(
                        {*running, news},
                        timeout=self._next_wait(),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    news.cancel()
                running = {task for task in running if not task.done()}
        finally:  # cancelled (the daemon stopping): its jobs too, not left to run on their own
            await cancel_and_wait(*running)
        if unread is not None:
            raise unread
        return self._next_wait()

    def _wake_waiting(self) -> None:
        now = time.monotonic()
        while self._waiting and self._waiting[0][0] <= now:
            heapq.heappush(self._ready, -heapq.heappop(self._waiting)[1])

    def _next_wait(self) -> float | None:
        return max(0.0, self._waiting[0][0] - time.monotonic()) if self._waiting else None

    async def _run(self, row_id: int) -> None:
        job = self._jobs[row_id]
        self._running_ids.add(row_id)
        try:
            await self._run_job(row_id, job)
        finally:
            self._running_ids.discard(row_id)

    async def _run_job(self, row_id: int, job: T) -> None:
        try:
            retry_in = await self._handle(row_id, job)
        except asyncio.CancelledError:
            heapq.heappush(self._ready, -row_id)  # still to do
            raise
        except PoolClosed:  # the daemon stopping: still to do, by its next run
            heapq.heappush(self._ready, -row_id)
            return
        except WorkerNotStarted:  # not its fault: again in a moment, no attempt counted
            self._retry_later(row_id, WORKER_RETRY_FIRST, TRANSIENT_RETRY_FIRST)
            return
        except WorkerCrashed as crash:
            if not crash.alone:  # not known to be its fault: again at once, alone
                self._suspects.add(row_id)
                log.warning(
                    "%s %d: a worker process died beside it; run again alone", self._name, row_id
                )
                heapq.heappush(self._ready, -row_id)
                return
            # charged; it stays a suspect, so its next run is alone too (beside another job it
            # would take that one down with it)
            if self._failed(row_id, "its worker process died"):
                heapq.heappush(self._ready, -row_id)  # at once: the pool is new
                return
        except Exception as exc:
            if passes_by_itself(exc):
                wait = self._retry_later(row_id, TRANSIENT_RETRY_FIRST, TRANSIENT_RETRY_MAX)
                log.warning(
                    "%s %d not done, tried again in %g s: %s",
                    self._name,
                    row_id,
                    wait,
                    str(exc) or type(exc).__name__,
                )
                return
            self._failed(row_id, str(exc) or type(exc).__name__)
        else:
            if retry_in is not None:
                heapq.heappush(self._waiting, (time.monotonic() + retry_in, row_id))
                return
            self._attempts.pop(row_id, None)
        self._suspects.discard(row_id)
        self._retry_after.pop(row_id, None)
        del self._jobs[row_id]  # done, or failed: the next sweep reads it again

    def _retry_later(self, row_id: int, first: float, most: float) -> float:
        """Put `row_id` back to wait, `first` seconds the first time and twice as long each
        time after (at most `most`), counting no attempt; returns the wait."""
        wait = self._retry_after.get(row_id, first)
        self._retry_after[row_id] = min(2 * wait, most)
        heapq.heappush(self._waiting, (time.monotonic() + wait, row_id))
        return wait

    def _failed(self, row_id: int, reason: str) -> bool:
        """Count an attempt; whether another one is allowed."""
        attempts = self._attempts[row_id] = self._attempts.get(row_id, 0) + 1
        left = attempts < self._max_attempts
        log.warning(
            "%s %d failed (attempt %d of %d): %s",
            self._name,
            row_id,
            attempts,
            self._max_attempts,
            reason,
        )
        return left

    async def run(self) -> None:
        """Forever: read new rows when nudged, all of them every sweep_every, run them."""
        next_sweep = time.monotonic()  # when everything is read again
        backoff = 0.0
        while True:
            if not self._active():  # another daemon does this work: look again soon
                next_sweep = time.monotonic()  # active again, it reads everything first
                await asyncio.sleep(STANDBY_LOOK_EVERY)
                continue
            try:
                everything = time.monotonic() >= next_sweep
                await self.read(everything)
                if everything:
                    next_sweep = time.monotonic() + self._sweep_every
                backoff = 0.0
                next_in = await self.drain()
            except Exception as error:  # the database away: read everything again, later
                backoff = min(2 * backoff or READ_RETRY_FIRST, self._sweep_every)
                log_failure(log, f"{self._name} could not read; again in {backoff:g} s", error)
                next_sweep = time.monotonic() + backoff
                next_in = None
            until_sweep = max(0.0, next_sweep - time.monotonic())
            timeout = until_sweep if next_in is None else min(next_in, until_sweep)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._news.wait()
            self._news.clear()
