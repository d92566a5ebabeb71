"""One logical queue spread over N hash tags (shards), so that on a cluster its load spreads over nodes.

Like the single-tag core, it does no I/O: each operation is a generator of script
calls, at most one call per shard, driven by the same sync and async queues.

- A job lives in the shard chosen by a stable hash of its id (CRC32), so dedup by
  id, ack, nack, extend, cancel and reschedule go to exactly one shard.
- Shard tags are chosen so that shard i's slot falls in the i-th N-th of the
  16384 slots. ``redis-cli --cluster create`` gives each master an equal,
  contiguous slot range, so N shards over N masters land one per master. The
  choice depends only on the name and N, never on the topology, so every client
  computes the same tags.
- dequeue visits the shards in an order that rotates on every call (from a
  random start per client), asking each for all that is still missing from the
  batch. A batch is never short while jobs are due anywhere (a fixed share per
  shard would come back short whenever shards are unevenly filled, and with one
  call per shard that cannot be made up), and since every shard comes first
  once in N calls, none starves: under a backlog each shard is drained at 1/N
  of the rate.
- Ordering: by due time within a shard; across shards only approximately (a batch
  may hold a job due later than one left in another shard). Equal due times go by
  id everywhere (as a sorted set orders its members), so the merges of peek and
  dead_letters and the order of a batch do not depend on which shard answered first.

Where the shards live (their tags, the marker in their keys): see _shards.
"""

from __future__ import annotations

import heapq
import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from ._core import QueueCore, chunks
from ._inspect import JobInfo, JobPage
from ._longpoll import long_poll, nap_pause
from ._replies import AckResult, DequeueResult
from ._shards import MAX_SHARDS, shard_index, shard_marker, shard_tags
from ._steps import Op
from ._types import DeadJob, Job, PendingJob, QueueStats
from ._validate import (
    DEFAULT_MAX_ATTEMPTS,
    MAX_BATCH,
    MAX_LOCK_TTL_S,
    Checked,
    Duration,
    Payload,
    check_claim,
    check_claims,
    check_id,
    check_ids,
    check_int,
    check_page,
    prepare_enqueue,
    to_ms,
)

__all__ = ["ShardedCore"]

T = TypeVar("T")

_log = logging.getLogger("delayq")


@dataclass
class _Settled:
    """What the shards of one call did with its acks, and the first shard failure."""

    acked: int = 0
    refused: list[Job] = field(default_factory=list)
    unapplied: list[Job] = field(default_factory=list)
    gone: list[Job] = field(default_factory=list)
    failure: Exception | None = None

    def add(self, acked: int, refused: list[Job], gone: list[Job]) -> None:
        self.acked += acked
        self.refused += refused
        self.gone += gone


