"""Consumer processes that drain a queue as fast as they can, for the consumers and cluster phases.

Spawned (not forked), so each is a fresh interpreter with its own connection; they
connect and load the scripts first, then all start on one signal, and the clock
runs from that signal until every process has found the queue empty.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import redis
import redis.cluster

from .. import Queue
from ._harness import TTL

__all__ = ["run_consumers"]


def _consume(url: str, name: str, batch: int, ready: Any, go: Any, out: Any, cluster: bool = False, shards: int = 1) -> None:
    """A consumer process: ack+claim in one call until the queue is empty."""
    client: Any = redis.cluster.RedisCluster.from_url(url) if cluster else redis.Redis.from_url(url)
    q = Queue(client, name, shards=shards)
    q.stats()  # connected and scripts warm before the clock starts
    ready.release()
    go.wait()
    count, done = 0, list[Any]()
    while True:
        _, jobs = q.ack_and_dequeue(done, batch, TTL)
        if not jobs:
            break
        count += len(jobs)
        done = jobs
    out.put(count)
    client.close()


def run_consumers(url: str, q: Queue, procs: int, n: int, cluster: bool = False, shards: int = 1) -> float:
    """Start ``procs`` consumer processes on a filled queue; the seconds until they emptied it."""
    ctx = multiprocessing.get_context("spawn")
    ready, go, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    workers = [ctx.Process(target=_consume, args=(url, q.name, 100, ready, go, out, cluster, shards)) for _ in range(procs)]
    for w in workers:
        w.start()
    for _ in workers:
        ready.acquire()
    start = time.perf_counter()
    go.set()
    total = sum(out.get(timeout=300) for _ in workers)
    elapsed = time.perf_counter() - start
    for w in workers:
        w.join()
    if total != n:
        raise RuntimeError(f"consumers got {total} jobs of {n}")
    return elapsed
