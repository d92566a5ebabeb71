"""What the thread and the asyncio worker share: settings, prefetch sizing, the claims held,
the outcome-to-event decisions, counters and logging. No I/O: each twin only runs the calls.

A claim's way through a worker::

    claimed (ack_and_claim) -> held, in the prefetch buffer -> running -> finished
        -> acked with the next claim ("processed"), nacked ("retried", "dead_lettered"),
           or found lost ("lock_lost"); on a stop, unstarted or unfinished: released ("returned")

Every claim the worker holds, buffered or running, is in :attr:`WorkerCore.held` until it is
settled; its lock is extended while it is held, so a prefetched job's wait counts against its
lock like its run does, and a stop gives it back at once without using an attempt.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ._errors import InvalidArgument, InvalidType
from ._hooks import Decision, JobPolicy, PolicyFn, check_policy, decide, rules_for
from ._replies import AckResult, DequeueResult
from ._types import Job
from ._validate import MAX_BATCH, MAX_LOCK_TTL_S, to_ms
from ._worker_types import Backoff, Claim, EventKind, WorkerEvent, WorkerStats, claim_of, error_text

__all__ = [
    "BUSY_POLL_S",
    "DEFAULT_TIMEOUT_S",
    "PREFETCH_WINDOW_S",
    "Backoff",
    "Claim",
    "EventKind",
    "Finished",
    "Held",
    "Outcome",
    "Skipped",
    "WorkerCore",
    "WorkerEvent",
    "WorkerStats",
    "claim_of",
    "error_text",
    "outage_pause",
]

DEFAULT_TIMEOUT_S = 300.0
"""How long a handler may run by default: arq's default (RQ has 180 s, saq 10 s). Long enough for
the jobs a queue like this usually runs, short enough that a hung handler does not hold a slot for
hours; set ``timeout=None`` for no limit."""
MAX_TIMEOUT_S = 7 * 24 * 3600
"""Longest handler timeout: a week."""
BUSY_POLL_S = 0.05
"""While it holds jobs and has nothing else to do, a worker looks again this often: finished jobs
wait at most this long for their ack, and a queue with nothing due is asked again this often (a
long-poll would keep finished jobs from being acked promptly)."""
PREFETCH_WINDOW_S = 0.05
"""The prefetch buffer holds about what the handlers finish in this long (at least ``concurrency``,
at most ``prefetch``): large enough that no-op handlers never wait for a claim, small enough that a
worker with slow handlers does not hoard jobs that other workers could run."""
RATE_INTERVAL_S = 0.01
"""Shortest interval over which the finishing rate that sizes the buffer is measured."""
OUTAGE_BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
"""How long a worker waits after each successive failure to reach Redis before trying again."""


class Skipped(enum.Enum):
    """Why a claimed job's handler did not run."""

    LOST = "lost"
    """Its lock was found lost, or too near its expiry to start (another consumer may have it)."""
    STOPPING = "stopping"
    """The worker is stopping: the job goes back unstarted, without using an attempt."""


Outcome = tuple[Job, float, "BaseException | Skipped | Decision | None"]
"""What a handler slot reports: (job, seconds the handler ran, its error, a Skipped, a Decision
made before it ran (its policy dead-letters it), or None)."""

Failure = tuple[Job, float, Decision]
"""A job to nack: (job, seconds its handler ran, what to do with it: see delayq._hooks.decide)."""

Finished = tuple[Job, float]
"""A job whose handler returned, waiting for its ack (sent with the next claim): (job, seconds)."""


Held = list[Any]
"""A claim the worker holds (buffered or running): ``[job, since, lost]``, where ``since`` is when
the lock was last made to last ``lock_ttl`` (time.monotonic(), at the claim or the last extend) and
``lost`` whether an extend found it lost. A list changed in place, because the extender and the
settling loop both touch it: a settled claim's entry leaves ``held``, and an extend still under way
may update it harmlessly. (A list, not a class: one is made per job, on the hot path.)"""


