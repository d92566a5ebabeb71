"""What a worker reports and is configured with: retry backoff, events, counters, claims, error text.

Types only (no worker logic), so that the hooks, tasks and metrics can import them without the worker.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from ._errors import InvalidArgument, InvalidType
from ._types import Job
from ._validate import to_ms

__all__ = [
    "MAX_ERROR_CHARS",
    "Backoff",
    "Claim",
    "EventKind",
    "WorkerEvent",
    "WorkerStats",
    "bounded_text",
    "claim_of",
    "error_text",
]

Claim = tuple[str, str]
"""A claim: (job id, token). Ids are re-usable once a job is gone, so a worker tracks claims (DESIGN rule 8)."""

EventKind = Literal["processed", "failed", "retried", "dead_lettered", "lock_lost", "returned"]

MAX_ERROR_CHARS = 2000
"""Longest error text kept with a job."""


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


@dataclass
class WorkerStats:
    """Counters since the worker started (read them any time)."""

    processed: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    lock_lost: int = 0
    returned: int = 0


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
