"""Read a queue's whole contents from Redis, to show that a call changed nothing (or everything)."""

from __future__ import annotations

from typing import Any

import redis


def snapshot(raw: redis.Redis, queue: Any) -> dict[bytes, Any]:
    """Every key of the queue, with its full contents; {} when the queue left nothing behind."""
    core = queue._core
    cores = getattr(core, "shards", [core])
    keys = [key for c in cores for key in c.keys.values()]
    out: dict[bytes, Any] = {}
    for key in keys:
        kind = raw.type(key)
        if kind == b"zset":
            out[key.encode()] = raw.zrange(key, 0, -1, withscores=True)
        elif kind == b"hash":
            out[key.encode()] = raw.hgetall(key)
        elif kind != b"none":
            out[key.encode()] = (kind, raw.dump(key))
    # and nothing else under the queue's tags
    for c in cores:
        tag = f"{{{c.tag}}}"
        for key in raw.scan_iter(match=f"*{tag.replace('{', '[{]').replace('}', '[}]')}*", count=1000):
            if key.decode() not in keys:
                out[key] = "unexpected key"
    return out
