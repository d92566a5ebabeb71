"""What a handler and a per-job policy decide, under the real workers (thread and asyncio): Fail
dead-letters at once (or drops), Retry picks its delay, a task's own attempts, timeout and lock
ttl apply, and a policy that fails dead-letters its job instead of stopping the worker. The same
decisions as ``delayq.testing.run_due`` (both use delayq._hooks)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fakeredis
import pytest

import delayq
import delayq.aio
from delayq import Backoff, Fail, InvalidType, Job, JobPolicy, QueueStats, Retry, WorkerEvent, WorkerStats
from delayq.tasks import Tasks
from tests.helpers import Env, unique_name
from tests.helpers_tasks import bind, enqueue, real_queue

ROOT = Path(__file__).resolve().parent.parent


def work(
    env: Env,
    q: Any,
    handler: Any,
    until: Callable[[WorkerStats], bool],
    *,
    within: float = 15,
    events: list[WorkerEvent] | None = None,
    **kw: Any,
) -> WorkerStats:
    """Run the env's kind of worker on the env queue ``q`` until ``until(stats)``, then stop it.
    ``handler`` is a Tasks (its ``run`` or ``arun``, whichever the worker takes) or a callable."""
    kw.setdefault("poll", 0.1)
    if events is not None:
        kw["on_event"] = events.append
    if env.api == "sync":
        worker = delayq.Worker(q, handler.run if isinstance(handler, Tasks) else handler, **kw)
        if isinstance(handler, Tasks):
            assert worker.policy == handler.policy, "a Tasks' run brings the registry's policy"
        thread = threading.Thread(target=worker.run, kwargs={"install_signals": False})
        thread.start()
        deadline = time.monotonic() + within
        while not until(worker.stats) and time.monotonic() < deadline:
            time.sleep(0.01)
        worker.stop()
        thread.join(15)
        assert not thread.is_alive()
        assert until(worker.stats), f"worker did not get there in {within}s: {worker.stats}"
        return worker.stats
    aworker = delayq.aio.Worker(real_queue(env, q), handler.arun if isinstance(handler, Tasks) else handler, **kw)
    if isinstance(handler, Tasks):
        assert aworker.policy == handler.policy, "a Tasks' arun brings the registry's policy"

    async def main() -> WorkerStats:
        task = asyncio.create_task(aworker.run(install_signals=False))
        deadline = time.monotonic() + within
        while not until(aworker.stats) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        aworker.stop()
        return await asyncio.wait_for(task, 15)

    assert env._loop is not None
    stats = env._loop.run_until_complete(main())
    assert until(stats), f"worker did not get there in {within}s: {stats}"
    return stats


def test_an_unknown_task_or_a_bad_envelope_is_dead_lettered_after_one_claim(env: Env) -> None:
    """On a queue with the default max_attempts (20), a job no task can run is dead-lettered with
    its reason the first time it is claimed, and the worker goes on with the good jobs."""
    tasks = Tasks()
    done: list[int] = []

    @tasks.task
    def good(n: int) -> None:
        done.append(n)

    q = env.queue()
    bind(env, tasks, q)
    q.enqueue(b'{"task": "nope", "args": []}', id="unknown")
    q.enqueue(b"\x80\x81 not json", id="garbage")
    enqueue(env, good, 1)
    events: list[WorkerEvent] = []
    stats = work(env, q, tasks, lambda s: s.dead_lettered == 2 and s.processed == 1, events=events)
    assert done == [1]
    assert (stats.failed, stats.retried, stats.dead_lettered, stats.processed) == (2, 0, 2, 1)
    dead = {job.id: job for job in delayq.Queue(env.raw, q.name).dead_letters()}
    assert sorted(dead) == ["garbage", "unknown"]
    assert [dead["unknown"].attempts, dead["garbage"].attempts] == [1, 1]
    assert "unknown task 'nope' (registered: good)" in (dead["unknown"].error or "")
    assert "the payload is not a json task envelope" in (dead["garbage"].error or "")
    assert sorted(e.kind for e in events if e.job.id == "unknown") == ["dead_lettered", "failed"]
    assert delayq.Queue(env.raw, q.name).stats() == QueueStats(ready=0, delayed=0, in_flight=0, dead=2)


def test_a_tasks_own_max_attempts_and_backoff_apply(env: Env) -> None:
    tasks = Tasks()
    runs: list[int] = []

    @tasks.task(max_attempts=2, backoff=Backoff(base=0.1, jitter=0))
    def flaky() -> None:
        job = delayq.tasks.current_job()
        assert job is not None
        runs.append(job.attempts)
        raise ValueError("still broken")

    q = env.queue()  # the queue's default: 20 attempts
    bind(env, tasks, q)
    enqueue(env, flaky)
    events: list[WorkerEvent] = []
    stats = work(env, q, tasks, lambda s: s.dead_lettered == 1, events=events)
    assert runs == [1, 2]
    assert (stats.failed, stats.retried, stats.dead_lettered) == (2, 1, 1)
    assert [e.delay for e in events if e.kind == "retried"] == [0.1]
    (dead,) = delayq.Queue(env.raw, q.name).dead_letters()
    assert (dead.attempts, dead.error) == (2, "ValueError: still broken")


@pytest.mark.parametrize("task_max", [None, 10])
def test_a_tasks_max_attempts_above_its_queues_is_dead_lettered_by_the_failure_not_a_claim(
    env: Env, task_max: int | None
) -> None:
    """A task allowing more attempts (or None) than its queue (3): the third failure dead-letters
    the job then, counted "dead_lettered". It was nacked "retried" with the task's limit, so the
    worker counted 3 retries and no death, and the queue dead-lettered it unseen on its next claim
    after a backoff wait for nothing."""
    tasks = Tasks()
    runs: list[int] = []

    @tasks.task(max_attempts=task_max, backoff=Backoff(base=0.05, jitter=0))
    def broken() -> None:
        job = delayq.tasks.current_job()
        assert job is not None
        runs.append(job.attempts)
        raise ValueError("still broken")

    q = env.queue(max_attempts=3)
    bind(env, tasks, q)
    enqueue(env, broken)
    events: list[WorkerEvent] = []
    stats = work(env, q, tasks, lambda s: s.dead_lettered == 1, events=events, within=5)
    assert runs == [1, 2, 3]
    assert (stats.failed, stats.retried, stats.dead_lettered) == (3, 2, 1)
    assert [e.kind for e in events if e.kind in ("retried", "dead_lettered")] == ["retried", "retried", "dead_lettered"]
    (dead,) = delayq.Queue(env.raw, q.name).dead_letters()
    assert (dead.attempts, dead.error) == (3, "ValueError: still broken")


def test_retry_reschedules_by_its_delay(env: Env) -> None:
    q = env.queue()
    q.enqueue(b"x", id="later")
    claims: list[tuple[int, int]] = []  # (claimed at, due at), server clock

    def handler(job: Job) -> None:
        claims.append((job.lock_expires_ms - 5_000, job.due_ms))
        if job.attempts == 1:
            raise Retry(delay=0.4, reason="not yet")

    events: list[WorkerEvent] = []
    stats = work(env, q, handler, lambda s: s.processed == 1, lock_ttl=5, backoff=Backoff(base=60), events=events)
    assert (stats.failed, stats.retried, stats.processed, stats.dead_lettered) == (1, 1, 1, 0)
    assert 400 <= claims[1][1] - claims[0][0] <= 500, "due again 0.4 s after it failed, not the backoff's 60 s"
    (retried,) = (e for e in events if e.kind == "retried")
    assert (retried.delay, retried.error) == (0.4, "Retry: not yet")
    assert delayq.Queue(env.raw, q.name).stats().total == 0


def test_retry_on_the_last_attempt_dead_letters(env: Env) -> None:
    q = env.queue()

    def handler(job: Job) -> None:
        raise Retry(delay=0, reason="again")

    q.enqueue(b"x", id="tired")
    stats = work(env, q, handler, lambda s: s.dead_lettered == 1, policy=lambda job: JobPolicy(max_attempts=2))
    assert (stats.failed, stats.retried, stats.dead_lettered) == (2, 1, 1)
    (dead,) = delayq.Queue(env.raw, q.name).dead_letters()
    assert (dead.attempts, dead.error) == (2, "Retry: again")


def test_a_job_finished_during_the_grace_is_acked_before_its_lock_expires(env: Env) -> None:
    """On a graceful stop, a handler that finishes while another still runs is acked then, not
    only once the last one is done: its lock is no longer extended once it has finished, so its
    ack waited past lock_ttl (0.3 s here) was refused, counted "lock_lost", and the finished job
    came back to run again."""
    q = env.queue()
    q.enqueue(b"quick", id="quick")
    q.enqueue(b"long", id="long")
    started: list[str] = []

    def handler(job: Job) -> None:
        started.append(job.id)
        time.sleep(0.1 if job.id == "quick" else 1.2)

    stats = work(env, q, handler, lambda s: len(started) == 2, concurrency=2, lock_ttl=0.3, prefetch=0)
    assert (stats.processed, stats.lock_lost, stats.returned) == (2, 0, 0)
    assert delayq.Queue(env.raw, q.name).stats() == QueueStats(ready=0, delayed=0, in_flight=0, dead=0)


def test_a_job_whose_policy_runs_as_the_worker_stops_is_given_back_unrun(env: Env) -> None:
    """A stop while a handler slot asks a (slow) policy about its job: the job is given back and
    its handler never runs. The thread worker's stop saw no running handler, gave the job back
    and returned, and the handler then ran the job it no longer held (the job ran here and again
    elsewhere)."""
    if env.api != "sync":
        pytest.skip("a plain policy blocks the asyncio worker's loop: its stop comes once the job has started")
    q = env.queue()
    q.enqueue(b"x", id="one")
    asked = threading.Event()
    ran: list[str] = []

    def policy(job: Job) -> None:
        asked.set()
        time.sleep(0.3)

    def handler(job: Job) -> None:
        ran.append(job.id)

    stats = work(env, q, handler, lambda s: asked.is_set(), policy=policy)
    time.sleep(0.4)
    assert ran == []
    assert (stats.processed, stats.returned, stats.lock_lost) == (0, 1, 0)
    assert delayq.Queue(env.raw, q.name).stats().ready == 1


def test_a_finished_job_with_a_short_lock_is_acked_before_it_expires(env: Env) -> None:
    """A job's lock is no longer extended once its handler has finished, and its ack waited up
    to BUSY_POLL_S (50 ms) for the next claim: with a lock that short (a task's lock_ttl=0.05),
    the ack of a job that finished while the buffer was full came too late, was refused
    ("lock_lost") and the finished job ran again."""
    tasks = Tasks()
    runs: list[int] = []

    @tasks.task(lock_ttl=0.05)
    def slow(n: int) -> None:
        runs.append(n)
        time.sleep(0.1)

    q = env.queue()
    bind(env, tasks, q)
    for n in range(24):
        enqueue(env, slow, n)
    stats = work(env, q, tasks, lambda s: s.processed + s.lock_lost >= 24, concurrency=4, within=10)
    assert (stats.processed, stats.lock_lost) == (24, 0)
    assert sorted(runs) == list(range(24))


def test_fail_dead_letters_at_once_and_fail_not_dead_drops(env: Env) -> None:
    q = env.queue()  # 20 attempts left: Fail does not use them
    q.enqueue_many([b"a", b"b", b"c"], ids=["doomed", "stale", "fine"])

    def handler(job: Job) -> None:
        if job.id == "doomed":
            raise Fail("no such user")
        if job.id == "stale":
            raise Fail("superseded", dead=False)

    events: list[WorkerEvent] = []
    stats = work(env, q, handler, lambda s: s.dead_lettered == 1 and s.processed == 2, events=events)
    assert (stats.failed, stats.retried, stats.dead_lettered, stats.processed) == (1, 0, 1, 2)
    view = delayq.Queue(env.raw, q.name)
    (dead,) = view.dead_letters()
    assert (dead.id, dead.attempts, dead.error) == ("doomed", 1, "no such user")
    assert [e.kind for e in events if e.job.id == "stale"] == ["processed"], "a drop is acked: processed"
    assert view.get("stale") is None
    assert view.stats() == QueueStats(ready=0, delayed=0, in_flight=0, dead=1)


def test_a_per_job_timeout_applies_under_each_worker(env: Env) -> None:
    """The worker's timeout is 300 s; the policy gives one job 0.2 s: it fails at 0.2 s (its thread
    abandoned, or its coroutine cancelled), and is dead-lettered by its policy's max_attempts=1."""
    q = env.queue()
    q.enqueue_many([b"hang", b"quick"], ids=["hang", "quick"])
    unblock = threading.Event()

    def plain(job: Job) -> None:
        if job.id == "hang":
            unblock.wait(30)

    async def coroutine(job: Job) -> None:
        if job.id == "hang":
            await asyncio.sleep(30)

    def policy(job: Job) -> JobPolicy | None:
        return JobPolicy(max_attempts=1, timeout=0.2) if job.id == "hang" else None

    try:
        stats = work(
            env, q, plain if env.api == "sync" else coroutine, lambda s: s.dead_lettered == 1 and s.processed == 1, policy=policy
        )
    finally:
        unblock.set()
    assert (stats.failed, stats.dead_lettered, stats.processed) == (1, 1, 1)
    (dead,) = delayq.Queue(env.raw, q.name).dead_letters()
    assert dead.id == "hang" and dead.attempts == 1
    assert dead.error == "TimeoutError: the handler ran longer than its job's timeout of 0.2s"


