"""The sync queue's calls that look at and steer a queue: cancel, reschedule, peek, stats, purge,
dead_letters, redrive, get, list_jobs, pause and resume (what an operator, the CLI and the
dashboard use). A mixin of :class:`delayq.Queue`, which drives them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TypeVar, Union

from ._core import QueueCore
from ._inspect import JobInfo, JobPage
from ._sharded import ShardedCore
from ._steps import Op
from ._types import DeadJob, PendingJob, QueueStats
from ._validate import Duration

__all__ = ["ManageCalls"]

T = TypeVar("T")


class ManageCalls:
    """The management calls of :class:`delayq.Queue` (documented here, listed with its other methods)."""

    _core: Union[QueueCore, ShardedCore]

    def _drive(self, op: Op[T]) -> T:
        raise NotImplementedError  # delayq.Queue drives

    def cancel(self, job_id: str) -> bool:
        """Delete a job in any state, with all its data.

        Args:
            job_id: The job's id.

        Returns:
            True if the job was there. A consumer holding it then finds its lock lost.

        Raises:
            InvalidType, InvalidArgument: A bad id.

        Cost: one round trip, O(log N).
        """
        return self._drive(self._core.cancel(job_id))

    def reschedule(self, job_id: str, *, delay: Duration = 0, at: datetime | None = None) -> bool:
        """Change the due time of a waiting job (not one held by a live lock, not a dead one).

        Args:
            job_id: The job's id.
            delay: New delay from now, as for :meth:`enqueue`.
            at: Or a new absolute time.

        Returns:
            True if rescheduled; False if the job is absent, in flight or dead.

        Raises:
            InvalidType, InvalidArgument: A bad id, delay or at.

        Cost: one round trip, O(log N).
        """
        return self._drive(self._core.reschedule(job_id, delay=delay, at=at))

    def peek(self, limit: int = 10) -> list[PendingJob]:
        """Look at the next waiting jobs (ready or delayed), earliest first, without claiming them.

        Args:
            limit: 1 to 1000.

        Returns:
            Up to ``limit`` jobs.

        Raises:
            InvalidType, InvalidArgument: A bad limit.

        Cost: one round trip, O(log N + limit).
        """
        return self._drive(self._core.peek(limit))

    def stats(self) -> QueueStats:
        """Count the jobs by state, atomically, by the server's clock.

        Returns:
            ready, delayed, in_flight and dead counts.

        Cost: one round trip, O(log N).
        """
        return self._drive(self._core.stats())

    def purge(self) -> int:
        """Delete every job, 1000 per call, so a huge queue never blocks Redis for long.

        Not atomic as a whole: a job enqueued while a purge runs may survive it.

        Returns:
            How many jobs were deleted.

        Cost: ceil(N/1000) + 1 round trips, O(1000 log N) each.
        """
        return self._drive(self._core.purge())

    def dead_letters(self, limit: int = 100) -> list[DeadJob]:
        """List dead-lettered jobs, oldest death first.

        Args:
            limit: 1 to 1000.

        Returns:
            Up to ``limit`` dead jobs with their last error.

        Raises:
            InvalidType, InvalidArgument: A bad limit.

        Cost: one round trip, O(log D + limit).
        """
        return self._drive(self._core.dead_letters(limit))

    def redrive(self, ids: Iterable[str] | None = None) -> int:
        """Put dead-lettered jobs back in the queue, due now, with attempts and error reset.

        Args:
            ids: The dead jobs to put back; None = all of them (1000 per call).

        Returns:
            How many were put back (ids that are not dead are skipped).

        Raises:
            InvalidType, InvalidArgument: A bad id.

        Cost: one round trip per 1000 jobs.
        """
        return self._drive(self._core.redrive(ids))

    # -- look and steer

    def get(self, job_id: str, *, preview: int | None = None) -> JobInfo | None:
        """Look up one job by id, atomically: its state and time, attempts, last error and payload.

        Args:
            job_id: The job's id.
            preview: Send at most this many bytes of the payload (``payload_size`` is still
                the whole length); None = all of it.

        Returns:
            The job (see :class:`JobInfo`), or None when the queue has no job with that id.

        Raises:
            InvalidType, InvalidArgument: A bad id or preview; nothing is sent.

        Cost: one round trip, O(log N) (plus the payload's size, or the preview's).
        """
        return self._drive(self._core.get(job_id, preview))

    def list_jobs(self, state: str, *, offset: int = 0, limit: int = 50, preview: int = 256) -> JobPage:
        """One page of the jobs in one state, as a dashboard lists them; nothing is changed.

        Args:
            state: "ready", "delayed", "in_flight" or "dead".
            offset: Jobs of that state to skip (pages are addressed by rank: a deep page
                costs no more than the first).
            limit: 0 to 1000 jobs at most (0: only count them).
            preview: Cut each payload to this many bytes (``JobInfo.payload_size`` keeps its length).

        Returns:
            The page, with the number of jobs in that state.

        Raises:
            InvalidType, InvalidArgument: A bad state, offset, limit or preview; nothing is sent.

        Cost: one round trip (one per shard for a sharded queue), O(log N + limit).
        """
        return self._drive(self._core.list_jobs(state, offset, limit, preview))

    def pause(self) -> bool:
        """Pause the queue: workers (every consumer's dequeue) claim nothing until :meth:`resume`;
        enqueues, acks, nacks and everything else go on. Persists in Redis until resumed.

        A consumer long-polling a paused queue looks again every second, so it starts
        claiming within a second of a resume (one of them at once).

        Returns:
            True if the queue was not paused before.

        Cost: one round trip (one per shard), O(1).
        """
        return self._drive(self._core.pause())

    def resume(self) -> bool:
        """End a :meth:`pause`; wakes one long-polling consumer when jobs are ready.

        Returns:
            True if the queue was paused.

        Cost: one round trip (one per shard), O(log N).
        """
        return self._drive(self._core.resume())
