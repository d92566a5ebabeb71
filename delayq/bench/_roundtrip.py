"""The per-item round-trip queue of the Go original: the bench's baseline, private to it (not library API).

``../shared/reference/go-original.txt`` ("Redis delayed tasks with go") keeps a ZSET
scored by due time and, to dequeue, reads the head of the set one item at a time
(``ZRANGE key start start WITHSCORES``), takes a per-item distributed lock with the
redislock library (``SET lock token NX PX ttl``) and acks with ``ZREM`` followed by
the lock's release (redislock's compare-and-delete; here a ``GET`` check first and
a ``DEL`` last, the same number of round trips, and no script, so that the
benchmark's server-time figures count each command once). Every step is its own network round trip. This class keeps
that shape, one command per round trip per step per item, and fixes the
original's plain bugs:

- its loop ``for i := rq.batch; i >= 0;`` returns batch + 1 items: here at most ``batch``;
- its ``ttl`` field was never used for the lock: here it is the lock's PX;
- it stored only ids: here a payload hash and an attempts hash, so that it does the
  same job as :class:`delayq.Queue` (one more round trip each);
- its ack removed the job before checking the lock, so a worker whose lock had expired
  deleted a job another worker held: here ack first reads the lock and gives up on a
  token mismatch. Between that read and the deletes another worker can still take the
  lock (the check and the delete are separate round trips); only a server-side script
  closes that window, which is the point of :class:`delayq.Queue`.

Due times are ms by the client's clock, as in the original (``time.Now()``).
Locked jobs stay at the head of the set; dequeue steps over them one round trip
each, as the original does, so its cost grows with the jobs in flight.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable

import redis

from .._types import Job
from .._validate import (
    MAX_BATCH,
    MAX_DELAY_S,
    MAX_LOCK_TTL_S,
    check_id,
    check_int,
    check_job,
    check_name,
    check_payload,
    new_ids,
    to_ms,
)

__all__ = ["RoundTripQueue"]


class RoundTripQueue:
    """The baseline: same enqueue / dequeue / ack as :class:`delayq.Queue`, one round trip per step.

    Args:
        client: A ``redis.Redis`` (``decode_responses=False``).
        name: The queue's name, validated as for :class:`delayq.Queue`.
        prefix: The first part of every key.

    Raises:
        InvalidType, InvalidArgument: A bad name or prefix.
    """

    def __init__(self, client: redis.Redis, name: str, *, prefix: str = "delayq-rt") -> None:
        self._client = client
        self.name = check_name(name, "queue name")
        base = f"{check_name(prefix, 'key prefix')}:{{{self.name}}}"
        self._due, self._payload, self._attempts, self._lock = (
            f"{base}:due",
            f"{base}:payload",
            f"{base}:attempts",
            f"{base}:lock:",
        )

    def enqueue(self, payload: bytes | str, *, delay: float = 0, id: str | None = None) -> str | None:
        """Add a job due after ``delay`` seconds: HSETNX payload, then ZADD (2 round trips).

        Returns:
            The id, or None if a job with that id exists.

        Raises:
            InvalidType, InvalidArgument: A bad payload, delay or id.
        """
        data = check_payload(payload)
        delay_ms = to_ms(delay, "delay", minimum_ms=0, maximum_s=MAX_DELAY_S)
        job_id = new_ids(1)[0] if id is None else check_id(id)
        if not self._client.hsetnx(self._payload, job_id, data):
            return None
        self._client.zadd(self._due, {job_id: time.time() * 1000 + delay_ms})
        return job_id

    def enqueue_many(self, payloads: Iterable[bytes | str], *, delay: float = 0) -> list[str | None]:
        """Add jobs one at a time (2 round trips each).

        Returns:
            One id per payload.
        """
        return [self.enqueue(p, delay=delay) for p in payloads]

    def dequeue(self, batch: int = 1, lock_ttl: float = 30) -> list[Job]:
        """Claim up to ``batch`` due jobs, walking the head of the set one item per round trip.

        Per claimed job: ZRANGE (read one), SET NX PX (lock), HGET (payload),
        HINCRBY (attempts): 4 round trips, plus one ZRANGE per locked job stepped over.

        Raises:
            InvalidType, InvalidArgument: A bad batch or lock_ttl.
        """
        check_int(batch, "batch", 1, MAX_BATCH)
        ttl = to_ms(lock_ttl, "lock_ttl", minimum_ms=1, maximum_s=MAX_LOCK_TTL_S)
        client, start = self._client, 0
        jobs: list[Job] = []
        while len(jobs) < batch:
            head: list[tuple[bytes, float]] = client.zrange(self._due, start, start, withscores=True)  # type: ignore[assignment]
            now = time.time() * 1000
            if not head or head[0][1] > now:
                break
            raw_id, score = head[0]
            job_id = raw_id.decode()
            token = secrets.token_hex(8)
            if not client.set(self._lock + job_id, token, nx=True, px=ttl):
                start += 1  # held by someone: step over it
                continue
            payload: bytes | None = client.hget(self._payload, job_id)  # type: ignore[assignment]
            if payload is None:  # acked and removed between our reads
                client.delete(self._lock + job_id)
                continue
            attempts = int(client.hincrby(self._attempts, job_id, 1))
            jobs.append(Job(job_id, payload, attempts, token, int(now) + ttl, int(score)))
            start += 1
        return jobs

    def ack(self, job: Job) -> bool:
        """Delete a job if our lock still holds: GET, ZREM, HDEL, HDEL, DEL (5 round trips).

        Returns:
            True if deleted; False if the lock was lost.

        Raises:
            InvalidType: ``job`` is not a Job.
        """
        check_job(job)
        lock = self._lock + job.id
        if self._client.get(lock) != job.token.encode():
            return False
        self._client.zrem(self._due, job.id)
        self._client.hdel(self._payload, job.id)
        self._client.hdel(self._attempts, job.id)
        self._client.delete(lock)
        return True

    def ack_many(self, jobs: Iterable[Job]) -> int:
        """Ack jobs one at a time.

        Returns:
            How many were deleted.
        """
        return sum(self.ack(job) for job in jobs)

    def purge(self) -> int:
        """Delete the queue's keys (not part of the comparison; for benchmarks' clean-up).

        Returns:
            How many jobs were deleted.
        """
        count = int(self._client.zcard(self._due))
        locks = list(self._client.scan_iter(match=self._lock.replace("{", "[{]").replace("}", "[}]") + "*", count=1000))
        self._client.delete(self._due, self._payload, self._attempts, *locks)
        return count
