"""Redis faults: restarts with AOF, SCRIPT FLUSH mid-run, a dead server, and scripts stopped half-way."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

import delayq
from delayq import Job, QueueStats
from delayq._server import RedisServer, ServerUnavailable
from tests.helpers import no_server, unique_name


@pytest.fixture
def aof_server() -> Iterator[RedisServer]:
    """A private redis-server of the test's own (it gets restarted), with AOF and fsync on every write."""
    try:
        server = RedisServer("--appendonly", "yes", "--appendfsync", "always").start()
    except ServerUnavailable as exc:
        no_server(str(exc))
    yield server
    server.__exit__(None, None, None)


def retrying_client(server: RedisServer) -> redis.Redis:
    """A client configured as the README advises: bounded timeouts and a retry with backoff."""
    return redis.Redis(
        port=server.port,
        socket_timeout=2,
        socket_connect_timeout=1,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 40),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_restart_with_aof_keeps_every_acknowledged_enqueue(aof_server: RedisServer, kill: bool) -> None:
    client = retrying_client(aof_server)
    q = delayq.Queue(client, unique_name("aof"))
    acknowledged: list[str] = []
    failed = 0

    def produce() -> None:
        nonlocal failed
        for i in range(1500):
            try:
                q.enqueue(f"payload-{i}".encode(), id=f"job-{i}", delay=60)
            except redis.RedisError:
                failed += 1
                continue
            # the id, or None when a retry found the first attempt had stored it: stored either way
            acknowledged.append(f"job-{i}")

    producer = threading.Thread(target=produce)
    producer.start()
    for _ in range(2):
        time.sleep(0.3)
        aof_server.restart(kill=kill)  # scripts are gone from the new process: NOSCRIPT, reload
    producer.join(60)
    assert not producer.is_alive()
    assert len(acknowledged) > 1000 and failed == 0
    payloads = client.hmget(q._core.keys["payload"], acknowledged)  # type: ignore[union-attr]
    assert None not in payloads, "an acknowledged enqueue was lost"
    assert q.stats().delayed == len(acknowledged)
    client.close()


def test_workers_ride_out_a_restart(aof_server: RedisServer) -> None:
    client = retrying_client(aof_server)
    name = unique_name("ride")
    q = delayq.Queue(client, name)
    q.enqueue_many([b"x"] * 600)
    # a worker on a client with no retry of its own: the worker's outage handling carries it
    worker_client = redis.Redis(port=aof_server.port, socket_timeout=2, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    worker = delayq.Worker(delayq.Queue(worker_client, name), lambda job: time.sleep(0.002), concurrency=4, poll=0.2)
    thread = threading.Thread(target=worker.run, kwargs={"install_signals": False})
    thread.start()
    time.sleep(0.3)
    aof_server.restart()
    deadline = time.monotonic() + 30
    while q.stats().total and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.stop()
    thread.join(15)
    assert q.stats().total == 0, "the worker came back after the restart and finished the queue"
    assert worker.stats.processed >= 600
    client.close()


def test_script_flush_mid_run(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    q = delayq.Queue(client, unique_name("flush"))
    q.enqueue_many([b"x"] * 3000)
    stop = threading.Event()

    def flusher() -> None:
        admin = redis.Redis.from_url(redis_url)
        while not stop.wait(0.01):
            admin.script_flush()
        admin.close()

    thread = threading.Thread(target=flusher)
    thread.start()
    seen: set[str] = set()
    done: list[Job] = []
    try:
        while True:
            acked, jobs = q.ack_and_dequeue(done, 50)
            assert acked == len(done)
            if not jobs:
                break
            assert not seen & {j.id for j in jobs}
            seen |= {j.id for j in jobs}
            done = jobs
    finally:
        stop.set()
        thread.join()
    assert len(seen) == 3000
    assert q.stats().total == 0
    client.close()


def test_a_dead_server_gives_a_clear_error_not_a_hang(aof_server: RedisServer) -> None:
    client = redis.Redis(port=aof_server.port, socket_timeout=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 2))
    q = delayq.Queue(client, unique_name("dead"))
    q.enqueue(b"x")
    assert aof_server.proc is not None
    aof_server.proc.kill()
    aof_server.proc.wait()
    start = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        q.stats()
    assert time.monotonic() - start < 5
    with pytest.raises(redis.ConnectionError):
        q.dequeue(5, wait=10)
    assert time.monotonic() - start < 10
    aof_server.restart()  # and the same client works again once it is back, with the job kept
    assert q.stats() == QueueStats(ready=1, delayed=0, in_flight=0, dead=0)
    client.close()


def test_a_script_stopped_half_way_never_leaves_a_scheduled_job_without_payload(redis_url: str) -> None:
    """Redis runs a script atomically but does not roll back writes made before an error. Every
    script writes the payload before the schedule and removes the schedule before the payload,
    so a failure between the two leaves at worst an unscheduled payload, which is never
    delivered and which purge removes."""
    client = redis.Redis.from_url(redis_url)
    q = delayq.Queue(client, unique_name("half"))
    keys = q._core.keys  # type: ignore[union-attr]
    client.set(keys["due"], "not a zset")  # enqueue reads it before its first write: nothing changes
    with pytest.raises(delayq.ScriptError, match="WRONGTYPE"):
        q.enqueue(b"orphan", id="orphan")
    assert client.exists(keys["payload"]) == 0
    client.delete(keys["due"])
    # what an enqueue stopped between its two writes would leave: the payload, no schedule
    client.hset(keys["payload"], "orphan", b"orphan")
    assert q.dequeue(10) == [], "an unscheduled payload is never delivered"
    assert q.enqueue(b"again", id="orphan") is None  # the id is still taken...
    assert q.cancel("orphan") is True  # ...until cancel (or purge) removes the orphan
    assert q.enqueue(b"fresh", id="orphan") == "orphan"
    # the other half-state, a schedule without its payload, cannot come from the scripts; if it
    # did (an operator's HDEL), dequeue drops the entry rather than deliver an empty job
    client.hdel(keys["payload"], "orphan")
    assert q.dequeue(10) == []
    assert q.stats().total == 0
    assert q.purge() == 0
    client.close()
