"""Bounded server work: with a million jobs queued, no script call blocks Redis for long,
because every call handles at most 1000 jobs (dequeue, ack, peek, purge in chunks ...)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

import delayq
from delayq._server import RedisServer, ServerUnavailable
from tests.helpers import no_server

BOUND_MS = 50
"""The stated bound: no delayq call keeps the server busy longer than this (measured: far less)."""
LOGGED_FROM_US = 5000


@pytest.fixture
def server() -> Iterator[redis.Redis]:
    """A private server, so its SLOWLOG holds only this test's calls."""
    try:
        srv = RedisServer().start()
    except ServerUnavailable as exc:
        no_server(str(exc))
    client = redis.Redis(port=srv.port)
    client.config_set("slowlog-log-slower-than", LOGGED_FROM_US)
    client.config_set("slowlog-max-len", 10_000)
    yield client
    client.close()
    srv.__exit__(None, None, None)


@pytest.mark.timeout(300)
def test_a_million_jobs_and_no_call_blocks_redis_long(server: redis.Redis) -> None:
    q = delayq.Queue(server, "big", max_attempts=1)
    started = time.monotonic()
    for _ in range(1000):
        q.enqueue_many([b"x" * 64] * 1000)
    held = [job for _ in range(10) for job in q.dequeue(1000, lock_ttl=600)]  # 10^4 locked at the head
    assert len(held) == 10_000
    server.slowlog_reset()

    jobs = q.dequeue(1000)
    acked, more = q.ack_and_dequeue(jobs, 1000)
    assert acked == 1000 and len(more) == 1000
    assert q.ack_many(more) == 1000
    for job in held[:1000]:
        q.nack(job, 0, error="x")  # max_attempts=1: dead-lettered
    assert len(q.peek(1000)) == 1000
    assert len(q.dead_letters(1000)) == 1000
    assert q.stats().total == 1_000_000 - 2000
    assert q.reschedule(held[2000].id) is False and q.cancel(held[2000].id) is True
    assert q.redrive() == 1000
    assert q.purge() == 1_000_000 - 2001
    slow = server.slowlog_get(10_000)
    longest_ms = max((entry["duration"] for entry in slow), default=0) / 1000
    elapsed = time.monotonic() - started
    over = f"calls over {LOGGED_FROM_US / 1000:g} ms: {len(slow)}, longest {longest_ms:.1f} ms"
    print(f"\nbounded: 10^6 jobs, {elapsed:.0f}s; {over}")
    assert longest_ms < BOUND_MS, [(e["command"][:2], e["duration"]) for e in slow]
    assert server.dbsize() == 0
