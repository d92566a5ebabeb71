"""What the sync and the async worker share: settings, retry backoff, counters, events, logging."""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar

from ._core import MAX_BATCH, MAX_LOCK_TTL_S, AckResult, DequeueResult, to_ms
from ._errors import InvalidArgument, InvalidType
from ._types import Job

__all__ = [
    "Backoff",
    "Claim",
    "EventKind",
    "Finished",
    "WorkerBase",
    "WorkerCore",
    "WorkerEvent",
    "WorkerStats",
    "bounded_text",
    "claim_of",
    "error_text",
    "outage_pause",
]

Claim = tuple[str, str]
"""A claim: (job id, token). Ids are re-usable once a job is gone, so a worker tracks claims (DESIGN rule 8)."""

EventKind = Literal["processed", "failed", "retried", "dead_lettered", "lock_lost", "returned"]

MAX_ERROR_CHARS = 2000
"""Longest error text kept with a job."""
DEFAULT_TIMEOUT_S = 300.0
"""How long a handler may run by default: arq's default (RQ has 180 s, saq 10 s). Long enough for
the jobs a queue like this usually runs, short enough that a hung handler does not hold a slot for
hours; set ``timeout=None`` for no limit."""
MAX_TIMEOUT_S = 7 * 24 * 3600
"""Longest handler timeout: a week."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry delays: ``base * factor ** (attempts - 1)``, capped at ``cap``, spread by ±``jitter``.

    Args:
        base: Seconds before the first retry.
        factor: Growth per attempt (>= 1).
        cap: Longest delay, in seconds.
        jitter: Random spread, a fraction in [0, 1): 0.2 means ±20%, so that jobs
            that failed together do not all come back at once.

    Raises:
        InvalidArgument, InvalidType: A value out of range (checked when the worker is made).
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 300.0
    jitter: float = 0.2

    def check(self) -> Backoff:
        """Validate the fields; returns self."""
        for label, value in (("base", self.base), ("factor", self.factor), ("cap", self.cap), ("jitter", self.jitter)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidType(f"Backoff.{label} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise InvalidArgument(f"Backoff.{label} must be a finite number >= 0, got {value!r}")
        if self.factor < 1:
            raise InvalidArgument(f"Backoff.factor must be >= 1, got {self.factor!r}")
        if self.jitter >= 1:
            raise InvalidArgument(f"Backoff.jitter must be below 1, got {self.jitter!r}")
        to_ms(self.cap, "Backoff.cap", minimum_ms=0, maximum_s=10 * 365 * 24 * 3600)
        return self

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Seconds to wait before the next delivery of a job that failed on its ``attempts``-th claim."""
        exponent = min(max(attempts - 1, 0), 64)
        raw = min(self.cap, self.base * self.factor**exponent)
        return min(self.cap, max(0.0, raw * rng.uniform(1 - self.jitter, 1 + self.jitter)))


@dataclass(frozen=True, slots=True)
class WorkerEvent:
    """One thing that happened to a job in a worker, for metrics hooks.

    Attributes:
        kind: "processed" (handler succeeded, and the ack was applied), "failed" (handler
            raised), "retried" (given back with a delay), "dead_lettered", "lock_lost" (the
            lock expired or the job was cancelled before the ack or give-back: not acked;
            it comes back by itself if it still exists),
            "returned" (claimed but not finished, given back at once on shutdown, its attempt
            not counted: see ``Queue.release``).
        job: The job.
        seconds: How long the handler ran (0 when it did not run).
        error: The error text for "failed", "retried" and "dead_lettered".
        delay: The retry delay in seconds for "retried".
    """

    kind: EventKind
    job: Job
    seconds: float = 0.0
    error: str | None = None
    delay: float | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """A job whose handler returned, waiting for its ack (sent with the next claim)."""

    job: Job
    seconds: float
    uncertain: bool = False
    """A call that carried its ack failed, so the ack may have been applied though no reply said so."""


@dataclass
class WorkerStats:
    """Counters since the worker started (read them any time)."""

    processed: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    lock_lost: int = 0
    returned: int = 0


