"""The asyncio worker: claims into a prefetch buffer, runs a handler per job on a pool of tasks,
acks with the next claim, retries or dead-letters failures. Its thread twin is _worker.py: the
two have the same methods in the same order, and differ only in tasks versus threads."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import signal
import threading
import time

import redis

from ._aio import Queue
from ._daemon import in_daemon_thread
from ._heartbeats import HEARTBEAT_EVERY_S, HEARTBEAT_TTL_S
from ._hooks import Decision
from ._replies import AckResult
from ._types import NACK_OUTCOMES, Job
from ._validate import MAX_BATCH, Checked
from ._worker_base import WorkerBase
from ._worker_core import BUSY_POLL_S, Claim, Finished, Outcome, Skipped, WorkerStats, claim_of, outage_pause

__all__ = ["Worker"]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Worker(WorkerBase[Queue]):
    """The asyncio twin of :class:`delayq.Worker`; see it for the behaviour.

    Args:
        queue: A ``delayq.aio.Queue``.
        handler: ``async def handler(job)``, or a plain function (run in a thread).
        concurrency, prefetch, lock_ttl, poll, backoff, extend_every, grace, timeout, heartbeat,
            on_event, logger, policy: As for :class:`delayq.Worker`. At its ``timeout`` an ``async def``
            handler is cancelled; a plain function's thread is abandoned, as in :class:`delayq.Worker`.

    Raises:
        InvalidType, InvalidArgument: A bad setting.
    """

    queue_type = Queue
    twin = "delayq.Worker"

    def _setup(self) -> None:
        self._inbox: collections.deque[Job | None] = collections.deque()
        """Claimed jobs waiting for a handler task: the prefetch buffer (None: a slot's end)."""
        self._parked: collections.deque[asyncio.Future[None]] = collections.deque()
        """Handler tasks waiting for the buffer to fill (one wake-up each per batch, not per job)."""
        self._outcomes: collections.deque[Outcome] = collections.deque()
        """What the handler tasks finished, for the main loop to settle."""
        self._running: dict[Claim, tuple[float, asyncio.Task[None] | None]] = {}
        """When each running handler started (time.monotonic()) and its slot's task; whoever pops
        a claim first (the slot at its end, or _expire at the timeout) settles it."""
        self._abandoned: dict[Claim, threading.Thread] = {}
        """Threads of plain handlers that ran past the timeout, given up while they still run."""
        self._slots: list[asyncio.Task[None]] = []
        """The handler tasks."""
        self._wake: asyncio.Future[None] | None = None
        """While the main loop waits: the future a handler task resolves when there is work for it."""
        self._low = 0
        """Wake the main loop when the buffer holds this few jobs."""
        self._nudge: asyncio.Future[None] | None = None
        """While the extender sleeps: resolved to wake it (a job with a shorter lock started)."""

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signalled(sig.name)

    async def run(self, *, install_signals: bool = True) -> WorkerStats:
        """Work until :meth:`stop` (or SIGTERM/SIGINT); returns the counters.

        Args:
            install_signals: Handle SIGTERM and SIGINT on the running loop (main thread only).

        Returns:
            The worker's counters.
        """
        loop = asyncio.get_running_loop()
        installed = []
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append(sig)
        core = self.core
        for _ in range(core.concurrency):
            self._start_slot()
        keepalive = asyncio.create_task(self._keepalive())
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
                    busy = await self._cycle(done)
                    failures = 0
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    # Redis restarting or failing over: keep the finished jobs for the next call
                    core.unsure(done)
                    failures += 1
                    pause = outage_pause(failures)
                    core.log.warning("Redis unreachable (%s); retrying in %.1fs", exc, pause)
                    await asyncio.sleep(pause)
                    continue
                if not busy:
                    await self._wait(core.nap(done, time.monotonic()))
            await self._shutdown(done)
        finally:
            self._hard.set()
            for task in self._slots:
                task.cancel()
            await asyncio.gather(*self._slots, return_exceptions=True)
            if self._stuck():
                core.log.warning("%d abandoned handler threads still run; they end with the process", len(self._abandoned))
            for sig in installed:
                loop.remove_signal_handler(sig)
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive
            if self.heartbeat:
                try:
                    await self.queue.remove_heartbeat(self.id)
                except Exception as exc:
                    core.log.warning("removing the heartbeat failed (%s); it expires within %.0fs", exc, HEARTBEAT_TTL_S)
        core.log.info("worker stopped: %s", core.stats)
        return core.stats

    async def _cycle(self, done: list[Finished]) -> bool:
        """Settle finished handlers, ack ``done`` (emptied once acked) and claim into the buffer.

        Returns:
            Whether to go round again at once (jobs came, or more finished meanwhile).
        """
        core = self.core
        self._expire()
        await self._settle(done)
        room = core.room(core.concurrency - max(0, self._stuck() - core.max_abandoned))
        if room:
            acks = done[:MAX_BATCH]
            # no long-poll with acks to send: if a later step of it failed, the acks it applied
            # would be sent again and refused, and the worker would count them as lost
            wait = core.poll if not core.held and not done else 0
            result = await self.queue.ack_and_claim(Checked(job for job, _ in acks), room, core.lock_ttl, wait=wait)
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
            settled = await self.queue.ack_claims(Checked(job for job, _ in acks))
            done[:] = core.acked(acks, settled) + done[MAX_BATCH:]
        return False

    async def _settle(self, done: list[Finished]) -> None:
        """Take finished handlers' outcomes: successes join ``done``, failures are nacked, jobs
        the handler tasks did not start because the worker stops are given back."""
        outcomes = self._outcomes
        taken = [outcomes.popleft() for _ in range(len(outcomes))]
        failures, unstarted = self.core.settle(taken, done)
        for job, seconds, decision in failures:
            await self._fail(job, seconds, decision)
        for job in unstarted:
            await self._release(job)

    async def _fail(self, job: Job, seconds: float, decision: Decision) -> None:
        """Nack a failed job as ``decision`` says (its delay, error and attempt limit: limit 1
        dead-letters it now), and count what the nack did."""
        queue = self.queue
        try:
            code = await queue._drive(
                queue._core.nack_limited(job, decision.delay, decision.error, max_attempts=decision.max_attempts)
            )
            outcome: str | BaseException = NACK_OUTCOMES[code]
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            outcome = exc
        self.core.nacked(job, seconds, decision.error, decision.delay, outcome)

    def _start_slot(self) -> None:
        self._slots.append(asyncio.create_task(self._serve()))

    def _hand_out(self, jobs: list[Job] | list[None]) -> None:
        """Put jobs (or slots' ends) in the buffer, and wake as many parked handler tasks."""
        self._inbox.extend(jobs)
        parked = self._parked
        for _ in range(min(len(jobs), len(parked))):
            waiter = parked.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def _serve(self) -> None:
        """A handler slot: run buffered jobs one after another until told to end."""
        core, handler, running, outcomes = self.core, self.handler, self._running, self._outcomes
        policy = core.policy
        inbox, parked, monotonic, stopping = self._inbox, self._parked, time.monotonic, self._stop.is_set
        plain = not inspect.iscoroutinefunction(handler)
        me = asyncio.current_task()
        loop = asyncio.get_running_loop()
        while True:
            if not inbox:
                waiter = loop.create_future()
                parked.append(waiter)
                await waiter
                continue
            job = inbox.popleft()
            if job is None:
                return
            claim = (job.id, job.token)
            if stopping():
                outcomes.append((job, 0.0, Skipped.STOPPING))
                continue
            now = monotonic()
            if not core.runnable(claim, now):
                outcomes.append((job, 0.0, Skipped.LOST))
                continue
            if policy is not None:
                verdict = await self._start(job, claim, now)
                if verdict is None and stopping():  # stopped while its lock was set: the stop may be past its grace
                    verdict = Skipped.STOPPING
                if verdict is not None:
                    outcomes.append((job, 0.0, verdict))
                    continue
                now = monotonic()
            running[claim] = (now, me)
            error: BaseException | None = None
            thread = None
            try:
                if plain:
                    future, thread = in_daemon_thread(f"delayq-handler-{job.id[:16]}", handler, job)
                    result = await future
                    if inspect.isawaitable(result):
                        await result
                else:
                    await handler(job)
            except asyncio.CancelledError as exc:
                if self._hard.is_set():
                    raise
                if claim not in running:  # _expire cancelled it at the timeout and settled it
                    if me is not None and hasattr(me, "uncancel"):
                        me.uncancel()
                    if thread is not None and thread.is_alive():
                        self._abandoned[claim] = thread
                        core.abandoned(job, self._stuck())
                        # past the bound, this slot waits for its thread, as a thread worker's would
                        while thread.is_alive() and self._stuck() > core.max_abandoned and not self._hard.is_set():
                            await asyncio.sleep(BUSY_POLL_S)
                    continue
                error = exc  # the handler cancelled itself: a failure like any other
            except BaseException as exc:  # a handler's failure is the job's, never the worker's
                error = exc
            if running.pop(claim, None) is not None:
                outcomes.append((job, monotonic() - now, error))
                wake = self._wake
                if wake is not None and (error is not None or len(inbox) <= self._low) and not wake.done():
                    wake.set_result(None)
                    await asyncio.sleep(0)  # let the main loop claim now, while the rest of the buffer runs

    async def _start(self, job: Job, claim: Claim, now: float) -> Skipped | Decision | None:
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
            held = await self.queue.extend(job, ttl)
        except Exception as exc:  # it runs on the lock it has; the extender sets the job's ttl next time
            core.log.warning("job %s: setting its lock to its own lock_ttl failed (%s); will retry", job.id, exc)
            return None
        entry = core.held.get(claim)
        if entry is not None:
            core.extended(entry, held, now)
        if self._nudge is not None:  # the extender may be asleep for longer than this job's lock lasts
            _resolve(self._nudge)
        return None if held else Skipped.LOST

    def _expire(self) -> None:
        """Give up the handlers that ran past the timeout: each one's outcome is a TimeoutError
        (settled as a failure), and its slot's task is cancelled, which cancels an ``async def``
        handler; a plain handler's thread cannot be stopped and is abandoned."""
        core = self.core
        now = time.monotonic()
        for claim in core.overdue(self._running, now):
            start, task = self._running.pop(claim, (0.0, None))
            entry = core.held.get(claim)
            if task is not None and entry is not None:
                self._outcomes.append((entry[0], now - start, core.timeout_error(claim)))
                task.cancel()

    async def _keepalive(self) -> None:
        """Extend the locks of held jobs, and write the heartbeat, until the worker has stopped."""
        core = self.core
        next_beat = 0.0
        while not self._hard.is_set():
            now = time.monotonic()
            for entry in core.to_extend(now):
                try:
                    core.extended(entry, await self.queue.extend(entry[0], core.lock_of(claim_of(entry[0]))), now)
                except Exception:
                    core.log.exception("extending the lock of job %s failed; will retry", entry[0].id)
            if self.heartbeat and now >= next_beat:
                try:
                    await self.queue.heartbeat(self.id, self.heartbeat_entry(), HEARTBEAT_TTL_S)
                    next_beat = now + HEARTBEAT_EVERY_S
                except Exception as exc:
                    core.log.warning("writing the heartbeat failed (%s); will retry", exc)
                    next_beat = now + 1
            loop = asyncio.get_running_loop()
            self._nudge = nudge = loop.create_future()
            timer = loop.call_later(min(core.keepalive_wait(), HEARTBEAT_EVERY_S), _resolve, nudge)
            try:
                await nudge
            finally:
                timer.cancel()
                self._nudge = None

    async def _wait(self, timeout: float) -> None:
        """Sleep until a handler task has work for the main loop, or ``timeout``."""
        if self._outcomes:
            return
        loop = asyncio.get_running_loop()
        self._wake = wake = loop.create_future()
        timer = loop.call_later(timeout, _resolve, wake)
        try:
            await wake
        finally:
            timer.cancel()
            self._wake = None

    async def _shutdown(self, done: list[Finished]) -> None:
        """Give back buffered jobs at once, let running ones finish within the grace period."""
        unstarted = [job for job in self._inbox if job is not None]
        self._inbox.clear()
        for job in unstarted:
            self.core.held.pop((job.id, job.token), None)
            await self._release(job)
        self._hand_out([None] * len(self._slots))
        deadline = time.monotonic() + self.core.grace
        while self._running and not self._hard.is_set() and time.monotonic() < deadline:
            await self._wait(min(BUSY_POLL_S, max(0.0, deadline - time.monotonic())))
            self._expire()
            await self._settle(done)
            await self._ack_in_grace(done)
        await self._settle(done)
        if done:
            try:
                result = await self.queue.ack_claims(Checked(job for job, _ in done))
            except Exception as exc:
                self.core.log.error("acking the finished jobs on shutdown failed: %s", exc)
                result = AckResult(0, [], [job for job, _ in done])
            self.core.acked(done, result, final=True)
        left = [entry[0] for entry in self.core.held.values()]
        self.core.held.clear()
        self.core.rules.clear()
        self._hard.set()  # a slot still running is cancelled, and its job given back
        for task in self._slots:
            task.cancel()
        for job in left:  # hard stop or grace over: back to the queue now, not after the lock expires
            await self._release(job)

    async def _ack_in_grace(self, done: list[Finished]) -> None:
        """During a stop's grace, ack the jobs finished meanwhile as the running loop does (within
        BUSY_POLL_S): a finished job's lock is no longer extended, so an ack kept for the end of
        the grace would be refused once it expired, and the finished job would run again. A call
        that fails leaves them for the final ack."""
        core = self.core
        if not core.ack_due(done, time.monotonic()):
            return
        acks = done[:MAX_BATCH]
        try:
            settled = await self.queue.ack_claims(Checked(job for job, _ in acks))
        except Exception as exc:  # as the final ack: a stop must go on to give back what it holds
            core.log.warning("acking finished jobs during the stop failed (%s); will retry", exc)
            core.unsure(acks)
            core.ack_by = time.monotonic() + BUSY_POLL_S
            return
        done[:] = core.acked(acks, settled) + done[MAX_BATCH:]

    async def _release(self, job: Job) -> None:
        """Give back a job that did not fail (DESIGN rule 7: no attempt used), and count what happened."""
        try:
            released: bool | BaseException = await self.queue.release(job)
        except Exception as exc:
            released = exc
        self.core.returned(job, released)

    def _stuck(self) -> int:
        """How many abandoned handler threads still run."""
        for claim, thread in list(self._abandoned.items()):
            if not thread.is_alive():
                del self._abandoned[claim]
                self.core.log.warning("job %s: its abandoned handler returned after the timeout; result ignored", claim[0])
        return len(self._abandoned)