@dataclass
class WorkerCore:
    """A worker's settings and bookkeeping, shared by the thread and the asyncio worker. No I/O."""

    concurrency: int
    prefetch: int
    lock_ttl: float
    poll: float
    backoff: Backoff
    extend_every: float
    grace: float
    timeout: float | None
    on_event: Callable[[WorkerEvent], None] | None
    log: logging.Logger
    policy: PolicyFn | None = None
    """``policy(job)``: per-job settings (see delayq._hooks), asked when a job starts."""
    queue_max_attempts: int | None = None
    """The queue's attempt limit: what a failure is nacked with when no policy gives one."""
    rules: dict[Claim, JobPolicy] = field(default_factory=dict)
    """The policy of each started, unsettled job that has one."""
    stats: WorkerStats = field(default_factory=WorkerStats)
    rng: random.Random = field(default_factory=random.Random)
    held: dict[Claim, Held] = field(default_factory=dict)
    """Every claim held and not yet settled: in the prefetch buffer or running."""
    uncertain: set[Claim] = field(default_factory=set)
    """Finished claims whose ack rode on a call that failed: it may have been applied."""
    target: int = 0
    """How many claimed jobs the prefetch buffer aims to hold now (see PREFETCH_WINDOW_S)."""
    rate: float = 0.0
    """Jobs settled per second, as last measured."""
    ack_by: float = 0.0
    """When the oldest finished job not yet acked must be acked (time.monotonic())."""
    _counted: int = 0
    _scan_at: float = 0.0
    _counted_since: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def make(
        cls,
        *,
        concurrency: int,
        prefetch: int | None,
        lock_ttl: float,
        poll: float,
        backoff: Backoff | None,
        extend_every: float | None,
        grace: float,
        timeout: float | None,
        on_event: Callable[[WorkerEvent], None] | None,
        logger: logging.Logger | None,
        policy: PolicyFn | None = None,
        queue_max_attempts: int | None = None,
    ) -> WorkerCore:
        """Validate a worker's settings.

        Raises:
            InvalidType, InvalidArgument: A setting out of range; named in the message.
        """
        if isinstance(concurrency, bool) or not isinstance(concurrency, int):
            raise InvalidType(f"concurrency must be an int, got {concurrency!r}")
        if not 1 <= concurrency <= MAX_BATCH:
            raise InvalidArgument(f"concurrency must be between 1 and {MAX_BATCH}, got {concurrency!r}")
        if prefetch is not None and (isinstance(prefetch, bool) or not isinstance(prefetch, int)):
            raise InvalidType(f"prefetch must be an int or None, got {prefetch!r}")
        if prefetch is not None and not 0 <= prefetch <= MAX_BATCH:
            raise InvalidArgument(f"prefetch must be between 0 and {MAX_BATCH}, got {prefetch!r}")
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
        check_policy(policy)
        cap = MAX_BATCH if prefetch is None else prefetch
        return cls(
            concurrency=concurrency,
            prefetch=cap,
            lock_ttl=ttl_ms / 1000,
            poll=poll_s,
            backoff=(backoff or Backoff()).check(),
            extend_every=every_s,
            grace=grace_s,
            timeout=timeout_s,
            on_event=on_event,
            log=logger or logging.getLogger("delayq.worker"),
            target=min(concurrency, cap),
            policy=policy,
            queue_max_attempts=queue_max_attempts,
        )

    # -- claiming: how many, and what is held

    def room(self, slots: int) -> int:
        """How many jobs to claim now (0: none): enough to fill ``slots`` free-or-busy handler slots
        plus the prefetch buffer's target, once at least half the buffer (or a slot) is free."""
        room = slots + self.target - len(self.held)
        return min(room, MAX_BATCH) if room >= max(1, self.target // 2) else 0

    def hold(self, jobs: Iterable[Job], now: float) -> None:
        """Note jobs just claimed (at ``now``, time.monotonic()): held until settled."""
        held = self.held
        for job in jobs:
            held[job.id, job.token] = [job, now, False]

    def measure(self, settled: int, now: float) -> None:
        """Count ``settled`` jobs and, every RATE_INTERVAL_S, resize the prefetch target to what the
        handlers finish in PREFETCH_WINDOW_S (a lull halves the rate, not zeroes it)."""
        self._counted += settled
        elapsed = now - self._counted_since
        if elapsed < RATE_INTERVAL_S:
            return
        self.rate = max(self._counted / elapsed, self.rate / 2)
        self._counted, self._counted_since = 0, now
        self.target = max(min(self.concurrency, self.prefetch), min(self.prefetch, int(self.rate * PREFETCH_WINDOW_S)))

    def runnable(self, claim: Claim, now: float) -> bool:
        """Whether a held job may start: an extend did not find its lock lost, and by this
        process's clock the lock has more than a tenth of ``lock_ttl`` left (so a job that waited
        in the buffer while its extends failed is not run beside another consumer's claim)."""
        entry = self.held.get(claim)
        return entry is not None and not entry[2] and now - entry[1] < self.lock_ttl * 0.9

    def to_extend(self, now: float) -> list[Held]:
        """The held claims whose lock was last made to last its ttl (:meth:`lock_of`) more than
        half its extend interval ago (a job that finishes quickly is never extended)."""
        age = self.extend_every / 2
        if not self.rules:
            return [entry for entry in list(self.held.values()) if not entry[2] and now - entry[1] >= age]
        return [
            entry
            for entry in list(self.held.values())
            if not entry[2] and now - entry[1] >= self.every_of((entry[0].id, entry[0].token)) / 2
        ]

    # -- per-job policy

    def start(self, job: Job) -> Decision | None:
        """Ask the policy about a job about to run (only when the worker has one): its settings are
        kept until it is settled.

        Returns:
            None to run it, or a "dead" decision: its policy failed or it was claimed too often.
        """
        rules, verdict = rules_for(self.policy, job)
        if rules is not None and verdict is None:
            self.rules[job.id, job.token] = rules
        return verdict

    def relock(self, claim: Claim) -> float | None:
        """The lock ttl to set a job to as it starts: its policy's, when that differs from the worker's."""
        rules = self.rules.get(claim)
        ttl = None if rules is None else rules.lock_ttl
        return None if ttl is None or ttl == self.lock_ttl else float(ttl)

    def lock_of(self, claim: Claim) -> float:
        """Seconds each extend of a claim's lock gives it: its policy's ``lock_ttl``, or the worker's."""
        rules = self.rules.get(claim) if self.rules else None
        return self.lock_ttl if rules is None or rules.lock_ttl is None else float(rules.lock_ttl)

    def every_of(self, claim: Claim) -> float:
        """Seconds between extends of a claim's lock: the worker's, or a third of its own lock ttl if shorter."""
        ttl = self.lock_of(claim)
        return self.extend_every if ttl == self.lock_ttl else min(self.extend_every, ttl / 3)

    def keepalive_wait(self) -> float:
        """How long the extender may sleep: half the shortest extend interval of what is held."""
        every = self.extend_every
        for claim in list(self.rules):
            every = min(every, self.every_of(claim))
        return every / 2

    def timeout_of(self, claim: Claim) -> float | None:
        """Seconds a claim's handler may run: its policy's ``timeout``, or the worker's."""
        rules = self.rules.get(claim) if self.rules else None
        return self.timeout if rules is None or rules.timeout is None else float(rules.timeout)

    def extended(self, entry: Held, held: bool, now: float) -> None:
        """Note an extend's answer: the lock lasts ``lock_ttl`` from ``now``, or it was found lost."""
        if held:
            entry[1] = now
        else:
            entry[2] = True
            self.log.warning("job %s: lock lost while held (expired or cancelled); it will not be acked", entry[0].id)

    # -- settling: the outcome-to-event decisions

    def settle(self, outcomes: Iterable[Outcome], done: list[Finished]) -> tuple[list[Failure], list[Job]]:
        """Take handlers' outcomes: successes join ``done`` (acked, and counted, with the next call),
        lost locks are counted, failures are counted and returned for a nack, as
        :func:`delayq._hooks.decide` says with the job's policy: ``Fail`` dead-letters now
        (``dead=False``: the job joins ``done``, acked and counted "processed"), ``Retry`` gives
        its delay, anything else the policy's (or the worker's) backoff and attempt limit.

        Returns:
            (failures to nack; jobs to release unstarted).
        """
        failures: list[Failure] = []
        unstarted = []
        held, rules, count, waiting = self.held, self.rules, 0, len(done)
        soonest = float("inf")
        for job, seconds, error in outcomes:
            count += 1
            entry = held.pop((job.id, job.token), None)
            policy = rules.pop((job.id, job.token), None) if rules else None
            if error is Skipped.STOPPING:
                unstarted.append(job)
            elif error is Skipped.LOST or entry is None or entry[2]:
                self.record(WorkerEvent("lock_lost", job, seconds))
            elif error is None:
                done.append((job, seconds))
                # a finished job's lock is no longer extended: ack it before half its lock is gone
                ttl = self.lock_ttl if policy is None or policy.lock_ttl is None else float(policy.lock_ttl)
                if ttl < 4 * BUSY_POLL_S:
                    soonest = min(soonest, entry[1] + ttl / 2)
            else:
                if isinstance(error, Decision):
                    decision = error
                else:
                    assert isinstance(error, BaseException)
                    with self._lock:  # random.Random is not meant to be shared between threads unguarded
                        decision = decide(
                            job, error, policy, queue_max_attempts=self.queue_max_attempts, backoff=self.backoff, rng=self.rng
                        )
                if decision.action == "drop":
                    self.log.info("job %s dropped by its handler (Fail, dead=False): %s", job.id, decision.error)
                    done.append((job, seconds))
                    continue
                self.record(WorkerEvent("failed", job, seconds, decision.error))
                failures.append((job, seconds, decision))
        now = time.monotonic()
        if not waiting and done:
            self.ack_by = now + BUSY_POLL_S
        self.ack_by = min(self.ack_by, soonest)
        self.measure(count, now)
        return failures, unstarted

    def nap(self, done: list[Finished], now: float) -> float:
        """How long the settling loop may sleep with nothing to do: BUSY_POLL_S, or less when a
        finished job's ack is due sooner (its short lock would expire first)."""
        return min(BUSY_POLL_S, max(0.0, self.ack_by - now)) if done else BUSY_POLL_S

    def ack_due(self, done: list[Finished], now: float) -> bool:
        """Whether to ack ``done`` on its own rather than with the next claim: acks wait for a
        claim at most BUSY_POLL_S, and never pile up past one call's worth."""
        return bool(done) and (len(done) >= MAX_BATCH or now >= self.ack_by)

    def nacked(self, job: Job, seconds: float, text: str, delay: float, outcome: str | BaseException) -> None:
        """Count what a failed job's nack did (``outcome``: "retried", "dead_lettered", "lock_lost",
        or the error of a nack that failed: then it comes back when its lock expires)."""
        if isinstance(outcome, BaseException):
            self.log.error("giving failed job %s back failed (%s); it comes back when its lock expires", job.id, outcome)
            outcome = "lock_lost"
        if outcome == "retried":
            self.record(WorkerEvent("retried", job, seconds, text, delay))
        elif outcome == "dead_lettered":
            self.record(WorkerEvent("dead_lettered", job, seconds, text))
        else:
            self.record(WorkerEvent("lock_lost", job, seconds))

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
        if not result.refused and not result.unapplied and not self.uncertain:
            self._processed(done)  # the hot path: every ack applied
            return []
        lost = {claim_of(job) for job in result.refused}
        gone = {claim_of(job) for job in result.gone}
        again = {claim_of(job) for job in result.unapplied}
        left, applied = [], []
        for job, seconds in done:
            claim = claim_of(job)
            if claim in again and not final:
                self.uncertain.add(claim)  # the call that carried it failed: it may have been applied
                left.append((job, seconds))
                continue
            uncertain = claim in self.uncertain
            self.uncertain.discard(claim)
            if claim in gone and uncertain:
                self.log.info("job %s: an earlier ack's reply was lost and the job is gone: counted as acked", job.id)
            if (claim not in lost and claim not in again) or (claim in gone and uncertain):
                applied.append((job, seconds))
            else:
                self.record(WorkerEvent("lock_lost", job, seconds))
        self._processed(applied)
        if final and again:
            self.log.error("%d finished jobs could not be acked; they come back when their locks expire", len(again))
        return left

    def _processed(self, done: list[Finished]) -> None:
        """Count acked jobs "processed": one event each only when someone listens."""
        if self.on_event is not None or self.log.isEnabledFor(logging.DEBUG):
            for job, seconds in done:
                self.record(WorkerEvent("processed", job, seconds))
            return
        with self._lock:
            self.stats.processed += len(done)

    def unsure(self, done: list[Finished]) -> None:
        """Mark ``done`` after a failed call that carried their acks: the call may have applied them."""
        self.uncertain.update(claim_of(job) for job, _ in done)

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

    # -- timeouts

    def timeout_error(self, claim: Claim) -> TimeoutError:
        """The failure of a handler that ran past its timeout (its text is kept with the job)."""
        timeout = self.timeout_of(claim)
        whose = "the worker's" if timeout == self.timeout else "its job's"
        return TimeoutError(f"the handler ran longer than {whose} timeout of {timeout or 0:g}s")

    @property
    def max_abandoned(self) -> int:
        """Most handler threads given up at their timeout that are replaced while they still run
        (a thread cannot be killed): one per slot, so at most 2 x concurrency threads. Past that,
        the worker runs with fewer slots until some of them return."""
        return self.concurrency

    def abandoned(self, job: Job, stuck: int) -> None:
        """Log a plain handler's thread given up at its timeout; ``stuck`` such threads still run."""
        self.log.warning(
            "job %s: handler ran past its %ss timeout; its thread cannot be stopped and is abandoned "
            "(its result will be ignored); %d abandoned handler threads still run",
            job.id,
            self.timeout_of((job.id, job.token)),
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

    def overdue(self, running: dict[Claim, Any], now: float) -> list[Claim]:
        """The running claims (claim -> start, or (start, ...)) past the timeout (looked for at most
        every BUSY_POLL_S, or a tenth of the timeout: a handler fails that much late at most)."""
        timeout, rules = self.timeout, self.rules
        if (timeout is None and not rules) or now < self._scan_at:
            return []
        # a scan costs a look at every running claim (1000 at most): at most every BUSY_POLL_S
        self._scan_at = now + (BUSY_POLL_S if timeout is None else min(BUSY_POLL_S, timeout / 10))
        late = []
        for claim, value in list(running.items()):
            start = value[0] if isinstance(value, tuple) else value
            limit = self.timeout_of(claim) if rules else timeout
            if limit is not None and now - start >= limit:
                late.append(claim)
        return late


def outage_pause(failures: int) -> float:
    """Seconds to wait after ``failures`` consecutive connection failures."""
    return OUTAGE_BACKOFF_S[min(failures, len(OUTAGE_BACKOFF_S)) - 1]