@dataclass
class WorkerCore:
    """A worker's settings and bookkeeping, shared by the thread and the asyncio worker. No I/O."""

    concurrency: int
    lock_ttl: float
    poll: float
    backoff: Backoff
    extend_every: float
    grace: float
    timeout: float | None
    on_event: Callable[[WorkerEvent], None] | None
    log: logging.Logger
    stats: WorkerStats = field(default_factory=WorkerStats)
    rng: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def make(
        cls,
        *,
        concurrency: int,
        lock_ttl: float,
        poll: float,
        backoff: Backoff | None,
        extend_every: float | None,
        grace: float,
        timeout: float | None,
        on_event: Callable[[WorkerEvent], None] | None,
        logger: logging.Logger | None,
    ) -> WorkerCore:
        """Validate a worker's settings.

        Raises:
            InvalidType, InvalidArgument: A setting out of range; named in the message.
        """
        if isinstance(concurrency, bool) or not isinstance(concurrency, int):
            raise InvalidType(f"concurrency must be an int, got {concurrency!r}")
        if not 1 <= concurrency <= MAX_BATCH:
            raise InvalidArgument(f"concurrency must be between 1 and {MAX_BATCH}, got {concurrency!r}")
        ttl_ms = to_ms(lock_ttl, "lock_ttl", minimum_ms=10, maximum_s=MAX_LOCK_TTL_S)
        poll_s = to_ms(poll, "poll", minimum_ms=0, maximum_s=60) / 1000
        every_s = (
            ttl_ms / 3000
            if extend_every is None
            else to_ms(extend_every, "extend_every", minimum_ms=1, maximum_s=MAX_LOCK_TTL_S) / 1000
        )
        if every_s * 1000 >= ttl_ms:
            raise InvalidArgument(f"extend_every must be shorter than lock_ttl, got {extend_every!r} >= {lock_ttl!r}")
        grace_s = to_ms(grace, "grace", minimum_ms=0, maximum_s=24 * 3600) / 1000
        timeout_s = None if timeout is None else to_ms(timeout, "timeout", minimum_ms=1, maximum_s=MAX_TIMEOUT_S) / 1000
        if on_event is not None and not callable(on_event):
            raise InvalidType(f"on_event must be callable, got {on_event!r}")
        return cls(
            concurrency=concurrency,
            lock_ttl=ttl_ms / 1000,
            poll=poll_s,
            backoff=(backoff or Backoff()).check(),
            extend_every=every_s,
            grace=grace_s,
            timeout=timeout_s,
            on_event=on_event,
            log=logger or logging.getLogger("delayq.worker"),
        )

    def timeout_error(self) -> TimeoutError:
        """The failure of a handler that ran past ``timeout`` (its text is kept with the job)."""
        return TimeoutError(f"the handler ran longer than the worker's timeout of {self.timeout:g}s")

    @property
    def max_abandoned(self) -> int:
        """Most handler threads given up at their timeout that are replaced while they still run
        (a thread cannot be killed): one per slot, so at most 2 x concurrency threads. Past that,
        the worker runs with fewer slots until some of them return."""
        return self.concurrency

    def abandoned(self, job: Job, stuck: int) -> None:
        """Log a plain handler's thread given up at its timeout; ``stuck`` such threads still run."""
        self.log.warning(
            "job %s: handler ran past the %gs timeout; its thread cannot be stopped and is abandoned "
            "(its result will be ignored); %d abandoned handler threads still run",
            job.id,
            self.timeout,
            stuck,
        )
        if stuck > self.max_abandoned:
            self.log.error(
                "%d abandoned handler threads still run, more than the %d replaced: the worker runs "
                "%d of its %d slots until they return; look for handlers that hang",
                stuck,
                self.max_abandoned,
                self.concurrency - (stuck - self.max_abandoned),
                self.concurrency,
            )

    def retry_delay(self, job: Job) -> float:
        """The backoff delay for a job that just failed on its ``job.attempts``-th claim."""
        with self._lock:  # random.Random is not meant to be shared between threads unguarded
            return self.backoff.delay(job.attempts, self.rng)

    def acked(self, done: list[Finished], result: AckResult | DequeueResult, *, final: bool = False) -> list[Finished]:
        """Count what acking ``done`` did: "processed" for each ack applied, "lock_lost" for each one
        refused (the lock was lost between the handler's end and the ack). An ack sent again after
        a failed call (``uncertain``) and refused because the job is gone was, most likely, applied
        by that call: "processed".

        Args:
            done: The finished jobs that were to be acked.
            result: What the call said of them.
            final: No later call will ack the unapplied ones (the worker stops): count them
                "lock_lost", as they will come back when their locks expire.

        Returns:
            The jobs of ``done`` whose ack was not tried, to send again (none when ``final``).
        """
        lost = {claim_of(job) for job in result.refused}
        gone = {claim_of(job) for job in result.gone}
        again = {claim_of(job) for job in result.unapplied}
        left = []
        for finished in done:
            claim = claim_of(finished.job)
            if claim in again and not final:
                left.append(Finished(finished.job, finished.seconds, uncertain=True))  # a call failed: maybe applied
                continue
            applied = claim not in lost and claim not in again
            if claim in gone and finished.uncertain:
                applied = True
                self.log.info("job %s: an earlier ack's reply was lost and the job is gone: counted as acked", finished.job.id)
            self.record(WorkerEvent("processed" if applied else "lock_lost", finished.job, finished.seconds))
        if final and again:
            self.log.error("%d finished jobs could not be acked; they come back when their locks expire", len(again))
        return left

    def unsure(self, done: list[Finished]) -> None:
        """Mark ``done`` after a failed call that carried their acks: the call may have applied them."""
        done[:] = [Finished(f.job, f.seconds, uncertain=True) for f in done]

    def returned(self, job: Job, released: bool | BaseException) -> None:
        """Count a job given back unfinished with ``release`` (its attempt undone): "returned", or
        "lock_lost" when the release found the lock gone or failed (``released`` is the error); the
        job then comes back when its lock expires."""
        if isinstance(released, BaseException):
            self.log.error("giving job %s back failed (%s); it comes back when its lock expires", job.id, released)
        self.record(WorkerEvent("returned" if released is True else "lock_lost", job))

    def record(self, event: WorkerEvent) -> None:
        """Count, log and report one event (thread-safe). A failing hook is logged, never raised."""
        with self._lock:
            setattr(self.stats, event.kind, getattr(self.stats, event.kind) + 1)
        job = event.job
        if event.kind == "processed":
            self.log.debug("job %s done in %.3fs (attempt %d)", job.id, event.seconds, job.attempts)
        elif event.kind == "failed":
            self.log.warning("job %s failed after %.3fs (attempt %d): %s", job.id, event.seconds, job.attempts, event.error)
        elif event.kind == "retried":
            self.log.info("job %s retried in %.1fs (attempt %d)", job.id, event.delay or 0.0, job.attempts)
        elif event.kind == "dead_lettered":
            self.log.error("job %s dead-lettered after %d attempts: %s", job.id, job.attempts, event.error)
        elif event.kind == "lock_lost":
            self.log.warning("job %s lost its lock (expired or cancelled); not acked (attempt %d)", job.id, job.attempts)
        else:
            self.log.info("job %s given back to the queue on shutdown, not finished", job.id)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                self.log.exception("the on_event hook raised for job %s", job.id)


