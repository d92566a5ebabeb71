"""Periodic jobs: cron expressions (in a time zone) and intervals, enqueued once per slot however
many schedulers run.

    from delayq.periodic import PeriodicJob, Scheduler, cron, every

    jobs = [
        PeriodicJob("report", cron("0 9 * * MON-FRI", tz="Europe/Paris"), b"report"),
        PeriodicJob("sweep", every(600), b"sweep", missed="run_once"),
    ]
    Scheduler(queue, jobs).start()      # in every worker process: safe

(``delayq.tasks.Tasks.periodic`` makes them from tasks.)

How exactly-once works: each run's job id carries its slot (``report@2025-01-06T08:00:00Z``),
and ``lua/schedule.lua`` enqueues a slot only when it is newer than the job's marker, a hash
field that records the latest slot enqueued and that nothing but that script touches: the
check and the enqueue are one atomic script, and the marker outlives the run's ack, so a
finished run is never enqueued again. A run is enqueued one slot ahead, as a delayed job due
at its slot, so it starts on time (to the queue's own precision) however coarse the
schedulers' ticks are. A slot that passes while no scheduler runs at all is *missed*:
``missed="skip"`` (default) leaves it, ``missed="run_once"`` runs the latest missed slot once,
at once, whatever the number missed.

Cron expressions are evaluated by cronsim (``pip install "delayq[cron]"``) in the given time
zone, with Debian cron's rules at DST changes: a time that does not exist that day (02:30 when
clocks jump from 02:00 to 03:00) runs at the first time after the gap, and a time that occurs
twice runs once (the first time); expressions with ``*`` in the minute or hour field follow
real elapsed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis

from . import aio
from ._core import QueueCore
from ._errors import InvalidArgument, InvalidType
from ._sharded import ShardedCore
from ._steps import Op
from ._sync import Queue
from ._validate import MAX_NAME_LENGTH, Duration, check_payload, to_ms

if TYPE_CHECKING:
    from cronsim import CronSim

__all__ = [
    "AsyncScheduler",
    "Cron",
    "Every",
    "Missed",
    "PeriodicJob",
    "PeriodicState",
    "Schedule",
    "Scheduler",
    "SchedulerCore",
    "cron",
    "every",
    "make_schedule",
]

Missed = Literal["skip", "run_once"]

NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""The cron nicknames accepted besides 5- and 6-field expressions."""

MAX_SLEEP_S = 60.0
"""Longest a scheduler sleeps between ticks (it also wakes when the next slot comes due)."""


def _cronsim() -> type[CronSim]:
    try:
        from cronsim import CronSim  # noqa: PLC0415 (an optional extra: imported when first used)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InvalidArgument('cron expressions need cronsim: pip install "delayq[cron]"') from exc
    return CronSim


def _zone(tz: object) -> ZoneInfo:
    if not isinstance(tz, str):
        raise InvalidType(f"tz must be an IANA time zone name (str), got {tz!r} ({type(tz).__name__})")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidArgument(f"unknown time zone {tz!r} (give an IANA name such as 'Europe/Paris' or 'UTC')") from exc


def _ms(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)


