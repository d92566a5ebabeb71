"""The asyncio queue (``delayq.aio.Queue``): the same methods as :class:`delayq.Queue`, as coroutines over ``redis.asyncio``.

It drives the same core operations as the sync queue; only the I/O differs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import redis.asyncio
import redis.asyncio.cluster

from ._base import QueueBase
from ._heartbeats import HEARTBEAT_TTL_S, WorkerInfo, check_heartbeat, live_workers, stale_workers
from ._inspect import JobInfo, JobPage
from ._replies import AckResult, DequeueResult
from ._steps import Block, Call, Load, Op, Step, run_scripts
from ._types import NACK_OUTCOMES, DeadJob, Job, NackOutcome, PendingJob, QueueStats
from ._validate import Duration, Payload

__all__ = ["Queue"]

T = TypeVar("T")


class Queue(QueueBase[redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster]):
    """The asyncio twin of :class:`delayq.Queue`; every method is documented there.

    Args:
        client: A ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``
            made with ``decode_responses=False``.
        name: As for :class:`delayq.Queue`.
        prefix: As for :class:`delayq.Queue`.
        max_attempts: As for :class:`delayq.Queue`.
        shards: As for :class:`delayq.Queue`.

    Raises:
        InvalidType, InvalidArgument: As for :class:`delayq.Queue`.
    """

    async def _execute(self, step: Step) -> Any:
        """Perform one step: EVALSHA, SCRIPT LOAD, BLPOP on the wake list, or a client-side sleep."""
        if isinstance(step, Call):
            return await self._client.evalsha(step.script.sha, len(step.keys), *step.keys, *step.args)
        if isinstance(step, Load):
            return await self._client.script_load(step.script.source)
        if isinstance(step, Block):
            return await self._client.blpop([step.key], timeout=step.timeout)
        await asyncio.sleep(step.seconds)
        return None

    async def _drive(self, op: Op[T]) -> T:
        # see delayq.Queue._drive
        steps = run_scripts(op, self._core.name)
        try:
            step = next(steps)
            while True:
                try:
                    reply = await self._execute(step)
                except Exception as exc:
                    step = steps.throw(exc)
                else:
                    step = steps.send(reply)
        except StopIteration as stop:
            result: T = stop.value
            return result

    async def enqueue(
        self, payload: Payload, *, delay: Duration = 0, at: datetime | None = None, id: str | None = None
    ) -> str | None:
        """See :meth:`delayq.Queue.enqueue`."""
        return await self._drive(self._core.enqueue(payload, delay=delay, at=at, id=id))

    async def enqueue_many(
        self, payloads: Iterable[Payload], *, delay: Duration = 0, at: datetime | None = None, ids: Sequence[str] | None = None
    ) -> list[str | None]:
        """See :meth:`delayq.Queue.enqueue_many`."""
        return await self._drive(self._core.enqueue_many(payloads, delay=delay, at=at, ids=ids))

    async def dequeue(self, batch: int = 1, lock_ttl: Duration = 30, *, wait: Duration = 0) -> list[Job]:
        """See :meth:`delayq.Queue.dequeue`."""
        return (await self._drive(self._core.dequeue(batch, lock_ttl, (), wait, self._max_block))).jobs

    async def ack_and_dequeue(
        self, done: Iterable[Job], batch: int = 1, lock_ttl: Duration = 30, *, wait: Duration = 0
    ) -> tuple[int, list[Job]]:
        """See :meth:`delayq.Queue.ack_and_dequeue`."""
        result = await self.ack_and_claim(done, batch, lock_ttl, wait=wait)
        return result.acked, result.jobs

    async def ack_and_claim(
        self, done: Iterable[Job], batch: int = 1, lock_ttl: Duration = 30, *, wait: Duration = 0
    ) -> DequeueResult:
        """See :meth:`delayq.Queue.ack_and_claim`."""
        return await self._drive(self._core.dequeue(batch, lock_ttl, done, wait, self._max_block))

    async def ack_claims(self, jobs: Iterable[Job]) -> AckResult:
        """See :meth:`delayq.Queue.ack_claims`."""
        return await self._drive(self._core.ack_claims(jobs))

    async def fail(self, job: Job, delay: Duration = 0, *, error: str | None = None) -> NackOutcome:
        """See :meth:`delayq.Queue.fail`."""
        return NACK_OUTCOMES[await self._drive(self._core.nack(job, delay, error))]

    async def heartbeat(self, worker_id: str, entry: str, ttl: float = HEARTBEAT_TTL_S) -> int:
        """See :meth:`delayq.Queue.heartbeat`."""
        key, field, ttl_ms = check_heartbeat(self._workers_key, worker_id, entry, ttl)
        await self._client.hset(key, field, entry)
        await self._client.pexpire(key, ttl_ms)
        stale = stale_workers(await self._client.hgetall(key), time.time())
        if stale:
            await self._client.hdel(key, *stale)
        return len(stale)

    async def remove_heartbeat(self, worker_id: str) -> bool:
        """See :meth:`delayq.Queue.remove_heartbeat`."""
        key, field, _ = check_heartbeat(self._workers_key, worker_id, "{}", HEARTBEAT_TTL_S)
        return bool(await self._client.hdel(key, field))

    async def workers(self) -> list[WorkerInfo]:
        """See :meth:`delayq.Queue.workers`."""
        return live_workers(await self._client.hgetall(self._workers_key), time.time())

    async def ack(self, job: Job) -> bool:
        """See :meth:`delayq.Queue.ack`."""
        return await self._drive(self._core.ack(job))

    async def ack_many(self, jobs: Iterable[Job]) -> int:
        """See :meth:`delayq.Queue.ack_many`."""
        return await self._drive(self._core.ack_many(jobs))

    async def nack(self, job: Job, delay: Duration = 0, *, error: str | None = None) -> bool:
        """See :meth:`delayq.Queue.nack`."""
        return await self._drive(self._core.nack(job, delay, error)) > 0

    async def release(self, job: Job) -> bool:
        """See :meth:`delayq.Queue.release`."""
        return await self._drive(self._core.release(job))

    async def extend(self, job: Job, lock_ttl: Duration = 30) -> bool:
        """See :meth:`delayq.Queue.extend`."""
        return await self._drive(self._core.extend(job, lock_ttl)) is not None

    async def cancel(self, job_id: str) -> bool:
        """See :meth:`delayq.Queue.cancel`."""
        return await self._drive(self._core.cancel(job_id))

    async def reschedule(self, job_id: str, *, delay: Duration = 0, at: datetime | None = None) -> bool:
        """See :meth:`delayq.Queue.reschedule`."""
        return await self._drive(self._core.reschedule(job_id, delay=delay, at=at))

    async def peek(self, limit: int = 10) -> list[PendingJob]:
        """See :meth:`delayq.Queue.peek`."""
        return await self._drive(self._core.peek(limit))

    async def stats(self) -> QueueStats:
        """See :meth:`delayq.Queue.stats`."""
        return await self._drive(self._core.stats())

    async def purge(self) -> int:
        """See :meth:`delayq.Queue.purge`."""
        return await self._drive(self._core.purge())

    async def dead_letters(self, limit: int = 100) -> list[DeadJob]:
        """See :meth:`delayq.Queue.dead_letters`."""
        return await self._drive(self._core.dead_letters(limit))

    async def redrive(self, ids: Iterable[str] | None = None) -> int:
        """See :meth:`delayq.Queue.redrive`."""
        return await self._drive(self._core.redrive(ids))

    async def get(self, job_id: str, *, preview: int | None = None) -> JobInfo | None:
        """See :meth:`delayq.Queue.get`."""
        return await self._drive(self._core.get(job_id, preview))

    async def list_jobs(self, state: str, *, offset: int = 0, limit: int = 50, preview: int = 256) -> JobPage:
        """See :meth:`delayq.Queue.list_jobs`."""
        return await self._drive(self._core.list_jobs(state, offset, limit, preview))

    async def pause(self) -> bool:
        """See :meth:`delayq.Queue.pause`."""
        return await self._drive(self._core.pause())

    async def resume(self) -> bool:
        """See :meth:`delayq.Queue.resume`."""
        return await self._drive(self._core.resume())