OUTAGE_BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
"""How long a worker waits after each successive failure to reach Redis before trying again."""


def outage_pause(failures: int) -> float:
    """Seconds to wait after ``failures`` consecutive connection failures."""
    return OUTAGE_BACKOFF_S[min(failures, len(OUTAGE_BACKOFF_S)) - 1]


def error_text(exc: BaseException) -> str:
    """The text kept with a failed job: the exception's type and message, bounded."""
    try:
        message = str(exc)
    except Exception:  # an exception whose __str__ fails still fails its job, not the worker
        message = f"<unprintable {type(exc).__name__}>"
    return bounded_text(f"{type(exc).__name__}: {message}")


def bounded_text(text: str) -> str:
    """``text`` as Redis can keep it: at most MAX_ERROR_CHARS, and valid UTF-8 (a lone surrogate,
    as ``os.fsdecode`` leaves for undecodable bytes, becomes its ``\\udcxx`` escape)."""
    text = text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def claim_of(job: Job) -> Claim:
    """The claim a job was delivered by."""
    return (job.id, job.token)


QueueT = TypeVar("QueueT")


class WorkerBase(Generic[QueueT]):
    """What the thread and the asyncio worker share besides their loops: checking the settings,
    the counters, and stop requests (graceful first, hard the second time)."""

    queue_type: ClassVar[type] = object
    """The queue class this worker drives (set by each worker)."""
    twin: ClassVar[str] = ""
    """The other worker, named in the error for a queue of the other kind."""

    def __init__(
        self,
        queue: QueueT,
        handler: Callable[[Job], Any],
        *,
        concurrency: int = 8,
        lock_ttl: float = 30,
        poll: float = 1.0,
        backoff: Backoff | None = None,
        extend_every: float | None = None,
        grace: float = 30,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        on_event: Callable[[WorkerEvent], None] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if not isinstance(queue, self.queue_type):
            kind = f"{self.queue_type.__module__.replace('._sync', '')}.{self.queue_type.__qualname__}"
            raise InvalidType(f"queue must be a {kind} (use {self.twin} for the other kind), got {queue!r}")
        if not callable(handler):
            raise InvalidType(f"handler must be callable, got {handler!r}")
        self.queue: QueueT = queue
        self.handler: Callable[[Job], Any] = handler
        self.core = WorkerCore.make(
            concurrency=concurrency,
            lock_ttl=lock_ttl,
            poll=poll,
            backoff=backoff,
            extend_every=extend_every,
            grace=grace,
            timeout=timeout,
            on_event=on_event,
            logger=logger,
        )
        self._stop = threading.Event()
        self._hard = threading.Event()
        self._lost: set[Claim] = set()
        """Claims whose lock an extend found lost while the handler ran."""
        self._setup()

    def _setup(self) -> None:
        """Each worker's own state (overridden)."""

    @property
    def stats(self) -> WorkerStats:
        """The worker's counters: processed, failed, retried, dead_lettered, lock_lost, returned."""
        return self.core.stats

    def stop(self, *, hard: bool = False) -> None:
        """Ask the worker to stop: gracefully the first time, at once with ``hard`` or a second time."""
        if self._stop.is_set() or hard:
            self._hard.set()
        self._stop.set()

    def _signalled(self, name: str) -> None:
        if self._stop.is_set():
            self.core.log.warning("%s again: stopping now, running jobs go back to the queue", name)
        else:
            self.core.log.warning(
                "%s: stopping; running jobs get %.0fs to finish (send it again to stop now)", name, self.core.grace
            )
        self.stop()
