"""The asyncio worker: the thread worker's behaviour, with asyncio tasks instead of threads."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import signal
import threading
import time
from collections.abc import Callable

import redis

from ._aio import Queue
from ._replies import AckResult
from ._types import Job
from ._worker import BUSY_POLL_S
from ._worker_core import Claim, Finished, WorkerBase, WorkerEvent, WorkerStats, claim_of, error_text, outage_pause

__all__ = ["Worker"]


def _in_daemon_thread(function: Callable[[Job], object], job: Job) -> tuple[asyncio.Future[object], threading.Thread]:
    """Run a plain handler on a daemon thread. asyncio.to_thread's executor is joined when the
    loop closes, so a hard stop would still wait for a running handler."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[object] = loop.create_future()

    def settle(value: object, error: BaseException | None) -> None:
        if not future.done():
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)

    def target() -> None:
        try:
            value, error = function(job), None
        except BaseException as exc:  # handed to the awaiting task
            value, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop may be closed after a hard stop
            loop.call_soon_threadsafe(settle, value, error)

    thread = threading.Thread(target=target, name=f"delayq-handler-{job.id[:16]}", daemon=True)
    thread.start()
    return future, thread


def _retrieve(task: asyncio.Future[None]) -> None:
    """Read a given-up handler's end, so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


class Worker(WorkerBase[Queue]):
    """The asyncio twin of :class:`delayq.Worker`; see it for the behaviour.

    Args:
        queue: A ``delayq.aio.Queue``.
        handler: ``async def handler(job)``, or a plain function (run in a thread).
        concurrency, lock_ttl, poll, backoff, extend_every, grace, timeout, on_event, logger:
            As for :class:`delayq.Worker`. At its ``timeout`` an ``async def`` handler is
            cancelled; a plain function's thread is abandoned, as in :class:`delayq.Worker`.

    Raises:
        InvalidType, InvalidArgument: A bad setting.
    """

    queue_type = Queue
    twin = "delayq.Worker"

    def _setup(self) -> None:
        self._running: dict[Claim, tuple[Job, asyncio.Task[None]]] = {}
        self._finished: asyncio.Queue[tuple[Job, float, BaseException | None]] | None = None
        self._threads: dict[Claim, threading.Thread] = {}
        """The thread of each running plain handler."""
        self._abandoned: dict[Claim, threading.Thread] = {}
        """Threads of plain handlers that ran past the timeout, given up while they still run."""

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signalled(sig.name)

    async def _handle(self, job: Job) -> None:
        if inspect.iscoroutinefunction(self.handler):
            await self.handler(job)
            return
        future, self._threads[claim_of(job)] = _in_daemon_thread(self.handler, job)
        result = await future
        if inspect.isawaitable(result):
            await result

    async def _run_one(self, job: Job) -> None:
        """Run the handler within the timeout, and hand its outcome to _settle."""
        assert self._finished is not None
        claim = claim_of(job)
        start = time.perf_counter()
        work = asyncio.ensure_future(self._handle(job))
        try:
            await asyncio.wait({work}, timeout=self.core.timeout)
        except asyncio.CancelledError:  # a hard stop
            work.cancel()
            raise
        finally:
            thread = self._threads.pop(claim, None)
        error: BaseException | None
        if not work.done():
            # past the timeout: a coroutine is cancelled; a thread cannot be, and is abandoned
            work.cancel()
            work.add_done_callback(_retrieve)
            if thread is not None and thread.is_alive():
                self._abandoned[claim] = thread
                self.core.abandoned(job, self._stuck())
            error = self.core.timeout_error()
        elif work.cancelled():  # the handler cancelled itself: a failure like any other
            error = asyncio.CancelledError()
        else:
            error = work.exception()
        self._finished.put_nowait((job, time.perf_counter() - start, error))

    def _stuck(self) -> int:
        """How many abandoned handler threads still run."""
        for claim, thread in list(self._abandoned.items()):
            if not thread.is_alive():
                del self._abandoned[claim]
                self.core.log.warning("job %s: its abandoned handler returned after the timeout; result ignored", claim[0])
        return len(self._abandoned)

    async def _extend_loop(self) -> None:
        while not self._hard.is_set():
            await asyncio.sleep(self.core.extend_every)
            for claim, (job, _) in list(self._running.items()):
                if claim in self._lost:
                    continue
                try:
                    if not await self.queue.extend(job, self.core.lock_ttl):
                        self._lost.add(claim)
                        self.core.log.warning("job %s: lock lost while its handler runs", job.id)
                except Exception:
                    self.core.log.exception("extending the lock of job %s failed; will retry", job.id)

    async def _settle(self, done: list[Finished]) -> None:
        """Take finished handlers' outcomes: successes join ``done`` (acked, and counted, with the next call)."""
        assert self._finished is not None
        while not self._finished.empty():
            job, seconds, error = self._finished.get_nowait()
            claim = claim_of(job)
            self._running.pop(claim, None)
            if claim in self._lost:
                self._lost.discard(claim)
                self.core.record(WorkerEvent("lock_lost", job, seconds))
            elif error is None:
                done.append(Finished(job, seconds))
            else:
                text = error_text(error)
                self.core.record(WorkerEvent("failed", job, seconds, text))
                delay = self.core.retry_delay(job)
                code = await self.queue._drive(self.queue._core.nack(job, delay, text))
                kind = {2: "dead_lettered", 1: "retried"}.get(code, "lock_lost")
                self.core.record(WorkerEvent(kind, job, seconds, text if code else None, delay if code == 1 else None))  # type: ignore[arg-type]

    async def _cycle(self, done: list[Finished]) -> bool:
        """Settle finished handlers, ack ``done`` (emptied once acked) and claim for the free capacity.

        Returns:
            Whether new jobs were claimed.
        """
        await self._settle(done)
        short = max(0, self._stuck() - self.core.max_abandoned)  # past the bound, abandoned threads hold slots
        free = self.core.concurrency - short - len(self._running)
        if free > 0:
            # no long-poll with acks to send: if a later step of it failed, the acks it applied
            # would be sent again and refused, and the worker would count them as lost
            wait = self.core.poll if not self._running and not done else 0
            result = await self.queue._ack_and_claim([f.job for f in done], free, self.core.lock_ttl, wait)
            done[:] = self.core.acked(done, result)
            jobs = result.jobs
            for job in jobs:
                self._running[claim_of(job)] = (job, asyncio.create_task(self._run_one(job)))
            return bool(jobs)
        if done:
            settled = await self.queue._ack_claims([f.job for f in done])
            done[:] = self.core.acked(done, settled)
        return False

    async def _wait_finished(self, timeout: float) -> None:
        assert self._finished is not None
        try:
            item = await asyncio.wait_for(self._finished.get(), timeout)
        except asyncio.TimeoutError:
            return
        self._finished.put_nowait(item)

    async def run(self, *, install_signals: bool = True) -> WorkerStats:
        """Work until :meth:`stop` (or SIGTERM/SIGINT); returns the counters.

        Args:
            install_signals: Handle SIGTERM and SIGINT on the running loop (main thread only).

        Returns:
            The worker's counters.
        """
        loop = asyncio.get_running_loop()
        self._finished = asyncio.Queue()
        installed = []
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append(sig)
        core = self.core
        extender = asyncio.create_task(self._extend_loop())
        core.log.info("worker started on %r: concurrency %d, lock_ttl %.1fs", self.queue, core.concurrency, core.lock_ttl)
        done: list[Finished] = []
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    claimed = await self._cycle(done)
                    failures = 0
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    # Redis restarting or failing over: keep the finished jobs for the next call
                    core.unsure(done)
                    failures += 1
                    pause = outage_pause(failures)
                    core.log.warning("Redis unreachable (%s); retrying in %.1fs", exc, pause)
                    await asyncio.sleep(pause)
                    continue
                if not claimed and (self._running or self._abandoned):
                    await self._wait_finished(BUSY_POLL_S)
            await self._shutdown(done)
        finally:
            self._hard.set()
            extender.cancel()
            if self._stuck():
                core.log.warning("%d abandoned handler threads still run; they end with the process", len(self._abandoned))
            for sig in installed:
                loop.remove_signal_handler(sig)
        core.log.info("worker stopped: %s", core.stats)
        return core.stats

    async def _shutdown(self, done: list[Finished]) -> None:
        """Let running handlers finish within the grace period; give back the rest at once."""
        deadline = time.monotonic() + self.core.grace
        while self._running and not self._hard.is_set() and time.monotonic() < deadline:
            await self._wait_finished(min(0.05, max(0.0, deadline - time.monotonic())))
            await self._settle(done)
        await self._settle(done)
        if done:
            try:
                result = await self.queue._ack_claims([f.job for f in done])
            except Exception as exc:
                self.core.log.error("acking the finished jobs on shutdown failed: %s", exc)
                result = AckResult(0, [], [f.job for f in done])
            self.core.acked(done, result, final=True)
        left = list(self._running.values())
        self._running.clear()
        for job, task in left:
            task.cancel()
            await self._release(job)

    async def _release(self, job: Job) -> None:
        """Give back a job that did not fail (DESIGN rule 7: no attempt used), and count what happened."""
        try:
            released: bool | BaseException = await self.queue.release(job)
        except Exception as exc:
            released = exc
        self.core.returned(job, released)
