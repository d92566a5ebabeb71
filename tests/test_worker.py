"""The worker runtime (thread and asyncio): acks, retries with backoff, dead letters, lock
extension and loss, hooks, and graceful / hard stops of a real worker process."""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis

import delayq
import delayq.aio
from delayq import Backoff, Job, QueueStats, WorkerEvent, WorkerStats
from delayq._steps import Call
from tests.helpers import Env, unique_name
from tests.test_sharded import fail_calls


def run_worker(
    env: Env,
    name: str,
    handler: Callable[[Job], object],
    until: Callable[[WorkerStats], bool],
    within: float = 15,
    workers: list[Any] | None = None,
    setup: Callable[[Any], object] = lambda worker: None,
    **kw: Any,
) -> WorkerStats:
    """Run a worker of the env's flavour on queue ``name`` until ``until(stats)``, then stop it gracefully
    (the worker is appended to ``workers`` first, for handlers that watch it, and given to ``setup``)."""
    kw.setdefault("poll", 0.2)
    workers = [] if workers is None else workers
    queue_kw = {"max_attempts": kw.pop("max_attempts", None), "shards": kw.pop("shards", 1)}
    if env.api == "sync":
        worker = delayq.Worker(env.queue(name, **queue_kw), handler, **kw)
        workers.append(worker)
        setup(worker)
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
    adapter = env.queue(name, **queue_kw)
    aworker = delayq.aio.Worker(adapter._queue, handler, **kw)
    workers.append(aworker)
    setup(aworker)

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


def test_processes_and_acks_every_job(env: Env) -> None:
    name = unique_name("w")
    q = delayq.Queue(env.raw, name)
    q.enqueue_many([f"job-{i}".encode() for i in range(40)])
    seen: list[bytes] = []
    lock = threading.Lock()

    def handler(job: Job) -> None:
        with lock:
            seen.append(job.payload)

    stats = run_worker(env, name, handler, lambda s: s.processed >= 40, concurrency=4)
    assert sorted(seen) == sorted(f"job-{i}".encode() for i in range(40))
    assert (stats.processed, stats.failed, stats.lock_lost) == (40, 0, 0)
    assert q.stats().total == 0


def test_failures_back_off_then_dead_letter_with_the_error(env: Env) -> None:
    name = unique_name("w")
    q = delayq.Queue(env.raw, name, max_attempts=3)
    q.enqueue(b"x", id="bad")
    claims: list[tuple[int, int]] = []  # (claimed at, due at), server clock

    def handler(job: Job) -> None:
        claims.append((job.lock_expires_ms - 5_000, job.due_ms))
        raise ValueError("bad input")

    events: list[WorkerEvent] = []
    stats = run_worker(
        env,
        name,
        handler,
        lambda s: s.dead_lettered == 1,
        max_attempts=3,
        lock_ttl=5,
        backoff=Backoff(base=0.2, factor=2, jitter=0),
        on_event=events.append,
    )
    assert (stats.failed, stats.retried, stats.dead_lettered, stats.processed) == (3, 2, 1, 0)
    assert len(claims) == 3
    # retry n waits base * factor ** (n - 1) after the failure, by the server's clock
    assert 200 <= claims[1][1] - claims[0][0] <= 300
    assert 400 <= claims[2][1] - claims[1][0] <= 500
    (dead,) = q.dead_letters()
    assert (dead.id, dead.attempts, dead.error) == ("bad", 3, "ValueError: bad input")
    assert [e.kind for e in events] == ["failed", "retried", "failed", "retried", "failed", "dead_lettered"]
    assert [e.delay for e in events if e.kind == "retried"] == [0.2, 0.4]
    assert q.stats() == QueueStats(ready=0, delayed=0, in_flight=0, dead=1)


def test_extending_keeps_a_slow_job_from_redelivery(env: Env) -> None:
    name = unique_name("w")
    q = delayq.Queue(env.raw, name)
    q.enqueue(b"slow", id="slow")
    started = threading.Event()
    stolen: list[Job] = []

    def handler(job: Job) -> None:
        started.set()
        deadline = time.monotonic() + 1.0  # more than three lock_ttls
        while time.monotonic() < deadline:
            stolen.extend(q.dequeue(5))  # another consumer keeps trying
            time.sleep(0.05)

    stats = run_worker(env, name, handler, lambda s: s.processed == 1, lock_ttl=0.3)
    assert started.is_set()
    assert stolen == []
    assert (stats.processed, stats.lock_lost) == (1, 0)
    assert q.stats().total == 0


