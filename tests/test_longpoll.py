"""dequeue(wait=...): long-poll without busy polling; every waiter is back soon after any job it
could claim becomes claimable (due, or its lock expired), however many consumers wait (rule 10)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import redis

import delayq
import delayq._core
import delayq.aio
from tests.helpers import Env, unique_name

LATE_MS = 300
"""How late (server clock) a claim may be after its job became claimable, in these tests. The
stated bound is WINDOW_STEP_S plus a round trip (a few ms); this one is generous for loaded
machines, and still far below what a missed wake-up costs (WAIT_SLICE_S, or the whole wait)."""


def enqueue_later(env: Env, name: str, seconds: float, payload: bytes, shards: int = 1) -> threading.Timer:
    """Enqueue from another thread (and client) after ``seconds``."""
    timer = threading.Timer(seconds, lambda: delayq.Queue(env.raw, name, shards=shards).enqueue(payload))
    timer.start()
    return timer


@dataclass(frozen=True)
class Claim:
    """One job as a waiter claimed it, with the lock ttl it asked for."""

    waiter: int
    job: delayq.Job
    ttl_ms: int

    @property
    def claimed_ms(self) -> int:
        """When the server claimed it."""
        return self.job.lock_expires_ms - self.ttl_ms

    @property
    def late_ms(self) -> int:
        """Claim time minus the time it became claimable (due, or its previous lock expired)."""
        return self.claimed_ms - self.job.due_ms


@dataclass
class Plan:
    """What each waiter does: how it dequeues, whether it acks, when it stops."""

    batch: Callable[[random.Random], int] = lambda rng: 1
    lock_ttl: Callable[[random.Random], float] = lambda rng: 30.0
    wait: Callable[[random.Random], float] = lambda rng: 8.0
    ack: Callable[[random.Random, delayq.Job], bool] = lambda rng, job: True
    once: bool = False
    """Stop after the first call that claims something."""
    seed: int = 0
    claims: list[Claim] = field(default_factory=list)
    returns: list[tuple[int, float]] = field(default_factory=list)
    """(waiter, time.monotonic()) of every dequeue that came back."""
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, waiter: int, jobs: list[delayq.Job], ttl: float) -> None:
        with self.lock:
            self.returns.append((waiter, time.monotonic()))
            self.claims += [Claim(waiter, job, round(ttl * 1000)) for job in jobs]


def run_waiters(env: Env, name: str, count: int, plan: Plan, shards: int = 1) -> Callable[[], None]:
    """Start ``count`` consumers long-polling queue ``name``: threads over the sync queue, or tasks
    over the asyncio queue, as ``env.api`` says. Returns a function that waits for them to end."""

    def sync_waiter(i: int) -> None:
        rng, q = random.Random(plan.seed * 100 + i), delayq.Queue(env.raw, name, shards=shards)
        while not plan.stop.is_set():
            ttl = plan.lock_ttl(rng)
            jobs = q.dequeue(plan.batch(rng), ttl, wait=plan.wait(rng))
            plan.record(i, jobs, ttl)
            for job in jobs:
                if plan.ack(rng, job):
                    q.ack(job)
            if jobs and plan.once:
                return

    async def async_waiter(i: int, client: object) -> None:
        rng, q = random.Random(plan.seed * 100 + i), delayq.aio.Queue(client, name, shards=shards)  # type: ignore[arg-type]
        while not plan.stop.is_set():
            ttl = plan.lock_ttl(rng)
            jobs = await q.dequeue(plan.batch(rng), ttl, wait=plan.wait(rng))
            plan.record(i, jobs, ttl)
            for job in jobs:
                if plan.ack(rng, job):
                    await q.ack(job)
            if jobs and plan.once:
                return

    async def all_async() -> None:
        client = env._make_async_client()
        try:
            await asyncio.gather(*(async_waiter(i, client) for i in range(count)))
        finally:
            await client.aclose()

    if env.api == "sync":
        threads = [threading.Thread(target=sync_waiter, args=(i,)) for i in range(count)]
    else:
        threads = [threading.Thread(target=lambda: asyncio.run(all_async()))]
    for t in threads:
        t.start()

    def join() -> None:
        for t in threads:
            t.join(timeout=30)
            assert not t.is_alive(), "a waiter did not come back"

    return join


@pytest.fixture
def long_slices(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Waiters re-read the queue only when woken (or at their due time): calls can be counted exactly."""
    monkeypatch.setattr(delayq._core, "WAIT_SLICE_S", 30.0)
    yield


