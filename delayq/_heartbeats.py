"""Worker heartbeats: the format the workers write and the dashboard and ``delayq workers`` read.

The key is ``<prefix>:{<name>}:workers`` (under the queue's own hash tag; for a sharded
queue, under its shard 0's tag and marker, as its other keys: a plain queue and a sharded one of
the same name are two queues and share no key), a HASH of worker id -> JSON object::

    {"host": "web-1", "pid": 4242, "concurrency": 8,
     "counters": {"processed": 10, "failed": 1, ...},
     "started": 1700000000.0, "last_seen": 1700000042.5, "ttl": 15.0}

Times are seconds since the epoch (a value above 1e11 is read as milliseconds). A worker
writes its entry every HEARTBEAT_EVERY_S and removes it when it stops. A worker that died
without removing it is ignored once its ``last_seen`` is older than its ``ttl`` (or
``stale_after`` for an entry without one): the writers prune such entries as they beat, and
the key itself expires ``ttl`` after the last beat of any worker, so entries of a queue whose
workers all died vanish too; the reader only filters. Malformed entries are skipped.
Everything that knows this format is in this module.
"""

from __future__ import annotations

import json
import math
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import InvalidArgument, InvalidType
from ._shards import shard_marker, shard_tags

__all__ = [
    "HEARTBEAT_EVERY_S",
    "HEARTBEAT_TTL_S",
    "STALE_AFTER_S",
    "WorkerInfo",
    "check_heartbeat",
    "heartbeat_entry",
    "live_workers",
    "stale_workers",
    "workers_key",
]

STALE_AFTER_S = 60.0
"""A heartbeat without a ``ttl`` of its own, older than this (seconds), belongs to a worker that is gone."""
HEARTBEAT_EVERY_S = 5.0
"""How often a worker writes its heartbeat."""
HEARTBEAT_TTL_S = 15.0
"""A worker whose heartbeat is older than this is gone: three missed beats, so a worker busy for
a moment (a long garbage collection, a slow Redis) is not taken for dead."""


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One live worker, from its heartbeat.

    Attributes:
        id: The worker's id (the hash field).
        host: The machine it runs on.
        pid: Its process id.
        concurrency: Handlers it runs at once.
        counters: Its counters (processed, failed, retried ...).
        started: When it started, seconds since the epoch.
        last_seen: Its last heartbeat, seconds since the epoch.
        ttl: Seconds after ``last_seen`` at which it counts as gone.
    """

    id: str
    host: str
    pid: int
    concurrency: int
    counters: dict[str, int] = field(default_factory=dict)
    started: float = 0.0
    last_seen: float = 0.0
    ttl: float = STALE_AFTER_S


def workers_key(prefix: str, name: str, shards: int = 1) -> str:
    """The heartbeat hash of the queue ``name`` (with ``shards`` shards) under ``prefix``."""
    if shards == 1:
        return f"{prefix}:{{{name}}}:workers"
    return f"{prefix}:{{{shard_tags(name, shards)[0]}}}:{shard_marker(0, shards)}:workers"


def heartbeat_entry(
    concurrency: int, counters: Mapping[str, int], started: float, now: float, ttl: float = HEARTBEAT_TTL_S
) -> str:
    """The JSON a worker of this process writes as its heartbeat (see the module's docstring).

    Args:
        concurrency: Its handler slots.
        counters: Its counters (processed, failed ...).
        started: When it started, seconds since the epoch.
        now: The time of this beat, seconds since the epoch.
        ttl: Seconds after ``now`` at which the entry counts as a dead worker's.

    Returns:
        The entry, a JSON object.
    """
    return json.dumps(
        {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "concurrency": concurrency,
            "counters": dict(counters),
            "started": started,
            "last_seen": now,
            "ttl": ttl,
        },
        separators=(",", ":"),
    )


def check_heartbeat(key: str, worker_id: object, entry: object, ttl: object) -> tuple[str, str, int]:
    """Validate a heartbeat's arguments: (the hash's key, the field, the ttl in whole ms).

    Raises:
        InvalidType: A worker id or entry that is not a str, a ttl that is not a number.
        InvalidArgument: An empty or over-long worker id, or a ttl outside 1 ms to a day.
    """
    if not isinstance(worker_id, str) or not isinstance(entry, str):
        raise InvalidType(f"worker id and entry must be str, got {worker_id!r:.80} and {type(entry).__name__}")
    if not 1 <= len(worker_id) <= 200:
        raise InvalidArgument(f"worker id must be 1 to 200 characters, got {worker_id!r:.80}")
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0.001 <= ttl <= 24 * 3600:
        raise InvalidArgument(f"heartbeat ttl must be seconds between 0.001 and 86400, got {ttl!r}")
    return key, worker_id, math.ceil(ttl * 1000)


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"not a time: {value!r}")
    return value / 1000 if value > 1e11 else float(value)


def _parse(raw: Mapping[bytes | str, bytes | str], stale_after: float) -> tuple[list[WorkerInfo], list[str]]:
    """The entries of a heartbeat hash that parse, and the ids of those that do not."""
    workers, broken = [], []
    for key, value in raw.items():
        try:
            data = json.loads(value)
            worker = WorkerInfo(
                id=key.decode("utf-8", "replace") if isinstance(key, bytes) else key,
                host=str(data.get("host", "?")),
                pid=int(data.get("pid", 0)),
                concurrency=int(data.get("concurrency", 0)),
                counters={str(k): int(v) for k, v in dict(data.get("counters") or {}).items()},
                started=_seconds(data.get("started", 0)),
                last_seen=_seconds(data["last_seen"]),
                ttl=_seconds(data.get("ttl", stale_after)),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            broken.append(key.decode("utf-8", "replace") if isinstance(key, bytes) else key)
            continue
        workers.append(worker)
    return workers, broken


def live_workers(raw: Mapping[bytes | str, bytes | str], now: float, stale_after: float = STALE_AFTER_S) -> list[WorkerInfo]:
    """The live workers in a heartbeat hash (as HGETALL returns it), newest start first.

    Args:
        raw: The hash's fields and values.
        now: The current time, seconds since the epoch.
        stale_after: Heartbeats without a ``ttl`` of their own older than this many seconds are left out.

    Returns:
        The workers whose last heartbeat is within its ttl, skipping entries that do not parse.
    """
    workers, _ = _parse(raw, stale_after)
    live = [w for w in workers if now - w.last_seen <= w.ttl]
    return sorted(live, key=lambda w: (-w.started, w.id))


def stale_workers(raw: Mapping[bytes | str, bytes | str], now: float) -> list[str]:
    """The ids of a heartbeat hash's dead workers (past their ttl) and malformed entries, to prune."""
    workers, broken = _parse(raw, STALE_AFTER_S)
    return broken + [w.id for w in workers if now - w.last_seen > w.ttl]
