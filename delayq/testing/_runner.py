"""The inline runner: every due job of a queue, claimed, run and settled as a worker would."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Literal, Union

from .. import aio
from .._errors import InvalidArgument, InvalidType
from .._hooks import Decision, JobPolicy, check_policy, decide, rules_for
from .._sync import Queue
from .._types import Job
from .._validate import MAX_BATCH, MAX_LOCK_TTL_S, Duration, check_int, to_ms
from .._worker_types import Backoff, claim_of
from ..tasks import Tasks
from ._clock import core_of

__all__ = ["Outcome", "OutcomeKind", "arun_due", "run_due"]

OutcomeKind = Literal["processed", "retried", "dead_lettered", "dropped", "lock_lost"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one job in :func:`run_due`.

    Attributes:
        job: The job as it was claimed (``job.attempts`` counts this run).
        kind: "processed" (returned; acked), "retried" (failed; due again after ``delay``),
            "dead_lettered" (failed for good, or claimed more often than allowed), "dropped"
            (``Fail(dead=False)``: acked, gone) or "lock_lost" (the job was cancelled meanwhile).
        result: What the handler returned.
        error: The error text kept with the job.
        delay: Seconds until the retry is due.
    """

    job: Job
    kind: OutcomeKind
    result: Any = None
    error: str | None = None
    delay: float | None = None

    @property
    def id(self) -> str:
        """The job's id."""
        return self.job.id


@dataclass(frozen=True, slots=True)
class _Claim:
    batch: int


@dataclass(frozen=True, slots=True)
class _Run:
    job: Job
    timeout: float | None


@dataclass(frozen=True, slots=True)
class _Lock:
    job: Job
    lock_ttl: float


@dataclass(frozen=True, slots=True)
class _Ack:
    job: Job


@dataclass(frozen=True, slots=True)
class _Nack:
    job: Job
    decision: Decision


_Step = Union[_Claim, _Lock, _Run, _Ack, _Nack]


def _plan(
    handler: object, policy: Callable[[Job], JobPolicy | None] | None, backoff: Backoff | None, limit: int, lock_ttl: Duration
) -> tuple[Callable[[Job], JobPolicy | None] | None, Backoff]:
    if not callable(handler):
        raise InvalidType(f"handler must be callable (or a delayq.tasks.Tasks), got {handler!r:.80}")
    check_policy(policy)
    if backoff is not None and not isinstance(backoff, Backoff):
        raise InvalidType(f"backoff must be a delayq.Backoff, got {backoff!r:.80}")
    check_int(limit, "limit", 1, 10**6)
    to_ms(lock_ttl, "lock_ttl", minimum_ms=1, maximum_s=MAX_LOCK_TTL_S)
    return policy, (backoff or Backoff()).check()


def _inline(
    policy: Callable[[Job], JobPolicy | None] | None, backoff: Backoff, limit: int, queue_max_attempts: int | None
) -> Generator[_Step, Any, list[Outcome]]:
    """The runner without I/O: claims, runs, and settles each job as a worker does (see delayq._hooks)."""
    rng = random.Random()
    outcomes: list[Outcome] = []
    while len(outcomes) < limit:
        jobs: list[Job] = yield _Claim(min(MAX_BATCH, limit - len(outcomes)))
        if not jobs:
            break
        for job in jobs:
            rules, verdict = rules_for(policy, job)  # a policy that raises or returns junk: a dead letter
            # the task's own lock, as a worker would hold it: from now, for its lock_ttl
            if verdict is None and rules is not None and rules.lock_ttl is not None and not (yield _Lock(job, rules.lock_ttl)):
                outcomes.append(Outcome(job, "lock_lost"))
                continue
            if verdict is None:
                result, exc = yield _Run(job, None if rules is None else rules.timeout)
                if exc is None:
                    acked = yield _Ack(job)
                    outcomes.append(Outcome(job, "processed" if acked else "lock_lost", result))
                    continue
                verdict = decide(job, exc, rules, queue_max_attempts=queue_max_attempts, backoff=backoff, rng=rng)
            if verdict.action == "drop":
                acked = yield _Ack(job)
                outcomes.append(Outcome(job, "dropped" if acked else "lock_lost", error=verdict.error))
                continue
            code = yield _Nack(job, verdict)
            if code == 1:
                outcomes.append(Outcome(job, "retried", error=verdict.error, delay=verdict.delay))
            elif code == 2:
                outcomes.append(Outcome(job, "dead_lettered", error=verdict.error))
            else:
                outcomes.append(Outcome(job, "lock_lost", error=verdict.error))
    return outcomes