def evalsha_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


# ---------------------------------------------------------------- one waiter


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


def test_a_job_due_in_the_last_window_is_not_slept_through(env: Env) -> None:
    """In the last BLOCK_MARGIN_S before the job it waits for, a waiter cannot BLPOP (the timeout
    would fire late); it checks every WINDOW_STEP_S instead of sleeping blind, so a job that comes
    due in that window is claimed alone, before the one the waiter was waiting for."""
    name = unique_name()
    q = env.queue(name)
    q.enqueue(b"later", delay=0.5)
    timer = enqueue_later(env, name, 0.44, b"in the window")  # 60 ms before "later" is due
    jobs = q.dequeue(5, wait=3)
    timer.join()
    assert [j.payload for j in jobs] == [b"in the window"]
    assert [j.payload for j in q.dequeue(5, wait=3)] == [b"later"]


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


def test_waiters_leave_no_key_behind(env: Env) -> None:
    q = env.queue()
    q.enqueue(b"x", delay=0.2)
    (job,) = q.dequeue(1, wait=2)
    assert q.dequeue(1, wait=0.2) == []
    assert q.ack(job)
    keys = q._core.keys
    assert env.raw.exists(*keys.values()) == 0


# ---------------------------------------------------------------- several waiters (issue 9, fault 3)


@pytest.mark.parametrize("shards", [1, 3])
def test_a_second_waiter_claims_a_job_due_after_the_first(env: Env, shards: int) -> None:
    """Two waiters, two jobs due 0.5 s apart: the one that claims the first must not leave the
    other asleep for the whole wait (the second job was claimed at 7.9 s of an 8 s wait)."""
    name = unique_name()
    plan = Plan(once=True)
    join = run_waiters(env, name, 2, plan, shards)
    time.sleep(0.2)  # both are blocked
    q = env.queue(name, shards=shards)
    start = time.monotonic()
    q.enqueue(b"first", delay=0.4)
    q.enqueue(b"second", delay=0.9)
    join()
    assert sorted(c.job.payload for c in plan.claims) == [b"first", b"second"]
    assert {c.waiter for c in plan.claims} == {0, 1}
    assert max(c.late_ms for c in plan.claims) <= LATE_MS, plan.claims
    assert time.monotonic() - start < 3


@pytest.mark.parametrize("shards", [1, 3])
def test_an_expired_lock_wakes_a_waiter(env: Env, shards: int) -> None:
    """A waiter claims a job and never acks it; the other waiter gets it back when the lock
    expires (it was claimed at 8 s of an 8 s wait, for a lock that expired at 1.2 s)."""
    name = unique_name()
    plan = Plan(lock_ttl=lambda rng: 0.5, ack=lambda rng, job: False, once=True)
    join = run_waiters(env, name, 2, plan, shards)
    time.sleep(0.2)
    start = time.monotonic()
    env.queue(name, shards=shards).enqueue(b"x")
    join()
    first, second = sorted(plan.claims, key=lambda c: c.job.attempts)
    assert (first.job.attempts, second.job.attempts) == (1, 2)
    assert first.waiter != second.waiter
    assert second.job.due_ms == first.job.lock_expires_ms, "claimable again when the first lock expired"
    assert second.late_ms <= LATE_MS
    assert time.monotonic() - start < 3


