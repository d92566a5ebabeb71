"""The worker's prefetch buffer: claimed jobs that wait for a handler are not lost and not run twice,
whether the worker stops, crashes, or their locks expire while they wait; and the public queue calls
the workers are built on (ack_and_claim, ack_claims, fail)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

import delayq
from delayq import Job
from delayq._steps import Call
from tests.helpers import Env, unique_name
from tests.test_sharded import fail_calls
from tests.test_worker import run_worker


def test_a_stop_gives_prefetched_jobs_back_at_once_without_using_an_attempt(env: Env) -> None:
    name = unique_name("pf")
    q = delayq.Queue(env.raw, name)
    q.enqueue_many([f"j{i}".encode() for i in range(20)])
    started: list[str] = []
    workers: list[Any] = []

    def handler(job: Job) -> None:
        started.append(job.id)
        while not workers[0]._stop.is_set():
            time.sleep(0.01)  # the first job runs until the worker is asked to stop

    stats = run_worker(env, name, handler, lambda s: len(started) == 1, workers=workers, concurrency=1, prefetch=4)
    assert len(started) == 1, "no buffered job started once the stop was asked"
    assert (stats.processed, stats.lock_lost) == (1, 0)
    assert stats.returned >= 1, "the buffer held a claimed job that was given back"
    assert q.stats() == delayq.QueueStats(ready=19, delayed=0, in_flight=0, dead=0), "given back at once, not at lock expiry"
    assert {job.attempts for job in q.dequeue(100)} == {1}, "giving back did not use an attempt"


def test_prefetch_0_claims_only_for_free_handlers(env: Env) -> None:
    name = unique_name("pf")
    q = delayq.Queue(env.raw, name)
    q.enqueue_many([b"a", b"b", b"c"])
    in_flight: list[int] = []

    def handler(job: Job) -> None:
        in_flight.append(q.stats().in_flight)

    stats = run_worker(env, name, handler, lambda s: s.processed == 3, concurrency=1, prefetch=0)
    assert in_flight == [1, 1, 1], "one claim at a time: nothing waited in a buffer"
    assert stats.returned == 0


def test_a_buffered_job_whose_lock_expired_is_not_run(env: Env) -> None:
    """Extends fail (Redis unreachable for them) while the first job runs past the lock; another
    consumer claims both expired jobs; the worker runs neither again, and counts both lost."""
    name = unique_name("pf")
    q = delayq.Queue(env.raw, name)
    q.enqueue_many([b"first", b"second"], ids=["first", "second"])
    ran: list[str] = []
    stolen: list[str] = []

    def handler(job: Job) -> None:
        ran.append(job.id)
        if job.id == "first":
            time.sleep(0.5)  # past the 0.3 s lock
            stolen.extend(j.id for j in q.dequeue(10, 30))

    def no_extends(worker: Any) -> None:
        fail_calls(worker.queue, lambda call: isinstance(call, Call) and call.script.name == "extend")

    stats = run_worker(env, name, handler, lambda s: s.lock_lost == 2, concurrency=1, prefetch=1, lock_ttl=0.3, setup=no_extends)
    assert ran == ["first"], "the buffered job was not started after its lock ran out"
    assert sorted(stolen) == ["first", "second"]
    assert (stats.processed, stats.lock_lost) == (0, 2)


def test_a_lock_found_lost_while_buffered_means_the_job_is_not_run(env: Env) -> None:
    """A buffered job cancelled while it waits: the extend finds its lock gone, and it never starts."""
    name = unique_name("pf")
    q = delayq.Queue(env.raw, name)
    q.enqueue_many([b"slow", b"gone"], ids=["a-slow", "b-gone"])  # one due time: claimed in id order
    ran: list[str] = []

    def handler(job: Job) -> None:
        ran.append(job.id)
        if job.id == "a-slow":
            assert q.cancel("b-gone")
            time.sleep(0.4)  # extends run meanwhile (every 0.05 s)

    stats = run_worker(env, name, handler, lambda s: s.processed == 1 and s.lock_lost == 1, concurrency=1, lock_ttl=0.3)
    assert ran == ["a-slow"]
    assert (stats.processed, stats.lock_lost, stats.returned) == (1, 1, 0)
    assert q.stats().total == 0


CRASHING_WORKER = r"""
import sys, time, redis, delayq
url, name, log = sys.argv[1], sys.argv[2], sys.argv[3]
def handler(job):
    with open(log, "a") as f:
        f.write(job.id + "\n")
    time.sleep(30 if job.payload == b"hang" else 0)
