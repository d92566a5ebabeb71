"""A queue spread over several hash tags: same API, fakeredis and real server, sync and async."""

from __future__ import annotations

import inspect
import itertools
import time
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

import delayq
from delayq import QueueStats
from delayq._base import make_core
from delayq._shards import shard_tags
from delayq._steps import Call, Step
from delayq._validate import MAX_NAME_LENGTH
from tests.helpers import Env, unique_name
from tests.snapshots import snapshot


def shard_index(job_id: str, shards: int) -> int:
    return zlib.crc32(job_id.encode()) % shards


def test_tags_spread_over_the_slot_space() -> None:
    for shards in (2, 3, 6, 16):
        tags = shard_tags("emails", shards)
        assert len(set(tags)) == shards
        for i, tag in enumerate(tags):
            assert i * 16384 // shards <= key_slot(tag.encode()) < (i + 1) * 16384 // shards
    assert shard_tags("emails", 3) == shard_tags("emails", 3)  # stable: every client agrees


def test_jobs_spread_and_all_come_back(env: Env) -> None:
    q = env.queue(shards=3)
    ids = q.enqueue_many([f"p{i}".encode() for i in range(300)])
    assert len(set(ids)) == 300
    per_shard = Counter(shard_index(i, 3) for i in ids)
    assert len(per_shard) == 3 and min(per_shard.values()) > 50
    assert q.stats() == QueueStats(ready=300, delayed=0, in_flight=0, dead=0)
    got: list[str] = []
    while jobs := q.dequeue(50):
        assert len(jobs) <= 50
        got += [j.id for j in jobs]
        assert q.ack_many(jobs) == len(jobs)
    assert sorted(got) == sorted(ids)
    assert snapshot(env.raw, q) == {}


def test_no_shard_starves_and_batches_are_full(env: Env) -> None:
    q = env.queue(shards=4)
    ids = q.enqueue_many([b"x"] * 800)
    assert min(Counter(shard_index(i, 4) for i in ids).values()) >= 160
    counts: Counter[int] = Counter()
    for _ in range(4):  # one rotation: every shard comes first once
        jobs = q.dequeue(40)
        assert len(jobs) == 40
        counts.update(shard_index(j.id, 4) for j in jobs)
    assert sorted(counts.values()) == [40, 40, 40, 40]
    # few jobs, unevenly spread: a batch still takes every due job there is
    q2 = env.queue(shards=3)
    ids2 = q2.enqueue_many([b"y"] * 7)
    assert sorted(j.id for j in q2.dequeue(7)) == sorted(ids2)


def test_same_id_once_and_routed_operations(env: Env) -> None:
    q = env.queue(shards=3, max_attempts=2)
    assert q.enqueue(b"a", id="order-42") == "order-42"
    assert q.enqueue(b"b", id="order-42") is None
    assert q.enqueue_many([b"c", b"d"], ids=["order-42", "order-43"]) == [None, "order-43"]
    assert q.reschedule("order-43", delay=60) is True
    (job,) = q.dequeue(10, lock_ttl=0.2)
    assert job.id == "order-42"
    assert q.extend(job, lock_ttl=0.5) is True
    time.sleep(0.3)
    assert q.dequeue(10) == []  # still locked by the extend
    assert q.nack(job, error="boom") is True
    (again,) = q.dequeue(10)
    assert again.attempts == 2
    assert q.nack(again, error="boom twice") is True  # second claim of max 2: dead
    assert [(d.id, d.error) for d in q.dead_letters()] == [("order-42", "boom twice")]
    assert q.stats() == QueueStats(ready=0, delayed=1, in_flight=0, dead=1)
    assert [p.id for p in q.peek()] == ["order-43"]
    assert q.redrive(["order-42"]) == 1
    assert q.cancel("order-43") is True
    (job,) = q.dequeue(5)
    acked, more = q.ack_and_dequeue([job], 5)
    assert (acked, more) == (1, [])
    assert snapshot(env.raw, q) == {}


def test_peek_dead_letters_and_purge_aggregate(env: Env) -> None:
    q = env.queue(shards=3, max_attempts=1)
    ids = q.enqueue_many([b"x"] * 30, delay=60)
    q.enqueue_many([b"soon"] * 6, delay=0)
    peeked = q.peek(10)
    assert len(peeked) == 10
    assert [p.due_ms for p in peeked] == sorted(p.due_ms for p in peeked)
    assert [p.payload for p in peeked[:6]] == [b"soon"] * 6
    jobs = q.dequeue(6)
    assert len(jobs) == 6
    for job in jobs:
        assert q.nack(job) is True  # max_attempts=1: dead
    dead = q.dead_letters(4)
    assert len(dead) == 4 and [d.died_ms for d in dead] == sorted(d.died_ms for d in dead)
    assert len(q.dead_letters()) == 6
    assert q.purge() == 36
    assert snapshot(env.raw, q) == {}
    assert len(set(ids)) == 30


