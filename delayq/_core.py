"""The no-I/O core shared by the sync and the async queue.

Every queue operation is a generator that yields :class:`Call` objects (a script,
its keys and its arguments) and receives each call's raw reply; its return value
is the operation's typed result. Validation happens before the first yield, so a
bad argument raises before anything is sent. The sync and async queues only drive
these generators (see ``_drive`` in each), so they share everything but the I/O.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TypeVar

from ._errors import InvalidArgument
from ._inspect import JobInfo, JobPage
from ._longpoll import BLOCK_MARGIN_S, MAX_WAIT_S, WAIT_SLICE_S, long_poll, waiter_pause
from ._replies import AckResult, DequeueResult, as_bytes, as_text, claim_pairs, parse_dequeue, refusals
from ._scripts import SCRIPTS
from ._steps import Call, Op
from ._types import DeadJob, Job, PendingJob, QueueStats
from ._validate import (
    DEFAULT_MAX_ATTEMPTS,
    MAX_BATCH,
    MAX_DELAY_S,
    MAX_LOCK_TTL_S,
    Duration,
    Payload,
    check_claim,
    check_claims,
    check_error,
    check_id,
    check_ids,
    check_int,
    check_name,
    check_page,
    check_payload,
    check_preview,
    check_state,
    check_when,
    prepare_enqueue,
    to_ms,
    utf8,
)

__all__ = ["QueueCore", "chunks"]

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class QueueCore:
    """A queue's key names and settings, and a generator per operation. Does no I/O.

    Args:
        name: The queue's name; it becomes the keys' hash tag.
        prefix: The first part of every key.
        max_attempts: Claims after which a job that is not acked goes to the dead letters
            (default DEFAULT_MAX_ATTEMPTS, 20); None = never.
        tag: For one shard of a sharded queue: the shard's hash tag instead of the name.
        marker: For one shard of a sharded queue: a part between the tag and the role that no
            plain queue's keys have (see _shards); "" = none, as for a plain queue.

    Raises:
        InvalidType: A name, prefix or max_attempts of the wrong type.
        InvalidArgument: An empty or too long name or prefix, braces in either, max_attempts < 1.
    """

    def __init__(
        self,
        name: str,
        *,
        prefix: str = "delayq",
        max_attempts: int | None = DEFAULT_MAX_ATTEMPTS,
        tag: str | None = None,
        marker: str = "",
    ) -> None:
        self.name = check_name(name, "queue name")
        self.prefix = check_name(prefix, "key prefix")
        self.max_attempts = None if max_attempts is None else check_int(max_attempts, "max_attempts", 1, 2**31)
        self.tag = tag or self.name
        """The keys' hash tag: the name, or for one shard of a sharded queue, the shard's tag."""
        base = f"{self.prefix}:{{{self.tag}}}" + (f":{marker}" if marker else "")
        roles = ("due", "lease", "payload", "meta", "dead", "errors", "wake", "waiters", "paused", "periodic", "claims")
        self.keys = {role: f"{base}:{role}" for role in roles}
        self.clock: Callable[[], int] | None = None
        """TEST ONLY: when set, scripts take "now" (ms) from it instead of the server's TIME."""

    def _call(self, name: str, *args: bytes | str | int) -> Call:
        script = SCRIPTS[name]
        return Call(script, tuple(self.keys[role] for role in script.keys), (self._now(), *args))

    def _now(self) -> str:
        return "" if self.clock is None else str(int(self.clock()))

    # -- enqueue

    def enqueue_many(
        self, payloads: Iterable[Payload], *, delay: Duration = 0, at: datetime | None = None, ids: Sequence[str] | None = None
    ) -> Op[list[str | None]]:
        """Validate everything, then store jobs 1000 to a call; see Queue.enqueue_many."""
        return self.enqueue_prepared(*prepare_enqueue(payloads, delay, at, ids))

    def enqueue_prepared(self, mode: str, when: int, job_ids: list[str], data: list[bytes]) -> Op[list[str | None]]:
        """Store already validated jobs; returns each one's id, or None where the id exists."""
        result: list[str | None] = [None] * len(job_ids)
        # an id repeated within one call is stored once: the first occurrence wins
        first: dict[str, int] = {}
        for index, job_id in enumerate(job_ids):
            first.setdefault(job_id, index)
        order = sorted(first.values())
        for chunk in chunks(order, MAX_BATCH):
            args: list[bytes | str | int] = [mode, when]
            for index in chunk:
                args += (job_ids[index], data[index])
            stored = yield self._call("enqueue", *args)
            for index, flag in zip(chunk, stored, strict=True):
                if int(flag) == 1:
                    result[index] = job_ids[index]
        return result

    def enqueue(
        self, payload: Payload, *, delay: Duration = 0, at: datetime | None = None, id: str | None = None
    ) -> Op[str | None]:
        """Validate, then store one job; see Queue.enqueue."""
        many = self.enqueue_many([payload], delay=delay, at=at, ids=None if id is None else [id])
        return (yield from many)[0]

    # -- claim and settle

    def dequeue(
        self, batch: int, lock_ttl: Duration, done: Iterable[Job] = (), wait: Duration = 0, max_block: float | None = None
    ) -> Op[DequeueResult]:
        """Ack ``done`` and claim up to ``batch`` jobs; with ``wait`` > 0, long-poll until jobs come or
        the wait ends (how a waiter waits: see _longpoll.waiter_pause); see Queue.dequeue.

        ``max_block`` bounds each BLPOP (below the client's socket timeout).
        """
        waiter = secrets.token_hex(8) if to_ms(wait, "wait", minimum_ms=0, maximum_s=MAX_WAIT_S) > 0 else ""

        def dequeue(acks: Iterable[Job], remaining: float) -> Op[DequeueResult]:
            back_ms = int(min(remaining, WAIT_SLICE_S) * 1000)
            return self.dequeue_once(batch, lock_ttl, acks, waiter, back_ms)

        return (yield from long_poll(dequeue, done, wait, waiter_pause(self.keys["wake"], max_block)))

    def dequeue_once(
        self, batch: int, lock_ttl: Duration, done: Iterable[Job] = (), waiter: str = "", back_ms: int = 0
    ) -> Op[DequeueResult]:
        """Validate, then ack ``done`` and claim up to ``batch`` jobs in one call, without waiting.

        ``waiter`` (a long-poll's id, "" for none) and ``back_ms`` (0 = leaving) register the
        caller as a waiter when it claims nothing: see dequeue and lua/dequeue.lua.
        """
        check_int(batch, "batch", 1, MAX_BATCH)
        ttl = to_ms(lock_ttl, "lock_ttl", minimum_ms=1, maximum_s=MAX_LOCK_TTL_S)
        acks = check_claims(done)
        token = secrets.token_hex(8)
        args: list[bytes | str | int] = [batch, ttl, token, self.max_attempts or 0, len(acks)]
        reply = yield self._call("dequeue", *args, *claim_pairs(acks), waiter, back_ms, int(BLOCK_MARGIN_S * 1000))
        return parse_dequeue(reply, ttl, token, acks)

    def ack_claims(self, jobs: Iterable[Job]) -> Op[AckResult]:
        """Validate, then ack in one call; says which acks were refused (lock lost)."""
        acks = check_claims(jobs)
        refused, gone = yield from self._ack(acks)
        return AckResult(len(acks) - len(refused), refused, [], gone)

    def ack_many(self, jobs: Iterable[Job]) -> Op[int]:
        """Validate, then ack in one call; see Queue.ack_many."""
        acks = check_claims(jobs)
        refused, _ = yield from self._ack(acks)
        return len(acks) - len(refused)

    def _ack(self, acks: list[Job]) -> Op[tuple[list[Job], list[Job]]]:
        """Ack the (unique) claims: (those refused, those of them whose job is gone)."""
        if not acks:
            return [], []
        reply = yield self._call("ack", *claim_pairs(acks))
        return refusals(reply, acks)

    def ack(self, job: Job) -> Op[bool]:
        """See Queue.ack."""
        check_claim(job)
        return (yield from self.ack_many([job])) == 1

    def nack(self, job: Job, delay: Duration = 0, error: str | None = None) -> Op[int]:
        """Give a job back; returns 0 (lock lost), 1 (due again) or 2 (dead-lettered). See Queue.nack."""
        return (yield from self.nack_limited(job, delay, error, max_attempts=self.max_attempts))

    def release(self, job: Job) -> Op[bool]:
        """Give a job back unfinished, its attempt undone; False if the lock was lost. See Queue.release."""
        check_claim(job)
        return int((yield self._call("release", job.id, job.token))) == 1

    def extend(self, job: Job, lock_ttl: Duration) -> Op[int | None]:
        """Returns the new expiry in ms, or None if the lock was lost. See Queue.extend."""
        check_claim(job)
        ttl = to_ms(lock_ttl, "lock_ttl", minimum_ms=1, maximum_s=MAX_LOCK_TTL_S)
        reply = yield self._call("extend", job.id, job.token, ttl)
        expiry = int(reply)
        return expiry if expiry > 0 else None

    # -- manage

    def cancel(self, job_id: str) -> Op[bool]:
        """See Queue.cancel."""
        check_id(job_id)
        return int((yield self._call("cancel", job_id))) == 1

    def reschedule(self, job_id: str, *, delay: Duration = 0, at: datetime | None = None) -> Op[bool]:
        """See Queue.reschedule."""
        check_id(job_id)
        mode, when = check_when(delay, at)
        return int((yield self._call("reschedule", job_id, mode, when))) == 1

    def peek(self, limit: int) -> Op[list[PendingJob]]:
        """See Queue.peek."""
        check_int(limit, "limit", 1, MAX_BATCH)
        reply = yield self._call("peek", limit)
        return [
            PendingJob(as_text(reply[i]), as_bytes(reply[i + 1]), int(reply[i + 2]), int(reply[i + 3]))
            for i in range(0, len(reply), 4)
        ]

    def stats(self) -> Op[QueueStats]:
        """See Queue.stats."""
        ready, delayed, in_flight, dead, age_ms, paused = yield self._call("stats")
        return QueueStats(int(ready), int(delayed), int(in_flight), int(dead), int(age_ms) / 1000, int(paused) == 1)

    def purge(self) -> Op[int]:
        """See Queue.purge."""
        total = 0
        while True:
            removed = int((yield self._call("purge", MAX_BATCH)))
            if removed == 0:
                return total
            total += removed

    def dead_letters(self, limit: int) -> Op[list[DeadJob]]:
        """See Queue.dead_letters."""
        check_int(limit, "limit", 1, MAX_BATCH)
        reply = yield self._call("dead_letters", limit)
        return [
            DeadJob(
                as_text(reply[i]),
                as_bytes(reply[i + 1]),
                int(reply[i + 2]),
                int(reply[i + 3]),
                as_text(reply[i + 4]) or None,
            )
            for i in range(0, len(reply), 5)
        ]

    def redrive(self, ids: Iterable[str] | None) -> Op[int]:
        """See Queue.redrive."""
        if ids is None:
            total = 0
            while True:
                moved = int((yield self._call("redrive", MAX_BATCH)))
                if moved == 0:
                    return total
                total += moved
        wanted = check_ids(ids)
        total = 0
        for chunk in chunks(wanted, MAX_BATCH):
            total += int((yield self._call("redrive", MAX_BATCH, *chunk)))
        return total

    # -- look and steer (job lookup, the dashboard's pages, pause)

    def get(self, job_id: str, preview: int | None = None) -> Op[JobInfo | None]:
        """See Queue.get."""
        check_id(job_id)
        reply = yield self._call("get", job_id, "" if preview is None else check_preview(preview))
        if not reply:
            return None
        state, at_ms, attempts, payload, error, now_ms, size = reply
        kind = check_state(as_text(state))
        return JobInfo(job_id, kind, int(at_ms), int(attempts), as_bytes(payload), int(size), as_text(error) or None, int(now_ms))

    def list_jobs(self, state: str, offset: int, limit: int, preview: int) -> Op[JobPage]:
        """See Queue.list_jobs."""
        checked = check_page(state, offset, limit, preview)
        reply = yield self._call("jobs", checked, offset, limit, preview)
        now_ms = int(reply[0])
        jobs = [
            JobInfo(
                as_text(reply[i]),
                checked,
                int(reply[i + 1]),
                int(reply[i + 2]),
                as_bytes(reply[i + 3]),
                int(reply[i + 4]),
                as_text(reply[i + 5]) or None,
                now_ms,
            )
            for i in range(2, len(reply), 6)
        ]
        return JobPage(checked, offset, int(reply[1]), jobs, now_ms)

    def pause(self) -> Op[bool]:
        """See Queue.pause."""
        return int((yield self._call("pause"))) == 1

    def resume(self) -> Op[bool]:
        """See Queue.resume."""
        return int((yield self._call("resume"))) == 1

    # -- hooks for policies, tasks and periodic jobs (appended; see delayq/_hooks.py and delayq/periodic.py)

    def nack_limited(self, job: Job, delay: Duration = 0, error: str | None = None, *, max_attempts: int | None) -> Op[int]:
        """:meth:`nack` with an attempt limit for this one job instead of the queue's.

        The hook for per-job policies: ``max_attempts=1`` dead-letters the job now
        (``Fail``), a task's own limit retries or dead-letters by that limit.

        Args:
            job: A job returned by dequeue.
            delay: Seconds or timedelta until it is due again, 0 to 10 years.
            error: Text kept with the job.
            max_attempts: Dead-letter when the job's claims reached this; None = never.

        Returns:
            0 (lock lost, nothing changed), 1 (due again) or 2 (dead-lettered).

        Raises:
            InvalidType, InvalidArgument: A bad job, delay, error or max_attempts; nothing is sent.
        """
        check_claim(job)
        limit = 0 if max_attempts is None else check_int(max_attempts, "max_attempts", 1, 2**31)
        delay_ms = to_ms(delay, "delay", minimum_ms=0, maximum_s=MAX_DELAY_S)
        text = check_error(error)
        return int((yield self._call("nack", job.id, job.token, delay_ms, limit, text)))

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
        """Enqueue a periodic job's catch-up and upcoming runs, each only if its slot is newer than the
        job's marker (schedule.lua); see delayq.periodic.

        Args:
            name: The periodic job's name (a field of the marker hash).
            spec: The schedule's fingerprint, without spaces.
            payload: Each run's payload.
            catchup: (slot ms, job id) of a missed run to run once, or None.
            upcoming: (slot ms, job id) of the next run, or None.
            cold: Run the catch-up even without a marker in this queue (for sharded queues).
            current: The schedule's latest slot at or before the caller's now (None: it has none).
            checked: Send ``current`` so the script refuses a plan its own now contradicts.

        Returns:
            (catch-up stored, upcoming stored, the server's now in ms, refused for the caller's clock).

        Raises:
            InvalidType, InvalidArgument: A bad name, spec, payload or id; nothing is sent.
        """
        if not isinstance(name, str) or not name or not isinstance(spec, str) or not spec or " " in spec:
            raise InvalidArgument(f"bad periodic job name {name!r} or schedule fingerprint {spec!r}")
        utf8(name, "periodic job name")
        data = check_payload(payload)
        args: list[bytes | str | int] = [name, spec, data]
        for run in (catchup, upcoming):
            if run is None:
                args += ["", ""]
            else:
                args += [check_int(run[0], "slot", 0, 2**52), check_id(run[1])]
            if run is catchup:
                args.append("1" if cold else "0")
        if checked:
            args.append("none" if current is None else check_int(current, "slot", 0, 2**52))
        stored_catchup, stored_upcoming, now, refused = yield self._call("schedule", *args)
        return int(stored_catchup) == 1, int(stored_upcoming) == 1, int(now), int(refused) == 1

    def periodic_markers(self, names: Sequence[str]) -> Op[list[list[tuple[int, str]]]]:
        """The markers of periodic jobs: for each name, [(latest slot enqueued ms, schedule fingerprint)]
        or [] when it has none (a sharded queue may give one per shard)."""
        result: list[list[tuple[int, str]]] = []
        for chunk in chunks(list(names), MAX_BATCH):
            reply = yield self._call("periodic_state", *chunk)
            for value in reply:
                if value is None:
                    result.append([])
                else:
                    slot, _, spec = as_text(value).partition(" ")
                    result.append([(int(slot), spec)])
        return result
