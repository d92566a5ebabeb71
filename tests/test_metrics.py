"""Prometheus metrics: queue gauges read at scrape time, worker counters and the handler histogram,
added up over several worker processes (PROMETHEUS_MULTIPROC_DIR) by `delayq exporter`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import fakeredis
import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import delayq
from delayq._server import free_port
from delayq.metrics import QueueCollector, WorkerMetrics, render
from tests.helpers import unique_name

ROOT = Path(__file__).resolve().parent.parent


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def types(text: str) -> dict[str, str]:
    """Each family's type, leaving out prometheus_client's ``_created`` gauges."""
    return {f.name: f.type for f in text_string_to_metric_families(text) if not f.name.endswith("_created")}


def test_queue_gauges_are_read_at_scrape_time() -> None:
    client = fakeredis.FakeRedis()
    q = delayq.Queue(client, "mail", prefix="m", max_attempts=1)
    q.enqueue_many([b"a", b"b"])
    q.enqueue(b"later", delay=60)
    registry = CollectorRegistry()
    registry.register(QueueCollector(client, prefix="m"))
    first = samples(generate_latest(registry).decode())
    assert first[("delayq_jobs", (("queue", "mail"), ("shards", "1"), ("state", "ready")))] == 2
    assert first[("delayq_jobs", (("queue", "mail"), ("shards", "1"), ("state", "delayed")))] == 1
    assert first[("delayq_queue_paused", (("queue", "mail"), ("shards", "1")))] == 0
    assert first[("delayq_up", ())] == 1
    (job,) = q.dequeue(1)
    q.nack(job)
    q.pause()
    again = samples(generate_latest(registry).decode())
    assert again[("delayq_jobs", (("queue", "mail"), ("shards", "1"), ("state", "dead")))] == 1
    assert again[("delayq_queue_paused", (("queue", "mail"), ("shards", "1")))] == 1
    assert again[("delayq_oldest_ready_age_seconds", (("queue", "mail"), ("shards", "1")))] >= 0
    text = generate_latest(registry).decode()
    assert types(text)["delayq_jobs"] == "gauge" and types(text)["delayq_oldest_ready_age_seconds"] == "gauge"


def test_a_scrape_without_redis_says_so() -> None:
    down = redis.Redis(port=1, socket_connect_timeout=0.5)
    text = render(QueueCollector(down, queues=["x"])).decode()
    assert samples(text)[("delayq_up", ())] == 0
    assert "delayq_jobs{" not in text


def test_a_plain_queue_named_like_a_shard_label_is_its_own_series() -> None:
    client = fakeredis.FakeRedis()
    delayq.Queue(client, "a/3", prefix="lbl").enqueue_many([b"x"] * 2)
    delayq.Queue(client, "a", prefix="lbl", shards=3).enqueue_many([b"y"] * 5)
    delayq.Queue(client, "a", prefix="lbl").enqueue(b"z")
    got = samples(render(QueueCollector(client, prefix="lbl")).decode())
    ready = {labels: v for (name, labels), v in got.items() if name == "delayq_jobs" and ("state", "ready") in labels}
    assert ready == {
        (("queue", "a"), ("shards", "1"), ("state", "ready")): 1,
        (("queue", "a"), ("shards", "3"), ("state", "ready")): 5,
        (("queue", "a/3"), ("shards", "1"), ("state", "ready")): 2,
    }


def test_a_foreign_key_spoils_one_queue_not_the_scrape() -> None:
    client = fakeredis.FakeRedis()
    delayq.Queue(client, "good", prefix="fk").enqueue(b"x")
    client.set("fk:{clash}:due", "another program's string")  # WRONGTYPE for the stats script
    text = render(QueueCollector(client, prefix="fk", queues=["good", "clash"])).decode()
    got = samples(text)
    assert got[("delayq_jobs", (("queue", "good"), ("shards", "1"), ("state", "ready")))] == 1
    assert 'queue="clash"' not in text and got[("delayq_up", ())] == 0


def test_worker_metrics_count_events_and_time_handlers() -> None:
    registry = CollectorRegistry()
    q = delayq.Queue(fakeredis.FakeRedis(), "jobs", max_attempts=2)
    q.enqueue_many([b"ok"] * 5 + [b"fail"])

    def handler(job: delayq.Job) -> None:
        if job.payload == b"fail":
            raise ValueError("no")

    worker = delayq.Worker(
        q, handler, concurrency=2, poll=0.05, on_event=WorkerMetrics(q, registry), backoff=delayq.Backoff(0, 1, 0, 0)
    )
    thread = threading.Thread(target=worker.run, kwargs={"install_signals": False})
    thread.start()
    deadline = time.monotonic() + 10
    while q.stats().total > 1 or q.stats().dead < 1:
        assert time.monotonic() < deadline, q.stats()
        time.sleep(0.02)
    worker.stop()
    thread.join(10)
    text = generate_latest(registry).decode()
    got = samples(text)
    event = lambda kind: got[("delayq_worker_events_total", (("event", kind), ("queue", "jobs")))]  # noqa: E731
    assert (event("processed"), event("failed"), event("retried"), event("dead_lettered")) == (5, 2, 1, 1)
    assert got[("delayq_handler_duration_seconds_count", (("outcome", "success"), ("queue", "jobs")))] == 5
    assert got[("delayq_handler_duration_seconds_count", (("outcome", "failure"), ("queue", "jobs")))] == 2
    assert types(text) == {"delayq_worker_events": "counter", "delayq_handler_duration_seconds": "histogram"}
    # a second hook on the same registry shares the metrics (a registry refuses a name twice)
    WorkerMetrics("jobs", registry)(delayq.WorkerEvent("returned", worker_job(q)))
    assert (
        samples(generate_latest(registry).decode())[("delayq_worker_events_total", (("event", "returned"), ("queue", "jobs")))]
        == 1
    )
    with pytest.raises(delayq.InvalidType, match="queue"):
        WorkerMetrics(42)


def worker_job(q: delayq.Queue) -> delayq.Job:
    q.enqueue(b"x", id="r")
    (job,) = q.dequeue()
    return job


HANDLERS = """
import time
def handle(job):
    time.sleep(0.01)
    if job.payload == b"fail":
        raise ValueError("no good")