def test_ack_and_dequeue_loop_over_shards(env: Env) -> None:
    q = env.queue(shards=3)
    q.enqueue_many([b"x"] * 120)
    done: list[delayq.Job] = []
    seen = 0
    while True:
        acked, jobs = q.ack_and_dequeue(done, 25)
        assert acked == len(done)
        if not jobs:
            break
        seen += len(jobs)
        done = jobs
    assert seen == 120
    assert q.stats().total == 0


@pytest.mark.parametrize(
    ("shards", "error"), [(0, delayq.InvalidArgument), (257, delayq.InvalidArgument), ("3", delayq.InvalidType)]
)
def test_bad_shards(env: Env, shards: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="shards"):
        env.queue(shards=shards)


def queue_keys(prefix: str, name: str, shards: int) -> set[str]:
    """Every key the queue (prefix, name, shards) can ever touch."""
    core = make_core(name, prefix, None, shards)
    return {key for c in getattr(core, "shards", [core]) for key in c.keys.values()}


def test_a_sharded_queue_shares_no_key_with_a_plain_queue_named_like_its_shards(env: Env) -> None:
    """Shard tags are "name:i:k" and a plain name may be just that: it must still be another queue."""
    q = env.queue(shards=2)
    q.enqueue_many([b"x"] * 20)
    for tag in shard_tags(q.name, 2):
        plain = env.queue(tag)
        assert plain.stats().total == 0
        assert plain.enqueue(b"plain", id="p") == "p"
        assert plain.purge() == 1
    assert q.stats() == QueueStats(ready=20, delayed=0, in_flight=0, dead=0)
    assert q.purge() == 20
    assert snapshot(env.raw, q) == {}


def test_shard_counts_of_one_name_share_no_key(env: Env) -> None:
    """shards=2 and shards=3 of one name can pick the same tag for shard 0: still two queues."""
    name = next(n for n in (unique_name(f"count{k}-") for k in range(100)) if shard_tags(n, 2)[0] == shard_tags(n, 3)[0])
    two, three = env.queue(name, shards=2), env.queue(name, shards=3)
    two.enqueue_many([b"x"] * 30)
    assert three.stats().total == 0 and three.peek() == []
    assert three.purge() == 0
    assert two.stats().ready == 30
    assert len(two.dequeue(30)) == 30
    assert two.purge() == 30


# names built to look like each other's shard tags: colons, digits, tag-like tails
PIECES = st.sampled_from(["a", "q", "emails", "0", "1", "2", "10", ":", ":0", ":1", "::", ":0:0", ":1:3", "-of-", "shard", "due"])
NAMES = st.lists(PIECES, min_size=1, max_size=6).map("".join)
PREFIXES = st.sampled_from(["delayq", "delayq:", "d", "d:0", "a:b:"]) | NAMES
SHARDS = st.sampled_from([1, 1, 2, 2, 3, 4, 16]) | st.integers(1, 40)


@st.composite
def neighbouring_queues(draw: st.DrawFn) -> tuple[tuple[str, str, int], tuple[str, str, int]]:
    """Two (prefix, name, shards) triples, the second built from the first to meet it if anything can."""
    prefix, name, shards = draw(PREFIXES), draw(NAMES), draw(SHARDS)
    tags = shard_tags(name, shards) if shards > 1 else [name]
    lookalikes = [
        name,
        *tags,
        *(f"{t}:{draw(st.sampled_from(['0', '1', 'shard-0-of-2', 'shard-1-of-3']))}" for t in tags[:3]),
        name.rsplit(":", 1)[0],
        f"{name}:{draw(st.integers(0, 3))}:{draw(st.integers(0, 9))}",
    ]
    other_name = draw(st.sampled_from(lookalikes) | NAMES)
    other_prefix = draw(st.sampled_from([prefix, f"{prefix}:", prefix.rstrip(":") or prefix]) | PREFIXES)
    other_shards = draw(st.sampled_from([shards, 1, 2, 3, shards + 1, max(1, shards - 1)]) | SHARDS)
    return (prefix, name, shards), (other_prefix, other_name, other_shards)


@settings(max_examples=400, deadline=None)
@given(pair=neighbouring_queues())
def test_no_two_queues_share_a_key(pair: tuple[tuple[str, str, int], tuple[str, str, int]]) -> None:
    a, b = pair
    names_ok = all(0 < len(q[1]) <= MAX_NAME_LENGTH for q in pair)
    if a == b or not names_ok:
        return
    keys_a, keys_b = queue_keys(*a), queue_keys(*b)
    roles = len(make_core("q", "p", None, 1).keys)  # type: ignore[union-attr]
    assert len(keys_a) == roles * a[2] and len(keys_b) == roles * b[2]
    assert not keys_a & keys_b, (a, b, sorted(keys_a & keys_b)[:3])


