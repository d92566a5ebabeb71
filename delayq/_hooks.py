"""What a handler can tell the worker besides "done" (return) and "failed" (raise): the hook protocol.

A handler returns (the job is acked) or raises (the job is retried with backoff, and
dead-lettered once it has used its attempts). Two exceptions carry a decision of their own:

- :class:`Retry` ``(delay=None, reason="")``: run the job again after ``delay`` (None = the
  backoff's). It is a failed attempt, so the attempt limit still applies.
- :class:`Fail` ``(reason, dead=True)``: never retry: dead-letter the job now with ``reason``
  (``dead=False``: drop it, acked, as a job that must not run again and need not be kept).

A worker may also take a ``policy(job) -> JobPolicy | None``: per-job settings (attempt limit,
backoff, timeout, lock ttl) that override the worker's, as ``delayq.tasks.Tasks.policy`` gives
each task's. :func:`rules_for` (which asks the policy, and refuses a job claimed too often:
:func:`check_attempts`) and :func:`decide` are the one place that turns a job, its policy and its
outcome into what happens to it: ``delayq.Worker``, ``delayq.aio.Worker`` (through
``delayq._worker_core``) and ``delayq.testing.run_due`` all use them, so they cannot drift.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ._errors import InvalidType
from ._types import Job
from ._validate import DEFAULT_MAX_ATTEMPTS, MAX_DELAY_S, MAX_LOCK_TTL_S, Duration, check_int, to_ms
from ._worker_types import Backoff, bounded_text, error_text

__all__ = [
    "Action",
    "Decision",
    "Fail",
    "JobPolicy",
    "PolicyFn",
    "Retry",
    "check_attempts",
    "check_policy",
    "decide",
    "rules_for",
]

Action = Literal["retry", "dead", "drop"]


class Retry(Exception):
    """Raised by a handler: run this job again after ``delay``; a failed attempt all the same.

    Args:
        delay: Seconds or timedelta (0 to 10 years); None = the backoff's delay for this attempt.
        reason: Kept with the job as its error text.

    Raises:
        InvalidType, InvalidArgument: A bad delay.
    """

    def __init__(self, delay: Duration | None = None, reason: str = "") -> None:
        if delay is not None:
            to_ms(delay, "Retry delay", minimum_ms=0, maximum_s=MAX_DELAY_S)
        super().__init__(reason or "retry requested")
        self.delay = delay
        self.reason = reason or "retry requested"


class Fail(Exception):
    """Raised by a handler: this job can never succeed: dead-letter it now, whatever attempts are left.

    Args:
        reason: Kept with the dead job as its error text (``delayq dead`` shows it).
        dead: True (default): dead-letter it; False: drop it (acked, gone).
    """

    def __init__(self, reason: str, *, dead: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.dead = dead


@dataclass(frozen=True, slots=True)
class JobPolicy:
    """Per-job settings a worker takes from ``policy(job)`` instead of its own.

    Attributes:
        max_attempts: Dead-letter after this many failed claims; None = never. A queue's own
            ``max_attempts`` still dead-letters a job whose lock expires that often.
        backoff: Retry delays; None = the worker's.
        timeout: Seconds a handler may run before it counts as failed; None = the worker's.
        lock_ttl: Seconds of each lock (and extend) for this job; None = the worker's.

    Raises:
        InvalidType, InvalidArgument: A bad value (checked when made).
    """

    max_attempts: int | None = DEFAULT_MAX_ATTEMPTS
    backoff: Backoff | None = None
    timeout: float | None = None
    lock_ttl: float | None = None

    def __post_init__(self) -> None:
        if self.max_attempts is not None:
            check_int(self.max_attempts, "max_attempts", 1, 2**31)
        if self.backoff is not None:
            if not isinstance(self.backoff, Backoff):
                raise InvalidType(f"backoff must be a delayq.Backoff, got {self.backoff!r}")
            self.backoff.check()
        if self.timeout is not None:
            to_ms(self.timeout, "timeout", minimum_ms=1, maximum_s=MAX_DELAY_S)
        if self.lock_ttl is not None:
            to_ms(self.lock_ttl, "lock_ttl", minimum_ms=10, maximum_s=MAX_LOCK_TTL_S)


PolicyFn = Callable[[Job], JobPolicy | None]
"""A worker's ``policy``: the settings for one job (None: the worker's own)."""


def check_policy(policy: object) -> PolicyFn | None:
    """Validate a worker's or runner's ``policy`` argument.

    Returns:
        The policy, or None.

    Raises:
        InvalidType: Neither None nor callable (the message names the value).
    """
    if policy is not None and not callable(policy):
        raise InvalidType(f"policy must be a callable (job -> delayq.JobPolicy | None) or None, got {policy!r:.80}")
    return policy


def rules_for(policy: PolicyFn | None, job: Job) -> tuple[JobPolicy | None, Decision | None]:
    """A job's policy, and whether it may run: the one place a worker or runner asks ``policy(job)``.

    A policy that raises, or returns anything but a JobPolicy or None, is the job's problem, never
    the worker's: the job is dead-lettered with the reason (retrying would only fail the same way).
    A job claimed more often than its policy's ``max_attempts`` is dead-lettered too
    (:func:`check_attempts`).

    Args:
        policy: The worker's ``policy``, or None.
        job: The job about to run.

    Returns:
        (its JobPolicy or None, None to run it) or (None or its policy, a "dead" decision).
    """
    if policy is None:
        return None, None
    try:
        rules = policy(job)
    except Exception as exc:
        return None, Decision("dead", 0.0, bounded_text(f"the worker's policy raised for this job: {error_text(exc)}"), 1)
    if rules is not None and not isinstance(rules, JobPolicy):
        text = f"the worker's policy must return a delayq.JobPolicy or None, got {_repr(rules)}"
        return None, Decision("dead", 0.0, bounded_text(text), 1)
    return rules, check_attempts(job, rules)


def _repr(value: object) -> str:
    try:
        return f"{value!r:.200}"
    except Exception:
        return f"<unprintable {type(value).__name__}>"


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a job whose handler did not succeed.

    Attributes:
        action: "retry" (nack after ``delay`` with the attempt limit ``max_attempts``: the queue
            dead-letters it when the limit is reached), "dead" (dead-letter now: nack with limit 1)
            or "drop" (ack: the job is gone).
        delay: Seconds until it is due again (for "retry").
        error: The text kept with the job.
        max_attempts: The attempt limit to nack with (None = never).
    """

    action: Action
    delay: float
    error: str
    max_attempts: int | None