@pytest.mark.parametrize("seed", [1, 2])
def test_every_claimable_job_is_claimed_soon_by_some_waiter(env: Env, seed: int) -> None:
    """The property: three consumers long-poll with random batches, lock ttls and waits, and
    leave some jobs unacked (their locks expire); jobs come at random times with random delays.
    Waiters are always waiting, so every job must be claimed within LATE_MS of becoming
    claimable, first delivery or redelivery alike."""
    name = unique_name("prop")
    rng = random.Random(seed)
    plan = Plan(
        batch=lambda r: r.choice([1, 2]),
        lock_ttl=lambda r: r.uniform(0.15, 0.5),
        wait=lambda r: r.uniform(0.2, 1.5),
        ack=lambda r, job: job.attempts >= 3 or r.random() < 0.6,
        seed=seed,
    )
    join = run_waiters(env, name, 3, plan)
    q = env.queue(name)
    try:
        start = time.monotonic()
        for at in sorted(rng.uniform(0, 1.5) for _ in range(10)):
            time.sleep(max(0.0, start + at - time.monotonic()))
            q.enqueue(b"p", delay=rng.choice([0, rng.uniform(0, 0.8)]))
        deadline = time.monotonic() + 8
        while q.stats().total and time.monotonic() < deadline:
            time.sleep(0.05)
        assert q.stats().total == 0, "every job was acked in the end"
    finally:
        plan.stop.set()
        join()
    redelivered = sum(c.job.attempts > 1 for c in plan.claims)
    assert redelivered > 0, "some locks expired and were claimed again"
    late = sorted(plan.claims, key=lambda c: c.late_ms)
    assert late[-1].late_ms <= LATE_MS, late[-3:]


# ---------------------------------------------------------------- no herd, no busy polling


def test_one_enqueue_wakes_one_of_two_waiters(redis_url: str, long_slices: None) -> None:
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
    before = evalsha_calls(admin)
    delayq.Queue(admin, name).enqueue(b"one")
    time.sleep(0.5)
    after = evalsha_calls(admin)
    assert after - before == 2, "the enqueue, and one dequeue by the one waiter woken"
    for t in threads:
        t.join()
    assert sorted(len(r) for r in results) == [0, 1]
    admin.close()


@pytest.mark.parametrize("delays", ["same", "rising", "falling"])
def test_an_enqueue_storm_wakes_one_waiter_per_token(redis_url: str, long_slices: None, delays: str) -> None:
    """Fifty enqueues of jobs due in 2 s wake one of three waiters, which then watches their due
    time; the others sleep on. Jobs due ever earlier may pass on more tokens, one waiter each."""
    name = unique_name("storm")
    admin = redis.Redis.from_url(redis_url)
    q = delayq.Queue(admin, name)
    threads = [threading.Thread(target=lambda: delayq.Queue(admin, name).dequeue(1, wait=8)) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    before = evalsha_calls(admin)
    for i in range(50):
        delay = {"same": 2.0, "rising": 2.0 + i / 100, "falling": 2.0 - i / 100}[delays]
        q.enqueue(b"x", delay=delay)
    time.sleep(0.5)
    woken = evalsha_calls(admin) - before - 50
    if delays == "falling":
        assert 1 <= woken <= 50
    else:
        assert woken == 1, "one waiter woke to watch the new due time"
    for t in threads:
        t.join()
    q.purge()
    admin.close()


@pytest.mark.parametrize("state", ["empty", "a job due in an hour", "a lock held for an hour"])
def test_an_idle_consumer_makes_a_few_calls_a_second(redis_url: str, state: str) -> None:
    """No busy polling: waiting 3 s with nothing to claim costs about one dequeue and one BLPOP
    a second (WAIT_SLICE_S), whatever waits in the queue."""
    admin = redis.Redis.from_url(redis_url)
    q = delayq.Queue(admin, unique_name("idle"))
    if state == "a job due in an hour":
        q.enqueue(b"x", delay=3600)
    elif state == "a lock held for an hour":
        q.enqueue(b"x")
        assert q.dequeue(1, lock_ttl=3600)

    def calls() -> int:
        stats = admin.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "blpop"))

    before = calls()
    start = time.monotonic()
    assert q.dequeue(1, wait=3) == []
    per_second = (calls() - before) / (time.monotonic() - start)
    assert per_second <= 4, f"{per_second:.1f} calls/s"
    q.purge()
    admin.close()


@pytest.mark.parametrize("wait", [-1, float("nan"), 7200])
def test_bad_wait(env: Env, wait: float) -> None:
    with pytest.raises(delayq.InvalidArgument, match="wait"):
        env.queue().dequeue(1, wait=wait)
