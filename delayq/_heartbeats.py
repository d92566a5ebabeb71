"""Reading the heartbeats of live workers, for the dashboard.

The key is ``<prefix>:{<name>}:workers`` (under the queue's own hash tag; for a sharded
queue, its name's), a HASH of worker id -> JSON object::

    {"host": "web-1", "pid": 4242, "concurrency": 8,
     "counters": {"processed": 10, "failed": 1, ...},
     "started": 1700000000.0, "last_seen": 1700000042.5}

Times are seconds since the epoch (a value above 1e11 is read as milliseconds). A worker
that stopped without removing its entry is ignored once its ``last_seen`` is older than
``stale_after``: the writer prunes, the reader only filters. Malformed entries are skipped.
Everything that knows this format is in this module.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["STALE_AFTER_S", "WorkerInfo", "live_workers", "workers_key"]

STALE_AFTER_S = 60.0
"""A heartbeat older than this (seconds) belongs to a worker that is gone."""


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
    """

    id: str
    host: str
    pid: int
    concurrency: int
    counters: dict[str, int] = field(default_factory=dict)
    started: float = 0.0
    last_seen: float = 0.0


def workers_key(prefix: str, name: str) -> str:
    """The heartbeat hash of the queue ``name`` under ``prefix``."""
    return f"{prefix}:{{{name}}}:workers"


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"not a time: {value!r}")
    return value / 1000 if value > 1e11 else float(value)


def live_workers(raw: Mapping[bytes | str, bytes | str], now: float, stale_after: float = STALE_AFTER_S) -> list[WorkerInfo]:
    """The live workers in a heartbeat hash (as HGETALL returns it), newest start first.

    Args:
        raw: The hash's fields and values.
        now: The current time, seconds since the epoch.
        stale_after: Heartbeats older than this many seconds are left out.

    Returns:
        The workers whose last heartbeat is recent, skipping entries that do not parse.
    """
    workers = []
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
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        if now - worker.last_seen <= stale_after:
            workers.append(worker)
    return sorted(workers, key=lambda w: (-w.started, w.id))
