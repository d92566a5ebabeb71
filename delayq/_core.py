"""The no-I/O core shared by the sync and the async queue.

Every queue operation is a generator that yields :class:`Call` objects (a script,
its keys and its arguments) and receives each call's raw reply; its return value
is the operation's typed result. Validation happens before the first yield, so a
bad argument raises before anything is sent. The sync and async queues only drive
these generators (see ``_drive`` in each), so they share everything but the I/O.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar, Union

from redis.exceptions import NoScriptError

from ._errors import InvalidArgument, InvalidType, ScriptError
from ._inspect import STATES, JobInfo, JobPage, JobState
from ._scripts import SCRIPTS, Script
from ._types import DeadJob, Job, PendingJob, QueueStats

__all__ = [
    "BLOCK_MARGIN_S",
    "DEFAULT_MAX_ATTEMPTS",
    "MAX_BATCH",
    "MAX_DELAY_S",
    "MAX_ID_BYTES",
    "MAX_LOCK_TTL_S",
    "MAX_NAME_LENGTH",
    "MAX_PAYLOAD_BYTES",
    "MAX_WAIT_S",
    "SCRIPT_KEYS",
    "SCRIPT_LOADS",
    "SENTINEL",
    "SHARDED_NAP_S",
    "WAIT_SLICE_S",
    "WINDOW_STEP_S",
    "AckResult",
    "Block",
    "Call",
    "DequeueResult",
    "Op",
    "QueueCore",
    "Sleep",
    "Step",
    "check_client",
    "check_state",
    "long_poll",
    "new_ids",
    "prepare_enqueue",
    "script_error",
    "to_ms",
]

T = TypeVar("T")

MAX_NAME_LENGTH = 200
"""Longest queue name or key prefix, in characters."""
MAX_ID_BYTES = 1024
"""Longest job id, in UTF-8 bytes."""
MAX_BATCH = 1000
"""Most jobs one script call handles: dequeue batch, ack_many, peek and dead_letters limits.
enqueue_many accepts more and sends them 1000 to a call."""
MAX_DELAY_S = 10 * 365 * 24 * 3600
"""Longest delay: ten years, in seconds."""
MAX_LOCK_TTL_S = 12 * 3600
"""Longest lock ttl: twelve hours, as for SQS's visibility timeout (extend keeps longer jobs)."""
MAX_PAYLOAD_BYTES = 512 * 1024 * 1024
"""Largest payload: Redis's own limit for one string."""
DEFAULT_MAX_ATTEMPTS = 20
"""A queue's ``max_attempts`` unless given: a job claimed 20 times and not acked is dead-lettered.
With the worker's default backoff (1 s doubling, capped at 300 s) that is about an hour of
retries; the README's "Retry defaults" says why. ``max_attempts=None`` retries forever."""

SCRIPT_LOADS = 5
"""Most SCRIPT LOADs one call makes on NOSCRIPT replies (a restart, failover or SCRIPT FLUSH): a flush
may land between a load and the retried EVALSHA, so one reload is not enough; a bound keeps a server
that keeps losing scripts from looping a call forever."""

SENTINEL = "~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~"
"""The member dequeue.lua keeps in `lease` and `meta` (see its header); reserved, never a job id."""

Duration = Union[float, timedelta]
Payload = Union[bytes, bytearray, memoryview, str]

SCRIPT_KEYS: dict[str, tuple[str, ...]] = {
    "enqueue": ("due", "payload", "wake", "waiters"),
    "dequeue": ("due", "lease", "payload", "meta", "dead", "errors", "wake", "waiters", "paused"),
    "ack": ("lease", "payload", "meta", "errors", "due", "wake"),
    "nack": ("due", "lease", "meta", "dead", "errors", "wake", "waiters"),
    "extend": ("lease", "meta"),
    "cancel": ("due", "lease", "payload", "meta", "dead", "errors", "wake"),
    "reschedule": ("due", "lease", "wake", "waiters"),
    "peek": ("due", "lease", "payload", "meta"),
    "stats": ("due", "lease", "dead", "paused"),
    "purge": ("due", "lease", "dead", "payload", "meta", "errors", "wake"),
    "dead_letters": ("dead", "payload", "meta", "errors"),
    "redrive": ("dead", "due", "meta", "errors", "wake"),
    "get": ("due", "lease", "payload", "meta", "dead", "errors"),
    "jobs": ("due", "lease", "payload", "meta", "dead", "errors"),
    "pause": ("paused",),
    "resume": ("paused", "due", "lease", "wake"),
    "schedule": ("due", "payload", "wake", "periodic"),
    "periodic_state": ("periodic",),
    "release": ("due", "lease", "meta", "wake", "waiters"),
}
"""The keys each script takes, in KEYS order, by role; each role is one key of the queue."""


