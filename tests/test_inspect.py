"""Looking into a queue and steering it: get, list_jobs, stats' lag, pause and resume, find_queues.

Behaviour tests run on fakeredis, a real server and a real cluster, sync and async (the ``env`` fixture)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio

import delayq
import delayq.aio
from delayq import JobInfo, QueueRef, QueueStats
from delayq._discover import queue_pattern, queues_from_keys
from delayq._shards import shard_tags
from tests.helpers import Env, unique_name
from tests.snapshots import snapshot


def states(q: Any, ids: list[str]) -> dict[str, str | None]:
    found = {i: q.get(i) for i in ids}
    return {i: (None if info is None else info.state) for i, info in found.items()}


@pytest.mark.parametrize("shards", [1, 3])
def test_get_shows_a_job_in_every_state(env: Env, shards: int) -> None:
    q = env.queue(max_attempts=1, shards=shards)
    q.enqueue_many([b"f", b"x"], ids=["flight", "dead"])
    held = {j.id: j for j in q.dequeue(10, lock_ttl=30)}
    assert q.nack(held["dead"], error="boom: it failed") is True
    q.enqueue(b"r", id="ready")
    q.enqueue(b"<d>", id="delayed", delay=60)
    assert states(q, ["ready", "delayed", "flight", "dead", "nope"]) == {
        "ready": "ready",
        "delayed": "delayed",
        "flight": "in_flight",
        "dead": "dead",
        "nope": None,
    }
    info = q.get("delayed")
    assert isinstance(info, JobInfo)
    assert (info.state, info.payload, info.attempts, info.error, info.payload_size) == ("delayed", b"<d>", 0, None, 3)
    assert info.at_ms - info.now_ms > 59_000 and info.due_ms == info.at_ms and info.died_ms is None
    flight = q.get("flight")
    assert flight is not None and flight.state == "in_flight" and flight.attempts == 1
    assert flight.lock_expires_ms == held["flight"].lock_expires_ms
    dead = q.get("dead")
    assert dead is not None and (dead.state, dead.error, dead.attempts) == ("dead", "boom: it failed", 1)
    assert dead.died_ms is not None and abs(dead.died_ms - dead.now_ms) < 5000
    assert q.get("nope") is None


@pytest.mark.parametrize("shards", [1, 3])
def test_get_sends_only_a_preview_of_a_large_payload(env: Env, shards: int) -> None:
    q = env.queue(shards=shards)
    big = bytes(range(256)) * 4096  # 1 MiB
    q.enqueue(big, id="big")
    q.enqueue(b"small", id="small")
    cut = q.get("big", preview=1000)
    assert cut is not None and cut.payload == big[:1000] and cut.payload_size == len(big) and cut.truncated
    whole = q.get("big")
    assert whole is not None and whole.payload == big and not whole.truncated
    small = q.get("small", preview=1000)
    assert small is not None and small.payload == b"small" and small.payload_size == 5 and not small.truncated
    empty = q.get("small", preview=0)
    assert empty is not None and empty.payload == b"" and empty.payload_size == 5
    for bad, error in ((-1, delayq.InvalidArgument), (1.5, delayq.InvalidType), (True, delayq.InvalidType)):
        with pytest.raises(error, match="preview"):
            q.get("big", preview=bad)


def test_get_ready_and_an_expired_lock(env: Env) -> None:
    q = env.queue()
    q.enqueue(b"\x00\xffbin", id="j")
    waiting = q.get("j")
    assert waiting is not None and waiting.state == "ready" and waiting.payload == b"\x00\xffbin"
    (job,) = q.dequeue(lock_ttl=0.1)
    assert q.nack(job, delay=0, error="first") is True
    (job,) = q.dequeue(lock_ttl=0.1)
    time.sleep(0.15)
    info = q.get("j")
    assert info is not None
    assert (info.state, info.attempts, info.error, info.at_ms) == ("ready", 2, "first", job.lock_expires_ms)
    assert q.cancel("j")
    assert q.get("j") is None


@pytest.mark.parametrize("shards", [1, 3])
def test_list_jobs_pages_every_state(env: Env, shards: int) -> None:
    q = env.queue(max_attempts=1, shards=shards)
    q.enqueue_many([b"f"] * 6, ids=[f"f{i}" for i in range(6)])
    claimed = q.dequeue(6, lock_ttl=60)
    q.enqueue_many([f"r{i}".encode() for i in range(7)], ids=[f"r{i}" for i in range(7)])
    q.enqueue_many([b"d" * 300] * 5, ids=[f"d{i}" for i in range(5)], delay=60)
    for job in claimed[:2]:
        q.nack(job, error=f"err {job.id}")  # max_attempts=1: dead
    seen: dict[str, list[str]] = {}
    for state, expect in (("ready", 7), ("delayed", 5), ("in_flight", 4), ("dead", 2)):
        ids: list[str] = []
        offset = 0
        while True:
            page = q.list_jobs(state, offset=offset, limit=3)
            assert (page.state, page.total, page.offset) == (state, expect, offset)
            assert all(job.state == state for job in page.jobs)
            if not page.jobs:
                break
            ids += [job.id for job in page.jobs]
            offset += len(page.jobs)
        assert len(ids) == len(set(ids)) == expect, (state, ids)
        seen[state] = ids
    assert sorted(seen["dead"]) == sorted(j.id for j in claimed[:2])
    first = q.list_jobs("delayed", limit=1, preview=10).jobs[0]
    assert (first.payload, first.payload_size, first.truncated) == (b"d" * 10, 300, True)
    dead = q.list_jobs("dead").jobs
    assert {d.error for d in dead} == {f"err {j.id}" for j in claimed[:2]}
    assert q.list_jobs("ready", limit=0).jobs == [] and q.list_jobs("ready", limit=0).total == 7
    assert q.list_jobs("ready", offset=100).jobs == []


def test_list_jobs_shows_expired_locks_as_ready_first(env: Env) -> None:
    q = env.queue()
    q.enqueue(b"a", id="a", at=datetime(2000, 1, 1, tzinfo=timezone.utc))
    (job,) = q.dequeue(lock_ttl=0.05)
    q.enqueue(b"b", id="b")
    time.sleep(0.08)
    page = q.list_jobs("ready")
    assert [(j.id, j.attempts) for j in page.jobs] == [("a", 1), ("b", 0)]
    assert page.jobs[0].at_ms == job.lock_expires_ms
    assert q.list_jobs("in_flight").total == 0


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("flying",), delayq.InvalidArgument),
        ((3,), delayq.InvalidType),
        (("ready", -1), delayq.InvalidArgument),
        (("ready", 0, 1001), delayq.InvalidArgument),
        (("ready", 0, True), delayq.InvalidType),
    ],
)
def test_list_jobs_refuses_bad_arguments(args: tuple[Any, ...], error: type[Exception]) -> None:
    q = delayq.Queue(fakeredis.FakeRedis(), "q")
    names = ("state", "offset", "limit")
    with pytest.raises(error, match=names[len(args) - 1]):
        q.list_jobs(*args[:1], **dict(zip(names[1:], args[1:], strict=False)))


def test_stats_gives_the_age_of_the_oldest_ready_job(env: Env) -> None:
    q = env.queue()
    assert q.stats().oldest_ready_age == 0.0
    q.enqueue(b"later", delay=60)
    assert q.stats().oldest_ready_age == 0.0
    q.enqueue(b"now")
    time.sleep(0.3)
    age = q.stats().oldest_ready_age
    assert 0.29 <= age < 5
    q.enqueue(b"old", at=datetime.now(timezone.utc) - timedelta(hours=1))
    assert 3599 < q.stats().oldest_ready_age < 3700
    # a job whose lock expired is ready since its lock expired
    jobs = q.dequeue(2, lock_ttl=0.1)
    assert len(jobs) == 2 and q.stats().oldest_ready_age == 0.0
    time.sleep(0.25)
    assert 0.14 <= q.stats().oldest_ready_age < 5
    assert q.stats() == QueueStats(ready=2, delayed=1, in_flight=0, dead=0)  # the age is not compared


@pytest.mark.parametrize("shards", [1, 3])
def test_pause_stops_claims_and_nothing_else(env: Env, shards: int) -> None:
    q = env.queue(shards=shards)
    q.enqueue_many([b"a", b"b"], ids=["a", "b"])
    (held,) = q.dequeue(1)
    assert q.pause() is True
    assert q.pause() is False
    assert q.stats().paused is True
    assert q.enqueue(b"c", id="c") == "c"
    assert q.dequeue(10) == []
    acked, jobs = q.ack_and_dequeue([held], 10)
    assert (acked, jobs) == (1, [])
    assert q.stats() == QueueStats(ready=2, delayed=0, in_flight=0, dead=0, paused=True)
    assert q.resume() is True
    assert q.resume() is False
    assert q.stats().paused is False
    assert sorted(j.id for j in q.dequeue(10)) == sorted({"a", "b", "c"} - {held.id})


def test_a_paused_queue_keeps_no_idle_keys_and_survives_purge(env: Env) -> None:
    q = env.queue()
    q.enqueue(b"x")
    jobs = q.dequeue(1)
    q.pause()
    assert q.ack_and_dequeue(jobs, 1) == (1, [])
    core = q._core
    assert set(snapshot(env.raw, q)) == {core.keys["paused"].encode()}
    q.enqueue_many([b"y"] * 3)
    assert q.purge() == 3
    assert q.stats() == QueueStats(0, 0, 0, 0, paused=True), "a pause is the operator's, not the jobs'"
    q.resume()
    assert snapshot(env.raw, q) == {}


def test_a_long_poll_on_a_paused_queue_claims_soon_after_resume(env: Env) -> None:
    if env.api == "async":
        pytest.skip("the async queue runs on one event loop here, which cannot resume meanwhile; the sync run covers the script")
    q = env.queue()
    q.enqueue(b"x", id="x")
    q.pause()
    started = time.monotonic()
    assert q.dequeue(1, wait=0.4) == []
    assert time.monotonic() - started >= 0.35, "it waited, without claiming"
    resumer = threading.Timer(0.3, env.queue(q.name).resume)
    resumer.start()
    started = time.monotonic()
    (job,) = q.dequeue(1, wait=10)
    waited = time.monotonic() - started
    resumer.join()
    assert job.id == "x" and 0.25 <= waited < 1.6, waited


# ---------------------------------------------------------------- finding queues


def test_queues_from_keys_groups_shards_and_ignores_strangers() -> None:
    tags = shard_tags("orders", 4)
    keys = [f"app:{{{t}}}:shard-{i}-of-4:due" for i, t in enumerate(tags[:3])] + [f"app:{{{tags[0]}}}:shard-0-of-4:payload"]
    keys += ["app:{emails}:payload", "app:{emails}:dead", "app:{idle}:paused", "app:{orders}:workers"]
    keys += ["app:{x}:unknownrole", "other:{y}:due", "app:nobrace:due", "app:{a:1:0}:due", "app:{b:1:0}:shard-0-of-2:due"]
    refs = queues_from_keys([k.encode() for k in keys], "app")
    # each shard key names its queue and shard count: three of four shards still make one queue
    assert QueueRef("orders", 4) in refs
    assert QueueRef("emails") in refs and QueueRef("idle") in refs and QueueRef("a:1:0") in refs
    # a marker that disagrees with its tag (index 0 in a tag of index 1) is nobody's
    assert QueueRef("x") not in refs and QueueRef("y") not in refs and all(r.name != "b" for r in refs)
    assert QueueRef("orders") not in refs  # the sharded queue's heartbeats are not a queue of their own
    assert queue_pattern("a*b?[c]\\") == "a\\*b\\?\\[c\\]\\\\:{*}:*"


@pytest.mark.parametrize("shards", [1, 3])
def test_find_queues_on_every_node(env: Env, shards: int) -> None:
    prefix = unique_name("pfx")
    names = [unique_name("found") for _ in range(4)]
    queues = [env.queue(n, prefix=prefix, shards=shards, max_attempts=1) for n in names]
    many = [b"x"] * 30
    queues[0].enqueue_many(many)
    queues[1].enqueue_many(many, delay=60)
    queues[2].enqueue_many(many)
    for job in queues[2].dequeue(30):
        queues[2].nack(job, error="e")  # dead only
    queues[3].pause()  # nothing but the pause
    env.queue(unique_name("other"), prefix=prefix + "-other").enqueue(b"x")
    found = delayq.find_queues(env.raw, prefix=prefix, count=10)
    assert found == sorted(QueueRef(n, shards) for n in names)
    queues[3].resume()
    queues[0].purge()
    assert [r.name for r in delayq.find_queues(env.raw, prefix=prefix)] == sorted(names[1:3])  # by name: "-100" < "-99"


def test_find_queues_skips_keys_that_only_look_like_a_queues(raw_client: Any) -> None:
    prefix = unique_name("strange")
    delayq.Queue(raw_client, "real", prefix=prefix).enqueue(b"x")
    delayq.Queue(raw_client, "sharded", prefix=prefix, shards=2).enqueue_many([b"y"] * 4)
    raw_client.set(f"{prefix}:{{session}}:meta", "another program's string")  # a queue's meta is a hash
    raw_client.hset(f"{prefix}:{{cache}}:due", "k", "v")  # a queue's due set is a zset
    raw_client.zadd(f"{prefix}:{{{'n' * 201}}}:due", {"a": 1})  # no queue name is that long
    raw_client.zadd(f"{prefix}:{{a}}b}}:due".encode(), {"a": 1})  # nor holds a brace
    raw_client.zadd(f"{prefix}:{{".encode() + b"\xff\xfe}:due", {"a": 1})  # nor is not UTF-8
    found = delayq.find_queues(raw_client, prefix=prefix)
    assert found == [QueueRef("real"), QueueRef("sharded", 2)]


def test_find_queues_async(redis_url: str) -> None:
    prefix = unique_name("apfx")

    async def scenario() -> list[QueueRef]:
        client = redis.asyncio.Redis.from_url(redis_url)
        q = delayq.aio.Queue(client, "one", prefix=prefix)
        await q.enqueue(b"x")
        found = await delayq.aio.find_queues(client, prefix=prefix)
        await q.purge()
        await client.aclose()
        return found

    assert asyncio.run(scenario()) == [QueueRef("one")]


def test_find_queues_refuses_a_bad_prefix() -> None:
    with pytest.raises(delayq.InvalidArgument, match="prefix"):
        delayq.find_queues(fakeredis.FakeRedis(), prefix="a{b")
