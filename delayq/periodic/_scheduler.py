"""Schedulers: the loop (a thread, or an asyncio task) that offers each periodic job's runs to
the queue, and the I/O-free core both share. See ``delayq.periodic`` for how a slot is
enqueued exactly once however many schedulers run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from typing import Union

import redis

from .. import aio
from .._core import QueueCore
from .._errors import InvalidArgument, InvalidType
from .._sharded import ShardedCore
from .._steps import Op
from .._sync import Queue
from .._validate import to_ms
from ._jobs import PeriodicJob, PeriodicState

__all__ = ["MAX_SLEEP_S", "OUTAGE_PAUSES_S", "AsyncScheduler", "Scheduler", "SchedulerCore"]

MAX_SLEEP_S = 60.0
"""Longest a scheduler sleeps between ticks (it also wakes when the next slot comes due)."""

PLAN_TRIES = 3
"""Plans offered per job per tick: the first may be refused for this machine's clock, the next
is made by the server's (a third covers a slot boundary crossed in between)."""

CoreT = Union[QueueCore, ShardedCore]


class SchedulerCore:
    """What the sync and the asyncio scheduler share: the jobs, the clock, one tick. Does no I/O.

    Raises:
        InvalidType, InvalidArgument: A job that is not a PeriodicJob, or two with one name.
    """

    def __init__(self, core: CoreT, jobs: Iterable[PeriodicJob], max_sleep: float) -> None:
        if isinstance(jobs, PeriodicJob) or not isinstance(jobs, Iterable):
            raise InvalidType(f"jobs must be an iterable of PeriodicJob, got {jobs!r:.80}")
        self.jobs = list(jobs)
        names: set[str] = set()
        for job in self.jobs:
            if not isinstance(job, PeriodicJob):
                raise InvalidType(f"jobs must be PeriodicJob objects, got {job!r:.80}")
            if job.name in names:
                raise InvalidArgument(f"two periodic jobs are named {job.name!r}")
            names.add(job.name)
        self.core = core
        self.max_sleep = to_ms(max_sleep, "max_sleep", minimum_ms=10, maximum_s=3600) / 1000
        self.offset_ms = 0
        """The server's clock minus this machine's, as the last schedule call reported."""

    def now_ms(self) -> int:
        """Now by the queue's clock: the test clock if one is set, else the server's (estimated)."""
        clock = self.core.clock
        return int(clock()) if clock is not None else int(time.time() * 1000) + self.offset_ms

    def tick(self) -> Op[list[str]]:
        """Offer every job's catch-up and upcoming runs to the queue; returns the ids stored."""
        stored: list[str] = []
        latest: dict[str, int | None] = {}
        sharded = isinstance(self.core, ShardedCore)
        if sharded and any(job.missed == "run_once" for job in self.jobs):
            # each shard keeps the markers of the slots whose ids it holds: whether a slot was
            # missed is a question for all of them (the shard of the slot still refuses a double)
            markers = yield from self.core.periodic_markers([job.name for job in self.jobs])
            for job, found in zip(self.jobs, markers, strict=True):
                slots = [slot for slot, spec in found if spec == job.schedule.fingerprint]
                latest[job.name] = max(slots) if slots else None
        for job in self.jobs:
            for _ in range(PLAN_TRIES):
                # plan by this machine's clock corrected by the server's (or the test clock); the
                # script refuses a plan its own now contradicts, and returns its now to plan again
                now = self.now_ms()
                catchup, upcoming = job.plan(now)
                current = catchup[0] if catchup is not None else job.schedule.latest_at_or_before(now)
                if sharded and catchup is not None:
                    newest = latest.get(job.name)
                    if newest is None or newest >= catchup[0]:
                        catchup = None
                if catchup is None and upcoming is None:
                    break
                local = time.time()
                got_catchup, got_upcoming, server_ms, refused = yield from self.core.schedule(
                    job.name,
                    job.schedule.fingerprint,
                    job.payload,
                    catchup,
                    upcoming,
                    cold=sharded,
                    current=current,
                    checked=True,
                )
                if server_ms and self.core.clock is None:
                    self.offset_ms = server_ms - int((local + time.time()) * 500)
                if refused:
                    continue
                if got_catchup and catchup is not None:
                    stored.append(catchup[1])
                if got_upcoming and upcoming is not None:
                    stored.append(upcoming[1])
                break
        return stored

    def sleep_after(self) -> float:
        """Seconds until a job's next slot comes due (then the slot after it must be enqueued)."""
        now = self.now_ms()
        nexts = [n for n in (job.schedule.next_after(now) for job in self.jobs) if n is not None]
        if not nexts:
            return self.max_sleep
        return min(self.max_sleep, max(0.01, (min(nexts) - now) / 1000 + 0.005))

    def state(self) -> Op[list[PeriodicState]]:
        """Each job's latest slot enqueued (under its current schedule) and next slot."""
        if not self.jobs:
            return []
        markers = yield from self.core.periodic_markers([job.name for job in self.jobs])
        now = self.now_ms()
        result = []
        for job, found in zip(self.jobs, markers, strict=True):
            slots = [slot for slot, spec in found if spec == job.schedule.fingerprint]
            result.append(PeriodicState(job, max(slots) if slots else None, job.schedule.next_after(now)))
        return result


