"""Validation: the limits on every argument and the checks that enforce them, before anything is sent.

Every check raises InvalidType (wrong type) or InvalidArgument (right type, bad value) naming
the bad value; the queues, the sharded core, the hooks and the scheduler import them from here.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Union

from ._errors import InvalidArgument, InvalidType
from ._inspect import STATES, JobState
from ._types import Job

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "MAX_BATCH",
    "MAX_DELAY_S",
    "MAX_ID_BYTES",
    "MAX_LOCK_TTL_S",
    "MAX_NAME_LENGTH",
    "MAX_PAYLOAD_BYTES",
    "SENTINEL",
    "Checked",
    "Duration",
    "Payload",
    "check_claim",
    "check_claims",
    "check_client",
    "check_error",
    "check_id",
    "check_ids",
    "check_int",
    "check_job",
    "check_name",
    "check_page",
    "check_payload",
    "check_preview",
    "check_state",
    "check_when",
    "new_ids",
    "prepare_enqueue",
    "to_ms",
    "utf8",
]

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

SENTINEL = "~delayq~sentinel~keeps-lease-and-meta-in-fast-encodings~never-a-job-id~"
"""The member dequeue.lua keeps in `lease` and `meta` (see its header); reserved, never a job id."""

Duration = Union[float, timedelta]
Payload = Union[bytes, bytearray, memoryview, str]


def check_int(value: object, what: str, low: int, high: int) -> int:
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


def check_name(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidType(f"{what} must be a str, got {value!r} ({type(value).__name__})")
    if not value:
        raise InvalidArgument(f"{what} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"{what} must be at most {MAX_NAME_LENGTH} characters, got {len(value)}: {value[:40]!r}...")
    if "{" in value or "}" in value:
        raise InvalidArgument(f"{what} must not contain '{{' or '}}' (the queue name is the key's hash tag), got {value!r}")
    utf8(value, what)
    return value


def utf8(value: str, what: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgument(f"{what} is not valid Unicode text (it cannot be UTF-8 encoded): {value!r}") from exc


def check_id(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidType(f"job id must be a str, got {value!r} ({type(value).__name__})")
    if not value:
        raise InvalidArgument("job id must not be empty")
    if len(utf8(value, "job id")) > MAX_ID_BYTES:
        raise InvalidArgument(f"job id must be at most {MAX_ID_BYTES} UTF-8 bytes, got {value[:40]!r}...")
    if value == SENTINEL:
        raise InvalidArgument(f"job id {value!r} is reserved by delayq")
    return value


def check_payload(value: object) -> bytes:
    if isinstance(value, str):
        data = utf8(value, "payload")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        raise InvalidType(f"payload must be bytes or str, got {type(value).__name__}: {value!r:.80}")
    if len(data) > MAX_PAYLOAD_BYTES:
        raise InvalidArgument(f"payload must be at most {MAX_PAYLOAD_BYTES} bytes, got {len(data)}")
    return data


def check_job(value: object) -> Job:
    """A Job whose fields have the types dequeue gives them and whose id is a legal job id.

    Raises:
        InvalidType: Not a Job, or a field of the wrong type (a None id or token, a str attempts ...).
        InvalidArgument: An id delayq would refuse to enqueue: empty, too long, not UTF-8, reserved.
    """
    if not isinstance(value, Job):
        raise InvalidType(f"expected a Job returned by dequeue, got {value!r:.80} ({type(value).__name__})")
    check_id(value.id)
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
"""A claim's token as dequeue makes it (see parse_dequeue): "<attempts>:<16 hex digits>"."""


def check_claim(value: object) -> Job:
    """A Job that ack, nack and extend may send: well-typed (see check_job), with a token of the form
    dequeue gives. The scripts compare tokens as strings, so a hand-built token could otherwise
    match a value no claim has (the reserved member's empty one).

    Raises:
        InvalidType, InvalidArgument: As for check_job; InvalidArgument for a malformed token.
    """
    job = check_job(value)
    if _TOKEN.fullmatch(job.token) is None:
        raise InvalidArgument(f"job token {job.token!r:.80} is not one dequeue gives ('<attempts>:<16 hex digits>')")
    return job


class Checked(list[Job]):
    """Claims already checked (as check_claims checks them): the jobs a worker acks, which it got
    from its own claims, and a sharded queue's jobs for one shard. check_claims passes them as they
    are; the check costs a worker's main thread about a tenth of its time a job."""