def test_a_plain_tasks_timeout_applies_under_each_worker(env: Env) -> None:
    tasks = Tasks()
    unblock = threading.Event()

    @tasks.task(timeout=0.2, max_attempts=1)
    def stuck() -> None:
        unblock.wait(30)

    q = env.queue()
    bind(env, tasks, q)
    enqueue(env, stuck)
    try:
        stats = work(env, q, tasks, lambda s: s.dead_lettered == 1)
    finally:
        unblock.set()
    assert (stats.failed, stats.dead_lettered, stats.processed) == (1, 1, 0)
    (dead,) = delayq.Queue(env.raw, q.name).dead_letters()
    assert (dead.error or "").startswith("TimeoutError:") and "0.2" in (dead.error or "")


def test_a_jobs_lock_ttl_is_set_when_it_starts_and_kept_by_extends(env: Env) -> None:
    """The worker locks for 30 s; the policy gives the job 1 s: its lock is set to 1 s as it starts,
    and extended by 1 s at a time, so it outlives its ttl without being delivered again."""
    q = env.queue()
    q.enqueue(b"x", id="long")
    view = delayq.Queue(env.raw, q.name)
    left: list[int] = []  # ms of lock left, seen from inside the handler
    runs: list[int] = []

    def handler(job: Job) -> None:
        runs.append(job.attempts)
        for _ in range(3):
            info = view.get(job.id)
            assert info is not None and info.state == "in_flight"
            left.append(info.at_ms - info.now_ms)
            time.sleep(0.6)

    stats = work(env, q, handler, lambda s: s.processed == 1, lock_ttl=30, policy=lambda job: JobPolicy(lock_ttl=1.0))
    assert runs == [1], "kept locked past its 1 s ttl: never delivered again"
    assert all(0 < ms <= 1000 for ms in left), f"locked for the job's 1 s, not the worker's 30 s: {left}"
    assert (stats.processed, stats.lock_lost, stats.failed) == (1, 0, 0)