def test_a_lost_lock_is_logged_and_not_acked(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    name = unique_name("w")
    q = delayq.Queue(env.raw, name)
    q.enqueue(b"doomed", id="doomed")

    def handler(job: Job) -> None:
        assert q.cancel(job.id)  # e.g. an operator cancels it mid-run: the lock is gone
        time.sleep(0.4)  # long enough for an extend to notice

    with caplog.at_level("WARNING", logger="delayq.worker"):
        stats = run_worker(env, name, handler, lambda s: s.lock_lost == 1, lock_ttl=0.3)
    assert (stats.processed, stats.lock_lost) == (0, 1)
    assert "lock lost" in caplog.text
    assert q.stats().total == 0


def test_a_stop_gives_running_jobs_back_without_using_an_attempt(env: Env) -> None:
    """A job on its last attempt that is still running when the grace runs out goes back to the
    queue as it was before the claim: not dead-lettered, its attempt not counted (DESIGN rule 7)."""
    name = unique_name("w")
    q = delayq.Queue(env.raw, name, max_attempts=1)
    q.enqueue_many([b"a", b"b"], ids=["a", "b"])
    started: list[Job] = []
    release = threading.Event()

    def handler(job: Job) -> None:
        started.append(job)
        release.wait(10)

    events: list[WorkerEvent] = []
    try:
        stats = run_worker(
            env, name, handler, lambda s: len(started) == 2, concurrency=2, grace=0.1, max_attempts=1, on_event=events.append
        )
    finally:
        release.set()
    assert [j.attempts for j in started] == [1, 1], "each job on its last attempt"
    assert (stats.returned, stats.dead_lettered, stats.lock_lost, stats.processed) == (2, 0, 0, 0)
    assert sorted(e.job.id for e in events if e.kind == "returned") == ["a", "b"]
    assert q.stats() == QueueStats(ready=2, delayed=0, in_flight=0, dead=0)
    assert sorted((p.id, p.attempts) for p in q.peek()) == [("a", 0), ("b", 0)]
    assert sorted((j.id, j.attempts) for j in q.dequeue(5)) == [("a", 1), ("b", 1)], "delivered again, not dead"


def test_a_job_enqueued_again_under_its_id_is_tracked_by_its_own_claim(env: Env) -> None:
    """The first claim of "dup" is cancelled and a new job enqueued under the same id while the
    first handler still runs: the two claims are two jobs to the worker (DESIGN rule 8). The end
    of the first must not stop the second's lock from being extended, or the same healthy worker
    would run the second again once its lock expired."""
    name = unique_name("w")
    q = delayq.Queue(env.raw, name)
    q.enqueue(b"first", id="dup")
    second_started = threading.Event()
    runs: list[tuple[bytes, int]] = []

    def handler(job: Job) -> None:
        runs.append((job.payload, job.attempts))
        if job.payload == b"first":
            assert q.cancel("dup")
            assert q.enqueue(b"second", id="dup") == "dup"
            second_started.wait(5)
            time.sleep(0.5)  # the first outlives the second's start, and a few extends notice its loss
        else:
            second_started.set()
            time.sleep(1.5)  # five lock ttls: only the extends keep it

    stats = run_worker(env, name, handler, lambda s: s.processed + s.lock_lost >= 2, concurrency=2, lock_ttl=0.3)
    assert runs == [(b"first", 1), (b"second", 1)], "the second job ran once"
    assert (stats.processed, stats.lock_lost) == (1, 1)
    assert q.stats().total == 0


def test_a_lock_lost_after_the_handler_ended_is_not_counted_processed(env: Env) -> None:
    """The handler returns, but its job was cancelled before the worker acked it (no extend ran in
    between to notice): the ack, sent with the next claim, is refused, and the worker says so."""
    name = unique_name("w")
    q = delayq.Queue(env.raw, name)
    q.enqueue_many([b"keep", b"drop"], ids=["keep", "drop"])

    def handler(job: Job) -> None:
        if job.id == "drop":
            assert q.cancel(job.id)

    events: list[WorkerEvent] = []
    stats = run_worker(env, name, handler, lambda s: s.processed + s.lock_lost == 2, lock_ttl=30, on_event=events.append)
    assert (stats.processed, stats.lock_lost) == (1, 1)
    assert sorted((e.kind, e.job.id) for e in events) == [("lock_lost", "drop"), ("processed", "keep")]
    assert q.stats().total == 0


def test_an_ack_refused_at_shutdown_is_not_counted_processed(env: Env) -> None:
    """The same at a graceful stop, where the last finished jobs are acked without a claim."""
    name = unique_name("w")
    q = delayq.Queue(env.raw, name)
    q.enqueue_many([b"keep", b"drop"], ids=["keep", "drop"])
    started: list[str] = []
    workers: list[Any] = []

    def handler(job: Job) -> None:
        started.append(job.id)
        deadline = time.monotonic() + 10
        while not workers[0]._stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)  # finish only once the worker is stopping
        if job.id == "drop":
            assert q.cancel(job.id)

    stats = run_worker(env, name, handler, lambda s: len(started) == 2, workers=workers, concurrency=2, lock_ttl=30)
    assert (stats.processed, stats.lock_lost, stats.returned) == (1, 1, 0)
    assert q.stats().total == 0