@dataclass(frozen=True, slots=True)
class Call:
    """One script call: EVALSHA script.sha len(keys) *keys *args."""

    script: Script
    keys: tuple[str, ...]
    args: tuple[bytes | str | int, ...]


@dataclass(frozen=True, slots=True)
class Block:
    """BLPOP key timeout: wait for a wake-up token (the reply is the token, or None on timeout)."""

    key: str
    timeout: float


@dataclass(frozen=True, slots=True)
class Sleep:
    """Sleep on the client for ``seconds`` (no I/O; the reply is None)."""

    seconds: float


Step = Union[Call, Block, Sleep]
Op = Generator[Step, Any, T]
"""An operation: yields steps (script calls, blocking waits, sleeps), is sent their replies, returns the result."""

MAX_WAIT_S = 3600.0
"""Longest long-poll wait of one dequeue, in seconds."""
BLOCK_MARGIN_S = 0.11
"""Redis fires a BLPOP timeout on its cron tick, up to 1/hz late (100 ms at the default hz 10): a
long-poll's BLPOP ends this much before the time the waiter must be back."""
WINDOW_STEP_S = 0.005
"""Within BLOCK_MARGIN_S of the time it watches, a waiter checks the queue every this long: the
bound on how late it sees a job that becomes due in that window (a BLPOP cannot time out sooner)."""
WAIT_SLICE_S = 1.0
"""A waiter re-reads the queue at least this often, so that a consumer that died while it was
the one watching the next due time delays that job by this much at most."""
SHARDED_NAP_S = 0.05
"""A sharded queue cannot BLPOP keys in several slots at once: its long-poll naps at most this long."""


@dataclass(frozen=True, slots=True)
class AckResult:
    """What became of the jobs an ack was asked to delete: each one is in exactly one of ``acked``
    (a count), ``refused`` (the lock was lost: not acked, and never will be by this claim) or
    ``unapplied`` (the call that would ack it failed, so it was not tried: the lock may still be
    held, and acking it again may succeed; only a sharded queue reports some and returns)."""

    acked: int
    refused: list[Job] = field(default_factory=list)
    unapplied: list[Job] = field(default_factory=list)
    gone: list[Job] = field(default_factory=list)
    """Those of ``refused`` whose job is gone (acked or cancelled since): for a caller that sends an
    ack again after a call whose reply it lost, most likely acked by that call."""


@dataclass(frozen=True, slots=True)
class DequeueResult:
    """Everything a dequeue reports: the server's time, the next due time, the jobs claimed, and
    what became of the jobs it was asked to ack (``acked``, ``refused``, ``unapplied``, ``gone``: as in
    AckResult)."""

    now_ms: int
    next_ms: int | None
    acked: int
    dead_lettered: int
    jobs: list[Job]
    refused: list[Job] = field(default_factory=list)
    unapplied: list[Job] = field(default_factory=list)
    gone: list[Job] = field(default_factory=list)


# ---------------------------------------------------------------- validation


