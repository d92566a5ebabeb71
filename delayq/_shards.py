"""Where a sharded queue's shards live: how many there may be, their hash tags, and the marker in their keys.

Key layout. Shard i of N of queue ``name`` keeps its keys under

    <prefix>:{<name>:<i>:<k>}:shard-<i>-of-<N>:<role>     e.g. delayq:{emails:0:0}:shard-0-of-2:due

where a plain queue's are ``<prefix>:{<name>}:<role>``. Prefix and name cannot hold a brace,
so a key splits one way only into prefix, hash tag and what follows the tag. The tag
``name:i:k`` alone could be a plain queue's name (``Queue(r, "emails:0:0")`` once shared every
key with ``Queue(r, "emails", shards=2)``), and two shard counts of one name can pick the same
tag (shard 0 of 2 and of 3 are often both ``emails:0:0``). The marker settles both: a plain
queue's tag is followed by one of its seven role names, never by ``shard-...``, and the marker
holds N, while the tag, read from its right end, holds the name and i. So no two distinct
(prefix, name, shards) ever share a key (tests/test_sharded.py checks it with hypothesis).
Sharded queues written before this layout (keys without the marker) are not found by it:
drain them before upgrading.
"""

from __future__ import annotations

import zlib

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

__all__ = ["MAX_SHARDS", "shard_index", "shard_marker", "shard_tags"]

MAX_SHARDS = 256
"""Most shards one queue may have."""


def shard_tags(name: str, shards: int) -> list[str]:
    """The hash tags of a queue's shards: shard i's slot lies in the i-th ``shards``-th of the slot space.

    Args:
        name: The queue's (validated) name.
        shards: How many shards.

    Returns:
        ``shards`` distinct tags, each ``name:i:k`` for the smallest k that lands in range. A
        tag is not a queue's identity (a plain queue may be named like it, another shard count
        may pick it too): the keys also carry :func:`shard_marker`.
    """
    tags = []
    for i in range(shards):
        low, high = i * REDIS_CLUSTER_HASH_SLOTS // shards, (i + 1) * REDIS_CLUSTER_HASH_SLOTS // shards
        k = 0
        while not low <= key_slot(f"{name}:{i}:{k}".encode()) < high:
            k += 1
        tags.append(f"{name}:{i}:{k}")
    return tags


def shard_marker(index: int, shards: int) -> str:
    """What follows shard ``index``'s tag in its keys: no plain queue's key has it, and it holds the shard count."""
    return f"shard-{index}-of-{shards}"


def shard_index(job_id: str, shards: int) -> int:
    """The shard that holds (or would hold) the job with this id: a stable hash of the id (CRC32),
    so dedup by id, ack, nack, extend, cancel and reschedule go to exactly one shard."""
    return zlib.crc32(job_id.encode("utf-8")) % shards
