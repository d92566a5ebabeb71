"""Workers you can see: heartbeats appear while a worker runs and vanish when it stops or dies;
`delayq workers` lists them; `delayq worker --check` is a health probe."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import redis

import delayq
from delayq import Job
from delayq._heartbeats import HEARTBEAT_TTL_S, heartbeat_entry, workers_key
from delayq._server import free_port
from tests.helpers import Env, unique_name
from tests.test_worker import run_worker


def test_a_running_worker_is_listed_and_gone_when_it_stops(env: Env) -> None:
    name = unique_name("hb")
    q = delayq.Queue(env.raw, name)
    q.enqueue_many([b"a", b"b", b"c"])
    seen: list[Any] = []
    watcher = q  # a sync reader, also for the asyncio worker (whose loop is busy running it)

    def handler(job: Job) -> None:
        pass

    def until(stats: delayq.WorkerStats) -> bool:
        if stats.processed < 3:
            return False
        seen.extend(watcher.workers())
        return bool(seen)

    run_worker(env, name, handler, until, concurrency=3)
    (worker,) = seen
    assert (worker.host, worker.pid, worker.concurrency) == (socket.gethostname(), os.getpid(), 3)
    assert worker.ttl == HEARTBEAT_TTL_S and time.time() - worker.last_seen < HEARTBEAT_TTL_S
    assert worker.counters["processed"] >= 0
    assert watcher.workers() == [], "a worker that stops removes its heartbeat"


def test_a_worker_without_heartbeat_is_not_listed(env: Env) -> None:
    name = unique_name("hb")
    q = delayq.Queue(env.raw, name)
    q.enqueue(b"a")
    listed: list[Any] = []
    watcher = q  # a sync reader, also for the asyncio worker (whose loop is busy running it)
    run_worker(env, name, lambda job: listed.extend(watcher.workers()), lambda s: s.processed == 1, heartbeat=False)
    assert listed == []


def test_beats_prune_dead_and_malformed_entries(env: Env) -> None:
    q = env.queue()
    key = workers_key("delayq", q.name)
    now = time.time()
    env.raw.hset(key, "dead", heartbeat_entry(1, {}, now - 100, now - 20))  # 20 s since its last beat, ttl 15
    env.raw.hset(key, "junk", b"{not json")
    assert q.heartbeat("me", heartbeat_entry(4, {"processed": 2}, now, now)) == 2
    assert set(env.raw.hkeys(key)) == {b"me"}
    assert [(w.id, w.concurrency, w.counters) for w in q.workers()] == [("me", 4, {"processed": 2})]
    assert 0 < env.raw.pttl(key) <= HEARTBEAT_TTL_S * 1000, "the hash expires if every worker dies"
    assert q.remove_heartbeat("me") and not q.remove_heartbeat("me")
    assert q.workers() == []


@pytest.mark.parametrize(
    "args, error",
    [(("", "{}"), delayq.InvalidArgument), ((42, "{}"), delayq.InvalidType), (("w", b"{}"), delayq.InvalidType)],
)
def test_a_bad_heartbeat_is_refused_and_nothing_is_written(env: Env, args: tuple[Any, Any], error: type[Exception]) -> None:
    q = env.queue()
    with pytest.raises(error):
        q.heartbeat(*args)
    with pytest.raises(delayq.InvalidArgument, match="ttl"):
        q.heartbeat("w", "{}", 0)
    assert env.raw.exists(workers_key("delayq", q.name)) == 0


# ---------------------------------------------------------------- the command line, real processes

HANDLERS = """
import asyncio, time
def handle(job):
    time.sleep(0.01)
async def ahandle(job):
    await asyncio.sleep(0.01)
