"""The thread worker: claims in batches, runs a handler per job in a thread pool, acks or retries."""

from __future__ import annotations

import contextlib
import queue as queue_module
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

import redis

from ._replies import AckResult
from ._sync import Queue
from ._types import Job
from ._worker_core import Claim, Finished, WorkerBase, WorkerEvent, WorkerStats, claim_of, error_text, outage_pause

__all__ = ["Worker"]

BUSY_POLL_S = 0.05
"""While handlers run and nothing is due, look for new jobs this often (a long-poll would keep
finished jobs from being acked promptly)."""


@dataclass
class _Outcome:
    job: Job
    seconds: float
    error: BaseException | None


class Worker(WorkerBase[Queue]):
    """Runs ``handler(job)`` for every job of a queue, with bounded concurrency, until stopped.

    - Claims in batches (up to the free capacity) with one call that also acks the
      jobs finished since the last claim; long-polls (``poll``) when idle.
    - A handler that returns acks the job; one that raises nacks it with an
      exponential backoff (``backoff``) and the error text, and after the queue's
      ``max_attempts`` the job is dead-lettered with its last error.
    - While a handler runs, its lock is extended every ``extend_every`` (default a
      third of ``lock_ttl``). If an extend finds the lock lost (expired, or the job
      was cancelled), the worker logs it and does not ack that job.
    - ``run()`` installs SIGTERM and SIGINT handlers (in the main thread): the first
      signal stops claiming, gives claimed-but-unstarted jobs back at once and lets
      running handlers finish within ``grace`` seconds; a second signal stops at
      once, giving running jobs back too (at-least-once: they will run again). A job
      given back on a stop does not use an attempt (``Queue.release``).
    - A handler still running after ``timeout`` seconds fails with a TimeoutError: its
      job is retried or dead-lettered like any failure, and its lock no longer
      extended. A thread cannot be killed, so the handler's thread is abandoned (what
      it returns is ignored) and a new thread takes its slot; past ``concurrency``
      abandoned threads still running, the worker runs short and logs an error.

    Args:
        queue: The queue to work on.
        handler: Called with each Job, in a worker thread.
        concurrency: Handlers running at once (1 to 1000).
        lock_ttl: Lock length of each claim, in seconds (kept alive by extends).
        poll: Longest long-poll wait when idle, in seconds (0 to 60); also how long a
            stop may take to be noticed while idle.
        backoff: Retry delays; default ``Backoff()`` (1 s, doubling, capped at 300 s, ±20%).
        extend_every: Seconds between lock extends; below ``lock_ttl``.
        grace: Seconds running handlers get to finish on a graceful stop.
        timeout: Seconds a handler may run (1 ms to a week), or None for no limit;
            default 300.
        on_event: Called with a WorkerEvent for every job outcome (metrics hook).
        logger: Where to log; default ``logging.getLogger("delayq.worker")``.

    Raises:
        InvalidType, InvalidArgument: A bad setting.
    """

    queue_type = Queue
    twin = "delayq.aio.Worker"

    def _setup(self) -> None:
        # queue.Queue, not SimpleQueue: the main thread waits on it with a timeout, and a signal
        # arriving during SimpleQueue.get(timeout=...) was seen to turn it into a wait without one
        self._results: queue_module.Queue[_Outcome] = queue_module.Queue()
        # claimed jobs wait here for a handler thread; what is still here at a stop never started
        self._inbox: queue_module.SimpleQueue[Job | None] = queue_module.SimpleQueue()
        self._running: dict[Claim, Job] = {}
        self._started: dict[Claim, float] = {}
        """When each running handler started (time.monotonic), for the timeout."""
        self._abandoned: set[Claim] = set()
        """Claims whose handler ran past the timeout and whose thread was given up."""
        self._serving = self.core.concurrency
        """Handler threads taking jobs from the inbox (not stuck in an abandoned handler)."""
        self._guard = threading.Lock()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signalled(signal.Signals(signum).name)

    # -- the handler's side

    def _start_thread(self) -> None:
        # daemon threads: a hard stop must not wait for a handler at interpreter exit
        # (ThreadPoolExecutor's threads are joined there)
        threading.Thread(target=self._handler_thread, name="delayq-handler", daemon=True).start()

    def _handler_thread(self) -> None:
        while (job := self._inbox.get()) is not None:
            claim = claim_of(job)
            start = time.perf_counter()
            with self._guard:
                self._started[claim] = time.monotonic()
            error: BaseException | None = None
            try:
                self.handler(job)
            except BaseException as exc:  # a handler's failure is the job's, never the worker's
                error = exc
            with self._guard:
                if claim not in self._abandoned:
                    del self._started[claim]
                    self._results.put(_Outcome(job, time.perf_counter() - start, error))
                    continue
                # given up at its timeout: the job was settled then, so this result is ignored;
                # the thread serves again if the worker runs short, else its replacement has its slot
                self._abandoned.discard(claim)
                serve = self._serving < self.core.concurrency
                if serve:
                    self._serving += 1
            self.core.log.warning("job %s: its abandoned handler returned after the timeout; result ignored", job.id)
            if not serve:
                return

    def _expire(self) -> None:
        """Give up the handlers that ran past the timeout: each one's outcome is a TimeoutError
        (settled as a failure), and a new thread takes its slot while few enough are abandoned."""
        timeout = self.core.timeout
        if timeout is None:
            return
        now = time.monotonic()
        with self._guard:
            expired = [(self._running[claim], now - start) for claim, start in self._started.items() if now - start >= timeout]
            for job, seconds in expired:
                del self._started[claim_of(job)]
                self._abandoned.add(claim_of(job))
                self._serving -= 1
                self._results.put(_Outcome(job, seconds, self.core.timeout_error()))
            stuck = len(self._abandoned)
            replace = min(len(expired), max(0, self.core.max_abandoned - (stuck - len(expired))))
            self._serving += replace
        for job, _ in expired:
            self.core.abandoned(job, stuck)
        for _ in range(replace):
            self._start_thread()

    def _extend_loop(self) -> None:
        while not self._hard.wait(self.core.extend_every):
            with self._guard:
                held = [job for claim, job in self._running.items() if claim not in self._lost]
            for job in held:
                try:
                    if not self.queue.extend(job, self.core.lock_ttl):
                        with self._guard:
                            self._lost.add(claim_of(job))
                        self.core.log.warning("job %s: lock lost while its handler runs", job.id)
                except Exception:
                    self.core.log.exception("extending the lock of job %s failed; will retry", job.id)
            if self._stop.is_set() and not held:
                return

    # -- the claiming side

    def _settle(self, done: list[Finished]) -> None:
        """Take finished handlers' outcomes: successes join ``done`` (acked, and counted, with the next call)."""
        while True:
            try:
                outcome = self._results.get_nowait()
            except queue_module.Empty:
                return
            job = outcome.job
            claim = claim_of(job)
            with self._guard:
                self._running.pop(claim, None)
                lost = claim in self._lost
                self._lost.discard(claim)
            if lost:
                self.core.record(WorkerEvent("lock_lost", job, outcome.seconds))
            elif outcome.error is None:
                done.append(Finished(job, outcome.seconds))
            else:
                self._fail(job, outcome.error, outcome.seconds)

    def _fail(self, job: Job, exc: BaseException, seconds: float) -> None:
        text = error_text(exc)
        self.core.record(WorkerEvent("failed", job, seconds, text))
        delay = self.core.retry_delay(job)
        code = self.queue._drive(self.queue._core.nack(job, delay, text))
        if code == 2:
            self.core.record(WorkerEvent("dead_lettered", job, seconds, text))
        elif code == 1:
            self.core.record(WorkerEvent("retried", job, seconds, text, delay))
        else:
            self.core.record(WorkerEvent("lock_lost", job, seconds))

    def run(self, *, install_signals: bool = True) -> WorkerStats:
        """Work until :meth:`stop` (or SIGTERM/SIGINT); returns the counters.

        Args:
            install_signals: Handle SIGTERM and SIGINT (only possible in the main thread).

        Returns:
            The worker's counters.
        """
        previous: dict[int, Any] = {}
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, self._on_signal)
        core = self.core
        for _ in range(core.concurrency):
            self._start_thread()
        extender = threading.Thread(target=self._extend_loop, name="delayq-extender", daemon=True)
        extender.start()
        core.log.info("worker started on %r: concurrency %d, lock_ttl %.1fs", self.queue, core.concurrency, core.lock_ttl)
        done: list[Finished] = []
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    claimed = self._cycle(done)
                    failures = 0
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    # Redis restarting or failing over: keep the finished jobs for the next call
                    core.unsure(done)
                    failures += 1
                    pause = outage_pause(failures)
                    core.log.warning("Redis unreachable (%s); retrying in %.1fs", exc, pause)
                    self._stop.wait(pause)
                    continue
                if not claimed and (self._running or self._serving < core.concurrency):
                    self._wait_result(BUSY_POLL_S)
            self._shutdown(done)
        finally:
            self._hard.set()
            for _ in range(core.concurrency + core.max_abandoned):  # every thread there may be
                self._inbox.put(None)
            if self._abandoned:
                core.log.warning("%d abandoned handler threads still run; they end with the process", len(self._abandoned))
            for signum, old in previous.items():
                signal.signal(signum, old)
        core.log.info("worker stopped: %s", core.stats)
        return core.stats

    def _cycle(self, done: list[Finished]) -> bool:
        """Settle finished handlers, ack ``done`` (emptied once acked) and claim for the free capacity.

        Returns:
            Whether new jobs were claimed.
        """
        self._expire()
        self._settle(done)
        free = self._serving - len(self._running)
        if free > 0:
            # no long-poll with acks to send: if a later step of it failed, the acks it applied
            # would be sent again and refused, and the worker would count them as lost
            wait = self.core.poll if not self._running and not done else 0
            result = self.queue._ack_and_claim([f.job for f in done], free, self.core.lock_ttl, wait)
            done[:] = self.core.acked(done, result)
            jobs = result.jobs
            for job in jobs:
                with self._guard:
                    self._running[claim_of(job)] = job
                self._inbox.put(job)
            return bool(jobs)
        if done:
            settled = self.queue._ack_claims([f.job for f in done])
            done[:] = self.core.acked(done, settled)
        return False

    def _wait_result(self, timeout: float) -> None:
        """Sleep until a handler finishes (or ``timeout``), keeping its outcome for _settle."""
        with contextlib.suppress(queue_module.Empty):
            self._results.put(self._results.get(timeout=timeout))

    def _shutdown(self, done: list[Finished]) -> None:
        """Give back unstarted jobs at once, let running ones finish within the grace period."""
        unstarted = []
        while True:
            try:
                job = self._inbox.get_nowait()
            except queue_module.Empty:
                break
            if job is not None:
                unstarted.append(job)
        with self._guard:
            for job in unstarted:
                self._running.pop(claim_of(job), None)
        for job in unstarted:
            self._release(job)
        deadline = time.monotonic() + self.core.grace
        while self._running and not self._hard.is_set() and time.monotonic() < deadline:
            self._wait_result(min(0.05, max(0.0, deadline - time.monotonic())))
            self._expire()
            self._settle(done)
        self._settle(done)
        if done:
            try:
                result = self.queue._ack_claims([f.job for f in done])
            except Exception as exc:
                self.core.log.error("acking the finished jobs on shutdown failed: %s", exc)
                result = AckResult(0, [], [f.job for f in done])
            self.core.acked(done, result, final=True)
        with self._guard:
            left = list(self._running.values())
            self._running.clear()
        for job in left:  # hard stop or grace over: back to the queue now, not after the lock expires
            self._release(job)

    def _release(self, job: Job) -> None:
        """Give back a job that did not fail (DESIGN rule 7: no attempt used), and count what happened."""
        try:
            released: bool | BaseException = self.queue.release(job)
        except Exception as exc:
            released = exc
        self.core.returned(job, released)
