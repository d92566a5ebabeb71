"""Reply parsing: what the scripts' replies become (the typed results of the operations)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ._types import Job

__all__ = ["AckResult", "DequeueResult", "as_bytes", "as_text", "claim_pairs", "new_job", "parse_dequeue", "refusals"]


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


_new = object.__new__
_SET_ID, _SET_PAYLOAD, _SET_ATTEMPTS, _SET_TOKEN, _SET_EXPIRES, _SET_DUE = (Job.__dict__[f.name].__set__ for f in fields(Job))


def new_job(job_id: str, payload: bytes, attempts: int, token: str, expires: int, due: int) -> Job:
    """Job(...) for a reply's jobs, in half the time: the slots are set directly, as the frozen
    dataclass's __init__ would (object.__setattr__ a field) but without its per-field lookups;
    about 0.4 us of a worker's per-job cost. tests/test_api.py pins it to Job's fields."""
    job: Job = _new(Job)
    _SET_ID(job, job_id)
    _SET_PAYLOAD(job, payload)
    _SET_ATTEMPTS(job, attempts)
    _SET_TOKEN(job, token)
    _SET_EXPIRES(job, expires)
    _SET_DUE(job, due)
    return job


def as_text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def as_bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def parse_dequeue(reply: list[Any], ttl_ms: int, token: str, acks: list[Job]) -> DequeueResult:
    now_ms = int(reply[0])
    next_ms = int(reply[1]) if reply[1] not in (b"", "") else None
    expires = now_ms + ttl_ms
    # the hot path of a worker: replies are bytes (check_client refuses decode_responses=True)
    first = f"1:{token}"
    jobs = []
    fields = iter(reply[4:])
    for job_id, payload, due in zip(fields, fields, fields, strict=True):
        if b":" in due:  # a redelivery: "<due_ms>:<attempts>"
            due_ms, _, count = due.partition(b":")
            attempts = int(count)
            jobs.append(new_job(job_id.decode(), payload, attempts, f"{attempts}:{token}", expires, int(due_ms)))
        else:
            jobs.append(new_job(job_id.decode(), payload, 1, first, expires, int(due)))
    refused, gone = refusals(reply[2], acks) if reply[2] else ([], [])
    return DequeueResult(now_ms, next_ms, len(acks) - len(refused), int(reply[3]), jobs, refused, [], gone)


def claim_pairs(acks: list[Job]) -> list[str]:
    """(id, token) of each claim, flat, as the scripts take them."""
    return [part for job in acks for part in (job.id, job.token)]


def refusals(positions: list[Any], acks: list[Job]) -> tuple[list[Job], list[Job]]:
    """The acks a script refused, from their positions (1-based; negated: the job is gone), and
    those of them whose job is gone."""
    refused, gone = [], []
    for position in map(int, positions):
        job = acks[abs(position) - 1]
        refused.append(job)
        if position < 0:
            gone.append(job)
    return refused, gone
