"""Typed results returned by the queue."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["NACK_OUTCOMES", "DeadJob", "Job", "NackOutcome", "PendingJob", "QueueStats"]


@dataclass(frozen=True, slots=True)
class Job:
    """A job claimed by :meth:`Queue.dequeue`, locked for this consumer.

    Attributes:
        id: The job's id, unique in its queue.
        payload: The bytes given to ``enqueue`` (a str payload comes back UTF-8 encoded).
        attempts: How many times the job has been claimed, this claim included (1 on first delivery).
        token: The claim's random token; ack, nack and extend succeed only with it.
        lock_expires_ms: When the lock expires unless extended, in ms since the epoch by the server's clock.
        due_ms: When the job came due (for a redelivery: when the previous lock expired), same clock;
            ``lock_expires_ms - lock_ttl - due_ms`` is how late the job was claimed.
    """

    id: str
    payload: bytes
    attempts: int
    token: str
    lock_expires_ms: int
    due_ms: int


@dataclass(frozen=True, slots=True)
class PendingJob:
    """A job waiting to be delivered, as :meth:`Queue.peek` shows it.

    Attributes:
        id: The job's id.
        payload: The job's payload bytes.
        attempts: How many times it was claimed so far.
        due_ms: When it is (or was) due, in ms since the epoch by the server's clock.
    """

    id: str
    payload: bytes
    attempts: int
    due_ms: int


@dataclass(frozen=True, slots=True)
class DeadJob:
    """A dead-lettered job, as :meth:`Queue.dead_letters` lists it.

    Attributes:
        id: The job's id.
        payload: The job's payload bytes.
        attempts: How many times it was claimed before it died.
        died_ms: When it was dead-lettered, in ms since the epoch by the server's clock.
        error: The last error text given to ``nack``, or None.
    """

    id: str
    payload: bytes
    attempts: int
    died_ms: int
    error: str | None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counts of a queue's jobs by state, taken atomically by the server's clock.

    Attributes:
        ready: Due now and not held by a lock (a job whose lock expired counts here).
        delayed: Not due yet.
        in_flight: Claimed and held by a live lock.
        dead: Dead-lettered.
        oldest_ready_age: Seconds since the oldest ready job came due: how far behind the
            workers are (0.0 when nothing is ready). A measurement of time, so it is left
            out of ``==``, which compares the counts and the pause.
        paused: Whether the queue is paused (workers claim nothing; see ``Queue.pause``).
    """

    ready: int
    delayed: int
    in_flight: int
    dead: int
    oldest_ready_age: float = field(default=0.0, compare=False)
    paused: bool = False

    @property
    def total(self) -> int:
        """All jobs in the queue, in any state."""
        return self.ready + self.delayed + self.in_flight + self.dead


NackOutcome = Literal["retried", "dead_lettered", "lock_lost"]
"""What a nack did (``Queue.fail``): due again, dead-lettered, or nothing (the lock was lost)."""

NACK_OUTCOMES: dict[int, NackOutcome] = {0: "lock_lost", 1: "retried", 2: "dead_lettered"}
"""nack.lua's reply codes."""
