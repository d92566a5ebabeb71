"""The synchronous queue (``delayq.Queue``): drives the core's operations over a redis-py client.

Here: the driver and the calls of producers and consumers (enqueue, dequeue, ack, nack, release,
extend); the calls that look at and steer a queue are in _sync_manage.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import redis

from ._base import QueueBase
from ._heartbeats import HEARTBEAT_TTL_S, WorkerInfo, check_heartbeat, live_workers, stale_workers
from ._replies import AckResult, DequeueResult
from ._steps import Block, Call, Load, Op, Step, run_scripts
from ._sync_manage import ManageCalls
from ._types import NACK_OUTCOMES, Job, NackOutcome
from ._validate import Duration, Payload

__all__ = ["Queue"]

T = TypeVar("T")


class Queue(ManageCalls, QueueBase[redis.Redis | redis.RedisCluster]):
    """A delayed-job queue stored in Redis under the hash tag ``{name}``.

    Args:
        client: A ``redis.Redis`` or ``redis.cluster.RedisCluster`` made with
            ``decode_responses=False`` (the default).
        name: The queue's name: 1-200 characters, no ``{`` or ``}``.
        prefix: The first part of every key (``delayq:{name}:due`` ...).
        max_attempts: A job claimed this many times and not acked goes to the
            dead letters instead of being delivered again; default 20
            (``delayq.DEFAULT_MAX_ATTEMPTS``); None = never.
        shards: Spread the queue over this many hash tags (1-256), so that on a
            Redis Cluster its load spreads over the masters. Ordering is then by
            due time within a shard and only approximate across shards; see
            the README. A dequeue whose call to one shard fails returns what the
            other shards gave (the failed shard's acks not applied, nor counted);
            it raises only when no shard claimed or acked anything.

    Raises:
        InvalidType: ``client``, ``name``, ``prefix`` or ``max_attempts`` of the wrong type.
        InvalidArgument: A bad name or prefix, ``max_attempts < 1``, ``shards`` out
            of range, or a client with ``decode_responses=True``.
    """

    def _execute(self, step: Step) -> Any:
        """Perform one step: EVALSHA, SCRIPT LOAD, BLPOP on the wake list, or a client-side sleep."""
        if isinstance(step, Call):
            return self._client.evalsha(step.script.sha, len(step.keys), *step.keys, *step.args)
        if isinstance(step, Load):
            return self._client.script_load(step.script.source)
        if isinstance(step, Block):
            return self._client.blpop([step.key], timeout=step.timeout)
        time.sleep(step.seconds)
        return None

    def _drive(self, op: Op[T]) -> T:
        # every step goes through run_scripts (script loading, error mapping); a failed step is thrown
        # into the operation, which may still hold results it must not drop (a sharded dequeue's jobs
        # claimed from earlier shards); most let it through unchanged
        steps = run_scripts(op, self._core.name)
        try:
            step = next(steps)
            while True:
                try:
                    reply = self._execute(step)
                except Exception as exc:
                    step = steps.throw(exc)
                else:
                    step = steps.send(reply)
        except StopIteration as stop:
            result: T = stop.value
            return result

    def enqueue(self, payload: Payload, *, delay: Duration = 0, at: datetime | None = None, id: str | None = None) -> str | None:
        """Add a job, due after ``delay`` (or at ``at``) by the server's clock.

        Args:
            payload: bytes, or str (stored UTF-8 encoded); returned as bytes.
            delay: Seconds (int/float) or a timedelta, 0 to 10 years; 0 = due now.
            at: A timezone-aware datetime instead of ``delay``; a past time means due now.
            id: The job's id (at most 1024 UTF-8 bytes); default 32 random hex digits.

        Returns:
            The job's id, or None when a job with that id already exists in this
            queue (in any state); the existing job is left unchanged.

        Raises:
            InvalidType, InvalidArgument: A bad payload, delay, at or id; nothing is sent.

        Cost: one round trip, O(log N).
        """
        return self._drive(self._core.enqueue(payload, delay=delay, at=at, id=id))

    def enqueue_many(
        self, payloads: Iterable[Payload], *, delay: Duration = 0, at: datetime | None = None, ids: Sequence[str] | None = None
    ) -> list[str | None]:
        """Add many jobs with one due time, one round trip per 1000 jobs.

        Args:
            payloads: bytes or str payloads.
            delay: As for :meth:`enqueue`, for every job.
            at: As for :meth:`enqueue`, for every job.
            ids: One id per payload, or None for random ids. An id repeated in
                ``ids`` is stored once (the first one).

        Returns:
            One entry per payload, in order: its id, or None if not stored because the id exists.

        Raises:
            InvalidType, InvalidArgument: Any bad payload, id or time; nothing at all is sent.

        Cost: ceil(len/1000) round trips, O(batch log N) each.
        """
        return self._drive(self._core.enqueue_many(payloads, delay=delay, at=at, ids=ids))

    def dequeue(self, batch: int = 1, lock_ttl: Duration = 30, *, wait: Duration = 0) -> list[Job]:
        """Claim up to ``batch`` due jobs, each locked for ``lock_ttl``.

        A claimed job is invisible to other consumers until its lock expires;
        then it comes due again by itself, with ``attempts`` one higher.

        Args:
            batch: 1 to 1000 jobs at most.
            lock_ttl: Seconds or timedelta, 1 ms to 12 hours.
            wait: Long-poll: when nothing is due, wait up to this long (0 to 1 hour)
                for jobs, without busy polling (about one call a second while idle).
                However many consumers wait, one of them is back within a few ms
                (WINDOW_STEP_S, 5 ms, plus a round trip) of any job becoming
                claimable, a due job or an expired lock: an enqueue, nack or claim
                that makes the next claimable time earlier than the waiters expect
                wakes one waiter, never all. A ``socket_timeout`` on the client
                shortens each block to stay below it.

        Returns:
            The claimed jobs, earliest due first; [] when nothing is due (within ``wait``).

        Raises:
            InvalidType, InvalidArgument: A bad batch, lock_ttl or wait; nothing is sent.

        Cost: one round trip, O(log N + batch) whatever the queue size or jobs in flight;
        waiting adds one per wake-up, about one a second, and one per WINDOW_STEP_S in
        the last BLOCK_MARGIN_S (110 ms) before a due time it watches.
        """
        return self._drive(self._core.dequeue(batch, lock_ttl, (), wait, self._max_block)).jobs

    def ack_and_dequeue(
        self, done: Iterable[Job], batch: int = 1, lock_ttl: Duration = 30, *, wait: Duration = 0
    ) -> tuple[int, list[Job]]:
        """Ack ``done`` and claim the next batch in one round trip, for workers that loop.

        Args:
            done: Jobs to ack first (as :meth:`ack_many`), at most 1000.
            batch: As for :meth:`dequeue`.
            lock_ttl: As for :meth:`dequeue`.
            wait: As for :meth:`dequeue` (``done`` is acked at once, before any wait).

        Returns:
            (how many of ``done`` were acked, the newly claimed jobs).

        Raises:
            InvalidType, InvalidArgument: A bad job, batch or lock_ttl; nothing is sent.

        Cost: one round trip, O(log N + batch + len(done)).
        """
        result = self.ack_and_claim(done, batch, lock_ttl, wait=wait)
        return result.acked, result.jobs

    def ack_and_claim(self, done: Iterable[Job], batch: int = 1, lock_ttl: Duration = 30, *, wait: Duration = 0) -> DequeueResult:
        """:meth:`ack_and_dequeue`, with everything the call reports: for a worker that must know
        which of its acks were refused (the lock was lost) or not tried (a shard's call failed).

        Args:
            done, batch, lock_ttl, wait: As for :meth:`ack_and_dequeue`.

        Returns:
            A DequeueResult: ``jobs`` claimed; ``acked`` (a count), ``refused``, ``unapplied``
            and ``gone`` for ``done``; the server's ``now_ms`` and the queue's ``next_ms``.

        Raises:
            InvalidType, InvalidArgument: A bad job, batch, lock_ttl or wait; nothing is sent.

        Cost: one round trip, O(log N + batch + len(done)).
        """
        return self._drive(self._core.dequeue(batch, lock_ttl, done, wait, self._max_block))

    def ack_claims(self, jobs: Iterable[Job]) -> AckResult:
        """:meth:`ack_many`, saying which acks were refused (lock lost) or not tried.

        Args:
            jobs: Jobs returned by :meth:`dequeue`, at most 1000 claims.

        Returns:
            An AckResult: ``acked`` (a count), ``refused``, ``unapplied``, ``gone``.

        Raises:
            InvalidType, InvalidArgument: As for :meth:`ack_many`; nothing is sent.

        Cost: one round trip, O(batch log L).
        """
        return self._drive(self._core.ack_claims(jobs))

    def fail(self, job: Job, delay: Duration = 0, *, error: str | None = None) -> NackOutcome:
        """:meth:`nack`, saying what became of the job: for a worker that counts dead letters.

        Args:
            job, delay, error: As for :meth:`nack`.

        Returns:
            "retried" (due again after ``delay``), "dead_lettered" (it had used its
            ``max_attempts``), or "lock_lost" (nothing changed).

        Raises:
            InvalidType, InvalidArgument: A bad job, delay or error; nothing is sent.

        Cost: one round trip, O(log N).
        """
        return NACK_OUTCOMES[self._drive(self._core.nack(job, delay, error))]

    def heartbeat(self, worker_id: str, entry: str, ttl: float = HEARTBEAT_TTL_S) -> int:
        """Write a worker's heartbeat into the queue's ``workers`` hash, and prune dead workers' entries.

        Args:
            worker_id: The worker's id (the hash field).
            entry: Its JSON entry (see ``delayq._heartbeats``).
            ttl: Seconds after which the hash expires if no worker beats again.

        Returns:
            How many dead or malformed entries were pruned.

        Raises:
            InvalidType, InvalidArgument: A bad id, entry or ttl; nothing is sent.

        Cost: three round trips, O(W) for W workers.
        """
        key, field, ttl_ms = check_heartbeat(self._workers_key, worker_id, entry, ttl)
        self._client.hset(key, field, entry)
        self._client.pexpire(key, ttl_ms)
        stale = stale_workers(self._client.hgetall(key), time.time())
        if stale:
            self._client.hdel(key, *stale)
        return len(stale)

    def remove_heartbeat(self, worker_id: str) -> bool:
        """Remove a worker's heartbeat (it stopped); True if it was there.

        Raises:
            InvalidType, InvalidArgument: A bad id; nothing is sent.

        Cost: one round trip, O(1).
        """
        key, field, _ = check_heartbeat(self._workers_key, worker_id, "{}", HEARTBEAT_TTL_S)
        return bool(self._client.hdel(key, field))

    def workers(self) -> list[WorkerInfo]:
        """The live workers of this queue, from their heartbeats, newest first.

        Cost: one round trip, O(W) for W workers.
        """
        return live_workers(self._client.hgetall(self._workers_key), time.time())

    def ack(self, job: Job) -> bool:
        """Delete a finished job, if this consumer still holds its lock.

        Args:
            job: A job returned by :meth:`dequeue`.

        Returns:
            True if deleted; False if the lock was lost (expired, or the job was
            cancelled or claimed again), in which case nothing is changed.

        Raises:
            InvalidType: ``job`` is not a Job, or one of its fields has the wrong type.
            InvalidArgument: A hand-built job: a reserved or malformed id, or a token not of
                the form dequeue gives (``"<attempts>:<16 hex digits>"``); nothing is sent.

        Cost: one round trip, O(log L), L = jobs in flight.
        """
        return self._drive(self._core.ack(job))

    def ack_many(self, jobs: Iterable[Job]) -> int:
        """Ack up to 1000 jobs in one round trip.

        Args:
            jobs: Jobs returned by :meth:`dequeue`; a job given twice counts once.

        Returns:
            How many were deleted (those whose lock was lost are left alone).

        Raises:
            InvalidType: An item is not a Job, or has a field of the wrong type.
            InvalidArgument: More than 1000 jobs, or a hand-built job (as for :meth:`ack`).

        Cost: one round trip, O(batch log L).
        """
        return self._drive(self._core.ack_many(jobs))

    def nack(self, job: Job, delay: Duration = 0, *, error: str | None = None) -> bool:
        """Give a claimed job back, due again after ``delay``.

        With ``max_attempts`` set and reached, the job goes to the dead letters instead.
        This counts the claim as a failed attempt; to give back a job that did not
        fail (on shutdown, say), use :meth:`release`.

        Args:
            job: A job returned by :meth:`dequeue`.
            delay: Seconds or timedelta, 0 to 10 years.
            error: Text kept with the job and shown by :meth:`dead_letters`.

        Returns:
            True if given back (or dead-lettered); False if the lock was lost, nothing changed.

        Raises:
            InvalidType, InvalidArgument: A bad job, delay or error.

        Cost: one round trip, O(log N).
        """
        return self._drive(self._core.nack(job, delay, error)) > 0

    def release(self, job: Job) -> bool:
        """Give a claimed job back unfinished, due now, as if this claim had not happened.

        For a job its holder gives up for its own reasons, not because the job
        failed (a worker shutting down, a batch claimed but not started). Unlike
        :meth:`nack`, the attempt this claim counted is undone: ``attempts`` goes
        back to what it was before the claim, so a job on its last attempt is
        never dead-lettered by a release, and its next claim has the same
        ``attempts`` as this one. A kept error text stays. Wakes one consumer
        waiting in a long-poll, as :meth:`nack` does.

        Args:
            job: A job returned by :meth:`dequeue`.

        Returns:
            True if given back; False if the lock was lost (expired, or the job
            was cancelled or claimed again), in which case nothing is changed.

        Raises:
            InvalidType: ``job`` is not a Job.

        Cost: one round trip, O(log N).
        """
        return self._drive(self._core.release(job))

    def extend(self, job: Job, lock_ttl: Duration = 30) -> bool:
        """Keep a long job locked: its lock now expires ``lock_ttl`` from the server's now.

        Args:
            job: A job returned by :meth:`dequeue`.
            lock_ttl: Seconds or timedelta, 1 ms to 12 hours.

        Returns:
            True if extended; False if the lock was already lost (do not ack then:
            another consumer may have the job).

        Raises:
            InvalidType, InvalidArgument: A bad job or lock_ttl.

        Cost: one round trip, O(log L).
        """
        return self._drive(self._core.extend(job, lock_ttl)) is not None
