"""Find the queues on a server or a cluster by their keys, with no registry key.

Every key of a queue is ``<prefix>:{<tag>}:<role>``, so one ``SCAN MATCH <prefix>:{*}:*``
per node (every primary of a cluster) finds every queue that holds anything: a job in any
state, a pause, or worker heartbeats. A queue with nothing in it has no keys and is not
found. Keeping a set of names in one key instead would put a key outside each queue's own
slot and make every enqueue touch two slots.

SCAN walks the whole keyspace of each node, ``count`` keys per call: the cost grows with
all the keys the node holds (a queue has at most nine keys, however many jobs it holds),
never blocks the server for long, and is not atomic (a queue created during the walk may
be missed). Callers that look often (the dashboard) keep the answer for a few seconds.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from ._inspect import QueueRef
from ._sharded import MAX_SHARDS
from ._validate import check_int, check_name

__all__ = ["ROLES", "afind_queues", "find_queues", "queue_pattern", "queues_from_keys"]

ROLES = frozenset({"due", "lease", "payload", "meta", "dead", "errors", "wake", "waiters", "paused", "workers"})
"""The last part of a queue's key names (``workers`` holds the heartbeats of live workers)."""

_SHARD_TAG = re.compile(r"^(.+):(\d+):(\d+)$")
_SHARD_MARK = re.compile(r"^shard-(\d+)-of-(\d+):(.+)$")


def queue_pattern(prefix: str) -> str:
    """The SCAN MATCH pattern of every queue key under ``prefix`` (glob characters in it escaped)."""
    escaped = re.sub(r"([*?\[\]\\])", r"\\\1", prefix)
    return f"{escaped}:{{*}}:*"


def queues_from_keys(keys: Iterable[bytes | str], prefix: str) -> list[QueueRef]:
    """The queues that a list of key names belongs to, sorted by name, then shard count.

    A plain queue's keys are ``<prefix>:{<name>}:<role>``; a sharded queue's are
    ``<prefix>:{<name>:<i>:<k>}:shard-<i>-of-<N>:<role>`` (see ``_sharded``), so each key
    names its queue and shard count by itself, and no plain key can be read as a shard's.

    Args:
        keys: Key names, as SCAN returns them.
        prefix: The key prefix the queues use.

    Returns:
        One QueueRef per queue.
    """
    head = f"{prefix}:{{"
    found: set[QueueRef] = set()
    plain_seen: dict[str, set[str]] = {}
    for raw in keys:
        key = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if not key.startswith(head):
            continue
        tag, closing, rest = key[len(head) :].partition("}:")
        if not closing or not tag or "{" in tag:
            continue
        marked = _SHARD_MARK.match(rest)
        if marked is not None:
            tagged = _SHARD_TAG.match(tag)
            index, count, role = int(marked[1]), int(marked[2]), marked[3]
            if tagged is not None and role in ROLES and int(tagged[2]) == index and 1 < count <= MAX_SHARDS:
                found.add(QueueRef(tagged[1], count))
        elif rest in ROLES:
            plain_seen.setdefault(tag, set()).add(rest)
    sharded_names = {ref.name for ref in found}
    for tag, seen in plain_seen.items():
        # a sharded queue's heartbeats live under {name}: not a queue of its own
        if seen == {"workers"} and tag in sharded_names:
            continue
        found.add(QueueRef(tag, 1))
    return sorted(found, key=lambda ref: (ref.name, ref.shards))


def _scan_args(client: Any, prefix: str, count: int) -> dict[str, Any]:
    check_name(prefix, "key prefix")
    check_int(count, "count", 1, 100_000)
    return {"match": queue_pattern(prefix), "count": count}


def find_queues(client: Any, *, prefix: str = "delayq", count: int = 1000) -> list[QueueRef]:
    """Find every queue on a Redis server, or on every primary of a Redis Cluster.

    Args:
        client: A ``redis.Redis`` or ``redis.cluster.RedisCluster``.
        prefix: The key prefix of the queues to find.
        count: Keys SCAN looks at per call (per node).

    Returns:
        The queues that hold anything, sorted by name (see :func:`queues_from_keys`).

    Raises:
        InvalidType, InvalidArgument: A bad prefix or count.

    Cost: one SCAN per ``count`` keys of each node, O(count) each; not atomic.
    """
    args = _scan_args(client, prefix, count)
    keys: Iterator[bytes] = client.scan_iter(**args)  # RedisCluster scans every primary
    return queues_from_keys(keys, prefix)


async def afind_queues(client: Any, *, prefix: str = "delayq", count: int = 1000) -> list[QueueRef]:
    """The asyncio twin of :func:`find_queues`, over ``redis.asyncio`` clients."""
    args = _scan_args(client, prefix, count)
    keys: AsyncIterator[bytes] = client.scan_iter(**args)
    return queues_from_keys([key async for key in keys], prefix)