"""


def scrape(url: str, deadline: float) -> str:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_two_worker_processes_add_up_in_the_exporter(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "handlers.py").write_text(textwrap.dedent(HANDLERS))
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder), "DELAYQ_REDIS_URL": redis_url}
    # the handlers' folder is the working directory: the checkout's delayq must still import
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    name, prefix = unique_name("mp"), unique_name("mp-prefix")
    q = delayq.Queue(redis.Redis.from_url(redis_url), name, prefix=prefix, max_attempts=1)
    q.enqueue_many([b"ok"] * 60 + [b"fail"] * 4)
    base = [sys.executable, "-m", "delayq"]
    worker = [*base, "worker", "handlers:handle", name, "--prefix", prefix, "--max-attempts", "1"]
    workers = [
        subprocess.Popen(
            [*worker, "--concurrency", "2", "--poll", "0.1", "--metrics"],
            cwd=tmp_path,
            env=env,
            stderr=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    port = free_port()
    exporter = subprocess.Popen([*base, "exporter", "--prefix", prefix, "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while q.stats().ready + q.stats().in_flight > 0:
            assert time.monotonic() < deadline, q.stats()
            time.sleep(0.05)
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            assert proc.wait(20) == 0
        text = scrape(f"http://127.0.0.1:{port}/metrics", time.monotonic() + 20)
    finally:
        exporter.send_signal(signal.SIGTERM)
        exporter.wait(10)
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
    pids = {p.name.rsplit("_", 1)[-1] for p in folder.glob("counter_*.db")}
    assert pids == {f"{w.pid}.db" for w in workers}, "both processes counted"
    got = samples(text)
    event = lambda kind: got.get(("delayq_worker_events_total", (("event", kind), ("queue", name))), 0)  # noqa: E731
    assert (event("processed"), event("failed"), event("dead_lettered")) == (60, 4, 4)
    assert got[("delayq_handler_duration_seconds_count", (("outcome", "success"), ("queue", name)))] == 60
    assert got[("delayq_handler_duration_seconds_bucket", (("le", "0.005"), ("outcome", "success"), ("queue", name)))] == 0
    assert got[("delayq_jobs", (("queue", name), ("shards", "1"), ("state", "dead")))] == 4
    assert got[("delayq_up", ())] == 1
    q.purge()