OUTAGE_PAUSES_S = (0.1, 0.5, 1.0, 2.0, 5.0)
"""How long a scheduler waits after successive failures to reach Redis."""


class Scheduler:
    """Enqueues periodic jobs' runs on a sync queue: a thread (:meth:`start`) or a loop (:meth:`run`).

    Safe to run in every worker process at once: each slot is enqueued once (see the module).
    Cheap: one script call per job per slot per scheduler, plus one per ``max_sleep``.

    Args:
        queue: A ``delayq.Queue`` (a sharded one too).
        jobs: The periodic jobs (e.g. ``tasks.periodic_jobs``).
        max_sleep: Longest sleep between ticks, in seconds (it also wakes at each slot).
        logger: Where to log; default ``logging.getLogger("delayq.periodic")``.

    Raises:
        InvalidType, InvalidArgument: A bad queue, job or max_sleep.
    """

    def __init__(
        self, queue: Queue, jobs: Iterable[PeriodicJob], *, max_sleep: float = MAX_SLEEP_S, logger: logging.Logger | None = None
    ) -> None:
        if not isinstance(queue, Queue):
            raise InvalidType(f"queue must be a delayq.Queue (AsyncScheduler takes a delayq.aio.Queue), got {queue!r:.80}")
        self.queue = queue
        self.core = SchedulerCore(queue._core, jobs, max_sleep)
        self.log = logger or logging.getLogger("delayq.periodic")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def jobs(self) -> list[PeriodicJob]:
        """The periodic jobs."""
        return self.core.jobs

    def run_pending(self) -> list[str]:
        """One tick: enqueue every run that is due to be enqueued (the next slot of each job, and a
        missed one for ``run_once``) and not enqueued yet. Returns the ids this call stored.

        Cost: one round trip per job (a sharded queue: up to 2, plus one per shard for ``run_once``).
        """
        return self.queue._drive(self.core.tick())

    def state(self) -> list[PeriodicState]:
        """Each job's latest slot enqueued and next slot. Cost: one round trip (one per shard)."""
        return self.queue._drive(self.core.state())

    def run(self) -> None:
        """Tick until :meth:`stop`; Redis outages are logged and ridden out."""
        failures = 0
        while not self._stop.is_set():
            try:
                stored = self.run_pending()
                failures = 0
                if stored:
                    self.log.info("enqueued periodic runs %s", ", ".join(stored))
                pause = self.core.sleep_after()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                failures += 1
                pause = OUTAGE_PAUSES_S[min(failures, len(OUTAGE_PAUSES_S)) - 1]
                self.log.warning("scheduler: Redis unreachable (%s); retrying in %.1fs", exc, pause)
            except Exception:
                pause = self.core.max_sleep
                self.log.exception("scheduler tick failed; retrying in %.0fs", pause)
            self._stop.wait(pause)

    def start(self) -> Scheduler:
        """Run in a daemon thread; returns self."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self.run, name="delayq-scheduler", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 5) -> None:
        """Stop the loop (and wait up to ``timeout`` s for its thread)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> Scheduler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AsyncScheduler:
    """The asyncio twin of :class:`Scheduler`, over a ``delayq.aio.Queue``: ``await run_pending()``,
    ``await run()``, or :meth:`start` as a task.

    Raises:
        InvalidType, InvalidArgument: As for :class:`Scheduler`.
    """

    def __init__(
        self,
        queue: aio.Queue,
        jobs: Iterable[PeriodicJob],
        *,
        max_sleep: float = MAX_SLEEP_S,
        logger: logging.Logger | None = None,
    ) -> None:
        if not isinstance(queue, aio.Queue):
            raise InvalidType(f"queue must be a delayq.aio.Queue (Scheduler takes a delayq.Queue), got {queue!r:.80}")
        self.queue = queue
        self.core = SchedulerCore(queue._core, jobs, max_sleep)
        self.log = logger or logging.getLogger("delayq.periodic")
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def jobs(self) -> list[PeriodicJob]:
        """The periodic jobs."""
        return self.core.jobs

    async def run_pending(self) -> list[str]:
        """See :meth:`Scheduler.run_pending`."""
        return await self.queue._drive(self.core.tick())

    async def state(self) -> list[PeriodicState]:
        """See :meth:`Scheduler.state`."""
        return await self.queue._drive(self.core.state())

    async def run(self) -> None:
        """See :meth:`Scheduler.run`."""
        failures = 0
        while not self._stop.is_set():
            try:
                stored = await self.run_pending()
                failures = 0
                if stored:
                    self.log.info("enqueued periodic runs %s", ", ".join(stored))
                pause = self.core.sleep_after()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                failures += 1
                pause = OUTAGE_PAUSES_S[min(failures, len(OUTAGE_PAUSES_S)) - 1]
                self.log.warning("scheduler: Redis unreachable (%s); retrying in %.1fs", exc, pause)
            except Exception:
                pause = self.core.max_sleep
                self.log.exception("scheduler tick failed; retrying in %.0fs", pause)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), pause)

    def start(self) -> AsyncScheduler:
        """Run as a task of the running loop; returns self."""
        if self._task is None or self._task.done():
            self._stop.clear()
            self._task = asyncio.get_running_loop().create_task(self.run())
        return self

    async def stop(self) -> None:
        """Stop the loop and wait for its task."""
        self._stop.set()
        if self._task is not None:
            await self._task

    async def __aenter__(self) -> AsyncScheduler:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
