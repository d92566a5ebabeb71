"""Typed results of looking into a queue: one job by id, a page of jobs in one state, a queue found on a server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["STATES", "JobInfo", "JobPage", "JobState", "QueueRef"]

JobState = Literal["ready", "delayed", "in_flight", "dead"]
STATES: tuple[JobState, ...] = ("ready", "delayed", "in_flight", "dead")
"""A job's states, in the order a job passes through them (delayed before ready in time, but
listed after it, as stats() counts them)."""


@dataclass(frozen=True, slots=True)
class JobInfo:
    """One job as :meth:`Queue.get` or :meth:`Queue.list_jobs` shows it, read atomically.

    Attributes:
        id: The job's id.
        state: "ready" (due, not held; a job whose lock expired is ready again), "delayed"
            (not due yet), "in_flight" (held by a live lock) or "dead" (dead-lettered).
        at_ms: The time that goes with the state, in ms since the epoch by the server's clock:
            the due time (ready, delayed), the lock's expiry (in_flight), the death (dead).
        attempts: How many times the job has been claimed.
        payload: The payload; from ``list_jobs``, cut to its ``preview`` bytes.
        payload_size: The payload's full length in bytes.
        error: The last error text given to ``nack``, or None.
        now_ms: The server's clock when the job was read.
    """

    id: str
    state: JobState
    at_ms: int
    attempts: int
    payload: bytes
    payload_size: int
    error: str | None
    now_ms: int

    @property
    def truncated(self) -> bool:
        """Whether ``payload`` is only the start of the job's payload."""
        return len(self.payload) < self.payload_size

    @property
    def due_ms(self) -> int | None:
        """When a waiting job is (or was) due; None in flight or dead."""
        return self.at_ms if self.state in ("ready", "delayed") else None

    @property
    def lock_expires_ms(self) -> int | None:
        """When the lock of a job in flight expires; None otherwise."""
        return self.at_ms if self.state == "in_flight" else None

    @property
    def died_ms(self) -> int | None:
        """When a dead job died; None otherwise."""
        return self.at_ms if self.state == "dead" else None


@dataclass(frozen=True, slots=True)
class JobPage:
    """A page of a queue's jobs in one state, as :meth:`Queue.list_jobs` returns it.

    Attributes:
        state: The state listed.
        offset: How many jobs of that state come before this page.
        total: How many jobs are in that state (at the time of the read, for a sharded
            queue shard by shard).
        jobs: The page: ready jobs whose lock expired first, then by due time; delayed by
            due time; in flight by lock expiry; dead by time of death (for a sharded queue,
            in that order within each shard, shard after shard).
        now_ms: The server's clock at the read.
    """

    state: JobState
    offset: int
    total: int
    jobs: list[JobInfo]
    now_ms: int


@dataclass(frozen=True, slots=True, order=True)
class QueueRef:
    """A queue found on a server by :func:`delayq.find_queues`.

    Attributes:
        name: The queue's name.
        shards: Its shard count (1 for a queue under one hash tag), as the shard tags found
            imply: a sharded queue whose last shards hold nothing may show fewer; pass the
            real count to ``Queue`` when you know it.
    """

    name: str
    shards: int = 1