class ShardedCore:
    """The core of a queue spread over ``shards`` hash tags; the same operations as QueueCore.

    Args:
        name: The queue's name.
        shards: 2 to 256.
        prefix: As for QueueCore.
        max_attempts: As for QueueCore.

    Raises:
        InvalidType, InvalidArgument: A bad name, prefix, max_attempts or shards.
    """

    def __init__(
        self, name: str, shards: int, *, prefix: str = "delayq", max_attempts: int | None = DEFAULT_MAX_ATTEMPTS
    ) -> None:
        first = QueueCore(name, prefix=prefix, max_attempts=max_attempts)
        self.name, self.prefix, self.max_attempts = first.name, first.prefix, first.max_attempts
        check_int(shards, "shards", 1, MAX_SHARDS)
        self.shards = [
            QueueCore(name, prefix=prefix, max_attempts=max_attempts, tag=tag, marker=shard_marker(i, shards))
            for i, tag in enumerate(shard_tags(name, shards))
        ]
        self._start = random.randrange(shards)
        self._down: set[int] = set()
        """Shards whose last call failed (logged once when they fail, once when they answer again)."""

    @property
    def clock(self) -> Callable[[], int] | None:
        """TEST ONLY: see QueueCore.clock; set on every shard."""
        return self.shards[0].clock

    @clock.setter
    def clock(self, value: Callable[[], int] | None) -> None:
        for shard in self.shards:
            shard.clock = value

    def shard_of(self, job_id: str) -> QueueCore:
        """The shard that holds (or would hold) the job with this id."""
        return self.shards[shard_index(job_id, len(self.shards))]

    def _group(self, job_ids: Iterable[str]) -> dict[int, list[int]]:
        """Positions of the ids, by the index of their shard."""
        groups: dict[int, list[int]] = {}
        for position, job_id in enumerate(job_ids):
            groups.setdefault(shard_index(job_id, len(self.shards)), []).append(position)
        return groups

    def _failed(self, index: int, exc: Exception) -> None:
        if index not in self._down:
            self._down.add(index)
            _log.warning("queue %r: shard %d failed (%s); going on with the others until it answers", self.name, index, exc)

    def _answered(self, index: int) -> None:
        if index in self._down:
            self._down.discard(index)
            _log.warning("queue %r: shard %d answers again", self.name, index)

    def _ask(self, index: int, op: Op[T], mine: list[Job], settled: _Settled) -> Op[T | None]:
        """Run one shard's part of a call; if it fails, note the failure (its acks ``mine`` unapplied)
        and return None, so that the caller goes on with the other shards."""
        try:
            part = yield from op
        except Exception as exc:
            settled.failure = settled.failure or exc
            settled.unapplied += mine
            self._failed(index, exc)
            return None
        self._answered(index)
        return part

    def _each(self, ask: Callable[[QueueCore], Op[T]]) -> Op[list[T]]:
        """Every shard's answer to ``ask(shard)``, one shard after the other, in shard order."""
        parts = []
        for shard in self.shards:
            parts.append((yield from ask(shard)))
        return parts

    def _rotation(self) -> list[int]:
        self._start = (self._start + 1) % len(self.shards)
        return [(self._start + k) % len(self.shards) for k in range(len(self.shards))]

    # -- enqueue

    def enqueue_many(
        self, payloads: Iterable[Payload], *, delay: Duration = 0, at: datetime | None = None, ids: Sequence[str] | None = None
    ) -> Op[list[str | None]]:
        """Validate everything, then one call per shard (per 1000 jobs); see Queue.enqueue_many."""
        mode, when, job_ids, data = prepare_enqueue(payloads, delay, at, ids)
        result: list[str | None] = [None] * len(job_ids)
        for index, positions in self._group(job_ids).items():
            stored = yield from self.shards[index].enqueue_prepared(
                mode, when, [job_ids[p] for p in positions], [data[p] for p in positions]
            )
            for position, job_id in zip(positions, stored, strict=True):
                result[position] = job_id
        return result

    def enqueue(
        self, payload: Payload, *, delay: Duration = 0, at: datetime | None = None, id: str | None = None
    ) -> Op[str | None]:
        """See Queue.enqueue."""
        return (yield from self.enqueue_many([payload], delay=delay, at=at, ids=None if id is None else [id]))[0]

    # -- claim and settle

    def dequeue_once(self, batch: int, lock_ttl: Duration, done: Iterable[Job] = ()) -> Op[DequeueResult]:
        """Ack ``done`` on their shards and claim up to ``batch`` jobs, one call per shard at most.

        A shard whose call fails is skipped and the others are still asked. If they claimed jobs
        or applied acks, those are returned (raising would drop them: claimed jobs would wait for
        their locks to expire, applied acks would be sent again and refused), with the failed
        shard's acks in ``unapplied``; otherwise the first failure is raised.
        """
        check_int(batch, "batch", 1, MAX_BATCH)
        to_ms(lock_ttl, "lock_ttl", minimum_ms=1, maximum_s=MAX_LOCK_TTL_S)  # now every exception below is a call's
        finished = check_claims(done)
        acks: dict[int, list[Job]] = {
            index: Checked(finished[p] for p in positions) for index, positions in self._group(j.id for j in finished).items()
        }
        jobs: list[Job] = []
        settled = _Settled()
        dead, now_ms, next_ms = 0, 0, None
        for index in self._rotation():
            shard, mine = self.shards[index], acks.get(index, [])
            missing = batch - len(jobs)
            if missing > 0:
                part = yield from self._ask(index, shard.dequeue_once(missing, lock_ttl, mine), mine, settled)
            elif mine:
                acked = yield from self._ask(index, shard.ack_claims(mine), mine, settled)
                part = None if acked is None else DequeueResult(0, None, acked.acked, 0, [], acked.refused, [], acked.gone)
            else:
                continue
            if part is None:
                continue
            settled.add(part.acked, part.refused, part.gone)
            jobs += part.jobs
            dead += part.dead_lettered
            now_ms = max(now_ms, part.now_ms)
            if part.next_ms is not None and (next_ms is None or part.next_ms < next_ms):
                next_ms = part.next_ms
        if settled.failure is not None and not jobs and settled.acked == 0:
            raise settled.failure
        jobs.sort(key=lambda job: (job.due_ms, job.id))  # due order within the batch, ties by id as in a shard
        next_ms = next_ms if len(jobs) < batch else None
        return DequeueResult(now_ms, next_ms, settled.acked, dead, jobs, settled.refused, settled.unapplied, settled.gone)

    def dequeue(
        self, batch: int, lock_ttl: Duration, done: Iterable[Job] = (), wait: Duration = 0, max_block: float | None = None
    ) -> Op[DequeueResult]:
        """Dequeue once, and with ``wait`` > 0 long-poll, napping between rounds (see _longpoll.nap_pause)."""
        return (yield from long_poll(lambda acks, _remaining: self.dequeue_once(batch, lock_ttl, acks), done, wait, nap_pause))

    def ack_claims(self, jobs: Iterable[Job]) -> Op[AckResult]:
        """Ack on each job's shard, one call per shard; says which acks were refused (lock lost).

        As for dequeue, a shard whose call fails is skipped: if other shards applied acks, the
        result is returned with that shard's jobs in ``unapplied``, else the first failure is raised.
        """
        listed = check_claims(jobs)
        settled = _Settled()
        for index, positions in self._group(j.id for j in listed).items():
            mine = Checked(listed[p] for p in positions)
            part = yield from self._ask(index, self.shards[index].ack_claims(mine), mine, settled)
            if part is not None:
                settled.add(part.acked, part.refused, part.gone)
        if settled.failure is not None and settled.acked == 0:
            raise settled.failure
        return AckResult(settled.acked, settled.refused, settled.unapplied, settled.gone)

    def ack_many(self, jobs: Iterable[Job]) -> Op[int]:
        """Ack on each job's shard, one call per shard; see Queue.ack_many."""
        listed = check_claims(jobs)
        total = 0
        for index, positions in self._group(j.id for j in listed).items():
            total += yield from self.shards[index].ack_many([listed[p] for p in positions])
        return total

    def ack(self, job: Job) -> Op[bool]:
        """See Queue.ack."""
        return (yield from self.shard_of(check_claim(job).id).ack(job))

    def nack(self, job: Job, delay: Duration = 0, error: str | None = None) -> Op[int]:
        """See Queue.nack."""
        return (yield from self.shard_of(check_claim(job).id).nack(job, delay, error))

    def release(self, job: Job) -> Op[bool]:
        """See Queue.release."""
        return (yield from self.shard_of(check_claim(job).id).release(job))

    def extend(self, job: Job, lock_ttl: Duration) -> Op[int | None]:
        """See Queue.extend."""
        return (yield from self.shard_of(check_claim(job).id).extend(job, lock_ttl))

    # -- manage

    def cancel(self, job_id: str) -> Op[bool]:
        """See Queue.cancel."""
        return (yield from self.shard_of(check_id(job_id)).cancel(job_id))

    def reschedule(self, job_id: str, *, delay: Duration = 0, at: datetime | None = None) -> Op[bool]:
        """See Queue.reschedule."""
        return (yield from self.shard_of(check_id(job_id)).reschedule(job_id, delay=delay, at=at))

    def peek(self, limit: int) -> Op[list[PendingJob]]:
        """The earliest ``limit`` waiting jobs over all shards; see Queue.peek."""
        check_int(limit, "limit", 1, MAX_BATCH)
        parts = yield from self._each(lambda shard: shard.peek(limit))
        return list(heapq.merge(*parts, key=lambda p: (p.due_ms, p.id)))[:limit]

    def stats(self) -> Op[QueueStats]:
        """Sums over the shards (each shard's counts are atomic; the sum is not one snapshot); the
        oldest ready age is the shards' largest, and the queue is paused if any shard is."""
        parts = yield from self._each(lambda shard: shard.stats())
        return QueueStats(
            sum(s.ready for s in parts),
            sum(s.delayed for s in parts),
            sum(s.in_flight for s in parts),
            sum(s.dead for s in parts),
            max(s.oldest_ready_age for s in parts),
            any(s.paused for s in parts),
        )

    def purge(self) -> Op[int]:
        """See Queue.purge."""
        return sum((yield from self._each(lambda shard: shard.purge())))

    def dead_letters(self, limit: int) -> Op[list[DeadJob]]:
        """The oldest ``limit`` dead jobs over all shards; see Queue.dead_letters."""
        check_int(limit, "limit", 1, MAX_BATCH)
        parts = yield from self._each(lambda shard: shard.dead_letters(limit))
        return list(heapq.merge(*parts, key=lambda d: (d.died_ms, d.id)))[:limit]

    def redrive(self, ids: Iterable[str] | None) -> Op[int]:
        """See Queue.redrive."""
        if ids is None:
            return sum((yield from self._each(lambda shard: shard.redrive(None))))
        wanted = check_ids(ids)
        total = 0
        for index, positions in self._group(wanted).items():
            for chunk in chunks([wanted[p] for p in positions], MAX_BATCH):
                total += yield from self.shards[index].redrive(chunk)
        return total

    # -- look and steer

    def get(self, job_id: str, preview: int | None = None) -> Op[JobInfo | None]:
        """See Queue.get: one call, on the job's shard."""
        return (yield from self.shard_of(check_id(job_id)).get(job_id, preview))

    def list_jobs(self, state: str, offset: int, limit: int, preview: int) -> Op[JobPage]:
        """See Queue.list_jobs: the shards' pages one after the other, one call per shard."""
        checked = check_page(state, offset, limit, preview)
        jobs: list[JobInfo] = []
        total = now_ms = 0
        for shard in self.shards:
            skip = max(0, offset - total)
            part = yield from shard.list_jobs(checked, skip, limit - len(jobs), preview)
            jobs += part.jobs
            total += part.total
            now_ms = max(now_ms, part.now_ms)
        return JobPage(checked, offset, total, jobs, now_ms)

    def pause(self) -> Op[bool]:
        """See Queue.pause: every shard; True if any was not paused."""
        return any((yield from self._each(lambda shard: shard.pause())))

    def resume(self) -> Op[bool]:
        """See Queue.resume: every shard; True if any was paused."""
        return any((yield from self._each(lambda shard: shard.resume())))

    # -- hooks for policies, tasks and periodic jobs (appended; see QueueCore)

    def nack_limited(self, job: Job, delay: Duration = 0, error: str | None = None, *, max_attempts: int | None) -> Op[int]:
        """See QueueCore.nack_limited."""
        return (yield from self.shard_of(check_claim(job).id).nack_limited(job, delay, error, max_attempts=max_attempts))

    def schedule(
        self,
        name: str,
        spec: str,
        payload: bytes,
        catchup: tuple[int, str] | None,
        upcoming: tuple[int, str] | None,
        *,
        cold: bool = False,
        current: int | None = None,
        checked: bool = False,
    ) -> Op[tuple[bool, bool, int, bool]]:
        """Each run goes to the shard of its id, with that shard's marker: a slot's id always maps to
        the same shard, so the shard's marker alone keeps that slot from being enqueued twice. A plan
        the first shard refuses for the caller's clock is not sent to the second."""
        stored_catchup = stored_upcoming = refused = False
        now = 0
        if catchup is not None:
            stored_catchup, _, now, refused = yield from self.shard_of(check_id(catchup[1])).schedule(
                name, spec, payload, catchup, None, cold=cold, current=current, checked=checked
            )
        if upcoming is not None and not refused:
            _, stored_upcoming, now, refused = yield from self.shard_of(check_id(upcoming[1])).schedule(
                name, spec, payload, None, upcoming, current=current, checked=checked
            )
        return stored_catchup, stored_upcoming, now, refused

    def periodic_markers(self, names: Sequence[str]) -> Op[list[list[tuple[int, str]]]]:
        """Every shard's markers, per name."""
        listed = list(names)
        result: list[list[tuple[int, str]]] = [[] for _ in listed]
        for shard in self.shards:
            part = yield from shard.periodic_markers(listed)
            for mine, found in zip(result, part, strict=True):
                mine.extend(found)
        return result