@dataclass(frozen=True)
class Cron:
    """A cron schedule in a time zone; make it with :func:`cron`."""

    expression: str
    tz: str = "UTC"
    _fields: str = field(init=False, repr=False, compare=False)
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str):
            raise InvalidType(f"a cron expression must be a str, got {self.expression!r}")
        text = " ".join(self.expression.split())
        fields = NICKNAMES.get(text.lower(), text)
        object.__setattr__(self, "_zone", _zone(self.tz))
        crons = _cronsim()
        try:
            crons(fields, datetime(2000, 1, 1, tzinfo=timezone.utc))
        except Exception as exc:  # cronsim raises CronSimError (and, for some input, others)
            raise InvalidArgument(f"bad cron expression {self.expression!r}: {exc}") from exc
        object.__setattr__(self, "_fields", fields)
        if self.next_after(0) is None:
            raise InvalidArgument(f"cron expression {self.expression!r} never fires")

    @property
    def fingerprint(self) -> str:
        """What identifies the schedule in its marker (no spaces)."""
        return f"cron:{self._fields.replace(' ', '_')}@{self.tz}"

    def __str__(self) -> str:
        return f"cron {self.expression!r} in {self.tz}"

    def next_after(self, ms: int) -> int | None:
        """The first slot strictly after ``ms`` (ms since the epoch), or None if there is none."""
        start = datetime.fromtimestamp(ms // 1000, tz=self._zone)
        it = _cronsim()(self._fields, start)
        for _ in range(4):  # a wall time inside a repeated hour may map to the earlier pass: go on
            try:
                slot = _ms(next(it))
            except StopIteration:
                return None
            if slot > ms:
                return slot
        return None

    def latest_at_or_before(self, ms: int) -> int | None:
        """The last slot at or before ``ms``, or None."""
        start = datetime.fromtimestamp(ms // 1000 + 1, tz=self._zone)
        it = _cronsim()(self._fields, start, reverse=True)
        found = None
        for _ in range(4):
            try:
                slot = _ms(next(it))
            except StopIteration:
                return None
            if slot <= ms:
                found = slot
                break
        if found is None:
            return None
        # going back by wall time from inside a repeated hour can skip the hour's first pass:
        # step forward over what was skipped
        for _ in range(8):
            later = self.next_after(found)
            if later is None or later > ms:
                break
            found = later
        return found


@dataclass(frozen=True)
class Every:
    """A fixed interval, in whole seconds, aligned to the Unix epoch; make it with :func:`every`."""

    seconds: int

    def __post_init__(self) -> None:
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, int) or self.seconds < 1:
            raise InvalidArgument(f"an interval must be a whole number of seconds >= 1, got {self.seconds!r}")

    @property
    def fingerprint(self) -> str:
        """What identifies the schedule in its marker (no spaces)."""
        return f"every:{self.seconds}s"

    def __str__(self) -> str:
        return f"every {self.seconds}s"

    def next_after(self, ms: int) -> int | None:
        """The first slot strictly after ``ms``."""
        step = self.seconds * 1000
        return (ms // step + 1) * step

    def latest_at_or_before(self, ms: int) -> int | None:
        """The last slot at or before ``ms``."""
        step = self.seconds * 1000
        return (ms // step) * step


Schedule = Union[Cron, Every]


def cron(expression: str, tz: str = "UTC") -> Cron:
    """A cron schedule: 5 fields (minute hour day month weekday), 6 with seconds first, or a
    nickname (@hourly, @daily, @weekly, @monthly, @yearly), evaluated in time zone ``tz``.

    Raises:
        InvalidType, InvalidArgument: A bad expression (named), or an unknown time zone.
    """
    return Cron(expression, tz)


def every(interval: Duration) -> Every:
    """An interval schedule: slots at whole multiples of ``interval`` since the Unix epoch (so
    ``every(3600)`` runs on the hour, UTC), the same for every scheduler.

    Raises:
        InvalidType, InvalidArgument: Not a whole number of seconds from 1 s to 10 years.
    """
    ms = to_ms(interval, "interval", minimum_ms=1000, maximum_s=10 * 365 * 24 * 3600)
    if ms % 1000:
        raise InvalidArgument(f"an interval must be a whole number of seconds, got {interval!r}")
    return Every(ms // 1000)


def make_schedule(value: object, tz: str | None = None) -> Schedule:
    """A schedule from a cron string, an interval (seconds or timedelta), or a Cron/Every.

    Raises:
        InvalidType, InvalidArgument: A bad value, or ``tz`` with something other than a cron string.
    """
    if isinstance(value, (Cron, Every)):
        if tz is not None:
            raise InvalidArgument("give tz to cron(...) itself, not with a ready-made schedule")
        return value
    if isinstance(value, str):
        return cron(value, "UTC" if tz is None else tz)
    if tz is not None:
        raise InvalidArgument(f"tz applies to cron expressions, not to the interval {value!r}")
    if isinstance(value, (int, float, timedelta)) and not isinstance(value, bool):
        return every(value)
    raise InvalidType(f"a schedule must be a cron expression, seconds, a timedelta, cron(...) or every(...), got {value!r}")


def slot_text(ms: int) -> str:
    """A slot as the UTC time in a run's id: ``2025-01-06T08:00:00Z``."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class PeriodicJob:
    """A payload enqueued on a schedule. Every run is a job with id ``"<name>@<slot, UTC>"``.

    Args:
        name: 1-200 characters, unique among a queue's periodic jobs.
        schedule: ``cron(...)`` or ``every(...)``.
        payload: Each run's payload (bytes or str).
        missed: Slots missed while no scheduler ran: "skip" (default) or "run_once".

    Raises:
        InvalidType, InvalidArgument: A bad name, schedule, payload or policy.
    """

    name: str
    schedule: Schedule
    payload: bytes
    missed: Missed = "skip"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise InvalidType(f"a periodic job's name must be a str, got {self.name!r}")
        if not self.name or len(self.name) > MAX_NAME_LENGTH or self.name != self.name.strip():
            raise InvalidArgument(f"a periodic job's name must be 1-{MAX_NAME_LENGTH} characters, not padded: {self.name!r}")
        if not isinstance(self.schedule, (Cron, Every)):
            raise InvalidType(f"schedule must be cron(...) or every(...), got {self.schedule!r}")
        object.__setattr__(self, "payload", check_payload(self.payload))
        if self.missed not in ("skip", "run_once"):
            raise InvalidArgument(f"missed must be 'skip' or 'run_once', got {self.missed!r}")

    def run_id(self, slot_ms: int) -> str:
        """The job id of the run for a slot."""
        return f"{self.name}@{slot_text(slot_ms)}"

    def plan(self, now_ms: int) -> tuple[tuple[int, str] | None, tuple[int, str] | None]:
        """(the catch-up run, the upcoming run) to offer the queue at ``now_ms``, as (slot, id) pairs."""
        upcoming = self.schedule.next_after(now_ms)
        latest = self.schedule.latest_at_or_before(now_ms) if self.missed == "run_once" else None
        return (
            None if latest is None else (latest, self.run_id(latest)),
            None if upcoming is None else (upcoming, self.run_id(upcoming)),
        )


@dataclass(frozen=True, slots=True)
class PeriodicState:
    """A periodic job as the queue knows it (for listings).

    Attributes:
        job: The periodic job.
        last_ms: The latest slot enqueued under this schedule (ms since the epoch), or None.
        next_ms: The first slot after now, or None if the schedule has no more.
    """

    job: PeriodicJob
    last_ms: int | None
    next_ms: int | None


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
            now = self.now_ms()
            catchup, upcoming = job.plan(now)
            if sharded and catchup is not None:
                newest = latest.get(job.name)
                if newest is None or newest >= catchup[0]:
                    catchup = None
            if catchup is None and upcoming is None:
                continue
            local = time.time()
            got_catchup, got_upcoming, server_ms = yield from self.core.schedule(
                job.name, job.schedule.fingerprint, job.payload, catchup, upcoming, cold=sharded
            )
            if server_ms:
                self.offset_ms = server_ms - int((local + time.time()) * 500)
            if got_catchup and catchup is not None:
                stored.append(catchup[1])
            if got_upcoming and upcoming is not None:
                stored.append(upcoming[1])
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