delayq.Worker(delayq.Queue(redis.Redis.from_url(url), name), handler, concurrency=2, prefetch=6, lock_ttl=1, poll=0.1).run()
"""


def test_a_crashed_workers_prefetched_jobs_come_back_and_run_once(redis_url: str, tmp_path: Path) -> None:
    name = unique_name("pfcrash")
    q = delayq.Queue(redis.Redis.from_url(redis_url), name)
    q.enqueue_many([b"hang", b"hang"], ids=["h1", "h2"])
    oks = [f"ok{i}" for i in range(6)]
    q.enqueue_many([b"ok"] * 6, ids=oks, delay=0.3)
    log = tmp_path / "ran"
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_WORKER, redis_url, name, str(log)])
    try:
        deadline = time.monotonic() + 15
        while q.stats().in_flight < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        held = q.stats().in_flight
        assert held == 4, "two running and, for handlers this slow, a buffer of concurrency (2)"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert sorted(log.read_text().split()) == ["h1", "h2"], "the buffered jobs had not started"
    # their locks (1 s) expire and they come back: a new consumer gets every job, none lost
    deadline = time.monotonic() + 5
    got: list[Job] = []
    while len(got) < 8 and time.monotonic() < deadline:
        got += q.dequeue(10, 30)
        time.sleep(0.05)
    assert sorted(j.id for j in got) == sorted(["h1", "h2", *oks])
    attempts = {j.id: j.attempts for j in got}
    assert attempts["h1"] == attempts["h2"] == 2, "a crash uses the attempt of the jobs that ran"
    assert sorted(attempts[i] for i in oks) == [1, 1, 1, 1, 2, 2], "two were prefetched (their lock expired), four never claimed"
    q.ack_many(got)


# ---------------------------------------------------------------- the public calls the workers use


def test_fail_says_what_the_nack_did(env: Env) -> None:
    q = env.queue(max_attempts=2)
    q.enqueue(b"x", id="x")
    (job,) = q.dequeue(1, 30)
    assert q.fail(job, 0, error="boom") == "retried"
    assert q.fail(job, 0) == "lock_lost", "the old claim no longer holds the lock"
    (job,) = q.dequeue(1, 30)
    assert q.fail(job, 0, error="boom again") == "dead_lettered"
    (dead,) = q.dead_letters()
    assert (dead.id, dead.error) == ("x", "boom again")


def test_ack_and_claim_and_ack_claims_report_by_claim(env: Env) -> None:
    q = env.queue()
    q.enqueue_many([b"a", b"b", b"c"], ids=["a", "b", "c"])
    a, b = q.dequeue(2, 30)
    assert q.cancel("b")
    result = q.ack_and_claim([a, b], 5, 30)
    assert (result.acked, [j.id for j in result.refused], [j.id for j in result.jobs]) == (1, ["b"], ["c"])
    settled = q.ack_claims(result.jobs)
    assert (settled.acked, settled.refused) == (1, [])
    with pytest.raises(delayq.InvalidType):
        q.ack_claims(["not a job"])


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"prefetch": -1}, delayq.InvalidArgument, "prefetch"),
        ({"prefetch": 1001}, delayq.InvalidArgument, "prefetch"),
        ({"prefetch": 2.5}, delayq.InvalidType, "prefetch"),
        ({"prefetch": True}, delayq.InvalidType, "prefetch"),
        ({"heartbeat": "yes"}, delayq.InvalidType, "heartbeat"),
    ],
)
def test_bad_prefetch_and_heartbeat_settings(kwargs: dict[str, Any], error: type[Exception], text: str) -> None:
    import fakeredis  # noqa: PLC0415

    with pytest.raises(error, match=text):
        delayq.Worker(delayq.Queue(fakeredis.FakeRedis(), "q"), lambda job: None, **kwargs)


def test_a_worker_thread_safe_counter_sees_every_outcome_once(env: Env) -> None:
    """Many quick jobs through the buffer: each runs once and is acked once."""
    name = unique_name("pf")
    q = delayq.Queue(env.raw, name)
    n = 300
    q.enqueue_many([str(i).encode() for i in range(n)])
    seen: list[bytes] = []
    lock = threading.Lock()

    def handler(job: Job) -> None:
        with lock:
            seen.append(job.payload)

    stats = run_worker(env, name, handler, lambda s: s.processed == n)
    assert sorted(seen) == sorted(str(i).encode() for i in range(n))
    assert (stats.processed, stats.lock_lost, stats.returned) == (n, 0, 0)
    assert q.stats().total == 0