def decide(
    job: Job,
    exc: BaseException,
    policy: JobPolicy | None,
    *,
    queue_max_attempts: int | None,
    backoff: Backoff,
    rng: random.Random,
) -> Decision:
    """Turn a handler's exception into what happens to the job.

    Args:
        job: The job whose handler raised.
        exc: What it raised: Retry, Fail, or any other exception (a failure, retried with backoff).
        policy: The job's policy, or None for the worker's settings.
        queue_max_attempts: The queue's limit, used without a policy.
        backoff: The worker's backoff, used unless the policy has one.
        rng: For the backoff's jitter.

    Returns:
        The decision; the worker nacks with ``nack_limited(job, delay, error, max_attempts=...)``
        ("retry"; limit 1 for "dead") or acks ("drop").
    """
    limit = queue_max_attempts if policy is None else _lower(policy.max_attempts, queue_max_attempts)
    if isinstance(exc, Fail):
        return Decision("dead" if exc.dead else "drop", 0.0, _reason(exc.reason), 1)
    curve = backoff if policy is None or policy.backoff is None else policy.backoff
    if isinstance(exc, Retry):
        if exc.delay is None:
            delay = curve.delay(job.attempts, rng)
        else:
            delay = to_ms(exc.delay, "delay", minimum_ms=0, maximum_s=MAX_DELAY_S) / 1000
        return Decision("retry", delay, f"Retry: {_reason(exc.reason)}", limit)
    return Decision("retry", curve.delay(job.attempts, rng), error_text(exc), limit)


def _lower(policy_max: int | None, queue_max: int | None) -> int | None:
    """The attempt limit a failure is nacked with: the lower of the policy's and the queue's
    (None: no limit). The queue dead-letters a job claimed its ``max_attempts`` times when it is
    claimed again, so a policy's higher (or None) limit would have the last failure nacked as
    "retried" and the job then dead-lettered by a claim, unseen by the worker's counters, after
    a backoff wait for nothing."""
    if policy_max is None:
        return queue_max
    return policy_max if queue_max is None else min(policy_max, queue_max)


def _reason(reason: object) -> str:
    """A Fail's or Retry's reason as a job's error text: a str (``Fail(404)`` works too), bounded,
    valid UTF-8, so that keeping it can never fail the nack that settles the job."""
    try:
        text = reason if isinstance(reason, str) else str(reason)
    except Exception:
        text = f"<unprintable {type(reason).__name__}>"
    return bounded_text(text)


def check_attempts(job: Job, policy: JobPolicy | None) -> Decision | None:
    """Before running a job: a job claimed more often than its policy allows (its locks expired,
    e.g. it crashed its worker every time) is dead-lettered without running again.

    Returns:
        A "dead" decision, or None to run the job.
    """
    if policy is None or policy.max_attempts is None or job.attempts <= policy.max_attempts:
        return None
    return Decision(
        "dead", 0.0, f"claimed {job.attempts} times, more than its max_attempts={policy.max_attempts} (its locks expired)", 1
    )