def check_claims(jobs: object) -> list[Job]:
    """The jobs of an ack, each checked (see check_claim), once per claim (a job given twice counts
    once), at most MAX_BATCH. A Checked list is passed as it is.

    Raises:
        InvalidType: ``jobs`` is not an iterable of Job, or one of them is not well-typed.
        InvalidArgument: A malformed job, or more than MAX_BATCH claims.
    """
    if type(jobs) is Checked:
        return jobs
    if isinstance(jobs, Job) or not isinstance(jobs, Iterable):
        raise InvalidType(f"expected an iterable of Job, got {jobs!r:.80}")
    seen: dict[tuple[str, str], Job] = {}
    for job in jobs:
        check_claim(job)
        seen.setdefault((job.id, job.token), job)
    if len(seen) > MAX_BATCH:
        raise InvalidArgument(f"at most {MAX_BATCH} jobs can be acked in one call, got {len(seen)}")
    return list(seen.values())


def check_ids(ids: object) -> list[str]:
    """Job ids to act on (as redrive's), each checked, each once, in their order.

    Raises:
        InvalidType: Not an iterable of str (a single str is refused: it would be read as ids of one character).
        InvalidArgument: A bad id.
    """
    if isinstance(ids, str) or not isinstance(ids, Iterable):
        raise InvalidType(f"ids must be an iterable of str, got {ids!r:.80}")
    return list(dict.fromkeys(check_id(i) for i in ids))


def check_error(error: object) -> str:
    """The text a nack keeps with the job: "" for None.

    Raises:
        InvalidType: Not a str or None.
        InvalidArgument: Not valid Unicode text.
    """
    if error is None:
        return ""
    if not isinstance(error, str):
        raise InvalidType(f"error must be a str or None, got {error!r:.80}")
    utf8(error, "error")
    return error


def check_page(state: object, offset: object, limit: object, preview: object) -> JobState:
    """The arguments of list_jobs, checked; returns the state.

    Raises:
        InvalidType, InvalidArgument: A bad state, offset (0 to 2**53), limit (0 to MAX_BATCH) or
            preview (0 to MAX_PAYLOAD_BYTES).
    """
    checked = check_state(state)
    check_int(offset, "offset", 0, 2**53)
    check_int(limit, "limit", 0, MAX_BATCH)
    check_preview(preview)
    return checked


def check_preview(preview: object) -> int:
    """How many bytes of a payload to send (get and list_jobs): 0 to MAX_PAYLOAD_BYTES.

    Raises:
        InvalidType, InvalidArgument: Not an int in that range.
    """
    return check_int(preview, "preview", 0, MAX_PAYLOAD_BYTES)


def check_when(delay: object, at: object) -> tuple[str, int]:
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


class _Sequence:
    """Microseconds since the epoch, handed out so that they never repeat or go back in a process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def take(self, count: int) -> int:
        """The first of ``count`` consecutive values, all after every value taken before."""
        with self._lock:
            start = max(self._last + 1, time.time_ns() // 1000)
            self._last = start + count - 1
        return start


_sequence = _Sequence()


def new_ids(count: int) -> list[str]:
    """``count`` fresh job ids: 32 hex digits, a 56-bit sequence then 72 random bits per call.

    The sequence is the time in microseconds, and never repeats or goes back in a process, so
    ids made later sort later: jobs due at the same ms (ties are broken by id) are claimed in
    the order they were enqueued, as they are under a test's frozen clock, where every job of
    a test is due at the same ms. As unique as uuid4 for all practical purposes (the random
    part tells processes apart), at a fraction of its cost per id.
    """
    start = _sequence.take(count)
    tail = os.urandom(9).hex()
    return [f"{start + i:014x}{tail}" for i in range(count)]


def prepare_enqueue(
    payloads: Iterable[Payload], delay: object, at: object, ids: Sequence[str] | None
) -> tuple[str, int, list[str], list[bytes]]:
    """Validate an enqueue: (mode, when, ids, payload bytes), or a typed error before anything is sent."""
    mode, when = check_when(delay, at)
    if isinstance(payloads, (str, bytes, bytearray, memoryview)):
        raise InvalidType("payloads must be an iterable of payloads, not a single str or bytes")
    if not isinstance(payloads, Iterable):
        raise InvalidType(f"payloads must be an iterable of bytes or str, got {type(payloads).__name__}")
    data = [check_payload(p) for p in payloads]
    if ids is None:
        job_ids = new_ids(len(data))
    else:
        if isinstance(ids, str) or not isinstance(ids, Sequence):
            raise InvalidType(f"ids must be a sequence of str, got {ids!r:.80}")
        job_ids = [check_id(i) for i in ids]
        if len(job_ids) != len(data):
            raise InvalidArgument(f"ids has {len(job_ids)} items but payloads has {len(data)}")
    return mode, when, job_ids, data


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