def _limit_of(decision: Decision) -> int | None:
    return 1 if decision.action == "dead" else decision.max_attempts


def run_due(
    queue: Queue,
    handler: Callable[[Job], Any] | Tasks,
    *,
    policy: Callable[[Job], JobPolicy | None] | None = None,
    backoff: Backoff | None = None,
    lock_ttl: Duration = 30,
    limit: int = 1000,
) -> list[Outcome]:
    """Run every due job of a queue now, inline, with the worker's retry and dead-letter behaviour.

    Each job is claimed, run, and then acked (it returned), retried after the backoff (it raised;
    ``Retry`` chooses the delay), or dead-lettered (its attempts are used up, or it raised
    ``Fail``). Jobs that come due again during the call (a retry with no delay) run again, up to
    ``limit`` runs in all. With a :func:`frozen_clock`, retries wait until the clock is advanced.
    A job whose policy has a ``lock_ttl`` is locked for that long before it runs; its ``timeout``
    fails a run that takes longer (an ``async def`` handler is cancelled then).

    A handler that raises KeyboardInterrupt, SystemExit (or asyncio.CancelledError) interrupts
    the call: its job, and every job claimed but not run yet, is given back (``release``: due
    now, the attempt not counted), and the exception goes on up.

    Args:
        queue: A ``delayq.Queue``.
        handler: Called with each Job (an ``async def`` runs in ``asyncio.run``); or a
            ``delayq.tasks.Tasks``, which runs each job's task with the task's own policy.
        policy: ``policy(job)`` giving per-job settings (a Tasks registry brings its own).
        backoff: Retry delays when no policy gives one; default ``Backoff()``, as the worker's.
        lock_ttl: Each claim's lock.
        limit: The most runs in one call.

    Returns:
        What happened to each job, in order.

    Raises:
        InvalidType, InvalidArgument: A bad argument (an asyncio queue: use :func:`arun_due`),
            before any job is claimed.
    """
    if isinstance(handler, Tasks):
        registry = handler
        if registry.has_async and _in_a_loop():  # its async tasks would fail in asyncio.run
            raise InvalidArgument(_IN_A_LOOP)
        handler, policy = registry.run, policy or registry.policy
    if not isinstance(queue, Queue):
        raise InvalidType(f"queue must be a delayq.Queue (for a delayq.aio.Queue: 'await arun_due(...)'), got {queue!r:.80}")
    rules, curve = _plan(handler, policy, backoff, limit, lock_ttl)
    core = core_of(queue)
    steps = _inline(rules, curve, limit, core.max_attempts)
    held: dict[tuple[str, str], Job] = {}
    reply: Any = None
    try:
        while True:
            step = steps.send(reply)
            if isinstance(step, _Claim):
                reply = queue.dequeue(step.batch, lock_ttl)
                held.update((claim_of(job), job) for job in reply)
            elif isinstance(step, _Lock):
                reply = queue.extend(step.job, step.lock_ttl)
            elif isinstance(step, _Run):
                reply = _call(handler, step)
            elif isinstance(step, _Ack):
                reply = queue.ack(held.pop(claim_of(step.job)))
            else:
                held.pop(claim_of(step.job))
                reply = queue._drive(
                    core.nack_limited(step.job, step.decision.delay, step.decision.error, max_attempts=_limit_of(step.decision))
                )
    except StopIteration as stop:
        done: list[Outcome] = stop.value
        return done
    except BaseException:
        for job in held.values():  # claimed and not settled: back to the queue, as a stopping worker does
            with contextlib.suppress(Exception):
                queue.release(job)
        raise