def broken(job)
"""


def delayq_cli(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "delayq", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def write_handlers(tmp_path: Path) -> None:
    (tmp_path / "handlers.py").write_text(textwrap.dedent(HANDLERS).replace("def broken(job)\n", ""))
    (tmp_path / "broken.py").write_text("def broken(job)\n")


def test_a_killed_worker_disappears_from_delayq_workers_within_its_ttl(redis_url: str, tmp_path: Path) -> None:
    """One sync and one asyncio worker process, killed with SIGKILL: no goodbye, only the ttl."""
    write_handlers(tmp_path)
    name = unique_name("hbkill")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "delayq", "worker", handler, name, "--url", redis_url, "--poll", "0.2"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for handler in ("handlers:handle", "handlers:ahandle")
    ]
    try:
        deadline = time.monotonic() + 20
        listed: list[Any] = []
        while len(listed) < 2 and time.monotonic() < deadline:
            out = delayq_cli("workers", name, "--url", redis_url, "--json", cwd=tmp_path)
            assert out.returncode == 0, out.stderr
            listed = json.loads(out.stdout)
            time.sleep(0.2)
        assert sorted(w["pid"] for w in listed) == sorted(p.pid for p in procs)
        text = delayq_cli("workers", name, "--url", redis_url, cwd=tmp_path).stdout
        assert all(f"pid={p.pid}" in text and "concurrency=8" in text for p in procs)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    killed = time.monotonic()
    while time.monotonic() - killed < HEARTBEAT_TTL_S + 5:
        out = delayq_cli("workers", name, "--url", redis_url, "--json", cwd=tmp_path)
        if json.loads(out.stdout) == []:
            break
        time.sleep(0.5)
    gone_after = time.monotonic() - killed
    assert gone_after <= HEARTBEAT_TTL_S + 1, f"still listed {gone_after:.1f}s after the kill"
    assert "no live workers" in delayq_cli("workers", name, "--url", redis_url, cwd=tmp_path).stdout


@pytest.mark.parametrize("handler", ["handlers:handle", "handlers:ahandle"])
def test_worker_check_exits_0_when_the_queue_is_usable(redis_url: str, tmp_path: Path, handler: str) -> None:
    write_handlers(tmp_path)
    name = unique_name("check")
    delayq.Queue(redis.Redis.from_url(redis_url), name).enqueue(b"x")
    out = delayq_cli("worker", handler, name, "--url", redis_url, "--check", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"ok: queue {name!r} is usable (1 ready, 0 in flight, 0 live workers)" in out.stdout
    data = json.loads(delayq_cli("worker", handler, name, "--url", redis_url, "--check", "--json", cwd=tmp_path).stdout)
    assert data == {"ok": True, "queue": name, "ready": 1, "in_flight": 0, "workers": 0}
    assert delayq.Queue(redis.Redis.from_url(redis_url), name).stats().total == 1, "a check runs no job"


@pytest.mark.parametrize(
    "args, code, text",
    [
        (["handlers:handle", "q", "--url", "redis://127.0.0.1:{port}/0"], 1, "cannot reach Redis"),
        (["broken:broken", "q", "--url", "{url}"], 2, "cannot import 'broken'"),
        (["handlers:nope", "q", "--url", "{url}"], 2, "is not a callable"),
        (["handlers:handle", "bad{{name", "--url", "{url}"], 2, "queue name"),
        (["handlers:handle", "q", "--url", "http://nope"], 2, "bad Redis URL"),
    ],
)
def test_worker_check_fails_with_one_clear_line(redis_url: str, tmp_path: Path, args: list[str], code: int, text: str) -> None:
    write_handlers(tmp_path)
    args = [a.format(port=free_port(), url=redis_url) for a in args]
    out = delayq_cli("worker", *args, "--check", cwd=tmp_path)
    assert out.returncode == code, out.stderr
    assert text in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_worker_check_fails_on_a_read_only_replica(redis_url: str, tmp_path: Path) -> None:
    """A queue on a replica can be read but not worked: --check says so (exit 1)."""
    from delayq._server import RedisServer, ServerUnavailable  # noqa: PLC0415

    write_handlers(tmp_path)
    try:
        replica = RedisServer().start()
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        client = redis.Redis.from_url(replica.url)
        host, port = redis_url.split("//")[1].split("/", maxsplit=1)[0].split(":")
        client.replicaof(host, port)
        client.close()
        out = delayq_cli("worker", "handlers:handle", unique_name("ro"), "--url", replica.url, "--check", cwd=tmp_path)
    finally:
        replica.stop()
    assert out.returncode == 1, out.stdout
    assert "not usable" in out.stderr and "read-only replica" in out.stderr