def test_a_bad_policy_dead_letters_its_job_with_the_reason_and_the_worker_goes_on(env: Env) -> None:
    q = env.queue()
    q.enqueue_many([b"1", b"2", b"3"], ids=["junk", "boom", "ok"])

    def policy(job: Job) -> Any:
        if job.id == "junk":
            return "max_attempts=3"
        if job.id == "boom":
            raise RuntimeError("policy store down")
        return None

    ran: list[str] = []
    stats = work(env, q, lambda job: ran.append(job.id), lambda s: s.dead_lettered == 2 and s.processed == 1, policy=policy)
    assert ran == ["ok"], "a job whose policy failed does not run"
    assert (stats.failed, stats.dead_lettered, stats.processed) == (2, 2, 1)
    dead = {job.id: job for job in delayq.Queue(env.raw, q.name).dead_letters()}
    assert dead["junk"].error == "the worker's policy must return a delayq.JobPolicy or None, got 'max_attempts=3'"
    assert dead["boom"].error == "the worker's policy raised for this job: RuntimeError: policy store down"
    assert dead["junk"].attempts == dead["boom"].attempts == 1


@pytest.mark.parametrize("bad", ["policy", 42, JobPolicy()])
def test_a_policy_that_is_not_callable_is_refused(bad: Any) -> None:
    q = delayq.Queue(fakeredis.FakeRedis(), "q")
    with pytest.raises(InvalidType, match=r"policy must be a callable .*" + repr(bad)[:10].replace("(", r"\(")):
        delayq.Worker(q, lambda job: None, policy=bad)
    aq = delayq.aio.Queue(fakeredis.FakeAsyncRedis(), "q")
    with pytest.raises(InvalidType, match="policy must be a callable"):
        delayq.aio.Worker(aq, lambda job: None, policy=bad)