def _call(handler: Callable[[Job], Any], step: _Run) -> tuple[Any, BaseException | None]:
    """Run the handler: (its result, None) or (None, what it raised). KeyboardInterrupt,
    SystemExit and CancelledError are not a job's failure: they go on up."""
    started = time.monotonic()
    try:
        result = handler(step.job)
    except Exception as exc:
        return None, exc
    if inspect.isawaitable(result):
        if _in_a_loop():  # asyncio.run would fail, and the job would be retried for the test's mistake
            close = getattr(result, "close", None)
            if callable(close):
                close()
            raise InvalidArgument(_IN_A_LOOP)
        try:
            result = asyncio.run(_bounded(result, step.timeout))
        except Exception as exc:
            return None, exc
    if step.timeout is not None and time.monotonic() - started > step.timeout:
        return None, TimeoutError(f"the handler ran longer than its timeout of {step.timeout:g}s")
    return result, None


_IN_A_LOOP = "run_due cannot run an async handler (or async task) inside a running event loop: use 'await arun_due(...)'"


def _in_a_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _bounded(awaitable: Any, timeout: float | None) -> Any:
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        raise TimeoutError(f"the handler ran longer than its timeout of {timeout:g}s") from None


async def arun_due(
    queue: aio.Queue,
    handler: Callable[[Job], Any] | Tasks,
    *,
    policy: Callable[[Job], JobPolicy | None] | None = None,
    backoff: Backoff | None = None,
    lock_ttl: Duration = 30,
    limit: int = 1000,
) -> list[Outcome]:
    """:func:`run_due` for a ``delayq.aio.Queue``: an ``async def`` handler is awaited (with its
    timeout), a plain one is called; a Tasks registry runs plain tasks on a thread.

    Returns, Raises: as :func:`run_due` (a ``delayq.Queue``: use :func:`run_due`). Cancelling the
    call gives its claimed, unsettled jobs back, as an interrupt does.
    """
    if isinstance(handler, Tasks):
        registry = handler
        handler, policy = registry.arun, policy or registry.policy
    if not isinstance(queue, aio.Queue):
        raise InvalidType(f"queue must be a delayq.aio.Queue (for a delayq.Queue: run_due(...)), got {queue!r:.80}")
    rules, curve = _plan(handler, policy, backoff, limit, lock_ttl)
    core = queue._core
    steps = _inline(rules, curve, limit, core.max_attempts)
    held: dict[tuple[str, str], Job] = {}
    reply: Any = None
    try:
        while True:
            step = steps.send(reply)
            if isinstance(step, _Claim):
                reply = await queue.dequeue(step.batch, lock_ttl)
                held.update((claim_of(job), job) for job in reply)
            elif isinstance(step, _Lock):
                reply = await queue.extend(step.job, step.lock_ttl)
            elif isinstance(step, _Run):
                reply = await _acall(handler, step)
            elif isinstance(step, _Ack):
                reply = await queue.ack(held.pop(claim_of(step.job)))
            else:
                held.pop(claim_of(step.job))
                reply = await queue._drive(
                    core.nack_limited(step.job, step.decision.delay, step.decision.error, max_attempts=_limit_of(step.decision))
                )
    except StopIteration as stop:
        done: list[Outcome] = stop.value
        return done
    except BaseException:
        for job in held.values():
            with contextlib.suppress(Exception):
                await queue.release(job)
        raise


async def _acall(handler: Callable[[Job], Any], step: _Run) -> tuple[Any, BaseException | None]:
    started = time.monotonic()
    try:
        result = handler(step.job)
        if inspect.isawaitable(result):
            result = await _bounded(result, step.timeout)
    except Exception as exc:
        return None, exc
    if step.timeout is not None and time.monotonic() - started > step.timeout:
        return None, TimeoutError(f"the handler ran longer than its timeout of {step.timeout:g}s")
    return result, None
