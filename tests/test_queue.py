"""The behaviour suite: runs on fakeredis and a real redis-server, over the sync and the async queue."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis

import delayq
from delayq import Job, QueueStats, ScriptError
from delayq._replies import AckResult
from delayq._scripts import SCRIPTS
from delayq._steps import SCRIPT_LOADS
from delayq._validate import SENTINEL
from tests.helpers import Env, unique_name
from tests.snapshots import snapshot


def wait_for(env: Env, q: Any, count: int, *, batch: int = 100, lock_ttl: float = 30, timeout: float = 5) -> list[Job]:
    """Dequeue until ``count`` jobs came back (or fail after ``timeout`` s)."""
    got: list[Job] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        got += q.dequeue(batch, lock_ttl)
        assert time.monotonic() < deadline, f"only {len(got)} of {count} jobs came due in {timeout}s"
        time.sleep(0.005)
    return got


def test_nothing_before_due_everything_after(env: Env) -> None:
    q = env.queue()
    ids = q.enqueue_many([b"a", b"b", b"c"], delay=0.4)
    assert q.dequeue(10) == []
    assert q.stats() == QueueStats(ready=0, delayed=3, in_flight=0, dead=0)
    time.sleep(0.45)
    jobs = q.dequeue(10)
    assert sorted(j.id for j in jobs) == sorted(ids)
    assert {j.payload for j in jobs} == {b"a", b"b", b"c"}
    assert all(j.attempts == 1 for j in jobs)
    assert q.dequeue(10) == []


def test_delivered_in_due_order(env: Env) -> None:
    q = env.queue()
    q.enqueue(b"late", delay=0.15, id="late")
    q.enqueue(b"early", delay=0.05, id="early")
    q.enqueue(b"now", id="now")
    time.sleep(0.2)
    jobs = q.dequeue(10, lock_ttl=30)
    assert [j.id for j in jobs] == ["now", "early", "late"]
    claimed_ms = jobs[0].lock_expires_ms - 30_000
    assert jobs[0].due_ms + 40 <= jobs[1].due_ms <= jobs[2].due_ms - 50
    assert claimed_ms - 260 <= jobs[0].due_ms <= claimed_ms


def test_batch_limits_how_many_are_claimed(env: Env) -> None:
    q = env.queue()
    q.enqueue_many([str(i) for i in range(25)])
    first = q.dequeue(10)
    assert len(first) == 10
    assert len(q.dequeue(100)) == 15
    assert q.stats().in_flight == 25


def test_same_id_is_stored_once(env: Env) -> None:
    q = env.queue()
    assert q.enqueue(b"first", id="order-42", delay=1) == "order-42"
    assert q.enqueue(b"second", id="order-42") is None
    assert [(p.id, p.payload) for p in q.peek()] == [("order-42", b"first")]
    # also while in flight: the id is taken until the job leaves the queue
    q.reschedule("order-42", delay=0)
    (job,) = q.dequeue()
    assert q.enqueue(b"third", id="order-42") is None
    assert q.ack(job)
    assert q.enqueue(b"fourth", id="order-42") == "order-42"


def test_enqueue_many_ids_and_duplicates(env: Env) -> None:
    q = env.queue()
    q.enqueue(b"old", id="x")
    assert q.enqueue_many([b"1", b"2", b"3", b"4"], ids=["a", "x", "b", "a"]) == ["a", None, "b", None]
    assert {(p.id, p.payload) for p in q.peek()} == {("x", b"old"), ("a", b"1"), ("b", b"3")}
    assert q.enqueue_many([]) == []


def test_enqueue_many_above_one_call(env: Env) -> None:
    q = env.queue()
    ids = q.enqueue_many([f"p{i}" for i in range(2500)])
    assert len(set(ids)) == 2500 and None not in ids
    assert q.stats().ready == 2500
    assert q.purge() == 2500


def test_locked_job_is_hidden_until_the_lock_expires(env: Env) -> None:
    q = env.queue()
    q.enqueue(b"x", id="j")
    (job,) = q.dequeue(lock_ttl=0.3)
    assert job.attempts == 1
    assert q.dequeue(10) == []
    assert q.stats() == QueueStats(ready=0, delayed=0, in_flight=1, dead=0)
    time.sleep(0.35)
    assert q.stats() == QueueStats(ready=1, delayed=0, in_flight=0, dead=0)
    (again,) = q.dequeue()
    assert (again.id, again.payload, again.attempts) == ("j", b"x", 2)
    assert again.token != job.token
    assert again.due_ms == job.lock_expires_ms  # due again from the moment the lease expired


def test_stale_token_cannot_touch_the_new_holder(env: Env) -> None:
    q = env.queue()
    q.enqueue(b"x", id="j")
    (old,) = q.dequeue(lock_ttl=0.1)
    time.sleep(0.15)
    (new,) = q.dequeue(lock_ttl=30)
    assert q.ack(old) is False
    assert q.nack(old) is False
    assert q.extend(old) is False
    assert q.ack_many([old]) == 0
    assert q.stats().in_flight == 1
    assert q.ack(new) is True
    assert q.stats().total == 0


def test_ack_after_own_lock_expired_is_refused(env: Env) -> None:
    q = env.queue()
    q.enqueue(b"x")
    (job,) = q.dequeue(lock_ttl=0.05)
    time.sleep(0.08)
    assert q.ack(job) is False
    assert q.stats().ready == 1


def test_ack_deletes_everything(env: Env) -> None:
    q = env.queue()
    q.enqueue_many([b"a", b"b"])
    jobs = q.dequeue(10)
    assert q.ack_many(jobs + jobs) == 2
    assert q.ack(jobs[0]) is False
    assert snapshot(env.raw, q) == {}


def test_nack_makes_the_job_due_again_after_the_delay(env: Env) -> None:
    q = env.queue()
    q.enqueue(b"x", id="j")
    (job,) = q.dequeue()
    assert q.nack(job, delay=0.2) is True
    assert q.stats() == QueueStats(ready=0, delayed=1, in_flight=0, dead=0)
    assert q.dequeue() == []
    time.sleep(0.25)
    (again,) = q.dequeue()
    assert again.attempts == 2
    assert q.nack(job) is False


@pytest.mark.parametrize("shards", [1, 3])
def test_release_gives_a_job_back_with_its_attempt_undone(env: Env, shards: int) -> None:
    q = env.queue(max_attempts=2, shards=shards)
    q.enqueue(b"x", id="j")
    q.enqueue(b"later", id="later", delay=60)
    (first,) = q.dequeue(5)
    assert q.nack(first, error="first failure") is True
    (job,) = q.dequeue(5)
    assert job.attempts == 2  # the last attempt
    assert q.release(job) is True
    assert q.stats() == QueueStats(ready=1, delayed=1, in_flight=0, dead=0), "due now, never dead"
    assert [(p.id, p.attempts) for p in q.peek(1)] == [("j", 1)]
    assert q.release(job) is False, "the claim is over: its token holds nothing"
    assert q.ack(job) is False
    assert q.nack(job) is False
    assert q.extend(job) is False
    (again,) = q.dequeue(5)
    assert (again.id, again.attempts) == ("j", 2), "the same attempt once more"
    assert q.nack(again) is True  # a failure still counts: dead now
    (dead,) = q.dead_letters()
    assert (dead.id, dead.attempts, dead.error) == ("j", 2, "first failure"), "the error kept through the release"
    # a first claim released leaves the job as it was before, never claimed, and no key behind
    fresh_q = env.queue(shards=shards)
    fresh_q.enqueue(b"y", id="k")
    before = snapshot(env.raw, fresh_q)
    (fresh,) = fresh_q.dequeue(5)
    assert fresh_q.release(fresh) is True
    assert {key: value for key, value in snapshot(env.raw, fresh_q).items() if not key.endswith(b":due")} == {
        key: value for key, value in before.items() if not key.endswith(b":due")
    }
    assert [(p.id, p.attempts) for p in fresh_q.peek()] == [("k", 0)]


def test_release_refuses_a_lost_lock_and_changes_nothing(env: Env) -> None:
    q = env.queue()
    q.enqueue(b"x", id="j")
    (old,) = q.dequeue(lock_ttl=0.05)
    time.sleep(0.08)
    assert q.release(old) is False, "expired"
    (new,) = q.dequeue(lock_ttl=30)
    before = snapshot(env.raw, q)
    assert q.release(old) is False, "claimed again by another"
    assert snapshot(env.raw, q) == before
    # the reserved member that keeps lease and meta alive is no job, whatever a client sends
    with contextlib.suppress(delayq.InvalidArgument):
        assert q.release(Job(SENTINEL, b"", 1, "", 0, 0)) is False
    assert snapshot(env.raw, q) == before
    assert q.cancel("j")
    assert q.release(new) is False, "cancelled"
    assert snapshot(env.raw, q) == {}


def test_release_wakes_a_waiting_consumer(env: Env) -> None:
    name = unique_name()
    q = env.queue(name)
    q.enqueue(b"x", id="j")
    (job,) = q.dequeue(1, lock_ttl=60)
    timer = threading.Timer(0.3, lambda: delayq.Queue(env.raw, name).release(job))
    timer.start()
    # without a wake-up the waiter would sleep until the lock expires, past its wait
    jobs = q.dequeue(5, wait=10)
    timer.join()
    assert [(j.id, j.attempts) for j in jobs] == [("j", 1)]


def test_extend_keeps_the_job_locked(env: Env) -> None:
    q = env.queue()
    q.enqueue(b"x")
    (job,) = q.dequeue(lock_ttl=0.2)
    time.sleep(0.1)
    assert q.extend(job, lock_ttl=0.5) is True
    time.sleep(0.2)
    assert q.dequeue() == []
    assert q.ack(job) is True


def test_cancel_in_every_state(env: Env) -> None:
    q = env.queue(max_attempts=1)
    q.enqueue(b"d", id="dead")
    (dead,) = q.dequeue()
    assert q.nack(dead) is True  # attempts 1 == max_attempts: dead-lettered
    q.enqueue(b"f", id="flight")
    (held,) = q.dequeue()
    q.enqueue(b"r", id="ready")
    q.enqueue(b"x", id="delayed", delay=60)
    assert q.stats() == QueueStats(ready=1, delayed=1, in_flight=1, dead=1)
    for job_id in ("ready", "dead", "flight", "delayed"):
        assert q.cancel(job_id) is True
    assert q.cancel("ready") is False
    assert q.ack(held) is False
    assert snapshot(env.raw, q) == {}


def test_reschedule(env: Env) -> None:
    q = env.queue(max_attempts=1)
    q.enqueue(b"x", id="j", delay=60)
    assert q.reschedule("j", delay=0) is True
    (job,) = q.dequeue(lock_ttl=0.1)
    assert job.id == "j"
    assert q.reschedule("j", delay=0) is False  # in flight
    time.sleep(0.12)
    assert q.reschedule("j", delay=30) is True  # its lock expired: waiting again
    assert q.stats() == QueueStats(ready=0, delayed=1, in_flight=0, dead=0)
    assert q.reschedule("nope") is False
    at = datetime.now(timezone.utc) - timedelta(seconds=1)
    assert q.reschedule("j", at=at) is True
    assert q.dequeue() == []  # claimed once with max_attempts=1: dead-lettered, not delivered
    assert q.reschedule("j") is False  # dead
    assert q.stats().dead == 1


def test_enqueue_at_absolute_time(env: Env) -> None:
    q = env.queue()
    q.enqueue(b"past", at=datetime(2000, 1, 1, tzinfo=timezone.utc), id="past")
    q.enqueue(b"soon", at=datetime.now(timezone.utc) + timedelta(seconds=0.2), id="soon")
    assert [j.id for j in q.dequeue(10)] == ["past"]
    time.sleep(0.25)
    assert [j.id for j in q.dequeue(10)] == ["soon"]


def test_timedelta_delay(env: Env) -> None:
    q = env.queue()
    q.enqueue(b"x", delay=timedelta(minutes=5))
    q.enqueue(b"y", delay=timedelta(0))
    assert q.stats() == QueueStats(ready=1, delayed=1, in_flight=0, dead=0)
    late = q.peek()[1]
    assert late.payload == b"x"
    assert late.due_ms > time.time() * 1000 + 290_000


def test_peek_does_not_claim_and_skips_held_jobs(env: Env) -> None:
    q = env.queue()
    q.enqueue(b"b", id="b", delay=60)
    q.enqueue(b"a", id="a")
    q.enqueue(b"c", id="c", delay=120)
    assert [p.id for p in q.peek()] == ["a", "b", "c"]
    assert [p.id for p in q.peek(2)] == ["a", "b"]
    assert q.peek()[0].attempts == 0
    (job,) = q.dequeue()
    assert [p.id for p in q.peek()] == ["b", "c"]
    assert job.id == "a"
    assert q.stats() == QueueStats(ready=0, delayed=2, in_flight=1, dead=0)


def test_binary_payloads_round_trip(env: Env) -> None:
    q = env.queue()
    blob = bytes(range(256)) * 4 + b"\x00\xff\x00"
    q.enqueue(blob, id="bin")
    q.enqueue("héllo ☃", id="text")
    q.enqueue(bytearray(b"\x00ba"), id="ba")
    q.enqueue(memoryview(b"mv\x00"), id="mv")
    got = {j.id: j.payload for j in q.dequeue(10)}
    assert got == {"bin": blob, "text": "héllo ☃".encode(), "ba": b"\x00ba", "mv": b"mv\x00"}


def test_unicode_ids(env: Env) -> None:
    q = env.queue()
    assert q.enqueue(b"x", id="заказ-42 ☃ {x}") == "заказ-42 ☃ {x}"
    (job,) = q.dequeue()
    assert job.id == "заказ-42 ☃ {x}"
    assert q.ack(job)


def test_max_attempts_dead_letters_and_redrive(env: Env) -> None:
    q = env.queue(max_attempts=2)
    q.enqueue(b"x", id="j")
    for attempt in (1, 2):
        (job,) = q.dequeue(lock_ttl=0.05)
        assert job.attempts == attempt
        time.sleep(0.07)
    assert q.dequeue() == []
    assert q.stats() == QueueStats(ready=0, delayed=0, in_flight=0, dead=1)
    (dead,) = q.dead_letters()
    assert (dead.id, dead.payload, dead.attempts, dead.error) == ("j", b"x", 2, None)
    assert q.redrive() == 1
    (job,) = q.dequeue()
    assert job.attempts == 1
    assert q.nack(job, error="first failure") is True
    (job,) = q.dequeue()
    assert q.nack(job, error="boom: second failure") is True  # the second claim: dead at once
    assert q.stats().dead == 1
    (dead,) = q.dead_letters()
    assert dead.error == "boom: second failure"
    assert q.redrive(["j", "not-dead"]) == 1
    assert q.redrive(["j"]) == 0
    (job,) = q.dequeue()
    assert q.ack(job)
    assert snapshot(env.raw, q) == {}


def test_redrive_all_in_chunks(env: Env) -> None:
    q = env.queue(max_attempts=1)
    q.enqueue_many([b"x"] * 1200)
    first = q.dequeue(1000)
    second = q.dequeue(1000)
    assert (len(first), len(second)) == (1000, 200)
    assert sum(q.nack(j) for j in first[:3]) == 3
    assert q.ack_many(first[3:]) == 997
    assert q.ack_many(second) == 200
    assert q.stats().dead == 3
    assert len(q.dead_letters(2)) == 2
    assert q.redrive() == 3
    assert q.stats() == QueueStats(ready=3, delayed=0, in_flight=0, dead=0)


def test_ack_and_dequeue_in_one_call(env: Env) -> None:
    q = env.queue()
    q.enqueue_many([str(i) for i in range(30)])
    acked, jobs = q.ack_and_dequeue([], 10)
    assert (acked, len(jobs)) == (0, 10)
    seen = {j.id for j in jobs}
    while jobs:
        acked, nxt = q.ack_and_dequeue(jobs, 10)
        assert acked == len(jobs)
        seen |= {j.id for j in nxt}
        jobs = nxt
    assert len(seen) == 30
    assert q.stats().total == 0


@pytest.mark.parametrize("shards", [1, 3])
@pytest.mark.parametrize("via", ["ack_and_claim", "ack"])
def test_the_acks_say_which_ones_they_refused(env: Env, shards: int, via: str) -> None:
    """What the workers count on: the combined ack+claim call (and ack alone) tell which claims'
    acks were refused, by claim, even for two claims of one id."""
    q = env.queue(shards=shards)
    q.enqueue(b"a", id="a")
    q.enqueue_many([b"b", b"c"], ids=["b", "c"], delay=0.05)
    (old_a,) = q.dequeue(5, lock_ttl=0.05)
    time.sleep(0.08)
    jobs = {j.id: j for j in q.dequeue(5, lock_ttl=30)}
    new_a, b, c = jobs["a"], jobs["b"], jobs["c"]
    assert q.cancel("c")
    done = [old_a, b, new_a, c, b]  # a stale claim, two live ones (b twice), a cancelled one
    if via == "ack":
        assert q.ack_claims(done) == AckResult(2, [old_a, c], [], [c])
    else:
        result = q.ack_and_claim(done, 5, 30)
        assert (result.acked, result.refused, result.unapplied, result.jobs) == (2, [old_a, c], [], [])
        assert result.gone == [c], "the cancelled job is gone; the stale claim's job is not"
    assert q.stats().total == 0
    assert q.ack_claims([]) == AckResult(0, [], [], [])
    assert q.ack_and_claim([], 5, 30).refused == []


def test_purge_removes_every_job_and_key(env: Env) -> None:
    q = env.queue(max_attempts=1)
    q.enqueue_many([b"x"] * 2100)
    q.enqueue(b"later", delay=60)
    jobs = q.dequeue(5)
    q.nack(jobs[0], error="e")
    assert q.purge() == 2101
    assert q.stats().total == 0
    assert snapshot(env.raw, q) == {}
    assert q.purge() == 0
    assert q.ack(jobs[1]) is False


def test_script_flush_between_calls(env: Env) -> None:
    q = env.queue()
    q.enqueue(b"x")
    env.raw.script_flush()
    (job,) = q.dequeue()
    env.raw.script_flush()
    assert q.ack(job)
    env.raw.script_flush()
    assert q.stats().total == 0


def test_script_flush_between_load_and_call(env: Env) -> None:
    """A SCRIPT FLUSH can land between the reload that NOSCRIPT triggers and the retried EVALSHA:
    the call reloads again, SCRIPT_LOADS times at most, then fails with a typed error."""
    q = env.queue()
    client = q._queue._client if env.api == "async" else q._client
    real_load = client.script_load
    flushes, loads = [0], [0]

    def flushed() -> None:
        loads[0] += 1
        if flushes[0] > 0:
            flushes[0] -= 1
            env.raw.script_flush()

    async def async_load(source: str) -> Any:
        sha = await real_load(source)
        flushed()
        return sha

    def sync_load(source: str) -> Any:
        sha = real_load(source)
        flushed()
        return sha

    client.script_load = async_load if env.api == "async" else sync_load
    flushes[0] = SCRIPT_LOADS - 1
    env.raw.script_flush()
    assert q.enqueue(b"x", id="x") == "x"
    assert (flushes[0], loads[0]) == (0, SCRIPT_LOADS)
    flushes[0], loads[0] = 10**6, 0
    env.raw.script_flush()
    with pytest.raises(ScriptError, match="NOSCRIPT"):
        q.stats()
    assert loads[0] == SCRIPT_LOADS
    flushes[0] = 0
    assert q.stats().ready == 1


def test_script_flush_storm(redis_url: str) -> None:
    """SCRIPT FLUSH every 2 ms from another connection while a queue works: every call gets through.
    (Measured here: one call in ~20 needs a second load, none a third; one reload per call, as
    before, failed this test on every run.)"""
    client = redis.Redis.from_url(redis_url)
    flusher = redis.Redis.from_url(redis_url)
    q = delayq.Queue(client, unique_name("storm"))
    stop = threading.Event()

    def storm() -> None:
        while not stop.is_set():
            flusher.script_flush()
            stop.wait(0.002)

    thread = threading.Thread(target=storm)
    thread.start()
    try:
        for i in range(50):
            assert q.enqueue(b"x", id=str(i)) == str(i)
            (job,) = q.dequeue()
            assert q.ack(job)
    finally:
        stop.set()
        thread.join()
    assert q.stats().total == 0
    client.close()
    flusher.close()


def test_queues_are_isolated(env: Env) -> None:
    a, b = env.queue(), env.queue()
    a.enqueue(b"x", id="same")
    b.enqueue(b"y", id="same")
    (job,) = a.dequeue()
    assert job.payload == b"x"
    assert b.stats().ready == 1
    assert env.queue(a.name, prefix="other").stats().total == 0


def test_key_collision_is_a_typed_error(env: Env) -> None:
    q = env.queue()
    env.raw.set(f"delayq:{{{q._core.name}}}:due", "not a zset")
    with pytest.raises(ScriptError, match="enqueue"):
        q.enqueue(b"x")
    env.raw.delete(f"delayq:{{{q._core.name}}}:due")


def test_dead_lettering_never_crowds_due_jobs_out_of_a_batch(env: Env) -> None:
    """Jobs over max_attempts ahead of due ones (expired leases, and jobs left in `due` by a
    reschedule or by a queue with a higher max_attempts) are dead-lettered on the way: a batch
    still takes every claimable job up to its size."""
    q = env.queue(max_attempts=1)
    free = env.queue(q.name)  # the same queue, without max_attempts
    now = [1_800_000_000_000]
    q._core.clock = free._core.clock = lambda: now[0]
    q.enqueue_many([b"a", b"b", b"c"], ids=["a", "b", "c"])
    assert len(q.dequeue(3, lock_ttl=1)) == 3
    now[0] += 5000  # a, b and c lapsed (claimed once of 1) ahead of d, e and f
    q.enqueue_many([b"d", b"e", b"f"], ids=["d", "e", "f"])
    assert [j.id for j in q.dequeue(3)] == ["d", "e", "f"]
    assert [d.id for d in q.dead_letters()] == ["a", "b", "c"]
    # over the limit in `due` itself: a lapsed lease rescheduled, a job nacked by `free`
    free.enqueue_many([b"g", b"h"], ids=["g", "h"])
    assert [j.id for j in free.dequeue(1, lock_ttl=1)] == ["g"]
    (h,) = free.dequeue(1, lock_ttl=60)
    now[0] += 5000
    assert q.reschedule("g", delay=0) is True
    assert free.nack(h) is True
    now[0] += 1
    q.enqueue(b"i", id="i")
    assert [j.id for j in q.dequeue(1)] == ["i"]
    assert [d.id for d in q.dead_letters()] == ["a", "b", "c", "g", "h"]
    assert q.stats() == QueueStats(ready=0, delayed=0, in_flight=4, dead=5)


def test_dead_lettering_per_dequeue_is_capped(env: Env) -> None:
    """dequeue.lua states its bound: it passes over at most DEAD_CAP jobs per call. A batch cut
    short by it says "look again now", so a long-poll goes on to claim the due job in one call."""
    cap = int(re.findall(r"local DEAD_CAP = (\d+)", SCRIPTS["dequeue"].source)[0])
    q = env.queue(max_attempts=1)
    free = env.queue(q.name)  # the same queue, without max_attempts
    now = [1_800_000_000_000]
    q._core.clock = free._core.clock = lambda: now[0]
    over = 2 * cap + 5
    free.enqueue_many([b"x"] * over)
    while free.dequeue(1000, lock_ttl=1):
        pass
    now[0] += 2000
    # fillers due before the lapsed leases: `free` sweeps the leases back to `due` and claims the fillers
    fillers = free.enqueue_many([b"f"] * over, at=datetime.fromtimestamp((now[0] - 1500) / 1000, timezone.utc))
    left = len(fillers)
    while left:
        jobs = free.dequeue(min(left, 1000))
        assert jobs and {j.payload for j in jobs} == {b"f"}
        assert free.ack_many(jobs) == len(jobs)
        left -= len(jobs)
    assert q.stats() == QueueStats(ready=over, delayed=0, in_flight=0, dead=0)  # each claimed once, of 1
    q.enqueue(b"good", id="good")
    assert q.dequeue(1) == []
    assert q.stats().dead == cap
    (job,) = q.dequeue(1, wait=5)
    assert job.id == "good"
    assert q.stats() == QueueStats(ready=0, delayed=0, in_flight=1, dead=over)
    assert q.purge() == over + 1


def test_equal_due_times_are_ordered_by_id(env: Env) -> None:
    """peek merges waiting jobs and lapsed leases; at one due time it orders them by id (as bytes,
    as a sorted set does), whichever set they are in."""
    q = env.queue()
    now = [1_800_000_000_000]
    q._core.clock = lambda: now[0]
    q.enqueue_many([b"1", b"2", b"3"], ids=["a", "m", "é"])
    assert len(q.dequeue(3, lock_ttl=1)) == 3  # their leases lapse at now + 1000
    q.enqueue_many([b"4", b"5", b"6"], ids=["b", "z", "ü"], delay=1)  # due at now + 1000 too
    now[0] += 5000
    order = ["a", "b", "m", "z", "é", "ü"]
    assert [p.id for p in q.peek()] == order
    assert [p.id for p in q.peek(3)] == order[:3]
    assert [j.id for j in q.dequeue(6)] == order


@pytest.mark.parametrize("via", ["ack_and_claim", "ack"])
def test_a_claim_acked_in_parts_or_with_strangers_loses_no_job(env: Env, via: str) -> None:
    """The acks of one claim's jobs are checked together (read by the claim's lease score): acking
    part of a claim leaves the rest held and ackable; a claim's pairs padded with a job of another
    claim, or with one job twice under another attempt count, ack only what the claim holds."""
    q = env.queue()
    q.enqueue_many([b"%d" % i for i in range(6)], ids=[f"j{i}" for i in range(6)])
    first = q.dequeue(4, lock_ttl=30)
    other = q.dequeue(2, lock_ttl=30)
    twin = Job(first[0].id, first[0].payload, 2, "2:" + first[0].token.split(":")[1], first[0].lock_expires_ms, first[0].due_ms)
    stranger = Job(other[0].id, other[0].payload, 1, first[0].token, other[0].lock_expires_ms, other[0].due_ms)

    def ack(jobs: list[Job]) -> tuple[int, list[Job]]:
        if via == "ack":
            result = q.ack_claims(jobs)
            return result.acked, result.refused
        claimed = q.ack_and_claim(jobs, 1, 30)
        assert claimed.jobs == []
        return claimed.acked, claimed.refused

    assert ack(first[:2]) == (2, [])  # part of a claim
    # the rest of it, padded: a stranger under this claim's token, and the first job again
    assert ack([first[2], stranger, first[3], twin]) == (2, [stranger, twin])
    assert q.stats().in_flight == 2, "the other claim's jobs are still held"
    assert ack(other) == (2, [])
    assert q.stats().total == 0
