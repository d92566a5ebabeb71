"""dequeue(wait=...): long-poll without busy polling, woken by the due time or an earlier enqueue."""

from __future__ import annotations

import threading
import time

import pytest
import redis

import delayq
from tests.conftest import Env, unique_name


def enqueue_later(env: Env, name: str, seconds: float, payload: bytes, shards: int = 1) -> threading.Timer:
    """Enqueue from another thread (and client) after ``seconds``."""
    timer = threading.Timer(seconds, lambda: delayq.Queue(env.raw, name, shards=shards).enqueue(payload))
    timer.start()
    return timer


@pytest.mark.parametrize("shards", [1, 3])
def test_wait_returns_when_the_job_comes_due(env: Env, shards: int) -> None:
    q = env.queue(shards=shards)
    q.enqueue(b"soon", delay=0.4)
    start = time.monotonic()
    (job,) = q.dequeue(5, lock_ttl=30, wait=3)
    elapsed = time.monotonic() - start
    assert job.payload == b"soon"
    assert 0.3 <= elapsed < 1.0
    claimed_ms = job.lock_expires_ms - 30_000
    assert 0 <= claimed_ms - job.due_ms <= 60, "claimed within 60 ms of its due time"


@pytest.mark.parametrize("shards", [1, 3])
def test_an_earlier_enqueue_wakes_the_waiter(env: Env, shards: int) -> None:
    name = unique_name()
    q = env.queue(name, shards=shards)
    q.enqueue(b"far", delay=60)
    timer = enqueue_later(env, name, 0.3, b"now", shards)
    start = time.monotonic()
    jobs = q.dequeue(5, wait=5)
    timer.join()
    assert [j.payload for j in jobs] == [b"now"]
    assert time.monotonic() - start < 1.5


def test_wait_ends_empty_after_the_wait(env: Env) -> None:
    q = env.queue()
    start = time.monotonic()
    assert q.dequeue(5, wait=0.3) == []
    assert 0.28 <= time.monotonic() - start < 1.0


def test_ack_and_dequeue_acks_before_waiting(env: Env) -> None:
    q = env.queue()
    q.enqueue_many([b"a", b"b"])
    jobs = q.dequeue(5)
    start = time.monotonic()
    acked, more = q.ack_and_dequeue(jobs, 5, wait=0.3)
    assert (acked, more) == (2, [])
    assert time.monotonic() - start >= 0.28
    assert q.stats().total == 0


def test_one_enqueue_wakes_one_of_two_waiters(redis_url: str) -> None:
    """No herd: BLPOP hands the one wake-up token to one waiter; the other keeps sleeping."""
    name = unique_name("herd")
    admin = redis.Redis.from_url(redis_url)
    results: list[list[delayq.Job]] = []

    def waiter() -> None:
        client = redis.Redis.from_url(redis_url)
        results.append(delayq.Queue(client, name).dequeue(5, wait=2.5))
        client.close()

    threads = [threading.Thread(target=waiter) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.3)  # both have made their first dequeue and are blocked
    before = admin.info("commandstats")["cmdstat_evalsha"]["calls"]
    delayq.Queue(admin, name).enqueue(b"one")
    time.sleep(0.5)
    after = admin.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert after - before == 2, "the enqueue, and one dequeue by the one waiter woken"
    for t in threads:
        t.join()
    assert sorted(len(r) for r in results) == [0, 1]
    admin.close()


@pytest.mark.parametrize("wait", [-1, float("nan"), 7200])
def test_bad_wait(env: Env, wait: float) -> None:
    with pytest.raises(delayq.InvalidArgument, match="wait"):
        env.queue().dequeue(1, wait=wait)
