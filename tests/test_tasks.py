"""Named tasks: enqueue with arguments, one worker for every task (sync and async functions),
per-task retries, and bad input that is refused or dead-lettered with its reason."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import fakeredis
import pytest

import delayq
import delayq.aio
from delayq import Backoff, Fail, InvalidArgument, InvalidType, Job, JobPolicy, QueueStats, Retry
from delayq.tasks import Args, Tasks, current_job
from delayq.testing import frozen_clock, run_due
from tests.helpers import Env
from tests.helpers_tasks import bind, drain, enqueue, enqueue_many, real_queue, run_worker
from tests.snapshots import snapshot


def test_a_delayed_task_runs_once_at_its_time(env: Env) -> None:
    tasks = Tasks()
    runs: list[tuple[str, Job]] = []

    @tasks.task
    def remind(user: str, *, channel: str = "email") -> None:
        job = current_job()
        assert job is not None
        runs.append((f"{user}/{channel}", job))

    @tasks.task
    async def aremind(user: str) -> None:
        await asyncio.sleep(0)
        job = current_job()
        assert job is not None
        runs.append((user, job))

    q = env.queue()
    bind(env, tasks, q)
    sent: dict[str, tuple[float, float]] = {}  # when each enqueue call began and returned, ms
    for who, call in (
        ("ann/sms", lambda: enqueue(env, remind, "ann", delay=0.5, channel="sms")),
        ("bob", lambda: enqueue(env, aremind, "bob", delay=timedelta(seconds=0.5))),
    ):
        began = time.time() * 1000
        call()
        sent[who] = (began, time.time() * 1000)
    stats = run_worker(env, q, tasks, lambda: len(runs) >= 2, linger=0.3)
    assert sorted(who for who, _ in runs) == ["ann/sms", "bob"]  # once each, sync and async alike
    for who, job in runs:
        began, returned = sent[who]
        claimed_ms = job.lock_expires_ms - 30_000
        assert began + 500 - 5 <= job.due_ms <= returned + 500 + 5  # due half a second after its enqueue
        assert job.due_ms <= claimed_ms <= job.due_ms + 3000  # run at its time, not before
    assert stats.processed == 2 and stats.failed == 0
    assert q.stats().total == 0


def test_bad_jobs_are_dead_lettered_with_their_reason_and_the_worker_goes_on(env: Env) -> None:
    tasks = Tasks()
    done: list[int] = []

    @tasks.task
    def good(n: int) -> None:
        done.append(n)

    q = env.queue(max_attempts=1)
    bind(env, tasks, q)
    q.enqueue(b'{"task": "nope", "args": []}', id="unknown")
    q.enqueue(b"\x80\x81 not json", id="garbage")
    q.enqueue(b'{"task": "good", "args": [1, 2]}', id="arity")
    q.enqueue(b'{"args": [1]}', id="nameless")
    enqueue(env, good, 1)
    watch = delayq.Queue(env.raw, q.name)  # a sync view: the async flavour's loop is busy with the worker
    run_worker(env, q, tasks, lambda: watch.stats().dead == 4 and done == [1])
    assert done == [1]
    errors = {d.id: d.error or "" for d in q.dead_letters()}
    assert "unknown task 'nope' (registered: good)" in errors["unknown"]
    assert "not a json task envelope" in errors["garbage"]
    assert "cannot take the arguments" in errors["arity"] and "too many positional arguments" in errors["arity"]
    assert 'no "task" name' in errors["nameless"]
    assert q.stats() == QueueStats(ready=0, delayed=0, in_flight=0, dead=4)


def test_bad_arguments_are_refused_and_nothing_is_sent(env: Env) -> None:
    tasks = Tasks()

    @tasks.task
    def send(to: str, data: Any = None) -> None: ...

    q = env.queue()
    bind(env, tasks, q)
    enqueue(env, send, "kept", id="kept")
    before = snapshot(env.raw, q)
    cases: list[tuple[tuple[Any, ...], dict[str, Any], type[Exception], str]] = [
        (("a", object()), {}, InvalidType, "argument 1 of task 'send' cannot be sent as JSON"),
        (("a", {"k": {1: "x"}}), {}, InvalidType, "argument 1['k'] of task 'send' has the key 1"),
        (("a", [1.0, float("nan")]), {}, InvalidArgument, "argument 1[1] of task 'send' is nan"),
        (("a",), {"kwargs": {"data": b"bytes"}}, InvalidType, "keyword argument 'data'"),
        ((), {}, InvalidArgument, "task 'send' cannot take these arguments: missing a required argument: 'to'"),
        (("a", 1, 2), {}, InvalidArgument, "too many positional arguments"),
        (("a",), {"delay": -1}, InvalidArgument, "delay"),
        (("a",), {"id": ""}, InvalidArgument, "job id"),
    ]
    for args, kwargs, error, text in cases:
        with pytest.raises(error, match=text.replace("[", r"\[").replace("]", r"\]")):
            enqueue(env, send, *args, **kwargs)
    with pytest.raises(InvalidType, match="each call must be Args"):
        enqueue_many(env, send, [("ok",), "not a call"])
    assert snapshot(env.raw, q) == before


def test_enqueue_many_ids_and_dedupe(env: Env) -> None:
    tasks = Tasks()
    seen: list[tuple[str, int]] = []

    @tasks.task
    def greet(name: str, times: int = 1) -> str:
        seen.append((name, times))
        return name * times

    q = env.queue()
    bind(env, tasks, q)
    ids = enqueue_many(env, greet, [("a",), Args("b", times=2), Args(name="c")], ids=["1", "2", "3"])
    assert ids == ["1", "2", "3"]
    assert enqueue(env, greet, "again", id="1") is None  # same id: stored once
    outcomes = drain(env, q, tasks)
    assert sorted(seen) == [("a", 1), ("b", 2), ("c", 1)]
    assert {o.id: o.result for o in outcomes} == {"1": "a", "2": "bb", "3": "c"}
    assert [p.payload for p in q.peek()] == []


def test_each_task_has_its_own_attempts_and_backoff(env: Env) -> None:
    tasks = Tasks(max_attempts=5)
    calls: list[str] = []

    @tasks.task(max_attempts=2, backoff=Backoff(base=10, jitter=0))
    def flaky() -> None:
        calls.append("flaky")
        raise ConnectionError("down")

    @tasks.task
    def patient() -> None:
        calls.append("patient")
        raise Retry(delay=60, reason="not yet")

    @tasks.task
    def hopeless() -> None:
        calls.append("hopeless")
        raise Fail("bad address")

    @tasks.task
    def moot() -> None:
        calls.append("moot")
        raise Fail("nothing to do", dead=False)

    q = env.queue(max_attempts=None)
    bind(env, tasks, q)
    with frozen_clock(q) as clock:
        for task in (flaky, patient, hopeless, moot):
            enqueue(env, task, id=task.name)
        first = {o.id: o for o in drain(env, q, tasks)}
        assert first["flaky"].kind == "retried" and first["flaky"].delay == 10
        assert first["patient"].kind == "retried" and first["patient"].delay == 60
        assert first["patient"].error == "Retry: not yet"
        assert first["hopeless"].kind == "dead_lettered" and first["hopeless"].error == "bad address"
        assert first["moot"].kind == "dropped"
        assert drain(env, q, tasks) == []  # nothing due until the clock moves
        clock.advance(10)
        (second,) = drain(env, q, tasks)
        assert (second.id, second.kind, second.error) == ("flaky", "dead_lettered", "ConnectionError: down")
        clock.advance(50)
        (third,) = drain(env, q, tasks)
        assert (third.id, third.kind, third.job.attempts) == ("patient", "retried", 2)
        for _ in range(3):
            clock.advance(60)
            drain(env, q, tasks)
        dead = {d.id: (d.attempts, d.error) for d in q.dead_letters()}
    assert dead == {"flaky": (2, "ConnectionError: down"), "hopeless": (1, "bad address"), "patient": (5, "Retry: not yet")}
    assert calls.count("flaky") == 2 and calls.count("patient") == 5 and calls.count("moot") == 1
    assert q.stats() == QueueStats(ready=0, delayed=0, in_flight=0, dead=3)


def test_a_task_past_its_attempts_is_not_run_again_after_a_crash(env: Env) -> None:
    """A job whose lock expired (its worker died) more often than its task allows is dead-lettered unrun."""
    tasks = Tasks()
    runs: list[int] = []

    @tasks.task(max_attempts=2)
    def crashes() -> None:
        runs.append(1)

    q = env.queue(max_attempts=None)
    bind(env, tasks, q)
    with frozen_clock(q) as clock:
        enqueue(env, crashes, id="c")
        for _ in range(2):  # two workers claim it and die: their locks expire
            assert [j.id for j in q.dequeue(1, lock_ttl=5)] == ["c"]
            clock.advance(6)
        (outcome,) = drain(env, q, tasks)
    assert runs == []
    assert outcome.kind == "dead_lettered" and "more than its max_attempts=2" in (outcome.error or "")


@pytest.mark.parametrize("serializer", ["msgspec", "msgpack"])
def test_msgspec_serializers(serializer: Any) -> None:
    q = delayq.Queue(fakeredis.FakeRedis(), "ser")
    tasks = Tasks(q, serializer=serializer)
    got: list[Any] = []

    @tasks.task
    def keep(*values: Any, **named: Any) -> None:
        got.append((values, named))

    keep.enqueue(1, "two", [3.5, None], {"k": True}, kwargs={"x": b"bytes"} if serializer == "msgpack" else {"x": "y"})
    (peeked,) = q.peek()
    if serializer == "msgspec":
        assert json.loads(peeked.payload)["task"] == "keep"
    with pytest.raises(InvalidType, match=f"cannot be encoded by {serializer}"):
        keep.enqueue(object())
    assert [o.kind for o in run_due(q, tasks)] == ["processed"]
    expected_x = b"bytes" if serializer == "msgpack" else "y"
    assert got == [((1, "two", [3.5, None], {"k": True}), {"x": expected_x})]
    q.enqueue(b'{"task": "keep"}' if serializer == "msgpack" else b"\x81\xa4task\xa4keep", id="other-format")
    (outcome,) = run_due(q, tasks)
    assert outcome.kind == "dead_lettered" and "task envelope" in (outcome.error or "")


def test_registration_errors() -> None:
    tasks = Tasks()

    @tasks.task(name="job")
    def one() -> None: ...

    with pytest.raises(InvalidArgument, match="'job' is already registered"):
        tasks.task(name="job")(lambda: None)
    with pytest.raises(InvalidArgument, match="max_attempts"):
        tasks.task(max_attempts=0)
    with pytest.raises(InvalidType, match="backoff"):
        tasks.task(backoff=5)  # type: ignore[call-overload]
    with pytest.raises(InvalidArgument, match="lock_ttl"):
        tasks.task(lock_ttl=13 * 3600)
    with pytest.raises(InvalidArgument, match="task name"):
        tasks.task(name=" padded ")(lambda: None)
    with pytest.raises(InvalidArgument, match="serializer"):
        Tasks(serializer="pickle")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"tasks\.bind"):
        one.enqueue()
    with pytest.raises(InvalidType, match=r"delayq\.Queue or delayq\.aio\.Queue"):
        tasks.bind("redis://")  # type: ignore[arg-type]
    assert "job" in tasks and tasks["job"] is one and len(tasks) == 1 and list(tasks) == [one]
    assert one() is None  # calling a task runs it here


def test_the_policy_a_worker_gets() -> None:
    tasks = Tasks(max_attempts=7, timeout=30)

    @tasks.task(lock_ttl=120, backoff=Backoff(base=5))
    def slow() -> None: ...

    @tasks.task(max_attempts=None)
    def forever() -> None: ...

    def job(payload: bytes) -> Job:
        return Job("id", payload, 1, "1:t", 0, 0)

    assert tasks.policy(job(slow.message())) == JobPolicy(7, Backoff(base=5), 30, 120)
    assert tasks.policy(job(forever.message())) == JobPolicy(None, None, 30, None)
    assert tasks.policy(job(b"junk")) is None
    assert Tasks().defaults.max_attempts == delayq.DEFAULT_MAX_ATTEMPTS == 20


def test_tasks_on_a_sharded_queue(env: Env) -> None:
    tasks = Tasks()
    got: list[int] = []

    @tasks.task
    def note(n: int) -> None:
        got.append(n)

    q = env.queue(shards=3)
    bind(env, tasks, q)
    enqueue_many(env, note, [(i,) for i in range(30)], delay=60)
    with frozen_clock(real_queue(env, q)) as clock:
        assert drain(env, q, tasks) == []
        clock.advance(60)
        assert len(drain(env, q, tasks)) == 30
    assert sorted(got) == list(range(30))
    assert q.stats().total == 0


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"[" * 100_000, "not a json task envelope"),
        (b'{"task": 5}', 'no "task" name'),
        (b'{"task": "t", "args": {"a": 1}}', "malformed args or kwargs"),
        (b'{"task": "t", "kwargs": [1]}', "malformed args or kwargs"),
        (b"\xff\xfe", "not a json task envelope"),
        (b"null", 'no "task" name'),
    ],
)
def test_payloads_that_are_not_envelopes_fail_with_a_reason(payload: bytes, reason: str) -> None:
    tasks = Tasks()

    @tasks.task
    def t(a: int = 0) -> None: ...

    with pytest.raises(Fail) as info:
        tasks.run(Job("j", payload, 1, "1:x", 0, 0))
    assert reason in info.value.reason and info.value.dead
    assert tasks.policy(Job("j", payload, 1, "1:x", 0, 0)) is None