def _check_int(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidType(f"{what} must be an int, got {value!r} ({type(value).__name__})")
    if not low <= value <= high:
        raise InvalidArgument(f"{what} must be between {low} and {high}, got {value!r}")
    return value


def to_ms(value: object, what: str, *, minimum_ms: int, maximum_s: float) -> int:
    """Convert a duration (seconds as int/float, or a timedelta) to whole ms, rounding up.

    Rounding up means a job is never due earlier than asked, and a lock never
    shorter.

    Args:
        value: The duration.
        what: The argument's name, for the error message.
        minimum_ms: The smallest accepted result.
        maximum_s: The largest accepted duration, in seconds.

    Returns:
        The duration in ms.

    Raises:
        InvalidType: ``value`` is not a number or a timedelta (a bool is not a number here).
        InvalidArgument: ``value`` is NaN, infinite, or out of range.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidType(f"{what} must be seconds (int or float) or a timedelta, got {value!r} ({type(value).__name__})")
    if math.isnan(seconds) or math.isinf(seconds):
        raise InvalidArgument(f"{what} must be a finite number of seconds, got {value!r}")
    if seconds < 0 or seconds > maximum_s:
        raise InvalidArgument(f"{what} must be between 0 and {maximum_s:g} seconds, got {value!r}")
    ms = math.ceil(round(seconds * 1000, 6))  # round first: 2.007 * 1000 is 2007.0000000000002
    if ms < minimum_ms:
        raise InvalidArgument(f"{what} must be at least {minimum_ms} ms, got {value!r}")
    return ms


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidType(f"{what} must be a str, got {value!r} ({type(value).__name__})")
    if not value:
        raise InvalidArgument(f"{what} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"{what} must be at most {MAX_NAME_LENGTH} characters, got {len(value)}: {value[:40]!r}...")
    if "{" in value or "}" in value:
        raise InvalidArgument(f"{what} must not contain '{{' or '}}' (the queue name is the key's hash tag), got {value!r}")
    _utf8(value, what)
    return value


def _utf8(value: str, what: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgument(f"{what} is not valid Unicode text (it cannot be UTF-8 encoded): {value!r}") from exc


def _check_id(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidType(f"job id must be a str, got {value!r} ({type(value).__name__})")
    if not value:
        raise InvalidArgument("job id must not be empty")
    if len(_utf8(value, "job id")) > MAX_ID_BYTES:
        raise InvalidArgument(f"job id must be at most {MAX_ID_BYTES} UTF-8 bytes, got {value[:40]!r}...")
    if value == SENTINEL:
        raise InvalidArgument(f"job id {value!r} is reserved by delayq")
    return value


def _check_payload(value: object) -> bytes:
    if isinstance(value, str):
        data = _utf8(value, "payload")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        raise InvalidType(f"payload must be bytes or str, got {type(value).__name__}: {value!r:.80}")
    if len(data) > MAX_PAYLOAD_BYTES:
        raise InvalidArgument(f"payload must be at most {MAX_PAYLOAD_BYTES} bytes, got {len(data)}")
    return data


def _check_job(value: object) -> Job:
    """A Job whose fields have the types dequeue gives them and whose id is a legal job id.

    Raises:
        InvalidType: Not a Job, or a field of the wrong type (a None id or token, a str attempts ...).
        InvalidArgument: An id delayq would refuse to enqueue: empty, too long, not UTF-8, reserved.
    """
    if not isinstance(value, Job):
        raise InvalidType(f"expected a Job returned by dequeue, got {value!r:.80} ({type(value).__name__})")
    _check_id(value.id)
    # the exact types first: this runs for every job a worker acks
    if not (
        type(value.token) is str
        and type(value.payload) is bytes
        and type(value.attempts) is int
        and type(value.lock_expires_ms) is int
        and type(value.due_ms) is int
    ):
        _check_job_fields(value)
    return value


def _check_job_fields(job: Job) -> None:
    if not isinstance(job.token, str):
        raise InvalidType(f"job token must be a str, got {job.token!r:.80} ({type(job.token).__name__})")
    if not isinstance(job.payload, bytes):
        raise InvalidType(f"job payload must be bytes, got {type(job.payload).__name__}: {job.payload!r:.80}")
    for what, number in (("attempts", job.attempts), ("lock_expires_ms", job.lock_expires_ms), ("due_ms", job.due_ms)):
        if isinstance(number, bool) or not isinstance(number, int):
            raise InvalidType(f"job {what} must be an int, got {number!r:.80} ({type(number).__name__})")


_TOKEN = re.compile(r"[1-9][0-9]{0,15}:[0-9a-f]{16}")
"""A claim's token as dequeue makes it (see _parse_dequeue): "<attempts>:<16 hex digits>"."""


def _check_claim(value: object) -> Job:
    """A Job that ack, nack and extend may send: well-typed (see _check_job), with a token of the form
    dequeue gives. The scripts compare tokens as strings, so a hand-built token could otherwise
    match a value no claim has (the reserved member's empty one).

    Raises:
        InvalidType, InvalidArgument: As for _check_job; InvalidArgument for a malformed token.
    """
    job = _check_job(value)
    if _TOKEN.fullmatch(job.token) is None:
        raise InvalidArgument(f"job token {job.token!r:.80} is not one dequeue gives ('<attempts>:<16 hex digits>')")
    return job


def _when(delay: object, at: object) -> tuple[str, int]:
    """The (mode, ms) pair the scripts take: a delay from the server's now, or an absolute time."""
    if at is None:
        return "rel", to_ms(delay, "delay", minimum_ms=0, maximum_s=MAX_DELAY_S)
    if delay not in (0, None):
        raise InvalidArgument(f"give delay or at, not both (delay={delay!r}, at={at!r})")
    if not isinstance(at, datetime):
        raise InvalidType(f"at must be a datetime, got {at!r} ({type(at).__name__})")
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidArgument(f"at must be timezone-aware (a naive datetime is ambiguous), got {at!r}")
    ms = math.ceil(at.timestamp() * 1000)
    if not 0 <= ms <= 2**52:
        raise InvalidArgument(f"at is out of range: {at!r}")
    return "abs", ms


def new_ids(count: int) -> list[str]:
    """``count`` fresh job ids: 32 hex digits, a random 96-bit base per call and a counter.

    As unique as uuid4 for all practical purposes, at a fraction of its cost per id.
    """
    base = os.urandom(12).hex()
    return [f"{base}{i:08x}" for i in range(count)]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _blob(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---------------------------------------------------------------- the core


def prepare_enqueue(
    payloads: Iterable[Payload], delay: object, at: object, ids: Sequence[str] | None
) -> tuple[str, int, list[str], list[bytes]]:
    """Validate an enqueue: (mode, when, ids, payload bytes), or a typed error before anything is sent."""
    mode, when = _when(delay, at)
    if isinstance(payloads, (str, bytes, bytearray, memoryview)):
        raise InvalidType("payloads must be an iterable of payloads, not a single str or bytes")
    if not isinstance(payloads, Iterable):
        raise InvalidType(f"payloads must be an iterable of bytes or str, got {type(payloads).__name__}")
    data = [_check_payload(p) for p in payloads]
    if ids is None:
        job_ids = new_ids(len(data))
    else:
        if isinstance(ids, str) or not isinstance(ids, Sequence):
            raise InvalidType(f"ids must be a sequence of str, got {ids!r:.80}")
        job_ids = [_check_id(i) for i in ids]
        if len(job_ids) != len(data):
            raise InvalidArgument(f"ids has {len(job_ids)} items but payloads has {len(data)}")
    return mode, when, job_ids, data


class QueueCore:
    """A queue's key names and settings, and a generator per operation. Does no I/O.

    Args:
        name: The queue's name; it becomes the keys' hash tag.
        prefix: The first part of every key.
        max_attempts: Claims after which a job that is not acked goes to the dead letters
            (default DEFAULT_MAX_ATTEMPTS, 20); None = never.
        tag: For one shard of a sharded queue: the shard's hash tag instead of the name.
        marker: For one shard of a sharded queue: a part between the tag and the role that no
            plain queue's keys have (see _sharded); "" = none, as for a plain queue.

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
        self.name = _check_name(name, "queue name")
        self.prefix = _check_name(prefix, "key prefix")
        self.max_attempts = None if max_attempts is None else _check_int(max_attempts, "max_attempts", 1, 2**31)
        self.tag = tag or self.name
        """The keys' hash tag: the name, or for one shard of a sharded queue, the shard's tag."""
        base = f"{self.prefix}:{{{self.tag}}}" + (f":{marker}" if marker else "")
        roles = ("due", "lease", "payload", "meta", "dead", "errors", "wake", "waiters", "paused", "periodic")
        self.keys = {role: f"{base}:{role}" for role in roles}
        self.clock: Callable[[], int] | None = None
        """TEST ONLY: when set, scripts take "now" (ms) from it instead of the server's TIME."""

    def _call(self, name: str, *args: bytes | str | int) -> Call:
        return Call(SCRIPTS[name], tuple(self.keys[role] for role in SCRIPT_KEYS[name]), args)

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
        for chunk in _chunks(order, MAX_BATCH):
            args: list[bytes | str | int] = [mode, when, self._now()]
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
        self, batch: int, lock_ttl: Duration, done: Iterable[Job] = (), waiter: str = "", back_ms: int = 0
    ) -> Op[DequeueResult]:
        """Validate, then ack ``done`` and claim up to ``batch`` jobs in one call; see Queue.dequeue.

        ``waiter`` (a long-poll's id, "" for none) and ``back_ms`` (0 = leaving) register the
        caller as a waiter when it claims nothing: see claim and lua/dequeue.lua.
        """
        _check_int(batch, "batch", 1, MAX_BATCH)
        ttl = to_ms(lock_ttl, "lock_ttl", minimum_ms=1, maximum_s=MAX_LOCK_TTL_S)
        acks = self.unique_claims(done)
        token = secrets.token_hex(8)
        args: list[bytes | str | int] = [batch, ttl, token, self.max_attempts or 0, self._now(), len(acks)]
        reply = yield self._call("dequeue", *args, *_pairs(acks), waiter, back_ms, int(BLOCK_MARGIN_S * 1000))
        return _parse_dequeue(reply, ttl, token, acks)

    def claim(
        self, batch: int, lock_ttl: Duration, done: Iterable[Job] = (), wait: Duration = 0, max_block: float | None = None
    ) -> Op[DequeueResult]:
        """Dequeue, and with ``wait`` > 0, long-poll until jobs come or the wait ends; see Queue.dequeue.

        A waiter that claims nothing is told the time to watch (the queue's next due time or
        lock expiry) if no other waiter is due back before it, or if it is nearer than
        BLOCK_MARGIN_S; otherwise it is told nothing. It blocks on the wake list (BLPOP: one
        token wakes one waiter) until BLOCK_MARGIN_S before the time it watches, then checks
        every WINDOW_STEP_S; with nothing to watch it blocks for a token, WAIT_SLICE_S at
        most. The scripts push a token whenever the next claimable time moves earlier than
        every waiter's return (see lua/dequeue.lua). So, however many consumers wait, one is
        back within WINDOW_STEP_S plus a round trip of any job becoming claimable (within
        WAIT_SLICE_S if the consumer watching for it died).
        """
        waiter = secrets.token_hex(8) if to_ms(wait, "wait", minimum_ms=0, maximum_s=MAX_WAIT_S) > 0 else ""
        wake = self.keys["wake"]

        def block(seconds: float) -> Step:
            # BLPOP timeout 0 would block for ever, and the server rounds to ms: a short wait sleeps
            if seconds < 0.01:
                return Sleep(max(seconds, 0.0))
            return Block(wake, seconds if max_block is None else min(seconds, max_block))

        def pause(result: DequeueResult, remaining: float) -> Step | None:
            if result.next_ms is None:  # another waiter watches: wait for a token
                slice_s = min(remaining, WAIT_SLICE_S)
                return block(slice_s - BLOCK_MARGIN_S) if slice_s > BLOCK_MARGIN_S else Sleep(slice_s)
            until_due = min(remaining, (result.next_ms - result.now_ms) / 1000)
            if until_due <= 0:
                return None
            if until_due > BLOCK_MARGIN_S + WINDOW_STEP_S:
                return block(until_due - BLOCK_MARGIN_S)
            return Sleep(min(until_due, WINDOW_STEP_S))

        def dequeue(acks: Iterable[Job], remaining: float) -> Op[DequeueResult]:
            back_ms = int(min(remaining, WAIT_SLICE_S) * 1000)
            return self.dequeue(batch, lock_ttl, acks, waiter, back_ms)

        return (yield from long_poll(dequeue, done, wait, pause))

    def unique_claims(self, jobs: Iterable[Job]) -> list[Job]:
        """The jobs, each checked, once per claim (a job given twice counts once), at most MAX_BATCH.

        Raises:
            InvalidType: ``jobs`` is not an iterable of Job.
            InvalidArgument: More than MAX_BATCH claims.
        """
        if isinstance(jobs, Job) or not isinstance(jobs, Iterable):
            raise InvalidType(f"expected an iterable of Job, got {jobs!r:.80}")
        seen: dict[tuple[str, str], Job] = {}
        for job in jobs:
            _check_claim(job)
            seen.setdefault((job.id, job.token), job)
        if len(seen) > MAX_BATCH:
            raise InvalidArgument(f"at most {MAX_BATCH} jobs can be acked in one call, got {len(seen)}")
        return list(seen.values())

    def ack_claims(self, jobs: Iterable[Job]) -> Op[AckResult]:
        """Validate, then ack in one call; says which acks were refused (lock lost)."""
        acks = self.unique_claims(jobs)
        refused, gone = yield from self._ack(acks)
        return AckResult(len(acks) - len(refused), refused, [], gone)

    def ack_many(self, jobs: Iterable[Job]) -> Op[int]:
        """Validate, then ack in one call; see Queue.ack_many."""
        acks = self.unique_claims(jobs)
        refused, _ = yield from self._ack(acks)
        return len(acks) - len(refused)

    def _ack(self, acks: list[Job]) -> Op[tuple[list[Job], list[Job]]]:
        """Ack the (unique) claims: (those refused, those of them whose job is gone)."""
        if not acks:
            return [], []
        reply = yield self._call("ack", self._now(), *_pairs(acks))
        return _refusals(reply, acks)

    def ack(self, job: Job) -> Op[bool]:
        """See Queue.ack."""
        _check_claim(job)
        return (yield from self.ack_many([job])) == 1

    def nack(self, job: Job, delay: Duration = 0, error: str | None = None) -> Op[int]:
        """Give a job back; returns 0 (lock lost), 1 (due again) or 2 (dead-lettered). See Queue.nack."""
        _check_claim(job)
        delay_ms = to_ms(delay, "delay", minimum_ms=0, maximum_s=MAX_DELAY_S)
        if error is not None and not isinstance(error, str):
            raise InvalidType(f"error must be a str or None, got {error!r:.80}")
        text = "" if error is None else error
        _utf8(text, "error")
        reply = yield self._call("nack", job.id, job.token, delay_ms, self.max_attempts or 0, text, self._now())
        return int(reply)

    def release(self, job: Job) -> Op[bool]:
        """Give a job back unfinished, its attempt undone; False if the lock was lost. See Queue.release."""
        _check_claim(job)
        return int((yield self._call("release", job.id, job.token, self._now()))) == 1

    def extend(self, job: Job, lock_ttl: Duration) -> Op[int | None]:
        """Returns the new expiry in ms, or None if the lock was lost. See Queue.extend."""
        _check_claim(job)
        ttl = to_ms(lock_ttl, "lock_ttl", minimum_ms=1, maximum_s=MAX_LOCK_TTL_S)
        reply = yield self._call("extend", job.id, job.token, ttl, self._now())
        expiry = int(reply)
        return expiry if expiry > 0 else None

    # -- manage

    def cancel(self, job_id: str) -> Op[bool]:
        """See Queue.cancel."""
        _check_id(job_id)
        return int((yield self._call("cancel", job_id))) == 1

    def reschedule(self, job_id: str, *, delay: Duration = 0, at: datetime | None = None) -> Op[bool]:
        """See Queue.reschedule."""
        _check_id(job_id)
        mode, when = _when(delay, at)
        return int((yield self._call("reschedule", job_id, mode, when, self._now()))) == 1

    def peek(self, limit: int) -> Op[list[PendingJob]]:
        """See Queue.peek."""
        _check_int(limit, "limit", 1, MAX_BATCH)
        reply = yield self._call("peek", limit, self._now())
        return [
            PendingJob(_text(reply[i]), _blob(reply[i + 1]), int(reply[i + 2]), int(reply[i + 3]))
            for i in range(0, len(reply), 4)
        ]

    def stats(self) -> Op[QueueStats]:
        """See Queue.stats."""
        ready, delayed, in_flight, dead, age_ms, paused = yield self._call("stats", self._now())
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
        _check_int(limit, "limit", 1, MAX_BATCH)
        reply = yield self._call("dead_letters", limit)
        return [
            DeadJob(
                _text(reply[i]),
                _blob(reply[i + 1]),
                int(reply[i + 2]),
                int(reply[i + 3]),
                _text(reply[i + 4]) or None,
            )
            for i in range(0, len(reply), 5)
        ]

    def redrive(self, ids: Iterable[str] | None) -> Op[int]:
        """See Queue.redrive."""
        if ids is None:
            total = 0
            while True:
                moved = int((yield self._call("redrive", MAX_BATCH, self._now())))
                if moved == 0:
                    return total
                total += moved
        if isinstance(ids, str) or not isinstance(ids, Iterable):
            raise InvalidType(f"ids must be an iterable of str, got {ids!r:.80}")
        wanted = list(dict.fromkeys(_check_id(i) for i in ids))
        total = 0
        for chunk in _chunks(wanted, MAX_BATCH):
            total += int((yield self._call("redrive", MAX_BATCH, self._now(), *chunk)))
        return total

    # -- look and steer (job lookup, the dashboard's pages, pause)

    def get(self, job_id: str) -> Op[JobInfo | None]:
        """See Queue.get."""
        _check_id(job_id)
        reply = yield self._call("get", job_id, self._now())
        if not reply:
            return None
        state, at_ms, attempts, payload, error, now_ms = reply
        data = _blob(payload)
        kind = check_state(_text(state))
        return JobInfo(job_id, kind, int(at_ms), int(attempts), data, len(data), _text(error) or None, int(now_ms))

    def list_jobs(self, state: str, offset: int, limit: int, preview: int) -> Op[JobPage]:
        """See Queue.list_jobs."""
        checked = check_state(state)
        _check_int(offset, "offset", 0, 2**53)
        _check_int(limit, "limit", 0, MAX_BATCH)
        _check_int(preview, "preview", 0, MAX_PAYLOAD_BYTES)
        reply = yield self._call("jobs", checked, offset, limit, preview, self._now())
        now_ms = int(reply[0])
        jobs = [
            JobInfo(
                _text(reply[i]),
                checked,
                int(reply[i + 1]),
                int(reply[i + 2]),
                _blob(reply[i + 3]),
                int(reply[i + 4]),
                _text(reply[i + 5]) or None,
                now_ms,
            )
            for i in range(2, len(reply), 6)
        ]
        return JobPage(checked, offset, int(reply[1]), jobs, now_ms)

    def pause(self) -> Op[bool]:
        """See Queue.pause."""
        return int((yield self._call("pause", self._now()))) == 1

    def resume(self) -> Op[bool]:
        """See Queue.resume."""
        return int((yield self._call("resume", self._now()))) == 1

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
        _check_claim(job)
        limit = 0 if max_attempts is None else _check_int(max_attempts, "max_attempts", 1, 2**31)
        delay_ms = to_ms(delay, "delay", minimum_ms=0, maximum_s=MAX_DELAY_S)
        if error is not None and not isinstance(error, str):
            raise InvalidType(f"error must be a str or None, got {error!r:.80}")
        text = "" if error is None else error
        _utf8(text, "error")
        return int((yield self._call("nack", job.id, job.token, delay_ms, limit, text, self._now())))

    def schedule(
        self,
        name: str,
        spec: str,
        payload: bytes,
        catchup: tuple[int, str] | None,
        upcoming: tuple[int, str] | None,
        *,
        cold: bool = False,
    ) -> Op[tuple[bool, bool, int]]:
        """Enqueue a periodic job's catch-up and upcoming runs, each only if its slot is newer than the
        job's marker (schedule.lua); see delayq.periodic.

        Args:
            name: The periodic job's name (a field of the marker hash).
            spec: The schedule's fingerprint, without spaces.
            payload: Each run's payload.
            catchup: (slot ms, job id) of a missed run to run once, or None.
            upcoming: (slot ms, job id) of the next run, or None.
            cold: Run the catch-up even without a marker in this queue (for sharded queues).

        Returns:
            (catch-up stored, upcoming stored, the server's now in ms).

        Raises:
            InvalidType, InvalidArgument: A bad name, spec, payload or id; nothing is sent.
        """
        if not isinstance(name, str) or not name or not isinstance(spec, str) or not spec or " " in spec:
            raise InvalidArgument(f"bad periodic job name {name!r} or schedule fingerprint {spec!r}")
        _utf8(name, "periodic job name")
        data = _check_payload(payload)
        args: list[bytes | str | int] = [name, spec, data]
        for run in (catchup, upcoming):
            if run is None:
                args += ["", ""]
            else:
                args += [_check_int(run[0], "slot", 0, 2**52), _check_id(run[1])]
            if run is catchup:
                args.append("1" if cold else "0")
        stored_catchup, stored_upcoming, now = yield self._call("schedule", *args)
        return int(stored_catchup) == 1, int(stored_upcoming) == 1, int(now)

    def periodic_markers(self, names: Sequence[str]) -> Op[list[list[tuple[int, str]]]]:
        """The markers of periodic jobs: for each name, [(latest slot enqueued ms, schedule fingerprint)]
        or [] when it has none (a sharded queue may give one per shard)."""
        result: list[list[tuple[int, str]]] = []
        for chunk in _chunks(list(names), MAX_BATCH):
            reply = yield self._call("periodic_state", *chunk)
            for value in reply:
                if value is None:
                    result.append([])
                else:
                    slot, _, spec = _text(value).partition(" ")
                    result.append([(int(slot), spec)])
        return result


def check_state(state: object) -> JobState:
    """A job state named by the caller, checked.

    Raises:
        InvalidType: Not a str.
        InvalidArgument: Not one of ready, delayed, in_flight, dead.
    """
    if not isinstance(state, str):
        raise InvalidType(f"state must be a str, got {state!r} ({type(state).__name__})")
    for known in STATES:
        if state == known:
            return known
    raise InvalidArgument(f"state must be one of {', '.join(STATES)}, got {state!r}")


def _parse_dequeue(reply: list[Any], ttl_ms: int, token: str, acks: list[Job]) -> DequeueResult:
    now_ms = int(reply[0])
    next_ms = int(reply[1]) if reply[1] not in (b"", "") else None
    expires = now_ms + ttl_ms
    # the hot path of a worker: replies are bytes (check_client refuses decode_responses=True)
    tokens: dict[int, str] = {}
    jobs = []
    fields = iter(reply[4:])
    for job_id, payload, attempts, due_ms in zip(fields, fields, fields, fields, strict=True):
        tok = tokens.get(attempts) or tokens.setdefault(attempts, f"{attempts}:{token}")
        jobs.append(Job(job_id.decode(), payload, attempts, tok, expires, int(due_ms)))
    refused, gone = _refusals(reply[2], acks) if reply[2] else ([], [])
    return DequeueResult(now_ms, next_ms, len(acks) - len(refused), int(reply[3]), jobs, refused, [], gone)


def _pairs(acks: list[Job]) -> list[str]:
    """(id, token) of each claim, flat, as the scripts take them."""
    return [part for job in acks for part in (job.id, job.token)]


def _refusals(positions: list[Any], acks: list[Job]) -> tuple[list[Job], list[Job]]:
    """The acks a script refused, from their positions (1-based; negated: the job is gone), and
    those of them whose job is gone."""
    refused, gone = [], []
    for position in map(int, positions):
        job = acks[abs(position) - 1]
        refused.append(job)
        if position < 0:
            gone.append(job)
    return refused, gone


def long_poll(
    dequeue: Callable[[Iterable[Job], float], Op[DequeueResult]],
    done: Iterable[Job],
    wait: Duration,
    pause: Callable[[DequeueResult, float], Step | None],
) -> Op[DequeueResult]:
    """Dequeue (acking ``done``) and, while nothing comes and ``wait`` lasts, pause and retry.

    ``dequeue(acks, remaining)`` makes one dequeue call, told how many seconds of the wait
    remain; ``pause(result, remaining)`` makes the step to take before the next one (None:
    retry at once).

    Raises:
        InvalidType, InvalidArgument: A bad wait (or what ``dequeue`` refuses), before anything is sent.
    """
    wait_s = to_ms(wait, "wait", minimum_ms=0, maximum_s=MAX_WAIT_S) / 1000
    deadline = time.monotonic() + wait_s
    first = result = yield from dequeue(done, wait_s)
    acked, dead = result.acked, result.dead_lettered
    while not result.jobs and (remaining := deadline - time.monotonic()) > 0:
        step = pause(result, remaining)
        if step is not None:
            yield step
        result = yield from dequeue((), max(0.0, deadline - time.monotonic()))
        dead += result.dead_lettered
    return DequeueResult(result.now_ms, result.next_ms, acked, dead, result.jobs, first.refused, first.unapplied, first.gone)


def check_client(client: object) -> None:
    """Reject a redis client that would decode payloads to str (binary payloads would break).

    Raises:
        InvalidArgument: The client was made with ``decode_responses=True``.
    """
    get_encoder = getattr(client, "get_encoder", None)
    if get_encoder is None:
        raise InvalidType(
            f"client must be a redis-py client (redis.Redis, RedisCluster or their asyncio twins), got {client!r:.80}"
        )
    if getattr(get_encoder(), "decode_responses", False):
        raise InvalidArgument(
            "the redis client decodes replies (decode_responses=True); delayq returns payloads as bytes "
            "and needs a client made with decode_responses=False"
        )


def script_error(call: Call, queue: str, exc: Exception) -> ScriptError:
    """The one mapping from a Redis error reply to a delayq exception."""
    if isinstance(exc, NoScriptError):
        return ScriptError(
            f"script {call.script.name!r} failed on queue {queue!r}: NOSCRIPT after {SCRIPT_LOADS} SCRIPT LOADs "
            f"(something keeps flushing the server's scripts): {exc}"
        )
    return ScriptError(f"script {call.script.name!r} failed on queue {queue!r}: {exc}")