def test_a_given_policy_wins_over_the_tasks_own() -> None:
    tasks = Tasks()
    mine: Callable[[Job], JobPolicy | None] = lambda job: None  # noqa: E731
    q = delayq.Queue(fakeredis.FakeRedis(), "q")
    assert delayq.Worker(q, tasks.run, policy=mine).policy is mine
    assert delayq.Worker(q, tasks.run).policy == tasks.policy
    assert delayq.Worker(q, lambda job: None).policy is None


TASKS_MODULE = """
from delayq.tasks import Tasks

tasks = Tasks()

@tasks.task
def hello(name):
    print("hello", name)
"""


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_the_command_line_worker_dead_letters_an_unknown_task_at_once(redis_url: str, tmp_path: Path, flavour: str) -> None:
    """``delayq worker myapp QUEUE`` runs the module's Tasks with its policy: an unknown task is
    dead-lettered after one claim though the queue allows 20."""
    source = TASKS_MODULE if flavour == "sync" else TASKS_MODULE + "\n@tasks.task\nasync def ahello(name):\n    pass\n"
    (tmp_path / "policyapp.py").write_text(source)
    name = unique_name("cli")
    import redis  # noqa: PLC0415

    client = redis.Redis.from_url(redis_url)
    q = delayq.Queue(client, name)
    q.enqueue(b'{"task": "nope", "args": []}', id="unknown")
    q.enqueue(b'{"task": "hello", "args": ["ann"]}', id="known")
    worker = subprocess.Popen(
        [sys.executable, "-m", "delayq", "worker", "policyapp", name, "--poll", "0.1"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT), DELAYQ_REDIS_URL=redis_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (q.stats().dead < 1 or q.stats().total > 1):
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    (dead,) = q.dead_letters()
    assert (dead.id, dead.attempts) == ("unknown", 1), err.decode()
    assert "unknown task 'nope'" in (dead.error or "")
    assert q.stats() == QueueStats(ready=0, delayed=0, in_flight=0, dead=1)
    assert b"hello ann" in out
    client.close()


def test_a_job_claimed_more_often_than_its_policy_allows_is_dead_lettered_unrun(env: Env) -> None:
    """A job whose locks expired three times (it kept killing its worker, say) under a policy of
    max_attempts=2 goes to the dead letters when claimed, without running a fourth time."""
    q = env.queue()
    q.enqueue(b"x", id="crasher")
    view = delayq.Queue(env.raw, q.name)
    for _ in range(2):
        (job,) = view.dequeue(1, lock_ttl=0.01)
        while view.get(job.id).state == "in_flight":  # type: ignore[union-attr]
            time.sleep(0.01)
    ran: list[int] = []
    stats = work(
        env, q, lambda job: ran.append(job.attempts), lambda s: s.dead_lettered == 1, policy=lambda job: JobPolicy(max_attempts=2)
    )
    assert ran == []
    (dead,) = view.dead_letters()
    assert dead.attempts == 3 and "claimed 3 times, more than its max_attempts=2" in (dead.error or "")
    assert (stats.failed, stats.dead_lettered, stats.processed) == (1, 1, 0)