def test_equal_due_times_are_ordered_by_id_across_shards(env: Env) -> None:
    q = env.queue(shards=3)
    dying = env.queue(q.name, shards=3, max_attempts=1)  # the same queue: nack dead-letters
    now = [1_800_000_000_000]
    q._core.clock = dying._core.clock = lambda: now[0]
    early = [f"early-{i:02d}" for i in range(12)]
    q.enqueue_many([b"e"] * 12, ids=early)
    assert len(q.dequeue(12, lock_ttl=1)) == 12  # leases lapse at now + 1000
    late = [f"late-{i:02d}" for i in range(12)]
    q.enqueue_many([b"l"] * 12, ids=late, delay=1)  # due at now + 1000 too
    assert len({shard_index(i, 3) for i in early}) == len({shard_index(i, 3) for i in late}) == 3
    now[0] += 5000
    order = sorted(early + late)
    assert [p.id for p in q.peek(100)] == order
    assert [p.id for p in q.peek(5)] == order[:5]
    jobs = q.dequeue(20)
    assert len(jobs) == 20
    # all 24 are due at one time (the lapsed ones at their old expiry): the batch is in id order
    assert [(j.due_ms, j.id) for j in jobs] == sorted((j.due_ms, j.id) for j in jobs)
    for job in jobs:
        assert dying.nack(job)  # all die at the same time
    assert [d.id for d in q.dead_letters()] == sorted(j.id for j in jobs)


def fail_calls(q: Any, fails: Callable[[Call], bool], *, after: bool = False) -> list[Call]:
    """From now on, the queue's script calls for which ``fails(call)`` is true raise ConnectionError
    (as when one shard's master is down), or with ``after``, run and then raise (as when the reply
    is lost); returns the list of calls that failed."""
    target = getattr(q, "_queue", q)  # the async queue under the sync adapter
    execute = target._execute
    failed: list[Call] = []

    def check(step: Step) -> None:
        if isinstance(step, Call) and fails(step):
            failed.append(step)
            raise redis.ConnectionError(f"shard of {step.keys[0]} is down (test)")

    if inspect.iscoroutinefunction(execute):

        async def async_failing(step: Step) -> Any:
            if after:
                reply = await execute(step)
            check(step)
            return reply if after else await execute(step)

        target._execute = async_failing
    else:

        def failing(step: Step) -> Any:
            if after:
                reply = execute(step)
            check(step)
            return reply if after else execute(step)

        target._execute = failing
    return failed


@pytest.mark.parametrize("public", [True, False])
def test_a_shard_failing_mid_dequeue_loses_no_claimed_job(env: Env, public: bool) -> None:
    """The second shard's call fails: the jobs the first shard claimed come back to the caller,
    the other shards are still asked, and the acks for the failed shard are reported as not
    applied (their locks still held), never as done."""
    q = env.queue(shards=3)
    q.enqueue_many([b"x"] * 60)
    claimed = q.dequeue(60)
    done = [j for i in range(3) for j in [j for j in claimed if shard_index(j.id, 3) == i][:4]]
    assert len(done) == 12, "four done jobs in each shard"
    for job in claimed:
        if job not in done:
            assert q.release(job)
    calls = itertools.count(1)
    failed = fail_calls(q, lambda call: next(calls) == 2)
    if public:
        acked, jobs = q.ack_and_dequeue(done, 30)
        unapplied = [j for j in done if q._core.shard_of(j.id).keys["due"] == failed[0].keys[0]]
    else:
        result = q.ack_and_claim(done, 30, 30)
        acked, jobs, unapplied = result.acked, result.jobs, result.unapplied
        assert result.refused == []
    (failure,) = failed
    down = next(i for i, shard in enumerate(q._core.shards) if failure.keys[0] == shard.keys["due"])
    assert sorted(j.id for j in unapplied) == sorted(j.id for j in done if shard_index(j.id, 3) == down)
    assert acked == len(done) - len(unapplied), "every other ack applied, and said so"
    assert jobs, "the shards that answered gave jobs"
    assert all(shard_index(j.id, 3) != down for j in jobs)
    stats = q.stats()
    assert stats.in_flight == len(jobs) + len(unapplied), "nothing claimed was dropped"
    assert stats.total == 60 - acked
    assert q.ack_many(jobs + unapplied) == len(jobs) + len(unapplied), "the caller holds every one of them"
    assert q.stats().in_flight == 0


def test_every_shard_failing_raises_and_changes_nothing(env: Env) -> None:
    q = env.queue(shards=3)
    q.enqueue_many([b"x"] * 30)
    done = q.dequeue(6)
    before = snapshot(env.raw, q)
    fail_calls(q, lambda call: True)
    with pytest.raises(redis.ConnectionError):
        q.ack_and_dequeue(done, 10)
    with pytest.raises(redis.ConnectionError):
        q.dequeue(10)
    assert snapshot(env.raw, q) == before
