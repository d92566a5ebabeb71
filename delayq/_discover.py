"""Find the queues on a server or a cluster by their keys, with no registry key.

Every key of a queue is ``<prefix>:{<tag>}:<role>``, so one ``SCAN MATCH <prefix>:{*}:*``
per node (every primary of a cluster) finds every queue that holds anything: a job in any
state, a pause, or worker heartbeats. A queue with nothing in it has no keys and is not
found. Keeping a set of names in one key instead would put a key outside each queue's own
slot and make every enqueue touch two slots.

SCAN walks the whole keyspace of each node, ``count`` keys per call: the cost grows with
all the keys the node holds (a queue has at most eleven keys, however many jobs it holds),
never blocks the server for long, and is not atomic (a queue created during the walk may
be missed). Then one TYPE per key found, pipelined: a key that only looks like a queue's
(another program's ``<prefix>:{session}:meta`` string) is not a queue, and a name no queue
can have (too long, not UTF-8) is skipped, so a stranger key never spoils the list.
Callers that look often (the dashboard) keep the answer for a few seconds.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any

from ._inspect import QueueRef
from ._shards import MAX_SHARDS
from ._validate import MAX_NAME_LENGTH, check_int, check_name

__all__ = ["ROLES", "ROLE_TYPES", "afind_queues", "find_queues", "queue_pattern", "queues_from_keys"]

ROLE_TYPES = {
    "due": "zset",
    "lease": "zset",
    "payload": "hash",
    "meta": "hash",
    "dead": "zset",
    "errors": "hash",
    "wake": "list",
    "waiters": "zset",
    "paused": "hash",
    "workers": "hash",
    "periodic": "hash",
    "claims": "zset",
}
"""The last part of a queue's key names, and the Redis type each holds (``workers`` holds the
heartbeats of live workers, ``periodic`` the periodic jobs' last slots)."""

ROLES = frozenset(ROLE_TYPES)

TYPE_BATCH = 1000
"""TYPE calls per pipeline."""

_SHARD_TAG = re.compile(r"^(.+):(\d+):(\d+)$")
_SHARD_MARK = re.compile(r"^shard-(\d+)-of-(\d+):(.+)$")


def queue_pattern(prefix: str) -> str:
    """The SCAN MATCH pattern of every queue key under ``prefix`` (glob characters in it escaped)."""
    escaped = re.sub(r"([*?\[\]\\])", r"\\\1", prefix)
    return f"{escaped}:{{*}}:*"


def _queue_key(raw: bytes | str, head: str) -> tuple[QueueRef, str] | None:
    """The queue a key name belongs to and its role, or None for a key no queue has."""
    try:
        key = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        return None  # every queue name is UTF-8 text
    if not key.startswith(head):
        return None
    tag, closing, rest = key[len(head) :].partition("}:")
    if not closing or not tag or "{" in tag or "}" in tag:
        return None  # no queue name holds a brace
    marked = _SHARD_MARK.match(rest)
    if marked is not None:
        tagged = _SHARD_TAG.match(tag)
        index, count, role = int(marked[1]), int(marked[2]), marked[3]
        if tagged is None or role not in ROLES or int(tagged[2]) != index or not 1 < count <= MAX_SHARDS:
            return None
        name = tagged[1]
    elif rest in ROLES:
        name, count, role = tag, 1, rest
    else:
        return None
    return (QueueRef(name, count), role) if len(name) <= MAX_NAME_LENGTH else None


def queues_from_keys(
    keys: Iterable[bytes | str], prefix: str, types: Mapping[bytes | str, bytes | str] | None = None
) -> list[QueueRef]:
    """The queues that a list of key names belongs to, sorted by name, then shard count.

    A plain queue's keys are ``<prefix>:{<name>}:<role>``; a sharded queue's are
    ``<prefix>:{<name>:<i>:<k>}:shard-<i>-of-<N>:<role>`` (see ``_sharded``), so each key
    names its queue and shard count by itself, and no plain key can be read as a shard's.

    Args:
        keys: Key names, as SCAN returns them.
        prefix: The key prefix the queues use.
        types: Each key's Redis type (TYPE's reply), when known: a key whose type is not
            its role's (see :data:`ROLE_TYPES`) belongs to another program and is skipped.

    Returns:
        One QueueRef per queue.
    """
    head = f"{prefix}:{{"
    found: set[QueueRef] = set()
    plain_seen: dict[str, set[str]] = {}
    for raw in keys:
        parsed = _queue_key(raw, head)
        if parsed is None:
            continue
        ref, role = parsed
        if types is not None and _text(types.get(raw, b"none")) != ROLE_TYPES[role]:
            continue
        if ref.shards > 1:
            found.add(ref)
        else:
            plain_seen.setdefault(ref.name, set()).add(role)
    sharded_names = {ref.name for ref in found}
    for tag, seen in plain_seen.items():
        # a sharded queue's heartbeats live under {name}: not a queue of its own
        if seen == {"workers"} and tag in sharded_names:
            continue
        found.add(QueueRef(tag, 1))
    return sorted(found, key=lambda ref: (ref.name, ref.shards))


def _text(value: bytes | str) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


def _candidates(keys: Iterable[bytes | str], prefix: str) -> list[bytes | str]:
    head = f"{prefix}:{{"
    return [key for key in keys if _queue_key(key, head) is not None]


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

    Cost: one SCAN per ``count`` keys of each node, O(count) each; one TYPE per queue key
    found, pipelined by 1000; not atomic.
    """
    args = _scan_args(client, prefix, count)
    scanned: Iterator[bytes] = client.scan_iter(**args)  # RedisCluster scans every primary
    keys = _candidates(scanned, prefix)
    types: dict[bytes | str, bytes | str] = {}
    for start in range(0, len(keys), TYPE_BATCH):
        batch = keys[start : start + TYPE_BATCH]
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.type(key)
        types.update(zip(batch, pipe.execute(), strict=True))
    return queues_from_keys(keys, prefix, types)


async def afind_queues(client: Any, *, prefix: str = "delayq", count: int = 1000) -> list[QueueRef]:
    """The asyncio twin of :func:`find_queues`, over ``redis.asyncio`` clients."""
    args = _scan_args(client, prefix, count)
    scanned: AsyncIterator[bytes] = client.scan_iter(**args)
    keys = _candidates([key async for key in scanned], prefix)
    types: dict[bytes | str, bytes | str] = {}
    for start in range(0, len(keys), TYPE_BATCH):
        batch = keys[start : start + TYPE_BATCH]
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.type(key)
        types.update(zip(batch, await pipe.execute(), strict=True))
    return queues_from_keys(keys, prefix, types)