def test_a_shard_failing_loses_no_claim_and_no_ack_of_a_worker(env: Env) -> None:
    """Every third script call of a sharded worker fails, as if one master blinked: the jobs
    claimed from the other shards still run at once (not after their locks expire), the acks
    that were not applied are sent again, and every job runs once and is counted once."""
    name = unique_name("w")
    q = delayq.Queue(env.raw, name, shards=3)
    ids = [f"j{i}" for i in range(30)]
    q.enqueue_many([i.encode() for i in ids], ids=ids)
    runs: list[str] = []
    lock = threading.Lock()
    calls = itertools.count(1)

    def blink(worker: Any) -> None:
        fail_calls(worker.queue, lambda call: call.script.name in ("dequeue", "ack") and next(calls) % 3 == 0)

    def handler(job: Job) -> None:
        with lock:
            runs.append(job.id)

    stats = run_worker(env, name, handler, lambda s: s.processed >= 30, setup=blink, shards=3, concurrency=4, lock_ttl=30)
    assert sorted(runs) == sorted(ids), "each job ran once: none waited for its lock to expire"
    assert (stats.processed, stats.lock_lost, stats.returned) == (30, 0, 0)
    assert q.stats().total == 0


def test_a_hung_handler_times_out_fails_and_frees_its_slot(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """A handler that never returns: after ``timeout`` its job fails with a timeout error (retried,
    then dead-lettered, per the backoff), and the worker goes on with other jobs at full capacity.
    A plain handler's thread cannot be stopped: it is abandoned, and what it returns is ignored."""
    name = unique_name("w")
    q = delayq.Queue(env.raw, name, max_attempts=2)
    q.enqueue(b"hang", id="hang")
    q.enqueue(b"ok", id="ok", delay=0.05)
    unblock = threading.Event()
    runs: list[tuple[str, int]] = []

    def handler(job: Job) -> None:
        runs.append((job.id, job.attempts))
        if job.id == "hang":
            unblock.wait(30)

    events: list[WorkerEvent] = []
    try:
        with caplog.at_level("WARNING", logger="delayq.worker"):
            stats = run_worker(
                env,
                name,
                handler,
                lambda s: s.dead_lettered == 1 and s.processed == 1,
                concurrency=1,
                timeout=0.3,
                max_attempts=2,
                lock_ttl=5,
                backoff=Backoff(base=0.05, jitter=0),
                on_event=events.append,
            )
    finally:
        unblock.set()  # the abandoned threads return now: nothing may count it
    assert runs == [("hang", 1), ("ok", 1), ("hang", 2)], "one slot: the hung handler's was given back"
    assert (stats.failed, stats.retried, stats.dead_lettered, stats.processed, stats.lock_lost) == (2, 1, 1, 1, 0)
    (dead,) = q.dead_letters()
    assert dead.id == "hang" and dead.error is not None and dead.error.startswith("TimeoutError:")
    assert "0.3" in dead.error
    assert [e.kind for e in events if e.job.id == "hang"] == ["failed", "retried", "failed", "dead_lettered"]
    assert "abandoned" in caplog.text
    assert q.stats() == QueueStats(ready=0, delayed=0, in_flight=0, dead=1)


def test_abandoned_handler_threads_are_bounded(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """At most ``concurrency`` abandoned threads are replaced: past that the worker runs short,
    says so loudly, and takes a thread back into service when an abandoned handler returns
    (whose result is ignored: it counts neither as processed nor as failed again)."""
    name = unique_name("w")
    q = delayq.Queue(env.raw, name, max_attempts=1)
    q.enqueue_many([b"hang", b"hang"], ids=["hang-1", "hang-2"])
    unblock = threading.Event()
    started: list[str] = []

    def handler(job: Job) -> None:
        started.append(job.id)
        if job.id.startswith("hang"):
            unblock.wait(30)

    early: list[bool] = []

    def then_ok() -> None:
        q.enqueue(b"ok", id="ok")
        time.sleep(0.5)  # no handler is free: "ok" waits
        early.append("ok" in started)
        unblock.set()

    checker = threading.Thread(target=then_ok)

    def go_on(stats: WorkerStats) -> bool:
        if stats.dead_lettered == 2 and not checker.is_alive() and not unblock.is_set():
            checker.start()
        return stats.processed == 1

    with caplog.at_level("WARNING", logger="delayq.worker"):
        try:
            stats = run_worker(env, name, handler, go_on, concurrency=1, timeout=0.2, max_attempts=1)
        finally:
            unblock.set()
    checker.join()
    assert early == [False], "past the bound, the worker ran short"
    assert started == ["hang-1", "hang-2", "ok"]
    assert (stats.failed, stats.dead_lettered, stats.processed) == (2, 2, 1)
    assert any(r.levelname == "ERROR" and "abandoned" in r.getMessage() for r in caplog.records)


def test_an_async_handler_is_cancelled_at_its_timeout(env: Env) -> None:
    if env.api == "sync":
        pytest.skip("async handlers are the asyncio worker's")
    name = unique_name("w")
    q = delayq.Queue(env.raw, name, max_attempts=1)
    q.enqueue(b"slow", id="slow")
    cancelled: list[str] = []

    async def handler(job: Job) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(job.id)
            raise

    stats = run_worker(env, name, handler, lambda s: s.dead_lettered == 1, timeout=0.2, max_attempts=1)
    assert cancelled == ["slow"]
    assert (stats.failed, stats.dead_lettered, stats.processed) == (1, 1, 0)
    (dead,) = q.dead_letters()
    assert dead.error is not None and dead.error.startswith("TimeoutError:")


def test_what_the_worker_counts_is_what_happened(env: Env) -> None:
    """Every claim ends in exactly one of processed, retried, dead_lettered, lock_lost, returned, and
    each counter equals the change it names in the queue: processed = jobs acked away, dead_lettered
    = the dead letters, returned = the jobs back in the queue unrun (attempts as before), retried =
    the claims that came back for another run, lock_lost = the claims whose job was taken away."""
    name = unique_name("w")
    q = delayq.Queue(env.raw, name, max_attempts=2)
    ids = ["ok-1", "ok-2", "ok-3", "ok-4", "flaky", "bad", "hang", "gone", "late-1", "late-2"]
    q.enqueue_many([i.encode() for i in ids[:-2]], ids=ids[:-2])
    claims: list[tuple[str, str, int]] = []
    lock = threading.Lock()
    unblock = threading.Event()

    def handler(job: Job) -> None:
        with lock:
            claims.append((job.id, job.token, job.attempts))
        if job.id == "bad" or (job.id == "flaky" and job.attempts == 1):
            raise RuntimeError("no good")
        if job.id in ("hang", "late-1", "late-2"):
            unblock.wait(30)  # "hang" times out; "late-*" are still running at the stop
        if job.id == "gone":
            assert q.cancel("gone")

    def settled(s: WorkerStats) -> bool:
        # the rest done, two jobs come that are still running when the worker stops
        if (s.processed, s.dead_lettered, s.lock_lost) == (5, 2, 1) and q.stats().total == 2:
            q.enqueue_many([b"late-1", b"late-2"], ids=["late-1", "late-2"])
        return sum(c[0].startswith("late") for c in claims) == 2

    events: list[WorkerEvent] = []
    try:
        stats = run_worker(
            env,
            name,
            handler,
            settled,
            concurrency=4,
            max_attempts=2,
            timeout=1,
            grace=0.1,
            backoff=Backoff(base=0.05, jitter=0),
            on_event=events.append,
        )
    finally:
        unblock.set()
    terminal = [e for e in events if e.kind != "failed"]
    assert sorted((e.job.id, e.job.token) for e in terminal) == sorted((i, t) for i, t, _ in claims), "one end per claim"
    left = q.stats()
    cancelled = 1
    assert stats.processed == len(ids) - left.total - cancelled == 5
    assert stats.dead_lettered == left.dead == 2
    assert sorted(d.id for d in q.dead_letters()) == ["bad", "hang"]
    assert stats.returned == left.ready == 2
    assert sorted((p.id, p.attempts) for p in q.peek()) == [("late-1", 0), ("late-2", 0)]
    runs = Counter(i for i, _, _ in claims)
    assert stats.retried == sum(n - 1 for n in runs.values()) == 3  # flaky, bad and hang came back once
    assert stats.lock_lost == cancelled
    assert stats.failed == stats.retried + stats.dead_lettered == 5
    assert left.in_flight == 0


@pytest.mark.parametrize("shards", [1, 3])
def test_an_ack_whose_reply_was_lost_is_counted_processed(env: Env, shards: int) -> None:
    """The call carrying the acks is applied but its reply is lost (a connection cut): the worker
    sends the acks again, finds those jobs gone, and counts them processed, not lost. (The jobs the
    lost call claimed come back when their short locks expire.)"""
    name = unique_name("w")
    q = delayq.Queue(env.raw, name, shards=shards)
    ids = [f"j{i}" for i in range(12)]
    q.enqueue_many([i.encode() for i in ids], ids=ids)
    carried = itertools.count(1)

    def cut(worker: Any) -> None:
        def fails(call: Call) -> bool:
            has_acks = call.script.name == "ack" or (call.script.name == "dequeue" and int(call.args[5]) > 0)
            # the 1st, 3rd and 5th calls carrying acks lose their replies (not every other call for
            # ever: with acks on two shards, each cycle's two calls would keep the same parity, and the
            # sharded queue raises, dropping the other shard's answer, whenever nothing was applied)
            return has_acks and next(carried) in (1, 3, 5)

        fail_calls(worker.queue, fails, after=True)

    stats = run_worker(
        env,
        name,
        lambda job: None,
        lambda s: s.processed >= 12,
        setup=cut,
        concurrency=3,
        lock_ttl=0.3,
        shards=shards,
    )
    assert next(carried) > 2, "some replies were lost"
    # an ack miscounted as lost would leave processed at 11 for ever: its job is gone. (A buffered job
    # whose short lock ran low while the worker paused after a cut is not started, counted lost, and
    # comes back: then it is processed too.)
    assert stats.processed == 12
    assert q.stats().total == 0


def test_a_failing_hook_does_not_stop_the_worker(env: Env) -> None:
    name = unique_name("w")
    delayq.Queue(env.raw, name).enqueue_many([b"a", b"b", b"c"])

    def hook(event: WorkerEvent) -> None:
        raise RuntimeError("metrics backend down")

    stats = run_worker(env, name, lambda job: None, lambda s: s.processed == 3, on_event=hook)
    assert stats.processed == 3


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"concurrency": 0}, delayq.InvalidArgument, "concurrency"),
        ({"concurrency": "4"}, delayq.InvalidType, "concurrency"),
        ({"lock_ttl": -1}, delayq.InvalidArgument, "lock_ttl"),
        ({"lock_ttl": 1, "extend_every": 2}, delayq.InvalidArgument, "extend_every"),
        ({"poll": float("nan")}, delayq.InvalidArgument, "poll"),
        ({"backoff": Backoff(factor=0.5)}, delayq.InvalidArgument, "factor"),
        ({"backoff": Backoff(jitter=1.5)}, delayq.InvalidArgument, "jitter"),
        ({"on_event": "print"}, delayq.InvalidType, "on_event"),
        ({"timeout": 0}, delayq.InvalidArgument, "timeout"),
        ({"timeout": -5}, delayq.InvalidArgument, "-5"),
        ({"timeout": float("inf")}, delayq.InvalidArgument, "timeout"),
        ({"timeout": "60"}, delayq.InvalidType, "'60'"),
    ],
)
def test_bad_worker_settings(kwargs: dict[str, Any], error: type[Exception], text: str) -> None:
    import fakeredis  # noqa: PLC0415

    q = delayq.Queue(fakeredis.FakeRedis(), "q")
    with pytest.raises(error, match=text):
        delayq.Worker(q, lambda job: None, **kwargs)
    with pytest.raises(delayq.InvalidType, match="handler"):
        delayq.Worker(q, "not callable")  # type: ignore[arg-type]
    with pytest.raises(delayq.InvalidType, match=r"delayq\.aio\.Worker"):
        delayq.Worker(delayq.aio.Queue(fakeredis.FakeAsyncRedis(), "q"), lambda job: None)  # type: ignore[arg-type]


