"""Torture: worker processes SIGKILLed at random and restarted while they work through thousands
of jobs with random delays. Every claim, lock extension and ack is logged (flushed line by line)
and checked at the end against what the queue promises:

- every job acked exactly once (and the queue empty, nothing dead);
- no job claimed before its due time, by the server's clock;
- no job claimed while an earlier claim's lock (as extended) was still live, unless that claim
  had been acked... which cannot be, since an acked job is gone: so never two live locks.

The short form runs in CI; ``--slow`` (or DELAYQ_SLOW=1) runs the long form.
"""

from __future__ import annotations

import itertools
import json
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import redis

import delayq
from tests.helpers import unique_name

WORKER = r"""
import json, os, random, sys, threading, time
import redis, delayq
url, name, log_path, ttl = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
pid = os.getpid()
out = open(log_path, "a", buffering=1)
lock = threading.Lock()
def log(*record):
    with lock:
        out.write(json.dumps([pid, *record]) + "\n")
q = delayq.Queue(redis.Redis.from_url(url), name)
def extend(job, lock_ttl=30):
    expiry = q._drive(q._core.extend(job, lock_ttl))
    if expiry is not None:
        log("extend", job.id, job.token, expiry)
    return expiry is not None
q.extend = extend
# an ack is logged after the call that made it returned: the jobs it says it acked (the worker's
# two ack paths report which of the batch were refused or not tried)
plain_ack_and_claim, plain_ack_claims = q.ack_and_claim, q.ack_claims
def log_acked(done, result):
    left = {(j.id, j.token) for j in result.refused + result.unapplied}
    acked = [j.id for j in done if (j.id, j.token) not in left]
    if acked:
        log("acked", acked, len(acked))
def ack_and_claim(done, batch, lock_ttl, wait):
    done = list(done)
    result = plain_ack_and_claim(done, batch, lock_ttl, wait=wait)
    log_acked(done, result)
    return result
def ack_claims(done):
    done = list(done)
    result = plain_ack_claims(done)
    log_acked(done, result)
    return result
q.ack_and_claim, q.ack_claims = ack_and_claim, ack_claims
rng = random.Random(pid)
def handler(job):
    log("claim", job.id, job.token, job.lock_expires_ms - int(ttl * 1000), job.lock_expires_ms, job.due_ms)
    # most are quick; one in fifty outlives a third of the ttl, so its lock gets extended
    time.sleep(ttl * 0.7 if rng.random() < 0.02 else rng.choice([0, 0, 0.001, 0.005, 0.02]))
w = delayq.Worker(q, handler, concurrency=8, lock_ttl=ttl, poll=0.2)
w.run()
"""


def torture(redis_url: str, tmp_path: Path, jobs: int, max_delay: float, workers: int, kill_for: float) -> dict[str, Any]:
    name = unique_name("torture")
    log_path = tmp_path / "deliveries.jsonl"
    client = redis.Redis.from_url(redis_url)
    q = delayq.Queue(client, name)
    rng = random.Random(42)
    ids: list[str] = []
    for start in range(0, jobs, 1000):
        n = min(1000, jobs - start)
        delay = rng.uniform(0, max_delay)  # one delay per 1000-job call, spread across calls
        ids += [i for i in q.enqueue_many([b"x"] * n, delay=delay) if i]
    due_key = q._core.keys["due"]  # type: ignore[union-attr]
    scores = client.zmscore(due_key, ids)
    assert None not in scores
    original_due = {i: int(s or 0) for i, s in zip(ids, scores, strict=True)}
    ttl = 1.0

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-c", WORKER, redis_url, name, str(log_path), str(ttl)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    procs = [spawn() for _ in range(workers)]
    killed: set[int] = set()
    kills = 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < kill_for:
            time.sleep(rng.uniform(0.2, 0.8))
            victim = rng.randrange(len(procs))
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            killed.add(procs[victim].pid)
            kills += 1
            procs[victim] = spawn()
        deadline = time.monotonic() + 120 + max_delay
        while q.stats().total and time.monotonic() < deadline:
            time.sleep(0.2)
        stats = q.stats()
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert stats.total == 0, f"jobs left in the queue: {stats}"

    claims: dict[str, list[list[Any]]] = defaultdict(list)
    extends: dict[tuple[str, str], int] = {}
    acks: dict[str, int] = defaultdict(int)  # batches surely acked whole
    maybe_acked: set[str] = set()  # in a batch of which only some were acked
    for line in log_path.read_text().splitlines():
        try:
            pid, kind, *rest = json.loads(line)
        except ValueError:
            continue  # a line cut by a SIGKILL
        if kind == "claim":
            job_id, token, claimed, expires, due = rest
            claims[job_id].append([claimed, expires, token, due, pid])
        elif kind == "extend":
            job_id, token, expiry = rest
            extends[(job_id, token)] = max(expiry, extends.get((job_id, token), 0))
        else:
            batch, acked = rest
            for job_id in batch:
                if acked == len(batch):
                    acks[job_id] += 1
                else:
                    maybe_acked.add(job_id)

    early = [i for i, cs in claims.items() for c in cs if c[0] < original_due[i]]
    assert early == [], "claimed before the due time"
    overlaps = 0
    duplicates = 0
    unrecorded_acks = 0
    for job_id in ids:
        cs = sorted(claims[job_id])
        assert cs, f"job {job_id} was never claimed"
        assert acks[job_id] <= 1, f"job {job_id} acked {acks[job_id]} times"
        if not acks[job_id] and job_id not in maybe_acked:
            # it left the queue, so it was acked: by a process killed before it could log that
            assert cs[-1][4] in killed, f"job {job_id} left the queue without an ack"
            unrecorded_acks += 1
        for before, after in itertools.pairwise(cs):
            held_until = max(before[1], extends.get((job_id, before[2]), 0))
            if after[0] < held_until:
                overlaps += 1
        duplicates += len(cs) - 1
    assert overlaps == 0, "a job was claimed while another claim's lock was live"
    return {
        "jobs": len(ids),
        "kills": kills,
        "workers": workers,
        "deliveries": sum(len(c) for c in claims.values()),
        "duplicates": duplicates,
        "extends": len(extends),
        "acks_lost_with_their_process_log": unrecorded_acks,
        "seconds": round(time.monotonic() - started, 1),
        "lost": 0,
    }


def report(result: dict[str, Any]) -> None:
    print("\ntorture:", json.dumps(result))


def test_torture_short(redis_url: str, tmp_path: Path) -> None:
    report(torture(redis_url, tmp_path, jobs=5000, max_delay=3, workers=3, kill_for=6))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_torture_long(redis_url: str, tmp_path: Path) -> None:
    report(torture(redis_url, tmp_path, jobs=50_000, max_delay=20, workers=4, kill_for=60))
