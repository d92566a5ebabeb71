"""The thread worker: claims into a prefetch buffer, runs a handler per job on a pool of threads,
acks with the next claim, retries or dead-letters failures. Its asyncio twin is _aio_worker.py:
the two have the same methods in the same order, and differ only in threads versus tasks."""

from __future__ import annotations

import collections
import signal
import threading
import time
from queue import Empty, SimpleQueue
from types import FrameType
from typing import Any

import redis

from ._heartbeats import HEARTBEAT_EVERY_S, HEARTBEAT_TTL_S
from ._hooks import Decision
from ._replies import AckResult
from ._sync import Queue
from ._types import NACK_OUTCOMES, Job
from ._validate import MAX_BATCH, Checked
from ._worker_base import WorkerBase
from ._worker_core import BUSY_POLL_S, Claim, Finished, Outcome, Skipped, WorkerStats, claim_of, outage_pause

__all__ = ["Worker"]


class Worker(WorkerBase[Queue]):
    """Runs ``handler(job)`` for every job of a queue, with bounded concurrency, until stopped.

    - Claims ahead into a prefetch buffer, in batches sized for throughput (about what the
      handlers finish in 50 ms, at least ``concurrency``, at most ``prefetch``), with one call
      that also acks the jobs finished since the last one; long-polls (``poll``) when idle.
      A buffered job's lock is extended like a running one's: its wait counts against its lock.
    - A handler that returns acks the job; one that raises nacks it with an exponential
      backoff (``backoff``) and the error text, and after the queue's ``max_attempts`` the
      job is dead-lettered with its last error.
    - While a job is held, its lock is extended every ``extend_every`` (default a third of
      ``lock_ttl``). If an extend finds the lock lost (expired, or the job was cancelled),
      the worker logs it, does not start the job if it had not started, and does not ack it.
    - ``run()`` installs SIGTERM and SIGINT handlers (in the main thread): the first signal
      stops claiming, gives buffered jobs back at once and lets running handlers finish within
      ``grace`` seconds; a second signal stops at once, giving running jobs back too
      (at-least-once: they will run again). A job given back on a stop does not use an
      attempt (``Queue.release``).
    - A handler still running after ``timeout`` seconds fails with a TimeoutError: its job is
      retried or dead-lettered like any failure, and its lock no longer extended. A thread
      cannot be killed, so the handler's thread is abandoned (what it returns is ignored) and
      a new thread takes its slot; past ``concurrency`` abandoned threads still running, the
      worker runs short and logs an error.
    - A handler can decide for itself: ``raise delayq.Fail(reason)`` dead-letters the job now
      whatever attempts are left (``Fail(reason, dead=False)`` acks it: dropped, counted
      "processed"), ``raise delayq.Retry(delay=...)`` retries it after that delay (an attempt
      used all the same). ``policy`` gives each job its own attempts, backoff, timeout and lock.
    - Writes a heartbeat every 5 s (``delayq workers QUEUE`` lists the live workers; an entry
      not refreshed for 15 s is a dead worker's), removed when it stops.

    Args:
        queue: The queue to work on.
        handler: Called with each Job, in a worker thread.
        concurrency: Handlers running at once (1 to 1000).
        prefetch: Most claimed jobs waiting for a handler (0 to 1000; default None, 1000):
            the buffer holds about 50 ms of work, between ``concurrency`` and this; 0 claims
            only for free handlers.
        lock_ttl: Lock length of each claim, in seconds (kept alive by extends).
        poll: Longest long-poll wait when idle, in seconds (0 to 60); also how long a
            stop may take to be noticed while idle.
        backoff: Retry delays; default ``Backoff()`` (1 s, doubling, capped at 300 s, ±20%).
        extend_every: Seconds between lock extends; below ``lock_ttl``.
        grace: Seconds running handlers get to finish on a graceful stop.
        timeout: Seconds a handler may run (1 ms to a week), or None for no limit;
            default 300.
        heartbeat: Write a heartbeat to the queue's ``workers`` hash (default True).
        on_event: Called with a WorkerEvent for every job outcome (metrics hook).
        logger: Where to log; default ``logging.getLogger("delayq.worker")``.
        policy: ``policy(job) -> delayq.JobPolicy | None``, asked as each job starts: its own
            ``max_attempts``, ``backoff``, ``timeout`` and ``lock_ttl`` (None fields: the
            worker's). Default None; with a ``delayq.tasks.Tasks``'s ``run`` as the handler, the
            registry's ``policy`` (each task's settings). A policy that raises or returns
            anything else dead-letters the job with the reason; the worker goes on.

    Raises:
        InvalidType, InvalidArgument: A bad setting.
    """

    queue_type = Queue
    twin = "delayq.aio.Worker"

    def _setup(self) -> None:
        self._inbox: SimpleQueue[Job | None] = SimpleQueue()
        """Claimed jobs waiting for a handler thread: the prefetch buffer."""
        self._outcomes: collections.deque[Outcome] = collections.deque()
        """What the handler threads finished, for the main loop to settle."""
        self._starting: set[Claim] = set()
        """Claims a handler thread took from the inbox and has not yet started nor given an outcome."""
        self._running: dict[Claim, float] = {}
        """When each running handler started (time.monotonic()); whoever pops a claim first (the
        thread at its end, or _expire at the timeout) settles it."""
        self._abandoned: set[Claim] = set()
        """Claims whose handler ran past the timeout and whose thread was given up."""
        self._serving = self.core.concurrency
        """Handler threads taking jobs from the inbox (not stuck in an abandoned handler)."""
        self._guard = threading.Lock()
        """Guards _serving and _abandoned (timeouts only, never the hot path)."""
        self._wake = threading.Event()
        self._waiting = False
        """The main loop is about to wait: a handler thread wakes it when there is work for it."""
        self._low = 0
        """Wake the main loop when the buffer holds this few jobs."""
        self._nudge = threading.Event()
        """Wakes the extender: a job with a shorter lock started, or the worker stops."""

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signalled(signal.Signals(signum).name)

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
            self._start_slot()
        keepalive = threading.Thread(target=self._keepalive, name="delayq-keepalive", daemon=True)
        keepalive.start()
        core.log.info(
            "worker started on %r as %s: concurrency %d, prefetch up to %d, lock_ttl %.1fs",
            self.queue,
            self.id,
            core.concurrency,
            core.prefetch,
            core.lock_ttl,
        )
        done: list[Finished] = []
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    busy = self._cycle(done)
                    failures = 0
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    # Redis restarting or failing over: keep the finished jobs for the next call
                    core.unsure(done)
                    failures += 1
                    pause = outage_pause(failures)
                    core.log.warning("Redis unreachable (%s); retrying in %.1fs", exc, pause)
                    self._stop.wait(pause)
                    continue
                if not busy:
                    self._wait(core.nap(done, time.monotonic()))
            self._shutdown(done)
        finally:
            self._hard.set()
            self._nudge.set()
            for _ in range(core.concurrency + core.max_abandoned):  # every thread there may be
                self._inbox.put(None)
            if self._stuck():
                core.log.warning("%d abandoned handler threads still run; they end with the process", self._stuck())
            for signum, old in previous.items():
                signal.signal(signum, old)
            keepalive.join(5)
            if self.heartbeat:
                try:
                    self.queue.remove_heartbeat(self.id)
                except Exception as exc:
                    core.log.warning("removing the heartbeat failed (%s); it expires within %.0fs", exc, HEARTBEAT_TTL_S)
        core.log.info("worker stopped: %s", core.stats)
        return core.stats

    def _cycle(self, done: list[Finished]) -> bool:
        """Settle finished handlers, ack ``done`` (emptied once acked) and claim into the buffer.

        Returns:
            Whether to go round again at once (jobs came, or more finished meanwhile).
        """
        core = self.core
        self._expire()
        self._settle(done)
        room = core.room(self._serving)
        if room:
            acks = done[:MAX_BATCH]
            # no long-poll with acks to send: if a later step of it failed, the acks it applied
            # would be sent again and refused, and the worker would count them as lost
            wait = core.poll if not core.held and not done else 0
            result = self.queue.ack_and_claim(Checked(job for job, _ in acks), room, core.lock_ttl, wait=wait)
            done[:] = core.acked(acks, result) + done[MAX_BATCH:]
            jobs = result.jobs
            core.hold(jobs, time.monotonic())
            self._low = core.target // 2
            self._hand_out(jobs)
            # acks sent, nothing came and nothing held: long-poll now, not after a BUSY_POLL_S nap
            # (jobs due in that nap were claimed up to 50 ms late: the lateness bench's tail)
            return bool(jobs) or wait > 0 or (not core.held and not done)
        if core.ack_due(done, time.monotonic()):
            acks = done[:MAX_BATCH]
            settled = self.queue.ack_claims(Checked(job for job, _ in acks))
            done[:] = core.acked(acks, settled) + done[MAX_BATCH:]
        return False

    def _settle(self, done: list[Finished]) -> None:
        """Take finished handlers' outcomes: successes join ``done``, failures are nacked, jobs
        the handler threads did not start because the worker stops are given back."""
        outcomes = self._outcomes
        taken = [outcomes.popleft() for _ in range(len(outcomes))]
        failures, unstarted = self.core.settle(taken, done)
        for job, seconds, decision in failures:
            self._fail(job, seconds, decision)
        for job in unstarted:
            self._release(job)

    def _fail(self, job: Job, seconds: float, decision: Decision) -> None:
        """Nack a failed job as ``decision`` says (its delay, error and attempt limit: limit 1
        dead-letters it now), and count what the nack did."""
        queue = self.queue
        try:
            code = queue._drive(queue._core.nack_limited(job, decision.delay, decision.error, max_attempts=decision.max_attempts))
            outcome: str | BaseException = NACK_OUTCOMES[code]
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            outcome = exc
        self.core.nacked(job, seconds, decision.error, decision.delay, outcome)

    def _start_slot(self) -> None:
        # daemon threads: a hard stop must not wait for a handler at interpreter exit
        # (ThreadPoolExecutor's threads are joined there)
        threading.Thread(target=self._serve, name="delayq-handler", daemon=True).start()

    def _hand_out(self, jobs: list[Job]) -> None:
        """Put jobs in the buffer; an idle handler thread takes each one."""
        put = self._inbox.put
        for job in jobs:
            put(job)

    def _serve(self) -> None:
        """A handler slot: run buffered jobs one after another until told to end."""
        core, handler, running, outcomes = self.core, self.handler, self._running, self._outcomes
        policy = core.policy
        get, monotonic, stopping = self._inbox.get, time.monotonic, self._stop.is_set
        starting = self._starting
        while (job := get()) is not None:
            claim = (job.id, job.token)
            # in _starting from before the stop check until it runs or has its outcome: a stop's
            # grace waits for it (it reads _starting, then _running), so no job is given back
            # while its handler starts here
            starting.add(claim)
            try:
                if stopping():
                    outcomes.append((job, 0.0, Skipped.STOPPING))
                    continue
                now = monotonic()
                if not core.runnable(claim, now):
                    outcomes.append((job, 0.0, Skipped.LOST))
                    continue
                if policy is not None:
                    verdict = self._start(job, claim, now)
                    if verdict is None and stopping():  # the policy (or the relock) took a while
                        verdict = Skipped.STOPPING
                    if verdict is not None:
                        outcomes.append((job, 0.0, verdict))
                        continue
                    now = monotonic()
                running[claim] = now
            finally:
                starting.discard(claim)
            error: BaseException | None = None
            try:
                handler(job)
            except BaseException as exc:  # a handler's failure is the job's, never the worker's
                error = exc
            if running.pop(claim, None) is not None:
                outcomes.append((job, monotonic() - now, error))
                if self._waiting and (error is not None or self._inbox.qsize() <= self._low):
                    self._wake.set()
                    time.sleep(0)  # let the main loop take the GIL and claim now, while the rest of the buffer runs
                continue
            # given up at its timeout: the job was settled then, so this result is ignored;
            # the thread serves again if the worker runs short, else its replacement has its slot
            with self._guard:
                self._abandoned.discard(claim)
                serve = self._serving < core.concurrency
                if serve:
                    self._serving += 1
            core.log.warning("job %s: its abandoned handler returned after the timeout; result ignored", job.id)
            if not serve:
                return

    def _start(self, job: Job, claim: Claim, now: float) -> Skipped | Decision | None:
        """Ask the worker's policy about a job about to start, and set its lock to the job's own
        ``lock_ttl`` when that differs from the worker's.

        Returns:
            None to run it; a Decision (dead-letter it: its policy failed, or it was claimed too
            often); Skipped.LOST (the lock was found lost).
        """
        core = self.core
        verdict = core.start(job)
        if verdict is not None:
            return verdict
        ttl = core.relock(claim)
        if ttl is None:
            return None
        try:
            held = self.queue.extend(job, ttl)
        except Exception as exc:  # it runs on the lock it has; the extender sets the job's ttl next time
            core.log.warning("job %s: setting its lock to its own lock_ttl failed (%s); will retry", job.id, exc)
            return None
        entry = core.held.get(claim)
        if entry is not None:
            core.extended(entry, held, now)
        self._nudge.set()  # the extender may be asleep for longer than this job's lock lasts
        return None if held else Skipped.LOST

    def _expire(self) -> None:
        """Give up the handlers that ran past the timeout: each one's outcome is a TimeoutError
        (settled as a failure), and a new thread takes its slot while few enough are abandoned."""
        core = self.core
        now = time.monotonic()
        expired = []
        for claim in core.overdue(self._running, now):
            start = self._running.pop(claim, None)
            if start is not None:  # else its thread just ended it
                entry = core.held.get(claim)
                if entry is not None:
                    expired.append(entry[0])
                    self._outcomes.append((entry[0], now - start, core.timeout_error(claim)))
        if not expired:
            return
        with self._guard:
            self._abandoned.update((job.id, job.token) for job in expired)
            self._serving -= len(expired)
            stuck = len(self._abandoned)
            replace = min(len(expired), max(0, core.max_abandoned - (stuck - len(expired))))
            self._serving += replace
        for job in expired:
            core.abandoned(job, stuck)
        for _ in range(replace):
            self._start_slot()

    def _keepalive(self) -> None:
        """Extend the locks of held jobs, and write the heartbeat, until the worker has stopped."""
        core = self.core
        next_beat = 0.0
        while not self._hard.is_set():
            now = time.monotonic()
            for entry in core.to_extend(now):
                try:
                    core.extended(entry, self.queue.extend(entry[0], core.lock_of(claim_of(entry[0]))), now)
                except Exception:
                    core.log.exception("extending the lock of job %s failed; will retry", entry[0].id)
            if self.heartbeat and now >= next_beat:
                try:
                    self.queue.heartbeat(self.id, self.heartbeat_entry(), HEARTBEAT_TTL_S)
                    next_beat = now + HEARTBEAT_EVERY_S
                except Exception as exc:
                    core.log.warning("writing the heartbeat failed (%s); will retry", exc)
                    next_beat = now + 1
            self._nudge.wait(min(core.keepalive_wait(), HEARTBEAT_EVERY_S))
            self._nudge.clear()

    def _wait(self, timeout: float) -> None:
        """Sleep until a handler thread has work for the main loop, or ``timeout``."""
        self._waiting = True
        if not self._outcomes:
            self._wake.wait(timeout)
        self._waiting = False
        self._wake.clear()

    def _shutdown(self, done: list[Finished]) -> None:
        """Give back buffered jobs at once, let running ones finish within the grace period."""
        unstarted = []
        while True:
            try:
                job = self._inbox.get_nowait()
            except Empty:
                break
            if job is not None:
                unstarted.append(job)
        for job in unstarted:
            self.core.held.pop((job.id, job.token), None)
            self._release(job)
        deadline = time.monotonic() + self.core.grace
        while (self._starting or self._running) and not self._hard.is_set() and time.monotonic() < deadline:
            self._wait(min(BUSY_POLL_S, max(0.0, deadline - time.monotonic())))
            self._expire()
            self._settle(done)
            self._ack_in_grace(done)
        self._settle(done)
        if done:
            try:
                result = self.queue.ack_claims(Checked(job for job, _ in done))
            except Exception as exc:
                self.core.log.error("acking the finished jobs on shutdown failed: %s", exc)
                result = AckResult(0, [], [job for job, _ in done])
            self.core.acked(done, result, final=True)
        left = [entry[0] for entry in self.core.held.values()]
        self.core.held.clear()
        self.core.rules.clear()
        for job in left:  # hard stop or grace over: back to the queue now, not after the lock expires
            self._release(job)

    def _ack_in_grace(self, done: list[Finished]) -> None:
        """During a stop's grace, ack the jobs finished meanwhile as the running loop does (within
        BUSY_POLL_S): a finished job's lock is no longer extended, so an ack kept for the end of
        the grace would be refused once it expired, and the finished job would run again. A call
        that fails leaves them for the final ack."""
        core = self.core
        if not core.ack_due(done, time.monotonic()):
            return
        acks = done[:MAX_BATCH]
        try:
            settled = self.queue.ack_claims(Checked(job for job, _ in acks))
        except Exception as exc:  # as the final ack: a stop must go on to give back what it holds
            core.log.warning("acking finished jobs during the stop failed (%s); will retry", exc)
            core.unsure(acks)
            core.ack_by = time.monotonic() + BUSY_POLL_S
            return
        done[:] = core.acked(acks, settled) + done[MAX_BATCH:]

    def _release(self, job: Job) -> None:
        """Give back a job that did not fail (DESIGN rule 7: no attempt used), and count what happened."""
        try:
            released: bool | BaseException = self.queue.release(job)
        except Exception as exc:
            released = exc
        self.core.returned(job, released)

    def _stuck(self) -> int:
        """How many abandoned handler threads still run."""
        with self._guard:
            return len(self._abandoned)