# ---------------------------------------------------------------- signals, in a real process

WORKER_PROCESS = r"""
import logging, sys, threading, time
import redis, delayq, delayq.aio, asyncio
url, name, flavour, handler_s, grace = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(relativeCreated)d %(threadName)s %(message)s")
lock = threading.Lock()
def handler(job):
    with lock:
        sys.stdout.write(f"started {job.id}\n")
        sys.stdout.flush()
    time.sleep(handler_s)
if flavour == "sync":
    stats = delayq.Worker(delayq.Queue(redis.Redis.from_url(url), name), handler, concurrency=4, grace=grace, poll=0.2).run()
else:
    import redis.asyncio
    async def main():
        q = delayq.aio.Queue(redis.asyncio.Redis.from_url(url), name)
        return await delayq.aio.Worker(q, handler, concurrency=4, grace=grace, poll=0.2).run()
    stats = asyncio.run(main())
print("stats", stats.processed, stats.returned, flush=True)
"""


def start_worker_process(url: str, name: str, flavour: str, handler_s: float, grace: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER_PROCESS, url, name, flavour, str(handler_s), str(grace)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for _ in range(4):  # wait until its four handlers are running
        assert proc.stdout.readline().startswith("started")
    return proc


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_sigterm_finishes_running_jobs_and_leaves_nothing_locked(redis_url: str, flavour: str) -> None:
    name = unique_name("sigterm")
    q = delayq.Queue(redis.Redis.from_url(redis_url), name)
    q.enqueue_many([f"j{i}".encode() for i in range(20)])
    proc = start_worker_process(redis_url, name, flavour, handler_s=0.5, grace=10)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    processed = int(out.split("stats ")[1].split()[0])
    assert processed >= 4, "the running handlers finished and were acked"
    stats = q.stats()
    assert stats.in_flight == 0, "nothing is left waiting for a lock to expire"
    assert stats.ready == 20 - processed, "every job is acked or back in the queue"
    assert "SIGTERM" in err


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_second_signal_stops_at_once_and_gives_running_jobs_back(redis_url: str, flavour: str) -> None:
    name = unique_name("sigkill2")
    q = delayq.Queue(redis.Redis.from_url(redis_url), name)
    q.enqueue_many([f"j{i}".encode() for i in range(8)])
    proc = start_worker_process(redis_url, name, flavour, handler_s=3, grace=30)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert time.monotonic() - start < 3, "did not wait for the 3 s handlers"
    assert q.stats() == QueueStats(ready=8, delayed=0, in_flight=0, dead=0), "running jobs are back at once"
    assert "stats 0 8" in out, "the 4 running and the 4 prefetched jobs were given back"
